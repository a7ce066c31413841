"""End-to-end checks of the shipped policies: the exported ONNX policy, by name or directory,
run by `locomotion eval` in native MuJoCo (C mj_step). Quadrupeds: forward command 0.5 m/s,
5 episodes of 10 s. Hands: episodes of 20 s (5 for rotation, 10 for reorientation), against the
untrained policy (the same network freshly initialized, as PPO starts) on the same seeds."""

import json
import shutil

import jax
import jax.numpy as jp
import numpy as np
import onnx
import pytest
from flax import traverse_util

from locomotion import config as config_io
from locomotion import registry
from locomotion.cli import main
from locomotion.export import actor_layers, build_onnx
from locomotion.policy import SHIPPED_DIR, load, shipped_policies
from locomotion.replay import NativeRunner, eval_env
from locomotion.tasks.hand_common import yaw_turned
from locomotion.train.config import PPOConfig
from locomotion.train.ppo import make_networks


def native_eval(policy, tmp_path, *extra: str, episodes: int = 5, seconds: float = 10) -> dict:
    out = tmp_path / "eval.json"
    args = ["eval", str(policy), "--episodes", str(episodes), "--seconds", str(seconds), *extra]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == episodes
    return result


def untrained_copy(name: str, tmp_path):
    """The shipped policy's directory with its actor replaced by a freshly initialized one of
    the same architecture and no observation normalization (PPO's starting point)."""
    folder = tmp_path / f"{name}_untrained"
    shutil.copytree(SHIPPED_DIR / name, folder)
    meta = json.loads((folder / "policy.json").read_text())
    ppo = config_io.from_dict(PPOConfig, meta["training"]["ppo"])
    actor = make_networks(meta["action"]["size"], ppo).actor
    variables = actor.init(jax.random.PRNGKey(0), jp.zeros((1, meta["observation"]["size"])))
    arrays = traverse_util.flatten_dict({"params": {"actor": variables}}, sep="/")
    model = build_onnx(actor_layers(jax.device_get(arrays)), None, None, normalize=False)
    onnx.save(model, folder / "policy.onnx")
    return folder


def trained_and_untrained(name: str, tmp_path, episodes: int) -> tuple[dict, dict]:
    """Native evaluations (20 s episodes) of the shipped policy and of its untrained copy, on
    the same seeds."""
    trained = native_eval(name, tmp_path, episodes=episodes, seconds=20)
    untrained = native_eval(untrained_copy(name, tmp_path), tmp_path, episodes=episodes, seconds=20)
    assert trained["task"] == untrained["task"] == name
    return trained, untrained


def test_joystick_policy_walks(tmp_path):
    result = native_eval("quadruped_joystick", tmp_path, "--command", "0.5,0,0")
    assert result["task"] == "quadruped_joystick"
    assert result["fall_rate"] == 0.0
    assert result["lin_vel_error"] < 0.1, result["lin_vel_error"]


def test_cat_policy_walks_within_its_constraints(tmp_path):
    result = native_eval("quadruped_cat", tmp_path, "--command", "0.5,0,0")
    assert result["task"] == "quadruped_cat"
    assert result["fall_rate"] == 0.0
    assert result["lin_vel_error"] < 0.15, result["lin_vel_error"]
    rates = result["constraint_violation_rate"]
    assert rates["torque"] <= 0.01, rates
    # Every declared constraint is reported from the native rollout.
    assert {"foot_force", "front_hfe_angle", "air_time", "joint_acceleration"} <= set(rates)


def test_rotate_policy_turns_the_cube_without_dropping_it(tmp_path):
    trained, untrained = trained_and_untrained("hand_rotate_z", tmp_path, episodes=5)
    assert trained["drop_rate"] <= 0.2, trained  # no drop in at least 4 of the 5 episodes
    rate, before = trained["cube_yaw_rate"], untrained["cube_yaw_rate"]
    assert rate > 0.5 and rate >= 3 * abs(before), (rate, before)


def test_upright_reorient_policy_reaches_many_more_goals_than_untrained(tmp_path):
    """Consecutive successes per 20 s episode, the reorientation metric, on goals that keep the
    top face up (measured: median 21, the untrained network 0)."""
    trained, untrained = trained_and_untrained("hand_reorient_upright", tmp_path, episodes=10)
    assert trained["drop_rate"] <= 0.2, trained
    after, before = trained["consecutive_successes_median"], untrained["consecutive_successes_mean"]
    assert after >= 10 and after >= before + 10, (after, before)


def test_upright_reorient_policy_turns_towards_its_goal_not_blindly():
    """A cube spun one way at any speed passes every yaw goal too; this policy mostly turns the
    cube the short way round to its current goal (a goal-blind spinner: about half)."""
    policy = load("hand_reorient_upright")
    env = eval_env(policy)
    runner = NativeRunner(env)
    yaw = jax.jit(yaw_turned)
    towards = turned = 0.0
    for key in jax.random.split(jax.random.PRNGKey(1), 2):
        state = runner.reset(key)
        before = env.cube_pose(state.pipeline_state)[1]
        for _ in range(int(10 / env.dt)):
            to_goal = float(yaw(before, state.info["goal"]))
            state = runner.step(state, policy(np.asarray(state.obs["state"]))[0])
            after = env.cube_pose(state.pipeline_state)[1]
            step = float(yaw(before, after))
            turned += abs(step)
            towards += abs(step) * (step * to_goal > 0)
            before = after
    assert turned / 20 > 0.5, turned / 20  # [rad/s]: the cube does turn
    assert towards / turned > 0.62, towards / turned


def test_roll_policy_rolls_the_cube_onto_its_goal_face(tmp_path):
    """Goals a quarter turn away about a horizontal axis: the cube must go over an edge
    (measured: 0.4 goals per 20 s episode, 1 drop in 10; the untrained network: none)."""
    trained, untrained = trained_and_untrained("hand_reorient_roll", tmp_path, episodes=10)
    assert trained["drop_rate"] <= 0.3, trained
    after, before = trained["consecutive_successes_mean"], untrained["consecutive_successes_mean"]
    assert after >= before + 0.2, (after, before)


def test_random_goal_policy_reaches_goals_the_untrained_one_does_not(tmp_path):
    """Uniformly random goals (the benchmark), the same 20 goal sequences for both: the shipped
    hand_reorient policy reaches some (measured: 6 goals, 0.3 per episode, median 0) and keeps
    the cube closer to its goals (1.44 rad); the untrained network reaches none. A CPU-budget
    result, far from GPU-trained reference policies (README)."""
    trained, untrained = trained_and_untrained("hand_reorient", tmp_path, episodes=20)
    assert trained["drop_rate"] <= 0.2, trained
    after, before = trained["consecutive_successes_mean"], untrained["consecutive_successes_mean"]
    assert after >= before + 0.15, (after, before)  # at least 3 more goals in 20 episodes
    error, error_before = trained["orientation_error"], untrained["orientation_error"]
    assert error < error_before - 0.2, (error, error_before)  # [rad]


@pytest.mark.parametrize(
    "name",
    [
        "quadruped_joystick",
        "quadruped_cat",
        "hand_rotate_z",
        "hand_reorient_upright",
        "hand_reorient_roll",
        "hand_reorient",
    ],
)
def test_shipped_policy_files(name):
    folder = SHIPPED_DIR / name
    for f in ("policy.onnx", "policy.json", "eval.json", "learning_curve.png"):
        assert (folder / f).is_file(), f
    assert (folder / "training_config.json").is_file()
    assert (folder / "training_summary.json").is_file()


def test_curriculum_presets_start_from_shipped_policies():
    """A preset's warm start (`run.init_from`) names a policy that ships with the project."""
    starts = {
        (name, preset): run.init_from
        for name in registry.names()
        for preset, (_, run) in registry.entry(name).presets.items()
        if run.init_from is not None
    }
    assert starts  # the hand curriculum
    for where, start in starts.items():
        assert start in shipped_policies(), (where, start)
