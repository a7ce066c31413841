"""The training wrapper's automatic reset: every episode starts from a fresh, never-used
initial state; termination, truncation and final observations stay apart; the reserve of
fresh states is drawn anew only when an env needs one it does not have."""

import jax
import jax.numpy as jp
import numpy as np
import pytest

from locomotion.envs import (
    BRIEF_RUN,
    NONFINITE_RESETS,
    Env,
    State,
    TrainingWrapper,
    episode_reset,
    jit_brief,
)


class Dice(Env):
    """Each episode draws a number in reset (like a command or a randomized mass) and shows
    it with the step count: obs = [number, t]. action[0] > 0.5 is a fall (a termination)."""

    episode_length = 5

    @property
    def action_size(self) -> int:
        return 1

    def reset(self, key):
        number = jax.random.uniform(key)
        obs = {"state": jp.stack([number, 0.0]), "privileged_state": jp.stack([number, 0.0])}
        info = {"number": number}
        return State(jp.zeros(()), obs, jp.zeros(()), jp.zeros(()), {}, info)

    def step(self, state, action):
        t = state.pipeline_state + 1.0
        obs = jp.stack([state.info["number"], t])
        return state.replace(
            pipeline_state=t,
            obs={"state": obs, "privileged_state": obs},
            reward=jp.ones(()),
            done=(action[0] > 0.5).astype(jp.float32),
        )


def run(wrapper: TrainingWrapper, actions: np.ndarray, seed: int = 0):
    """The reset state and the states after each of `actions` [T, B, 1]."""

    @jax.jit
    def go(key, actions):
        state = wrapper.reset(key)
        return state, jax.lax.scan(lambda s, a: (wrapper.step(s, a),) * 2, state, actions)[1]

    return go(jax.random.PRNGKey(seed), jp.asarray(actions, jp.float32))


def test_every_episode_starts_from_a_fresh_never_used_state():
    """Falls at irregular times, one env falling on consecutive steps: the number drawn for
    each episode is new every time, and the ending step's final observation is the old
    episode's."""
    num_envs, steps = 4, 40
    falls = np.random.default_rng(0).random((steps, num_envs, 1)) < 0.3
    falls[10:14, 2] = True  # env 2 ends four times in a row
    first, traj = run(TrainingWrapper(Dice(), num_envs), falls.astype(float))
    done = np.asarray(traj.done)
    obs, final = np.asarray(traj.obs["state"]), np.asarray(traj.info["final_obs"]["state"])
    starts = [np.asarray(first.obs["state"][:, 0])]
    for t, b in zip(*np.nonzero(done), strict=True):
        assert obs[t, b, 1] == 0.0  # a new episode, at step 0
        starts.append(np.array([obs[t, b, 0]]))
        previous = obs[t - 1, b] if t > 0 else np.asarray(first.obs["state"][b])
        np.testing.assert_array_equal(final[t, b], [previous[0], previous[1] + 1])
    starts = np.concatenate(starts)
    assert len(starts) == num_envs + done.sum() > 40
    assert len(np.unique(starts)) == len(starts)  # no initial state used twice
    # A fall is a termination, the time limit a truncation: never both.
    term, trunc = np.asarray(traj.info["termination"]), np.asarray(traj.info["truncation"])
    np.testing.assert_array_equal(term, falls[..., 0])
    np.testing.assert_array_equal(np.maximum(term, trunc), done)
    assert trunc.sum() > 0 and (term * trunc).sum() == 0


def test_the_reserve_is_drawn_anew_only_when_an_env_has_none_left():
    """Episodes that all run to the 5-step limit together: the reserve serves the first
    ending, and is drawn anew for each ending after it (steps 10, 15, 20), not every step."""
    wrapper = TrainingWrapper(Dice(), 3)
    _, traj = run(wrapper, np.zeros((20, 3, 1)))
    renewed = np.asarray(traj.metrics["reset/pool_renewed"])[:, 0]
    np.testing.assert_array_equal(np.nonzero(renewed)[0] + 1, [10, 15, 20])
    assert np.asarray(traj.done)[[4, 9, 14, 19]].all() and np.asarray(traj.done).sum() == 12
    # One env ending twice in a row needs a new reserve at its second ending.
    falls = np.zeros((6, 3, 1))
    falls[2:4, 1] = 1.0
    _, traj = run(wrapper, falls)
    np.testing.assert_array_equal(
        np.asarray(traj.metrics["reset/pool_renewed"])[:, 0], [0, 0, 0, 1, 0, 0]
    )
    # The same seed gives the same episodes.
    a, b = run(wrapper, falls, seed=3)[1], run(wrapper, falls, seed=3)[1]
    np.testing.assert_array_equal(a.obs["state"], b.obs["state"])


@pytest.mark.parametrize("impl", ["jax", "native"])
def test_quadruped_time_limit_and_fresh_episodes(short_quadruped_episodes, impl):
    """The real task with a 0.2 s time limit, standing still: every ending is a truncation
    (not a termination) after 10 control steps, the step counter restarts, and every new
    episode has a command and randomized physics of its own. The same with C MuJoCo as the
    physics (`impl="native"`), NaN action included."""
    wrapper, reset, step = short_quadruped_episodes(impl)
    env, num_envs = wrapper.env, wrapper.num_envs
    assert env.episode_length == 10
    actions = np.zeros((25, num_envs, env.action_size), np.float32)
    actions[7, 2, 0] = np.nan  # env 2's physics goes non-finite on step 7 (tests/test_faults.py)
    first = state = reset(jax.random.PRNGKey(0))
    states = []
    for action in actions:
        state = step(state, jp.asarray(action))
        states.append(jax.device_get(state))
    traj = jax.tree.map(lambda *x: np.stack(x), *states)
    done = np.asarray(traj.done)
    np.testing.assert_array_equal(np.nonzero(done[:, 0])[0], [9, 19])
    np.testing.assert_array_equal(done[:, 0], done[:, 1])
    np.testing.assert_array_equal(np.asarray(traj.info["truncation"]), done)
    # The broken env restarts on that step, counted, and runs full episodes from there.
    np.testing.assert_array_equal(np.nonzero(done[:, 2])[0], [7, 17])
    broken = np.asarray(traj.metrics[NONFINITE_RESETS])
    assert broken[7, 2] == 1 and broken.sum() == 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(traj))
    assert np.asarray(traj.info["termination"]).sum() == 0  # never fell
    np.testing.assert_array_equal(np.asarray(traj.info["steps"])[[8, 9, 10], 0], [9, 0, 1])
    params = jax.tree.map(np.asarray, traj.info["params"])
    commands = np.asarray(traj.info["command"])
    seen = [np.asarray(first.info["command"])]
    for t, b in zip(*np.nonzero(done), strict=True):
        seen.append(commands[t, b][None])
        for name, value in params.items():  # the randomization changed with the episode
            before = value[t - 1, b] if t > 0 else np.asarray(first.info["params"][name][b])
            assert not np.allclose(value[t, b], before), name
    seen = np.concatenate(seen)
    assert len(seen) == num_envs + done.sum() and len(np.unique(seen, axis=0)) == len(seen)


def test_warp_restarts_quadruped_episodes_where_jax_does(short_quadruped_episodes):
    """MJX's warp implementation in the training wrapper, against the jax graphs of the test
    above (here so that it runs in their process): the same keys and randomization give the
    same done flags and the same observation at every fresh start, every env restarts from
    its reserve state, and the rollout stays finite. Needs the warp extra."""
    pytest.importorskip("warp", reason="the warp extra (warp-lang) is not installed")
    from test_warp import warp_rollout

    obs_j, done_j = warp_rollout(*short_quadruped_episodes("jax"))
    obs_w, done_w = warp_rollout(*short_quadruped_episodes("warp"))
    assert done_w.sum() >= 2 * obs_w.shape[1]
    np.testing.assert_array_equal(done_j, done_w)  # time limits: both restart together
    np.testing.assert_allclose(obs_w[0], obs_j[0], atol=1e-4)  # the first reset
    restarted = np.nonzero(done_w.all(axis=1))[0] + 1  # steps whose observation is a reset
    np.testing.assert_allclose(obs_w[restarted], obs_j[restarted], atol=1e-4)


def test_an_unknown_or_missing_physics_implementation_is_a_clear_error(monkeypatch):
    import sys

    from locomotion.tasks.quadruped_joystick import QuadrupedJoystick, QuadrupedJoystickConfig

    expected = r"impl must be one of \('jax', 'warp', 'native'\), not 'cuda'"
    with pytest.raises(ValueError, match=expected):
        QuadrupedJoystick(QuadrupedJoystickConfig(impl="cuda"))
    monkeypatch.setitem(sys.modules, "warp", None)  # as if warp-lang were not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[warp\]'"):
        QuadrupedJoystick(QuadrupedJoystickConfig(impl="warp"))


class CountedDice(Dice):
    """Dice whose reset counts its traces (a Python side effect runs once per trace) and
    adds `offset`, an attribute of the env, to its number."""

    offset = 0.0

    def __init__(self):
        self.traces = []

    def reset(self, key):
        self.traces.append(1)
        state = super().reset(key)
        return state.replace(info={"number": state.info["number"] + self.offset})


def test_reset_is_traced_once_per_env_however_many_graphs_call_it():
    """`observation_size`, a batched reset at two sizes and the training wrapper's reset and
    step (which draws reserve states) reuse one trace of the env's reset; setting an attribute
    of the env drops it (the next graph sees the new value); a copy traces its own."""
    import copy

    env = CountedDice()
    key = jax.random.PRNGKey(0)
    assert env.observation_size == {"state": 2, "privileged_state": 2}
    jax.jit(jax.vmap(env.reset))(jax.random.split(key, 3))
    jax.vmap(env.reset)(jax.random.split(key, 5))
    wrapped = TrainingWrapper(env, 4)
    state = jax.jit(wrapped.reset)(key)
    jax.jit(wrapped.step)(state, jp.ones((4, 1)))  # every env falls: a reserve is drawn
    assert len(env.traces) == 1

    before = float(env.reset(key).info["number"])
    env.offset = 10.0
    assert float(env.reset(key).info["number"]) == pytest.approx(before + 10.0)
    assert len(env.traces) == 2

    other = copy.copy(env)
    other.__dict__["offset"] = 100.0  # not through setattr: only a copy's own traces see it
    assert float(other.reset(key).info["number"]) == pytest.approx(before + 100.0)
    assert float(env.reset(key).info["number"]) == pytest.approx(before + 10.0)


def test_episode_reset_is_the_kept_reset_compiled_for_a_brief_run():
    """`episode_reset` (the native replay's reset, once per episode) reuses the env's one
    trace of its reset, is kept with it (the same compiled function for every caller until
    an attribute of the env changes) and computes what `env.reset` computes; XLA accepts
    `BRIEF_RUN`'s options (it refuses a name it does not know). After an attribute changes,
    the next reset traces anew even while the earlier one is still held (`reset` below):
    JAX caches a trace by its function while that lives, and jitting the bound method
    `env.reset` again (an equal object) took the old trace and the old offset
    (`own_function` in locomotion/envs.py)."""
    env = CountedDice()
    key = jax.random.PRNGKey(3)
    reset = episode_reset(env)
    assert episode_reset(env) is reset
    first = float(reset(key).info["number"])
    assert first == float(env.reset(key).info["number"])
    assert len(env.traces) == 1
    env.offset = 10.0
    assert episode_reset(env) is not reset
    assert float(episode_reset(env)(key).info["number"]) == pytest.approx(first + 10.0)
    assert float(env.reset(key).info["number"]) == pytest.approx(first + 10.0)
    assert float(reset(key).info["number"]) == first  # the one held keeps its graph
    assert len(env.traces) == 2
    assert float(jit_brief(lambda x: 2.0 * x)(jp.ones(()))) == 2.0
    with pytest.raises(Exception, match="No such compile option"):
        jax.jit(lambda x: x, compiler_options={**BRIEF_RUN, "xla_no_such_option": 0})(1.0)
