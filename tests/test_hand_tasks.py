"""The hand-and-cube tasks: declared observation sizes, layout and timing, the
reorientation goal logic on hand-made trajectories, drop termination, MJX-vs-native agreement,
the evaluation report, the goal ghost in the rendered scene, and a smoke run through the CLI."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from locomotion import gpu, registry
from locomotion.envs import episode_reset, jit_brief
from locomotion.replay import NativeRunner, _summarize, eval_report
from locomotion.tasks.hand_common import (
    axis_angle_quat,
    orientation_error,
    quat_mul,
    quat_rotate,
    yaw_turned,
)
from locomotion.tasks.hand_reorient import (
    HandReorient,
    HandReorientConfig,
    goal_transition,
    lay_flat,
    roll_goal,
    upright_goal,
)

TASKS = ("hand_rotate_z", "hand_reorient")
# Declared in the task docstrings: actor 32 per proprioceptive frame (3 frames) [+ 15 cube and
# goal numbers], critic 83 [+ 9].
SIZES = {"hand_rotate_z": (96, 83), "hand_reorient": (111, 92)}


_EVAL_ENVS = {}


def _eval_env(name: str):
    """A task with evaluation settings (nominal physics, clean observations), its jitted reset
    and step, for the few steps each test takes; built once per test session (each jitted step
    compiles in about 40 s on CPU). The reset is the native replay's (`episode_reset`: the
    shipped rotate policy's evaluation loads it from the run's compilation cache), the step
    compiles for a brief run too. Randomized steps of every task are tested in test_tasks.py."""
    if name not in _EVAL_ENVS:
        entry = registry.entry(name)
        env = entry.env_class(entry.eval_env_config(entry.env_config))
        assert not env.config.randomize and env.config.obs_noise == 0.0
        _EVAL_ENVS[name] = (env, episode_reset(env), jit_brief(env.step))
    return _EVAL_ENVS[name]


@pytest.fixture(params=TASKS)
def task(request):
    return request.param, *_eval_env(request.param)


@pytest.fixture
def rotate_eval():
    return _eval_env("hand_rotate_z")


def _z_quat(angle: float) -> jax.Array:
    return axis_angle_quat(jp.array([0.0, 0.0, angle]))


# ------------------------------------------------------------------------ reset / step / sizes
def test_declared_sizes_and_timing(task):
    """Sizes and timing as the task docstrings declare them (the reset and step under jit, with
    randomization and noise, 1000 steps of every task: tests/test_tasks.py, which also checks
    the hand's history frames, last action, goal ghost and success count at every step)."""
    name, env, _, _ = task
    sizes = env.observation_size
    assert (sizes["state"], sizes["privileged_state"]) == SIZES[name]
    assert sum(n for _, n in env.OBSERVATION_LAYOUT) == sizes["state"]
    assert env.action_size == 16 and env.dt == 0.05 and env.n_substeps == 10
    assert env.episode_length == 400  # 20 s at 20 Hz


def test_observation_layout_names_are_unique(task):
    _, env, _, _ = task
    names = [n for n, _ in env.OBSERVATION_LAYOUT]
    assert len(names) == len(set(names))
    assert names[:2] == ["joint_pos", "last_action"] and "joint_pos@t-2" in names


def test_randomization_draws_within_ranges_and_reaches_the_model():
    env = registry.make("hand_rotate_z")
    domain = env.config.domain
    params = jax.jit(jax.vmap(env.sample_params))(jax.random.split(jax.random.PRNGKey(0), 256))
    for name, values in params.items():
        lo, hi = getattr(domain, name)
        assert lo <= float(values.min()) and float(values.max()) <= hi, name
        assert float(values.std()) > 0.2 * (hi - lo) / np.sqrt(12), name  # spread, not constant
    one = jax.tree.map(lambda v: v[0], params)
    model = jax.jit(env.randomized_model)(one)
    nominal, cube = env.mj_model, env.cube_geom
    half, mass = float(one["cube_half_size"]), float(one["cube_mass"])
    np.testing.assert_allclose(model.geom_size[cube], [half] * 3, rtol=1e-6)
    np.testing.assert_allclose(model.body_mass[env.cube_body], mass, rtol=1e-6)
    # Uniform density: I = m * side^2 / 6 (the nominal cube's 7.04e-5 kg*m^2 at 0.1 kg, 0.065 m).
    np.testing.assert_allclose(model.body_inertia[env.cube_body], [mass * (2 * half) ** 2 / 6] * 3)
    friction = np.asarray(model.pair_friction[env.cube_pairs, 0])
    np.testing.assert_allclose(
        friction, nominal.pair_friction[env.cube_pairs, 0] * float(one["friction"]), rtol=1e-6
    )
    assert len(env.cube_pairs) == 14  # every pair involves the cube
    for field, key in (("dof_damping", "damping"), ("dof_armature", "armature")):
        np.testing.assert_allclose(
            getattr(model, field)[:16], getattr(nominal, field)[:16] * float(one[key]), rtol=1e-6
        )
        np.testing.assert_array_equal(getattr(model, field)[16:], getattr(nominal, field)[16:])
    gain = float(one["motor_gain"])
    np.testing.assert_allclose(model.actuator_gainprm[:, 0], 3.0 * gain, rtol=1e-6)
    np.testing.assert_allclose(model.actuator_biasprm[:, 1:3], [[-3.0 * gain, -0.1 * gain]] * 16)
    # Off: the nominal values, which the critic sees as such.
    off = dataclasses.replace(env.config, randomize=False)
    nominal_params = registry.make("hand_rotate_z", off).sample_params(jax.random.PRNGKey(0))
    assert float(nominal_params["cube_mass"]) == pytest.approx(0.1)
    assert float(nominal_params["cube_half_size"]) == pytest.approx(0.0325)
    assert float(nominal_params["friction"]) == 1.0


# ------------------------------------------------------------------------- pure goal logic
def test_orientation_error_on_known_rotations():
    q = _z_quat(0.3)
    assert float(orientation_error(q, q)) < 1e-6
    np.testing.assert_allclose(orientation_error(_z_quat(0.0), _z_quat(1.0)), 1.0, atol=1e-5)
    np.testing.assert_allclose(orientation_error(q, -q), 0.0, atol=1e-6)  # q and -q agree
    flip = jp.array([0.0, 1.0, 0.0, 0.0])  # 180 deg about x
    np.testing.assert_allclose(orientation_error(_z_quat(0.0), flip), np.pi, atol=1e-5)
    # Composition: a z-turn of 0.5 after a y-turn of 0.4 is 0.5 away from the y-turn.
    y = axis_angle_quat(jp.array([0.0, 0.4, 0.0]))
    np.testing.assert_allclose(orientation_error(y, quat_mul(_z_quat(0.5), y)), 0.5, atol=1e-5)
    # The yaw actually turned between two orientations: world z, either way, through +-pi.
    np.testing.assert_allclose(yaw_turned(y, quat_mul(_z_quat(0.5), y)), 0.5, atol=1e-5)
    np.testing.assert_allclose(yaw_turned(_z_quat(3.0), _z_quat(-3.0)), 2 * np.pi - 6, atol=1e-5)
    np.testing.assert_allclose(yaw_turned(_z_quat(0.2), quat_mul(y, _z_quat(0.2))), 0, atol=1e-6)


def _run_goal_logic(angles, goal, candidates, threshold=0.4):
    """Scan goal_transition over a z-rotation trajectory; candidate[t] is drawn at step t."""
    quats = jax.vmap(_z_quat)(jp.array(angles))
    prev = orientation_error(quats[0], goal)

    def one(carry, x):
        goal, prev, successes = carry
        q, cand = x
        out = goal_transition(q, goal, prev, successes, cand, threshold)
        return (out["goal"], out["prev_error"], out["successes"]), out

    cands = jax.vmap(_z_quat)(jp.array(candidates))
    _, out = jax.lax.scan(one, (goal, prev, jp.zeros(())), (quats[1:], cands))
    return jax.tree.map(np.asarray, out)


def test_goal_logic_on_a_hand_made_trajectory():
    # The cube turns about z from 0 to 2 rad; the first goal is at 1.0 rad, then 2.0 rad.
    angles = [0.0, 0.2, 0.4, 0.55, 0.65, 0.8, 1.2, 1.5, 1.65, 1.9, 2.0]
    candidates = [2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    out = _run_goal_logic(angles, _z_quat(1.0), candidates)
    errors = np.abs(np.array(angles[1:]) - np.array([1.0] * 4 + [2.0] * 4 + [3.0] * 2))
    # Success where the error to this step's goal is below 0.4: at 0.65 (0.35) and 1.65 (0.35).
    np.testing.assert_array_equal(out["success"], [0, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(out["error"], errors, atol=1e-5)
    np.testing.assert_array_equal(out["successes"], [0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    # The goal switches on the step of the success, to that step's candidate.
    goals_z = 2 * np.arctan2(out["goal"][:, 3], out["goal"][:, 0])
    np.testing.assert_allclose(goals_z, [1.0] * 3 + [2.0] * 4 + [3.0] * 3, atol=1e-5)
    # Progress is measured against the goal of each step, never across a goal change.
    expected = [1.0 - 0.8, 0.8 - 0.6, 0.6 - 0.45, 0.45 - 0.35]
    expected += [1.35 - 1.2, 1.2 - 0.8, 0.8 - 0.5, 0.5 - 0.35, 1.35 - 1.1, 1.1 - 1.0]
    np.testing.assert_allclose(out["progress"], expected, atol=1e-5)
    # A stricter threshold: 0.35 is not close enough, the first success comes at 0.8 (0.2).
    strict = _run_goal_logic(angles, _z_quat(1.0), candidates, threshold=0.3)
    np.testing.assert_array_equal(np.flatnonzero(strict["success"]), [4])
    assert strict["successes"][-1] == 1


def test_upright_goals_keep_the_top_face_up_and_turn_about_the_vertical():
    keys = jax.random.split(jax.random.PRNGKey(0), 500)
    tilted = quat_mul(_z_quat(0.7), axis_angle_quat(jp.array([0.15, -0.1, 0.0])))  # top face: +z
    on_side = axis_angle_quat(jp.array([1.45, 0.0, 0.0]))  # 83 deg about x: the cube's +y is up
    for cube, up_axis, tilt in ((tilted, 2, 0.18), (on_side, 1, np.pi / 2 - 1.45)):
        goals = jax.vmap(lambda k, q=cube: upright_goal(q, k, 0.4))(keys)
        up = jax.vmap(lambda g, a=up_axis: quat_rotate(g, jp.eye(3)[a]))(goals)
        np.testing.assert_allclose(up, np.tile([0.0, 0.0, 1.0], (500, 1)), atol=1e-5)
        # Laid flat, then turned by 0.4..pi about the vertical, either way.
        flat = quat_mul(axis_angle_quat(-tilt * _unit_tilt_axis(cube, up_axis)), cube)
        turn = jax.vmap(lambda g, f=flat: orientation_error(f, g))(goals)
        assert float(turn.min()) >= 0.4 - 1e-4 and float(turn.max()) <= np.pi + 1e-4
        assert float(turn.max()) > 3.0 and float(turn.min()) < 0.5  # the whole range is used
        yaw = jax.vmap(lambda g, f=flat: quat_mul(g, f * jp.array([1, -1, -1, -1.0]))[3])(goals)
        assert 0.3 < float(jp.mean(yaw > 0)) < 0.7  # both ways
    # The share of upright goals follows the config (0: the uniform benchmark).
    with pytest.raises(ValueError, match="upright_goals"):
        HandReorientConfig(upright_goals=1.5)


def test_roll_goals_bring_a_neighbouring_face_on_top_by_a_quarter_turn():
    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    cube = quat_mul(_z_quat(0.7), axis_angle_quat(jp.array([0.15, -0.1, 0.0])))  # top: +z
    goals = jax.vmap(lambda k: roll_goal(cube, k))(keys)
    flat = lay_flat(cube)
    turn = jax.vmap(lambda g: orientation_error(flat, g))(goals)
    np.testing.assert_allclose(turn, np.pi / 2, atol=1e-4)
    # The rotation is about a horizontal axis, so the cube's old top (+z) ends up horizontal
    # and one of its four side faces (+-x, +-y) points straight up; all four are drawn.
    old_top = jax.vmap(lambda g: quat_rotate(g, jp.eye(3)[2]))(goals)
    np.testing.assert_allclose(old_top[:, 2], 0.0, atol=1e-5)
    # Height of the cube's +x and +y axes after the roll [N, 2]; new top face: 2 * axis + (down).
    x_and_y = jp.eye(3)[:2]
    sides = np.asarray(jax.vmap(lambda g: jax.vmap(lambda v: quat_rotate(g, v)[2])(x_and_y))(goals))
    axis = np.argmax(np.abs(sides), axis=1)
    height = sides[np.arange(len(sides)), axis]
    new_top = axis * 2 + (height < 0)
    np.testing.assert_allclose(np.abs(height), 1.0, atol=1e-5)
    assert sorted(set(new_top.tolist())) == [0, 1, 2, 3]
    assert min(np.bincount(new_top)) > 60
    # Shares: the sampler obeys upright / roll / uniform; shares above 1 in sum are refused.
    env = HandReorient(HandReorientConfig(roll_goals=1.0))
    drawn = jax.vmap(lambda k: env.sample_goal(cube, k))(keys[:50])
    np.testing.assert_allclose(
        jax.vmap(lambda g: orientation_error(flat, g))(drawn), np.pi / 2, atol=1e-4
    )
    with pytest.raises(ValueError, match="roll_goals"):
        HandReorientConfig(upright_goals=0.6, roll_goals=0.5)


def _unit_tilt_axis(quat, up_axis):
    """Axis about which the cube's `up_axis` is tilted away from the vertical."""
    up = quat_rotate(quat, jp.eye(3)[up_axis])
    axis = jp.cross(jp.array([0.0, 0.0, 1.0]), up)
    return axis / jp.linalg.norm(axis)


def test_successes_count_per_episode_in_the_eval_report():
    """`consecutive_successes` is the number of success steps in each episode."""
    per_step = [np.array([0, 1, 0, 1, 1.0]), np.zeros(5), np.array([1.0, 0, 0, 0, 0])]
    sums = {
        "reorient/success": np.array([s.sum() for s in per_step]),
        "reorient/orientation_error": np.array([1.0, 2.0, 3.0]),
    }
    out = _summarize("hand_reorient", [1.0, 2.0, 3.0], [5, 5, 5], [False, True, False], sums)
    assert out["consecutive_successes_median"] == 1.0
    np.testing.assert_allclose(out["consecutive_successes_mean"], 4 / 3)
    assert out["drop_rate"] == pytest.approx(1 / 3) and "fall_rate" not in out
    assert "consecutive_successes_ci95" not in out  # a count per episode, not a share
    assert out["orientation_error"] == pytest.approx(6.0 / 15)
    out = _summarize("hand_rotate_z", [1.0], [4], [False], {"cube/yaw_rate": np.array([2.0])})
    assert out["cube_yaw_rate"] == 0.5 and out["drop_rate"] == 0.0
    # The legged tasks keep their report.
    assert eval_report("quadruped_joystick").termination == "fall"
    out = _summarize("quadruped_joystick", [1.0], [2], [True], {})
    assert out["fall_rate"] == 1.0 and np.isnan(out["lin_vel_error"])
    assert {"ang_vel_error", "constraint_violation_rate", "metrics"} <= set(out)
    # Shares of episodes carry Wilson's 95 % interval: 16 of 20 is 0.58-0.92, 0 of 20 is not
    # a certainty (up to 0.16). The rough task's crossings and falls on the tile are shares;
    # hand_reorient's successes, a count per episode, are not (above).
    out = _summarize("quadruped_joystick", [1.0] * 20, [2] * 20, [True] * 16 + [False] * 4, {})
    np.testing.assert_allclose(out["fall_rate_ci95"], [0.584, 0.919], atol=1e-3)
    crossed = {"terrain/crossed": np.zeros(20), "terrain/fell_on_tile": np.zeros(20)}
    out = _summarize("quadruped_rough", [1.0] * 20, [2] * 20, [False] * 20, crossed)
    np.testing.assert_allclose(out["crossed_ci95"], [0.0, 0.161], atol=1e-3)
    assert out["fall_rate_ci95"] == out["crossed_ci95"] == out["fell_on_tile_ci95"]


def test_rotate_reward_caps_forward_turns_only(rotate_eval):
    """A turn back always costs in full, so wiggling the cube forth and back earns nothing."""
    env, reset, _ = rotate_eval
    state = reset(jax.random.PRNGKey(0))
    terms = lambda rate: env.reward_terms(  # noqa: E731
        state.pipeline_state, jp.zeros(16), state.info, jp.asarray(rate)
    )
    assert float(terms(3.0)["yaw_rate"]) == env.config.max_yaw_rate == 1.0
    assert float(terms(-3.0)["yaw_rate"]) == -3.0
    wiggle = [0.9, 0.9, 0.9, -2.7]  # [rad/s] net zero
    assert sum(float(terms(r)["yaw_rate"]) for r in wiggle) <= 0.0


# ------------------------------------------------------------------------------ termination
def test_drop_terminates_and_resting_cube_does_not(rotate_eval):
    env, reset, step = rotate_eval
    state = reset(jax.random.PRNGKey(0))
    rest = step(state, jp.zeros(16))
    assert float(rest.done) == 0.0 and float(rest.metrics["reward/termination"]) == 0.0

    data = state.pipeline_state
    adr = env.cube_qpos
    below = data.replace(qpos=data.qpos.at[adr + 2].set(0.1))  # under the palm (top at 0.2 m)
    dropped = step(state.replace(pipeline_state=below), jp.zeros(16))
    assert float(dropped.done) == 1.0 and float(dropped.metrics["reward/termination"]) == 1.0
    assert float(dropped.reward) < float(rest.reward) - 2.0  # the -2.5 drop penalty

    # Lifted away over the fingers: far from where it started, also a drop.
    away = data.replace(qpos=data.qpos.at[adr : adr + 3].add(jp.array([0.0, 0.0, 0.1])))
    assert float(step(state.replace(pipeline_state=away), jp.zeros(16)).done) == 1.0


# ------------------------------------------------------------------------- MJX vs native
def test_native_and_mjx_observations_agree_on_the_same_state(rotate_eval):
    env, reset, step = rotate_eval
    state = reset(jax.random.PRNGKey(3))
    for i in range(10):
        state = step(state, 0.1 * jp.sin(jp.arange(16.0) + i))
    cube = env.cube_pose(state.pipeline_state)[0]
    assert np.linalg.norm(cube - state.info["cube_start"]) < 0.02  # far from a drop
    # The same state in C MuJoCo, as replay holds it: qpos, qvel, ctrl and the mocap goal, with
    # C mj_forward's derived quantities. (mjx.get_data of this state is no way there: with the
    # hand's joint-limit rows its MjData fails mjx.put_data, mujoco-mjx 3.17 + mujoco 4.0.)
    model, dx = env.mj_model, state.pipeline_state
    native = mujoco.MjData(model)
    for name in ("qpos", "qvel", "ctrl", "mocap_pos", "mocap_quat", "qacc_warmstart"):
        getattr(native, name)[:] = np.asarray(getattr(dx, name))
    mujoco.mj_forward(model, native)
    # Through mjx.put_data into the task's observation code, against the same code on MJX's
    # own forward pass of that state.
    observe = jax.jit(env.observation)
    key = jax.random.PRNGKey(0)
    via_native = observe(mjx.put_data(model, native), state.info, key)
    via_mjx = observe(jit_brief(mjx.forward)(env.mjx_model, dx), state.info, key)
    np.testing.assert_allclose(via_native["state"], state.obs["state"], atol=1e-6)
    np.testing.assert_allclose(via_native["state"], via_mjx["state"], atol=1e-6)
    # Critic: float32 vs float64 kinematics (1e-5). Fingertip touch, log(1 + N), compares two
    # collision and constraint paths: measured 1e-4 here; 0.11 (4.9 N vs 4.3 N) on a state with
    # a fingertip pressing 2 mm into the cube, where C reports the capsule-box contact twice at
    # the deepest point and MJX two points along the capsule.
    touch = slice(83 - 10, 83 - 6)
    gap = np.abs(
        np.asarray(via_native["privileged_state"]) - np.asarray(via_mjx["privileged_state"])
    )
    assert gap[: touch.start].max() < 1e-4 and gap[touch.stop :].max() < 1e-5, gap
    assert gap[touch].max() < 0.25, gap[touch]

    runner = NativeRunner(env)
    runner.data = native
    action = 0.1 * np.cos(np.arange(16.0))
    via_native = runner.step(state, action)
    via_mjx = step(state, jp.asarray(action))
    # One control step (10 substeps). Measured gaps (8 solver iterations): joints 5e-4 rad,
    # joint velocities 0.07 rad/s, cube 0.05 mm, quaternion 2e-3, linear velocity 6 mm/s,
    # angular velocity 0.1 rad/s, fingertips 0.04 mm; after a 0.25 action, smaller still. With
    # 3 solver iterations the cube's angular velocity parted by 1.1 rad/s, and a 0.25 action
    # flung the cube off in MJX.
    np.testing.assert_allclose(via_native.obs["state"], via_mjx.obs["state"], atol=2e-3)
    gap = np.abs(
        np.asarray(via_native.obs["privileged_state"]) - np.asarray(via_mjx.obs["privileged_state"])
    )
    limits = {
        "joint_vel": (slice(32, 48), 0.2),  # [rad/s]
        "cube_pos": (slice(48, 51), 3e-4),  # [m]
        "cube_quat": (slice(51, 55), 0.01),
        "cube_linvel": (slice(55, 58), 0.02),  # [m/s]
        "cube_angvel": (slice(58, 61), 0.35),  # [rad/s]
        "fingertips": (slice(61, 73), 3e-4),  # [m]
    }
    for name, (part, limit) in limits.items():
        assert gap[part].max() < limit, (name, gap[part])
    assert float(via_native.done) == float(via_mjx.done) == 0.0

    # The runner copies the task's mocap bodies: this task hides the goal ghost under the floor.
    runner.reset(jax.random.PRNGKey(0))
    assert runner.data.mocap_pos[0, 2] == -1.0


def test_goal_ghost_is_visible_from_the_video_camera():
    """The palm camera sees the goal ghost: turning it changes the rendered image."""
    from locomotion.video import RenderError, make_camera, make_renderer

    env_class = registry.entry("hand_reorient").env_class
    model = registry.make("hand_rotate_z").mj_model
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key("home").id)
    try:
        renderer = make_renderer(model, 160, 120)
    except RenderError as err:
        pytest.skip(str(err))
    camera = make_camera(model, env_class.VIDEO_CAMERA)
    images = []
    for quat in ([1.0, 0, 0, 0], [0.0, 1.0, 0, 0]):
        data.mocap_quat[0] = quat
        mujoco.mj_forward(model, data)
        renderer.update_scene(data, camera=camera)
        images.append(renderer.render().astype(float))
    renderer.close()
    assert np.abs(images[0] - images[1]).mean() > 0.5
    with pytest.raises(ValueError, match="no camera 'nope'"):
        make_camera(model, "nope")


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_rotate_z_smoke_train_export_and_eval(tmp_path):
    """`locomotion train hand_rotate_z --preset smoke`, then `locomotion eval` on its export.
    The training's own final MJX evaluation and video are left out here: the pipeline runs
    them the same way for every task, and the quadruped's smoke run tests them
    (tests/test_end_to_end.py); the hand's metrics are checked below, natively and in MJX."""

    # XLA's optimizations off (locomotion.gpu.CPU_FAST_COMPILE): graphs that run for seconds.
    env = dict(os.environ, XLA_FLAGS=gpu.CPU_FAST_COMPILE)

    def cli(*args):
        result = subprocess.run(
            [sys.executable, "-m", "locomotion.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    run_dir = tmp_path / "run"
    skip = ["--run.eval-envs", "0", "--run.video-seconds", "0"]
    cli("train", "hand_rotate_z", "--preset", "smoke", *skip, "--run-dir", str(run_dir))
    for name in ("policy/policy.onnx", "policy/policy.json", "learning_curve.png"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "eval.json").exists() and not (run_dir / "video.mp4").exists()
    meta = json.loads((run_dir / "policy" / "policy.json").read_text())
    assert meta["task"] == "hand_rotate_z" and meta["observation"]["size"] == 96
    assert meta["physics_substeps"] == 10 and meta["action"]["scale"] == 0.5
    layout = {e["name"]: e["noise_std"] for e in meta["observation"]["layout"]}
    assert layout["joint_pos@t-1"] == layout["joint_pos"] > 0 and layout["last_action"] == 0

    # Three iterations teach nothing: the cube stays on the palm, natively and in MJX.
    out = tmp_path / "eval.json"
    args = ["eval", str(run_dir / "policy"), "--episodes", "2", "--seconds", "1"]
    stdout = cli(*args, "--json", str(out), "--compare-mjx")
    result = json.loads(out.read_text())
    assert result["task"] == "hand_rotate_z" and result["episodes"] == 2
    assert result["drop_rate"] == 0.0 and result["episode_length_mean"] == 20.0
    assert "fall_rate" not in result and "lin_vel_error" not in result
    assert abs(result["cube_yaw_rate"]) < 0.5, result  # [rad/s]
    # Native and MJX replays of the same policy from the same states agree.
    assert abs(result["cube_yaw_rate"] - result["mjx"]["cube_yaw_rate"]) < 0.05, result
    assert "drop rate" in stdout and "cube yaw rate [rad/s]" in stdout


def test_configs_reject_bad_values():
    from locomotion.tasks.hand_common import HandRandomization
    from locomotion.tasks.hand_reorient import HandReorientConfig
    from locomotion.tasks.hand_rotate_z import HandRotateZConfig

    with pytest.raises(ValueError, match="cube_mass"):
        HandRandomization(cube_mass=(0.2, 0.1))
    with pytest.raises(ValueError, match="success_threshold"):
        HandReorientConfig(success_threshold=0.0)
    with pytest.raises(ValueError, match="history"):
        HandRotateZConfig(history=0)
