"""Constraints as Terminations: delta, the batch-wide moving maximum, resets, curriculum."""

import dataclasses
import json
import textwrap

import jax
import jax.numpy as jp
import numpy as np
import pytest
from test_ppo import run_on_two_devices

from locomotion.cat import (
    CaTConfig,
    Constraint,
    curriculum_p_max,
    termination_probability,
    update_c_max,
    wrap_for_training,
)
from locomotion.envs import Env, State


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    cat: CaTConfig = CaTConfig(curriculum_steps=10)


class ToyEnv(Env):
    """Reward 1 per step. action[0] beyond +-0.5 violates `soft` (two columns: action[0] and
    action[1]), action[0] above 0.9 violates `hard`; action[1] below -0.95 is a real fall."""

    episode_length = 50
    config = ToyConfig()
    constraints = (
        Constraint(name="soft", kind="soft", limit=0.5),
        Constraint(name="hard", kind="hard", limit=0.9),
    )

    @property
    def action_size(self) -> int:
        return 2

    def reset(self, key):
        info = {"violations": {"soft": jp.zeros(2), "hard": jp.zeros(1)}}
        return State(jp.zeros(()), {"state": jp.zeros(1)}, jp.zeros(()), jp.zeros(()), {}, info)

    def step(self, state, action):
        violations = {
            "soft": jp.maximum(0.0, jp.abs(action) - 0.5),
            "hard": jp.maximum(0.0, action[:1] - 0.9),
        }
        fallen = (action[1] < -0.95) * 1.0
        t = state.pipeline_state + 1.0
        return state.replace(
            pipeline_state=t,
            obs={"state": t[None]},
            reward=jp.ones(()),
            done=fallen,
            info={"violations": violations},
        )


# The soft p_max of the paper's curriculum, 1 / (20 + k (1/0.25 - 20)), evaluated by hand at
# the fractions k of the curriculum the tests use: 1/20, 1/18.4 and 1/12.
P_SOFT = {0.0: 0.05, 0.1: 0.0543478, 0.5: 0.0833333}


def test_curriculum_schedule_ends_and_middle():
    cfg = CaTConfig(curriculum_steps=1000)
    assert float(curriculum_p_max(cfg, 0)) == pytest.approx(0.05)
    assert float(curriculum_p_max(cfg, 1000)) == pytest.approx(0.25)
    assert float(curriculum_p_max(cfg, 5000)) == pytest.approx(0.25)  # stays at the end value
    assert float(curriculum_p_max(cfg, 500)) == pytest.approx(P_SOFT[0.5], rel=1e-6)


def test_moving_max_by_hand():
    cfg = CaTConfig(tau=0.95)
    batch = jp.array([[0.2, 0.0], [0.6, 0.0], [0.1, 0.0]])
    first = update_c_max(cfg, jp.zeros(2), batch, jp.array(True))
    np.testing.assert_allclose(first, [0.6, 1e-6])  # batch max per column, floored
    batch2 = jp.array([[1.0, 0.3], [0.0, 0.0], [0.0, 0.1]])
    second = update_c_max(cfg, first, batch2, jp.array(False))
    np.testing.assert_allclose(second, [0.95 * 0.6 + 0.05 * 1.0, 0.95 * 1e-6 + 0.05 * 0.3])


def test_delta_by_hand_soft_hard_mixed():
    c_max = {"soft": jp.array([0.4, 1.0]), "hard": jp.array([0.2])}
    p_max = {"soft": 0.05, "hard": 1.0}
    none = {"soft": jp.zeros((1, 2)), "hard": jp.zeros((1, 1))}
    soft = {"soft": jp.array([[0.2, 0.5]]), "hard": jp.zeros((1, 1))}
    hard = {"soft": jp.zeros((1, 2)), "hard": jp.array([[0.05]])}
    capped = {"soft": jp.array([[0.8, 0.0]]), "hard": jp.zeros((1, 1))}
    mixed = {"soft": jp.array([[0.2, 0.0]]), "hard": jp.array([[0.3]])}
    delta = lambda v: float(termination_probability(v, c_max, p_max)[0])
    assert delta(none) == 0.0
    # max over columns: 0.05 * max(0.2/0.4, 0.5/1.0) = 0.025
    assert delta(soft) == pytest.approx(0.025)
    assert delta(hard) == pytest.approx(0.25)  # 1 * 0.05/0.2
    assert delta(capped) == pytest.approx(0.05)  # c+/c_max clipped at 1
    assert delta(mixed) == pytest.approx(1.0)  # max over constraints; hard saturates at 1


def rollout(env, actions):
    """Steps a batch through `actions` [T, B, A] with the CaT wrapper; returns every state."""
    wrapped = wrap_for_training(env, actions.shape[1])
    state = wrapped.reset(jax.random.PRNGKey(0))
    step = jax.jit(wrapped.step)
    states = []
    for a in actions:
        state = step(state, a)
        states.append(state)
    return states


def test_wrapper_uses_the_batch_max_and_the_ema():
    # Step 1: env 3 has the largest soft violation (0.5); step 2: the largest is 0.25 (env 0).
    a1 = jp.array([[0.6, 0.0], [0.7, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    a2 = jp.array([[0.75, 0.0], [0.55, 0.0], [0.0, 0.0], [0.0, 0.0]])
    s1, s2 = rollout(ToyEnv(), jp.stack([a1, a2]))
    c1 = s1.info["cat"]["c_max"]["soft"]
    np.testing.assert_allclose(c1, np.tile([0.5, 1e-6], (4, 1)), rtol=1e-6)
    p0 = P_SOFT[0.0]  # curriculum at step 0
    np.testing.assert_allclose(s1.info["termination"], [p0 * 0.2, p0 * 0.4, 0.0, p0], rtol=1e-5)
    np.testing.assert_allclose(s1.reward, 1.0 - np.asarray(s1.info["termination"]), rtol=1e-6)
    c2 = 0.95 * 0.5 + 0.05 * 0.25
    np.testing.assert_allclose(s2.info["cat"]["c_max"]["soft"][:, 0], c2, rtol=1e-6)
    p1 = P_SOFT[0.1]  # one step into a 10-step curriculum
    np.testing.assert_allclose(
        s2.info["termination"], [p1 * 0.25 / c2, p1 * 0.05 / c2, 0.0, 0.0], rtol=1e-5
    )


def test_soft_violation_does_not_reset_but_a_fall_does():
    a = jp.array(
        [
            [[1.0, 0.0], [0.0, 0.0]],  # env 0: soft and hard violation
            [[0.0, 0.0], [0.0, -1.0]],  # env 1 falls on step 2
        ]
    ).transpose(1, 0, 2)
    s1, s2 = rollout(ToyEnv(), jp.stack([a[0], a[1]]))
    # Hard violation: delta = 1 cuts the bootstrap, but the episode goes on.
    np.testing.assert_allclose(s1.info["termination"], [1.0, 0.0])
    np.testing.assert_allclose(s1.done, [0.0, 0.0])
    np.testing.assert_allclose(s1.reward, [0.0, 1.0])
    np.testing.assert_allclose(s1.info["steps"], [1, 1])
    np.testing.assert_allclose(s2.info["steps"], [2, 0])  # env 1 was reset after its fall
    np.testing.assert_allclose(s2.done, [0.0, 1.0])
    np.testing.assert_allclose(s2.info["termination"], [0.0, 1.0])
    np.testing.assert_allclose(s2.pipeline_state, [2.0, 0.0])


def test_time_limit_is_a_truncation_not_a_termination():
    actions = jp.zeros((ToyEnv.episode_length, 2, 2))
    last = rollout(ToyEnv(), actions)[-1]
    np.testing.assert_allclose(last.info["truncation"], [1.0, 1.0])
    np.testing.assert_allclose(last.info["termination"], [0.0, 0.0])


SHARDED = textwrap.dedent("""
    import json, sys
    import locomotion
    import jax, jax.numpy as jp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    sys.path.insert(0, sys.argv[1])
    from test_cat import ToyEnv
    from locomotion.cat import wrap_for_training
    assert jax.device_count() == 2, jax.devices()
    env = wrap_for_training(ToyEnv(), 8)
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), PartitionSpec("batch"))
    state = jax.device_put(env.reset(jax.random.PRNGKey(0)), sharding)
    # The largest violation (0.45) is in env 6, on the second device.
    action = np.zeros((8, 2), np.float32)
    action[:, 0] = [0.6, 0.55, 0.0, 0.7, 0.0, 0.0, 0.95, 0.0]
    action = jax.device_put(jp.asarray(action), sharding)
    state = jax.jit(env.step)(state, action)
    devices = {s.device for s in state.info["cat"]["c_max"]["soft"].addressable_shards}
    print(json.dumps({
        "devices": len(devices),
        "c_max": np.asarray(state.info["cat"]["c_max"]["soft"])[:, 0].tolist(),
        "termination": np.asarray(state.info["termination"]).tolist(),
    }))
""")


def test_batch_max_spans_two_devices():
    out = json.loads(run_on_two_devices(SHARDED, timeout=300))
    assert out["devices"] == 2
    np.testing.assert_allclose(out["c_max"], [0.45] * 8, rtol=1e-6)
    # env 0 (first device) is scaled by the max found on the second device; env 6 hits 1 (hard).
    assert out["termination"][0] == pytest.approx(P_SOFT[0.0] * 0.1 / 0.45, rel=1e-5)
    assert out["termination"][6] == pytest.approx(1.0)
