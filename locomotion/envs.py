"""Environment interface shared by every task, and the wrappers training uses.

The interface is brax's: `reset(key) -> State`, `step(state, action) -> State`, both pure and
jit/vmap-able, with `State(pipeline_state, obs, reward, done, metrics, info)`. Observations are a
dict: "state" for the actor and "privileged_state" for the critic (asymmetric actor-critic).

Signals to the learner are kept apart (STYLE.md, rule 6):
  * `done`                 episode ended (termination or time limit): the env was reset
  * `info["truncation"]`   the episode hit its time limit: keep bootstrapping
  * `info["termination"]`  probability in [0, 1] that the future rewards end here: 1 for a real
                           termination (fall), CaT's delta for constraint violations, else 0
  * `info["final_obs"]`    the observation before an automatic reset, to bootstrap truncations
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jp
from flax import struct

Observation = dict[str, jax.Array]


@struct.dataclass
class State:
    """One environment's state (or a batch of them, with a leading batch axis)."""

    pipeline_state: Any
    obs: Observation
    reward: jax.Array
    done: jax.Array
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    info: dict[str, Any] = struct.field(default_factory=dict)


class Env(abc.ABC):
    """A single, unbatched environment. Subclasses set `episode_length` (control steps)."""

    episode_length: int

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> State:
        """Sample an initial state."""

    @abc.abstractmethod
    def step(self, state: State, action: jax.Array) -> State:
        """Advance one control period. `done` is the real termination only (0. or 1.)."""

    @property
    @abc.abstractmethod
    def action_size(self) -> int:
        """Number of action dimensions (actions live in [-1, 1])."""

    @property
    def observation_size(self) -> dict[str, int]:
        """Size of each observation entry, found by tracing `reset` (no computation)."""
        shapes = jax.eval_shape(self.reset, jax.ShapeDtypeStruct((2,), jp.uint32))
        return {name: leaf.shape[-1] for name, leaf in shapes.obs.items()}

    @property
    def dt(self) -> float:
        """Control period [s]."""
        return 0.02


def strong_types(tree):
    """Drops JAX's weak types (`x * 1.0` of a bool is weakly typed), so that a state returned
    by a compiled step has exactly the types of the state it got: no recompilation."""
    return jax.tree.map(lambda x: x.astype(x.dtype), tree)


_WRAPPER_KEYS = (
    "reset_key",
    "steps",
    "truncation",
    "termination",
    "final_obs",
    "episode_return",
    "episode_length",
)
# Task info that describes the transition just taken (kept on the step that ends an episode,
# not replaced by the reset state's): the CaT constraint violations.
_TRANSITION_KEYS = ("violations",)


class TrainingWrapper:
    """Batches an env with vmap, adds the time limit and automatic resets.

    Each reset draws a fresh initial state (new command, new randomization), not a cached one.
    """

    def __init__(self, env: Env, num_envs: int):
        self.env = env
        self.num_envs = num_envs

    @property
    def action_size(self) -> int:
        return self.env.action_size

    @property
    def observation_size(self) -> dict[str, int]:
        return self.env.observation_size

    def reset(self, key: jax.Array) -> State:
        keys = jax.random.split(key, self.num_envs)
        return strong_types(jax.vmap(self._reset_one)(keys))

    def step(self, state: State, action: jax.Array) -> State:
        return strong_types(jax.vmap(self._step_one)(state, action))

    def _reset_one(self, key: jax.Array) -> State:
        key, key_reset = jax.random.split(key)
        state = self.env.reset(key_reset)
        info = {k: v for k, v in state.info.items() if k != "termination"}
        info.update(
            reset_key=key,
            steps=jp.zeros((), jp.int32),
            truncation=jp.zeros(()),
            termination=jp.zeros(()),
            final_obs=state.obs,
            episode_return=jp.zeros(()),
            episode_length=jp.zeros(()),
        )
        metrics = dict(state.metrics)
        metrics.update({"episode/return": jp.zeros(()), "episode/length": jp.zeros(())})
        return state.replace(info=info, metrics=metrics)

    def _step_one(self, state: State, action: jax.Array) -> State:
        steps = state.info["steps"] + 1
        inner_info = {k: v for k, v in state.info.items() if k not in _WRAPPER_KEYS}
        nstate = self.env.step(state.replace(info=inner_info), action)
        task_info = dict(nstate.info)
        # A task may report a soft termination probability (CaT) in info["termination"].
        soft_termination = task_info.pop("termination", jp.zeros(()))

        terminated = nstate.done
        truncated = jp.where(terminated > 0, 0.0, steps >= self.env.episode_length)
        truncated = truncated.astype(jp.float32)
        done = jp.maximum(terminated, truncated)
        ep_return = state.info["episode_return"] + nstate.reward
        ep_length = state.info["episode_length"] + 1.0

        # Automatic reset: compute a fresh initial state and select it where the episode ended.
        key, key_reset = jax.random.split(state.info["reset_key"])
        fresh = self.env.reset(key_reset)
        pick = lambda new, old: jp.where(done > 0, new, old)
        pipeline_state = jax.tree.map(pick, fresh.pipeline_state, nstate.pipeline_state)
        obs = jax.tree.map(pick, fresh.obs, nstate.obs)
        kept = {k: task_info.pop(k) for k in _TRANSITION_KEYS if k in task_info}
        info = jax.tree.map(pick, {k: fresh.info[k] for k in task_info}, task_info)
        info.update(kept)
        info.update(
            reset_key=key,
            steps=jp.where(done > 0, 0, steps),
            truncation=truncated,
            termination=jp.maximum(soft_termination, terminated),
            final_obs=nstate.obs,
            episode_return=jp.where(done > 0, 0.0, ep_return),
            episode_length=jp.where(done > 0, 0.0, ep_length),
        )
        metrics = dict(nstate.metrics)
        # Episode statistics are reported on the step that ends the episode (weight by `done`).
        metrics.update({"episode/return": ep_return, "episode/length": ep_length})
        return nstate.replace(
            pipeline_state=pipeline_state, obs=obs, done=done, info=info, metrics=metrics
        )
