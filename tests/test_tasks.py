"""Every registered task: the env API, strongly typed states, 1000 randomized steps, finite
observations of the declared size; and the quadruped's task logic."""

import jax
import jax.numpy as jp
import numpy as np
import pytest

from locomotion import registry
from locomotion.envs import TrainingWrapper


def _variants() -> set[str]:
    """Tasks that are another registered task's class with other settings (the first name of
    each class is its base)."""
    classes, variants = set(), set()
    for name in registry.names():
        cls = registry.entry(name).env_class
        if cls in classes:
            variants.add(name)
        classes.add(cls)
    return variants


# quadruped_rough's automatic resets in the training wrapper (its `restart`, the level kept)
# run in tests/test_rough.py's `rollout` (8 envs, 12 automatic resets each, checked at every
# step); here its own reset and 1000 randomized steps, as a variant's (each compilation of a
# task's graph costs a minute or two of the suite). quadruped_cat_rough's class is CaT's
# constraints on that terrain: what it does at an automatic reset is quadruped_rough's
# `restart` plus the CaT violations the wrapper keeps from the ending step, run in
# quadruped_cat's case.
VARIANTS = _variants() | {"quadruped_rough", "quadruped_cat_rough"}


@pytest.mark.parametrize("name", registry.names())
def test_task_runs_1000_randomized_steps(name):
    env = registry.make(name)
    sizes = env.observation_size
    assert set(sizes) == {"state", "privileged_state"}
    # A declared layout adds up to the actor's observation (`policy.load` reads the size
    # from it without tracing the task).
    layout = getattr(env, "OBSERVATION_LAYOUT", None)
    assert layout is None or sum(n for _, n in layout) == sizes["state"]
    assert name == "pendulum_swingup" or layout is not None
    assert_strongly_typed(name, env)
    num_envs = 4
    if name in VARIANTS:
        return check_variant(env, num_envs)
    wrapped = TrainingWrapper(env, num_envs)

    @jax.jit
    def run(key):
        key_reset, key_act = jax.random.split(key)
        state = wrapped.reset(key_reset)

        def one(state, key_t):
            action = jax.random.uniform(key_t, (num_envs, env.action_size), minval=-1, maxval=1)
            state = wrapped.step(state, action)
            finite = (
                jp.all(jp.isfinite(state.obs["state"]))
                & jp.all(jp.isfinite(state.obs["privileged_state"]))
                & jp.all(jp.isfinite(state.reward))
            )
            return state, (finite, state.done, state.info["truncation"])

        return jax.lax.scan(one, state, jax.random.split(key_act, 1000))

    state, (finite, done, truncation) = run(jax.random.PRNGKey(0))
    assert state.obs["state"].shape == (num_envs, sizes["state"])
    assert state.obs["privileged_state"].shape == (num_envs, sizes["privileged_state"])
    assert bool(finite.all())
    # 1000 steps reach every task's time limit: every env ended (and auto-reset) at least once.
    assert bool((done.sum(axis=0) >= 1).all())
    assert bool((truncation <= done).all())  # a truncation is always an episode end


def assert_strongly_typed(name: str, env):
    """The task's own reset and step (outside any wrapper) return strongly typed states: a
    weakly typed output (a Python float folded into a metric) makes a wrapper's jitted step
    (brax's, tests/test_brax.py) compile a second time after its first call. Abstract
    evaluation shares the env's kept traces with the run below (locomotion/envs.py): the
    reset's always, the step's where it is called on the reset's state as is (the
    variants')."""
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


def check_variant(env, num_envs: int):
    """A variant's own reset and 1000 randomized steps, batched (its class's automatic reset
    inside the training wrapper is the base task's code, run by the base task's case: the
    wrapper costs as much compiling again as the task's step)."""

    @jax.jit
    def run(key):
        key_reset, key_act = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(key_reset, num_envs))

        def one(state, key_t):
            action = jax.random.uniform(key_t, (num_envs, env.action_size), minval=-1, maxval=1)
            state = jax.vmap(env.step)(state, action)
            finite = (
                jp.all(jp.isfinite(state.obs["state"]))
                & jp.all(jp.isfinite(state.obs["privileged_state"]))
                & jp.all(jp.isfinite(state.reward))
            )
            return state, finite

        return jax.lax.scan(one, state, jax.random.split(key_act, 1000))

    state, finite = run(jax.random.PRNGKey(0))
    assert state.obs["state"].shape == (num_envs, env.observation_size["state"])
    assert state.obs["privileged_state"].shape == (
        num_envs,
        env.observation_size["privileged_state"],
    )
    assert bool(finite.all())


def test_variants_are_found():
    assert {"quadruped_rough_blind", "hand_reorient_roll", "hand_reorient_upright"} <= VARIANTS
    assert not VARIANTS & {"hand_reorient", "quadruped_joystick"}
    assert "quadruped_cat" not in VARIANTS  # the wrapper's CaT path runs in its case


def test_unknown_task_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown task 'walk'; known tasks: .*quadruped_joystick"):
        registry.make("walk")


def test_invalid_config_values_are_rejected():
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystickConfig
    from locomotion.train.config import PPOConfig

    with pytest.raises(ValueError, match="vx_range"):
        QuadrupedJoystickConfig(vx_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="divisible by num_minibatches"):
        PPOConfig(num_envs=10, unroll_length=3, num_minibatches=4)
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.5)


@pytest.fixture(scope="module")
def joystick():
    """quadruped_joystick with 3 frames of history, its reset and step jitted once for the
    tests below (each distinct graph costs about a minute of the suite to compile)."""
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystickConfig

    env = registry.make("quadruped_joystick", QuadrupedJoystickConfig(history=3))
    return env, env.reset, env.step  # jitted by `Env`


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
