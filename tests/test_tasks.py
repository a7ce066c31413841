"""Every registered task: the env API, strongly typed states, 1000 randomized steps, finite
observations of the declared size, the training wrapper around it; and the quadruped's task
logic."""

import dataclasses

import jax
import jax.numpy as jp
import numpy as np
import pytest

from locomotion import registry
from locomotion.cat import wrap_for_training
from locomotion.envs import episode_reset, jit_brief

STEPS = 1000


def _wrapper_traced_here() -> set[str]:
    """The tasks whose training wrapper this file traces: the first registered name of each
    task class (another name of the class is the same code with other settings), less those
    whose wrapper other files build: quadruped_rough's (its `restart`, the level kept) runs in
    tests/test_rough.py's `rollout`, quadruped_cat_rough's CaT wrapper traces in its
    `test_cat_runs_on_the_terrain`. Tracing a wrapper costs 10-15 s (vmapping the task's
    step), as much as compiling a small graph."""
    classes, bases = set(), set()
    for name in registry.names():
        cls = registry.entry(name).env_class
        if cls not in classes:
            bases.add(name)
        classes.add(cls)
    return bases - {"quadruped_rough", "quadruped_cat_rough"}


WRAPPER_TRACED = _wrapper_traced_here()
# Tasks whose randomized steps run elsewhere, compiled there anyway: quadruped_rough steps in
# the training wrapper in tests/test_rough.py's `rollout` (8 envs, randomized physics, pushes
# and noise, 12 automatic resets each, finite observations checked at every step), and its
# class at the registered settings (random commands, every level) steps 1000 times here as
# quadruped_rough_blind (the actor's observation without the scan is the only difference).
# Compiling its own reset and step here cost 70 s of the suite in CI.
STEPPED_ELSEWHERE = {"quadruped_rough"}


# quadruped_cat last: the test after this one steps its env again (`task_env` keeps one env).
ORDER = sorted(registry.names(), key=lambda name: name == "quadruped_cat")


@pytest.mark.parametrize("name", ORDER)
def test_task_runs_1000_randomized_steps(name, task_env):
    """The task's own jitted reset and step (one env: the step `Env` keeps, the reset as a
    native replay compiles it for a call per episode, `episode_reset`; every other caller on
    the registered settings compiles the same graphs, and
    `test_quadruped_cat_declares_what_it_computes` below steps quadruped_cat's), 1000
    randomized steps with a reset wherever an episode ends or reaches its time limit, and the
    training wrapper's automatic reset built around each task class (traced, not compiled:
    its semantics are tests/test_envs.py's and tests/test_cat.py's, the same code on every
    task but for the task's own `restart`)."""
    env = task_env(name)
    sizes = env.observation_size
    assert set(sizes) == {"state", "privileged_state"}
    # A declared layout adds up to the actor's observation (`policy.load` reads the size
    # from it without tracing the task).
    layout = getattr(env, "OBSERVATION_LAYOUT", None)
    assert layout is None or sum(n for _, n in layout) == sizes["state"]
    assert name == "pendulum_swingup" or layout is not None
    assert_strongly_typed(name, env)
    if name in WRAPPER_TRACED:
        assert_wrapper_builds(env, sizes, num_envs=4)
    if name in STEPPED_ELSEWHERE:
        return

    check = STEP_CHECKS.get(name.split("_")[0])
    actions = np.random.default_rng(0).uniform(-1, 1, (STEPS, env.action_size))
    reset = episode_reset(env)  # as native replays compile it: for a call per episode
    state = reset(jax.random.PRNGKey(0))
    ended, t = 0, 0
    for i, action in enumerate(actions.astype(np.float32)):
        nstate = env.step(state, action)
        for k in ("state", "privileged_state"):
            obs = np.asarray(nstate.obs[k])
            assert obs.shape == (sizes[k],) and np.isfinite(obs).all(), f"{k} at step {i}"
        assert np.isfinite(float(nstate.reward)), f"reward at step {i}"
        if check:
            check(env, state, nstate, action)
        t += 1
        if float(nstate.done) or t == env.episode_length:
            ended += 1
            state, t = reset(jax.random.PRNGKey(i + 1)), 0
        else:
            state = nstate
    # 1000 steps reach every task's time limit: at least one episode ended (and reset).
    assert ended >= 1


def assert_strongly_typed(name: str, env):
    """The task's own reset and step (outside any wrapper) return strongly typed states: a
    weakly typed output (a Python float folded into a metric) makes a wrapper's jitted step
    (brax's, tests/test_brax.py) compile a second time after its first call. Abstract
    evaluation shares the env's kept traces (locomotion/envs.py) with the steps above."""
    key = jax.ShapeDtypeStruct((2,), np.uint32)
    state = jax.eval_shape(env.reset, key)
    action = jax.ShapeDtypeStruct((env.action_size,), np.float32)
    after = jax.eval_shape(env.step, state, action)
    for what, tree in (("reset", state), ("step", after)):
        weak = [
            jax.tree_util.keystr(path)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            if leaf.weak_type
        ]
        assert not weak, f"{name}.{what} returns weakly typed {weak}"


def assert_wrapper_builds(env, sizes: dict[str, int], num_envs: int):
    """The training wrapper (and CaT's, for a task with constraints) around the task: its
    reset and its step with the automatic reset trace, batched, and a step returns the types
    it got (no recompilation inside a training iteration)."""
    wrapped = wrap_for_training(env, num_envs)
    state = jax.eval_shape(wrapped.reset, jax.ShapeDtypeStruct((2,), np.uint32))
    action = jax.ShapeDtypeStruct((num_envs, env.action_size), np.float32)
    after = jax.eval_shape(wrapped.step, state, action)
    assert jax.tree.structure(after) == jax.tree.structure(state)
    assert jax.tree.leaves(after) == jax.tree.leaves(state)
    assert after.obs["state"].shape == (num_envs, sizes["state"])


def check_hand_step(env, state, nstate, action):
    """The hand tasks' observation: the older frames are the newest frames of the previous
    observation as the policy saw it (noise included), the last action is this step's clipped
    action; reorientation: the goal ghost shows the current goal, and the episode's success
    count is the sum of its per-step success events."""
    frame = 2 * env.action_size
    before, obs = np.asarray(state.obs["state"]), np.asarray(nstate.obs["state"])
    history = (env.config.history - 1) * frame
    np.testing.assert_array_equal(obs[frame : frame + history], before[:history])
    np.testing.assert_array_equal(obs[16:32], np.clip(action, -1, 1))
    np.testing.assert_array_equal(nstate.info["last_action"], obs[16:32])
    if "goal" in nstate.info:
        goal = np.asarray(nstate.info["goal"])
        np.testing.assert_allclose(nstate.pipeline_state.mocap_quat[env.goal_mocap], goal)
        assert abs(np.linalg.norm(goal) - 1.0) < 1e-5
        success = float(nstate.metrics["reorient/success"])
        assert float(nstate.info["successes"]) == float(state.info["successes"]) + success


STEP_CHECKS = {"hand": check_hand_step}


def test_quadruped_cat_declares_what_it_computes(task_env):
    """CaT's declarations on the registered task (here, not in test_cat.py, and right after
    the randomized steps above, so that it steps the env `task_env` compiled them for)."""
    env = task_env("quadruped_cat")
    state = episode_reset(env)(jax.random.PRNGKey(0))
    declared = {c.name for c in env.constraints}
    assert set(state.info["violations"]) == declared
    assert {f"constraint/{n}" for n in declared} <= set(state.metrics)
    kinds = {c.name: c.kind for c in env.constraints}
    assert kinds["foot_force"] == kinds["front_hfe_angle"] == "hard"
    # Tracking is the only reward.
    active = {k for k, v in dataclasses.asdict(env.config.rewards).items() if v != 0}
    assert active == {"tracking_lin_vel", "tracking_ang_vel"}
    # The torque constraint is the PD torque beyond the clamp: where it is violated, the
    # servo's applied torque sits at its 3 N*m limit.
    step = env.step
    over, force = [], []
    for i in range(20):  # bang-bang actions: a target jumping 0.6 rad asks for 3.6 N*m
        action = jp.sign(jax.random.uniform(jax.random.PRNGKey(i), (12,), minval=-1, maxval=1))
        state = step(state, action)
        over.append(np.asarray(state.info["violations"]["torque"]) > 0)
        force.append(np.abs(np.asarray(state.pipeline_state.actuator_force)))
    over, force = np.array(over), np.array(force)
    assert over.any() and not over.all()
    np.testing.assert_allclose(force[over], env.robot.torque_limit, rtol=1e-5)
    assert (force[~over] < env.robot.torque_limit + 1e-5).all()


def test_wrapper_is_traced_for_every_task_class():
    assert {"pendulum_swingup", "quadruped_joystick", "quadruped_cat"} <= WRAPPER_TRACED
    assert {"hand_rotate_z", "hand_reorient"} <= WRAPPER_TRACED
    assert not WRAPPER_TRACED & {"hand_reorient_roll", "quadruped_rough_blind"}


def test_unknown_task_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown task 'walk'; known tasks: .*quadruped_joystick"):
        registry.make("walk")


def test_invalid_config_values_are_rejected():
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystickConfig
    from locomotion.train.config import PPOConfig

    with pytest.raises(ValueError, match="vx_range"):
        QuadrupedJoystickConfig(vx_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="clean_obs_share"):
        QuadrupedJoystickConfig(clean_obs_share=1.5)
    with pytest.raises(ValueError, match="divisible by num_minibatches"):
        PPOConfig(num_envs=10, unroll_length=3, num_minibatches=4)
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.5)


@pytest.fixture(scope="module")
def joystick():
    """quadruped_joystick with 3 frames of history, its reset and step jitted once for the
    tests below (each distinct graph costs about a minute of the suite to compile), for the
    few steps they take: compiled for a brief run (`jit_brief`, locomotion/envs.py)."""
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystickConfig

    env = registry.make("quadruped_joystick", QuadrupedJoystickConfig(history=3))
    return env, episode_reset(env), jit_brief(env.step)


def test_joystick_falls_terminate(joystick):
    """An upside-down robot is a termination (done=1) with the termination reward term."""
    _, reset, step = joystick
    state = reset(jax.random.PRNGKey(0))
    data = state.pipeline_state
    flipped = data.replace(qpos=data.qpos.at[3:7].set(jp.array([0.0, 1.0, 0.0, 0.0])))
    nstate = step(state.replace(pipeline_state=flipped), jp.zeros(12))
    assert float(nstate.done) == 1.0
    assert float(nstate.metrics["reward/termination"]) == 1.0


def test_joystick_history_holds_the_frames_the_policy_saw(joystick):
    """With history 3 the actor's observation is the current frame then the two before it as
    the policy saw them (noise included, command left out); at reset the history is the clean
    first frame, and the layout names every entry once."""
    env, reset, step = joystick
    layout = env.OBSERVATION_LAYOUT
    assert sum(n for _, n in layout) == env.observation_size["state"] == 45 + 2 * 42
    assert len({name for name, _ in layout}) == len(layout)
    assert [name for name, _ in layout[6:11]] == [
        "gyro@t-1",
        "projected_gravity@t-1",
        "joint_pos@t-1",
        "joint_vel@t-1",
        "last_action@t-1",
    ]
    frame = lambda x: np.concatenate([x[:6], x[9:45]])  # noqa: E731
    state = reset(jax.random.PRNGKey(1))
    obs, clean = np.asarray(state.obs["state"]), np.asarray(state.obs["privileged_state"])
    np.testing.assert_allclose(obs[45:87], frame(clean), atol=1e-6)
    np.testing.assert_allclose(obs[87:], frame(clean), atol=1e-6)
    assert np.abs(obs[:45] - clean[:45]).max() > 0.01  # the current frame is noisy
    seen = [obs]
    for t in range(4):
        action = jax.random.uniform(jax.random.PRNGKey(t), (12,), minval=-1.0, maxval=1.0)
        state = step(state, action)
        seen.append(np.asarray(state.obs["state"]))
    for t in range(2, 5):
        np.testing.assert_array_equal(seen[t][45:87], frame(seen[t - 1]))
        np.testing.assert_array_equal(seen[t][87:], frame(seen[t - 2]))


def test_joystick_commands_resample_with_zero_share():
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystickConfig

    env = registry.make("quadruped_joystick", QuadrupedJoystickConfig(zero_command_prob=0.5))
    cmds = np.asarray(
        jax.jit(jax.vmap(env.sample_command))(jax.random.split(jax.random.PRNGKey(0), 2000))
    )
    zero = (cmds == 0).all(axis=1).mean()
    assert 0.45 < zero < 0.55
    moving = cmds[(cmds != 0).any(axis=1)]
    assert moving[:, 0].min() >= -0.6 and moving[:, 0].max() <= 1.0
    assert env.resample_steps == 250  # every 5 s
