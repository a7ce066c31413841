"""Export (ONNX == JAX), native-MuJoCo replay with the task's own observation code, the shipped
policy's end-to-end check, video, clear errors for bad policies, and warm starts from an
exported policy."""

import dataclasses
import json
import shutil

import jax
import jax.numpy as jp
import numpy as np
import pytest
from mujoco import mjx
from test_ppo import leaves_equal, pendulum_config

from locomotion import registry
from locomotion.cat import wrap_for_training
from locomotion.checkpoint import CheckpointError
from locomotion.cli import main
from locomotion.envs import episode_reset, jit_brief
from locomotion.export import export
from locomotion.policy import SHIPPED_DIR, load
from locomotion.replay import eval_env
from locomotion.train import ppo
from locomotion.train.driver import train, warm_start

SHIPPED = "quadruped_joystick"


@pytest.mark.parametrize(
    "policy",
    [
        {},
        # brax's policy: tanh-squashed, state-dependent std, swish, LeCun init.
        {
            "action_distribution": "tanh_normal",
            "state_dependent_std": True,
            "activation": "swish",
            "kernel_init": "lecun_uniform",
        },
    ],
    ids=["normal-elu", "tanh-swish"],
)
def test_onnx_matches_jax_policy(tmp_path, policy):
    env = registry.make("pendulum_swingup")
    cfg = pendulum_config(3, **policy)
    state, _ = train(env, cfg, tmp_path / "run", progress=False)
    out = export(tmp_path / "run")
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"])
    obs = np.random.default_rng(0).normal(0, 2, (256, 3)).astype(np.float32)
    onnx_action = session.run(["action"], {"obs": obs})[0]
    nets = ppo.make_networks(env.action_size, cfg.ppo)
    jax_action = np.asarray(ppo.policy_fn(nets, state.params, state.obs_stats, cfg.ppo)(obs))
    # float32 both sides; the folded normalizer multiplies by a precomputed 1/std.
    np.testing.assert_allclose(onnx_action, jax_action, rtol=1e-4, atol=1e-5)
    meta = json.loads((out / "policy.json").read_text())
    assert meta["task"] == "pendulum_swingup" and meta["training"]["iterations"] == 3
    squash = "tanh" if policy else "none"
    assert meta["onnx"] == {
        "input": "obs",
        "output": "action",
        "activation": cfg.ppo.activation,
        "output_squash": squash,
    }
    if policy:  # the JAX side squashes too; an unsquashed export would differ
        assert np.abs(jax_action).max() < 1 and np.abs(onnx_action).max() > 0.05
    else:  # `locomotion export --checkpoint`: an earlier checkpoint of the run
        ckpt = tmp_path / "run" / "checkpoints" / "ckpt_0000002.npz"
        early = json.loads(
            (export(tmp_path / "run", tmp_path / "early", ckpt) / "policy.json").read_text()
        )
        assert early["training"]["iterations"] == 2
        with pytest.raises(FileNotFoundError, match="no checkpoint file"):
            export(tmp_path / "run", tmp_path / "none", tmp_path / "missing.npz")


def test_native_and_mjx_observations_agree_on_the_same_state():
    policy = load(SHIPPED)
    env = eval_env(policy)
    state = episode_reset(env)(jax.random.PRNGKey(3))  # the replay's reset
    step = jit_brief(env.step)  # 21 steps: compiled for a brief run
    for i in range(20):
        state = step(state, 0.5 * jp.sin(jp.arange(12.0) + i))
    # The same state as a native MjData, back into the task's observation code the way
    # replay hands it over (C MuJoCo's fields written into the MJX state): the observation
    # training saw. (Through mjx.put_data, as replay once did, this state fails: put_data
    # cannot take back the joint-limit constraint rows mjx.get_data writes for it.)
    from locomotion.replay import NativeRunner, _with_fields

    model = env.mj_model
    native = mjx.get_data(model, state.pipeline_state)
    runner = NativeRunner(env)
    runner.data = native
    as_replay = _with_fields(state.pipeline_state, *runner.native_fields())
    obs = jax.jit(env.observation)(as_replay, state.info, jax.random.PRNGKey(0))
    for key in ("state", "privileged_state"):
        np.testing.assert_allclose(obs[key], state.obs[key], atol=1e-6)

    # One control step from that state: C mj_step (replay) vs MJX. Same task code around
    # the physics; the physics gap over 4 substeps stays below 0.05 in every entry.
    runner = NativeRunner(env)
    runner.data = native
    action = 0.3 * np.cos(np.arange(12.0))
    via_native = runner.step(state, action)
    via_mjx = step(state, jp.asarray(action))
    np.testing.assert_allclose(via_native.obs["state"], via_mjx.obs["state"], atol=5e-2)
    assert float(via_native.done) == float(via_mjx.done)


def test_video_has_requested_frames_and_motion(tmp_path):
    import imageio_ffmpeg

    out = tmp_path / "walk.mp4"
    assert (
        main(
            [
                "video",
                SHIPPED,
                "-o",
                str(out),
                "--seconds",
                "1",
                "--command",
                "0.5,0,0",
                "--width",
                "160",
                "--height",
                "96",
            ]
        )
        == 0
    )
    # Decode with imageio-ffmpeg's reader (mediapy's reader passes -vsync, which ffmpeg 9
    # no longer accepts).
    reader = imageio_ffmpeg.read_frames(str(out))
    width, height = next(reader)["size"]
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])
    assert frames.shape == (50, 96, 160, 3)  # 1 s at the 50 Hz control rate
    assert frames.std() > 10  # not blank
    assert np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean() > 2  # it moved


def test_video_still_is_one_png_frame(tmp_path):
    """An `-o` ending in .png renders only the frame at --seconds."""
    out = tmp_path / "still.png"
    args = ["video", SHIPPED, "-o", str(out), "--seconds", "0.5", "--command", "0.5,0,0"]
    assert main([*args, "--width", "160", "--height", "96"]) == 0
    import mediapy

    frame = mediapy.read_image(out)
    assert frame.shape[:2] == (96, 160) and frame.std() > 10  # not blank
    assert not list(tmp_path.glob("*.mp4"))


def _copy_shipped(tmp_path):
    dst = tmp_path / "policy"
    shutil.copytree(SHIPPED_DIR / SHIPPED, dst)
    return dst


def _edit_meta(path, **changes):
    meta = json.loads((path / "policy.json").read_text())
    for key, value in changes.items():
        target = meta
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    (path / "policy.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing", "no policy directory"),
        ("robot", "policy is for robot 'solo8'"),
        ("task", "unknown task 'hexapod_joystick'"),
        ("hash", "MJCF has changed since the policy was exported"),
        ("onnx", "is not a loadable ONNX model"),
        ("obs", "observation entries add up to 45 values, not observation.size 44"),
        ("layout", "observation layout differs from task 'quadruped_joystick' at entry 1"),
        ("config", "QuadrupedJoystickConfig fields missing: ['push_velocity']"),
    ],
)
def test_bad_policies_give_one_line_errors(tmp_path, capsys, breakage, message):
    path = _copy_shipped(tmp_path)
    if breakage == "missing":
        path = tmp_path / "nowhere"
    elif breakage == "robot":
        _edit_meta(path, **{"robot.name": "solo8"})
    elif breakage == "task":
        _edit_meta(path, task="hexapod_joystick")
    elif breakage == "hash":
        _edit_meta(path, **{"robot.mjcf_sha256": "0" * 64})
    elif breakage == "onnx":
        data = (path / "policy.onnx").read_bytes()
        (path / "policy.onnx").write_bytes(data[: len(data) // 3])
    elif breakage == "obs":
        _edit_meta(path, **{"observation.size": 44})
    elif breakage == "layout":  # same size, two entries swapped
        layout = json.loads((path / "policy.json").read_text())["observation"]["layout"]
        layout[1], layout[2] = layout[2], layout[1]
        _edit_meta(path, **{"observation.layout": layout})
    elif breakage == "config":  # written before a setting existed: its value is unknown
        env_config = json.loads((path / "policy.json").read_text())["env_config"]
        del env_config["push_velocity"]
        _edit_meta(path, env_config=env_config)
    assert main(["eval", str(path), "--episodes", "1", "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_settings_written_before_impl_existed_load_as_the_jax_implementation():
    """`impl` joined the task settings after policies were exported; every one of them ran
    MJX's jax implementation, so a file without it means jax (not a default by chance)."""
    from locomotion import config as config_io
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystickConfig

    written = config_io.to_dict(QuadrupedJoystickConfig(impl="warp"))
    assert config_io.from_dict(QuadrupedJoystickConfig, written).impl == "warp"
    del written["impl"]
    assert config_io.from_dict(QuadrupedJoystickConfig, written).impl == "jax"


def test_settings_added_later_load_with_the_value_older_files_ran():
    """The quadruped's stacked frames and foot-slip penalty came after policies were exported
    without them: those ran one frame and no slip term."""
    from locomotion import config as config_io
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystickConfig, RewardScales

    cfg = QuadrupedJoystickConfig(history=3, rewards=RewardScales(feet_slip=-0.2))
    written = config_io.to_dict(cfg)
    assert config_io.from_dict(QuadrupedJoystickConfig, written) == cfg
    del written["history"], written["rewards"]["feet_slip"]
    old = config_io.from_dict(QuadrupedJoystickConfig, written)
    assert old.history == 1 and old.rewards.feet_slip == 0.0


def test_a_policy_is_checked_against_the_task_settings_it_was_trained_with(tmp_path):
    """Loading builds the task from the policy's own `env_config`, not today's defaults: the
    same file with three stacked frames asks for 129 observations, which its ONNX does not take."""
    from locomotion.policy import PolicyError, load

    path = _copy_shipped(tmp_path)
    assert load(path).env_config().history == 1
    env_config = json.loads((path / "policy.json").read_text())["env_config"]
    _edit_meta(path, env_config={**env_config, "history": 3})
    with pytest.raises(PolicyError, match="expects 45 observations, task .* gives 129"):
        load(path)


def test_warm_start_from_an_exported_policy_acts_as_it_did(tmp_path, capsys):
    """`--run.init-from hand_rotate_z` for hand_reorient_upright: the rotation policy's actor,
    its inputs matched by observation name; the reorientation task's extra inputs (cube pose,
    goal) start with zero weight, so the new actor acts exactly as the shipped policy."""
    entry = registry.entry("hand_reorient_upright")
    cfg = dataclasses.replace(entry.presets["cpu"][0], num_envs=8)
    env = entry.env_class(entry.env_config)
    mesh = ppo.make_mesh(cfg.num_envs)
    fresh = ppo.init(wrap_for_training(env, cfg.num_envs), cfg, jax.random.PRNGKey(0), mesh)
    warm = warm_start(fresh, "hand_rotate_z", mesh, env, cfg)
    said = capsys.readouterr().out
    assert "taken from the policy: joint_pos, last_action, joint_pos@t-1" in said
    assert "new, at zero weight: cube_pos, cube_quat, goal_quat, goal_relative" in said
    obs = np.asarray(fresh.env_state.obs["state"])
    obs = obs + np.random.default_rng(0).normal(0, 0.2, obs.shape).astype(np.float32)
    nets = ppo.make_networks(env.action_size, cfg)
    actions = ppo.policy_fn(nets, warm.params, warm.obs_stats, cfg)(jp.asarray(obs))
    rotate = load("hand_rotate_z")
    assert [e["name"] for e in rotate.meta["observation"]["layout"]] == [
        name for name, _ in env.OBSERVATION_LAYOUT[:6]
    ]
    np.testing.assert_allclose(actions, rotate(obs[:, :96]), atol=1e-5)
    first = np.asarray(warm.params["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"])
    assert not first[96:].any() and first[:96].any()
    assert leaves_equal(warm.params["critic"], fresh.params["critic"])  # the critic is fresh
    # A task with half the action scale: the mean head doubles, the joint targets stay.
    halved = entry.env_class(dataclasses.replace(entry.env_config, action_scale=0.25))
    warm2 = warm_start(fresh, "hand_rotate_z", mesh, halved, cfg)
    assert "action scale 0.5 -> 0.25: the mean head is scaled by 2" in capsys.readouterr().out
    actions2 = ppo.policy_fn(nets, warm2.params, warm2.obs_stats, cfg)(jp.asarray(obs))
    np.testing.assert_allclose(actions2, 2 * rotate(obs[:, :96]), atol=2e-5)
    # A policy of another robot, or of other layer sizes, is refused in one sentence.
    with pytest.raises(CheckpointError, match="12 actions, not 16"):
        warm_start(fresh, "quadruped_joystick", mesh, env, cfg)
    small = dataclasses.replace(cfg, actor_hidden=(64, 64))
    actor = ppo.make_networks(env.action_size, small).actor  # the same envs, a smaller actor
    other = fresh.replace(
        params={**fresh.params, "actor": actor.init(jax.random.PRNGKey(0), obs[:1])}
    )
    with pytest.raises(CheckpointError, match="actor-hidden"):
        warm_start(other, "hand_rotate_z", mesh, env, small)
    # An entry of the same name and another size is refused, not silently given zero weight.
    resized = tmp_path / "resized"
    shutil.copytree(SHIPPED_DIR / "hand_rotate_z", resized)
    meta = json.loads((resized / "policy.json").read_text())
    meta["observation"]["layout"][-1] = {"name": "cube_quat", "size": 16, "noise_std": 0.0}
    (resized / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="'cube_quat' has 16 values in the policy and 4"):
        warm_start(fresh, resized, mesh, env, cfg)


def test_learning_curves_keep_real_zeros():
    """A metric that is really 0 is plotted as 0; a missing one, or an episode metric in an
    iteration where no episode ended, is a gap."""
    from locomotion.video import curve

    rows = [
        {"reorient/success": 0.0, "episode/return": 3.0, "episode/count": 2},
        {"reorient/success": 0.5, "episode/return": 0.0, "episode/count": 0},
        {"episode/return": 0.0, "episode/count": 1},
    ]
    np.testing.assert_array_equal(curve(rows, "reorient/success"), [0.0, 0.5, np.nan])
    np.testing.assert_array_equal(curve(rows, "episode/return"), [3.0, np.nan, 0.0])
