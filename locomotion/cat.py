"""Constraints as Terminations (CaT): constraint violations become termination probabilities.

Chane-Sane et al., "CaT: Constraints as Terminations for Legged Locomotion Reinforcement
Learning", IROS 2024. Instead of a penalty per constraint, every violation c+ = max(0, c(s, a))
becomes a probability delta of ending the future rewards:

    c_max  <- tau * c_max + (1 - tau) * max(batch max of c+, 1e-6)   (each step, per column)
    p      =  p_max * clip(c+ / c_max, 0, 1)
    delta  =  max over constraints and columns of p
    reward <- max(0, reward * (1 - delta));  GAE continues with weight (1 - delta)

The environment is not reset on a soft violation: only real terminations and time limits end
an episode. c_max is a statistic of the whole environment batch (all devices), so it lives at
batch level, in `CaTWrapper`, and is carried in the environment state (checkpointed with it).

A task opts in by declaring `constraints` (a tuple of `Constraint`), a `cat` config
(`CaTConfig`), and by putting the violations c+ of each step in `info["violations"]`
({name: array [columns]}, zeros at reset). `violation_metrics` gives the per-env metrics
`constraint/<name>` (1. where any column is violated) that training and replay both log.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jp

from locomotion.envs import State, TrainingWrapper, strong_types

Kind = Literal["hard", "soft", "style"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Constraint:
    """One named constraint of a task. Its violation c+ is computed by the task."""

    name: str
    kind: Kind
    limit: float
    """The bound, in the constraint's unit (documentation and logs; the task applies it)."""
    p_max: float | None = None
    """Largest termination probability. None: 1 for hard constraints, the curriculum for soft
    and style ones."""

    def __post_init__(self):
        if self.kind not in ("hard", "soft", "style"):
            raise ValueError(f"constraint {self.name}: kind must be hard, soft or style")
        if self.p_max is not None and not 0 < self.p_max <= 1:
            raise ValueError(f"constraint {self.name}: p_max must be in (0, 1]")


@dataclasses.dataclass(frozen=True, kw_only=True)
class CaTConfig:
    """Settings of the CaT mechanism (values from the paper)."""

    tau: float = 0.95
    """Decay of the moving average of the batch's largest violation."""
    p_start: float = 0.05
    """Soft/style p_max at the start of the curriculum (expected 20 steps to termination)."""
    p_end: float = 0.25
    """Soft/style p_max at the end of the curriculum (expected 4 steps to termination)."""
    curriculum_steps: int = 12_000
    """Control steps (per environment) over which soft/style p_max rises from p_start to p_end."""
    min_c_max: float = 1e-6
    """Floor of the batch maximum, so c+ / c_max stays finite."""

    def __post_init__(self):
        if not 0 <= self.tau < 1:
            raise ValueError("cat.tau must be in [0, 1)")
        if not 0 < self.p_start <= 1 or not 0 < self.p_end <= 1:
            raise ValueError("cat.p_start and cat.p_end must be in (0, 1]")
        if self.curriculum_steps < 0:
            raise ValueError("cat.curriculum_steps must be >= 0")


def curriculum_p_max(cfg: CaTConfig, steps: jax.Array) -> jax.Array:
    """Soft/style p_max after `steps` control steps: 1 / (1/p_start + k (1/p_end - 1/p_start)).

    k rises linearly from 0 to 1 over `curriculum_steps`; the expected number of steps to a
    termination (1/p) is interpolated, as in the paper (20 -> 4 with the defaults).
    """
    k = jp.clip(steps / max(cfg.curriculum_steps, 1), 0.0, 1.0)
    return 1.0 / (1.0 / cfg.p_start + k * (1.0 / cfg.p_end - 1.0 / cfg.p_start))


def update_c_max(
    cfg: CaTConfig, c_max: jax.Array, violations: jax.Array, first: jax.Array
) -> jax.Array:
    """The moving average of the largest violation per column; violations is [batch, columns].

    On the first step c_max starts from the batch maximum. Under `jit` with the batch sharded,
    the max over axis 0 is a reduction over all devices.
    """
    batch_max = jp.maximum(jp.max(violations, axis=0), cfg.min_c_max)
    return jp.where(first, batch_max, cfg.tau * c_max + (1.0 - cfg.tau) * batch_max)


def termination_probability(
    violations: dict[str, jax.Array],
    c_max: dict[str, jax.Array],
    p_max: dict[str, jax.Array | float],
) -> jax.Array:
    """delta = max over constraints and columns of p_max * clip(c+ / c_max, 0, 1); [batch]."""
    probs = [
        jp.max(p_max[name] * jp.clip(v / c_max[name], 0.0, 1.0), axis=-1)
        for name, v in violations.items()
    ]
    return jp.max(jp.stack(probs, axis=-1), axis=-1)


def violation_metrics(violations: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """`constraint/<name>`: 1. where any column of the constraint is violated (one env)."""
    return {f"constraint/{k}": jp.any(v > 0) * 1.0 for k, v in violations.items()}


class CaTWrapper:
    """Batch-level CaT on top of `TrainingWrapper`: scales rewards, sets the soft termination.

    State it adds, in `info["cat"]` (the same value in every env of the batch, so it keeps the
    batch sharding and travels with checkpoints): `c_max` per constraint and `steps`.
    """

    def __init__(self, inner: TrainingWrapper, constraints: tuple[Constraint, ...], cfg: CaTConfig):
        if not constraints:
            raise ValueError("CaTWrapper needs at least one constraint")
        self.inner = inner
        self.env = inner.env
        self.num_envs = inner.num_envs
        self.constraints = constraints
        self.cfg = cfg

    @property
    def action_size(self) -> int:
        return self.inner.action_size

    @property
    def observation_size(self) -> dict[str, int]:
        return self.inner.observation_size

    def p_max(self, steps: jax.Array) -> dict[str, jax.Array]:
        """The p_max of each constraint after `steps` control steps."""
        soft = curriculum_p_max(self.cfg, steps)
        out = {}
        for c in self.constraints:
            if c.p_max is not None:
                out[c.name] = jp.asarray(c.p_max)
            elif c.kind == "hard":
                out[c.name] = jp.asarray(1.0)
            else:
                out[c.name] = soft
        return out

    def reset(self, key: jax.Array) -> State:
        state = self.inner.reset(key)
        violations = state.info["violations"]
        missing = {c.name for c in self.constraints} ^ set(violations)
        if missing:
            raise ValueError(f"task violations and declared constraints differ: {sorted(missing)}")
        cat = {
            "c_max": jax.tree.map(jp.zeros_like, violations),
            "steps": jp.zeros(self.num_envs, jp.int32),
        }
        metrics = dict(state.metrics)
        metrics.update(self._zero_metrics())
        return strong_types(state.replace(info={**state.info, "cat": cat}, metrics=metrics))

    def _zero_metrics(self) -> dict[str, jax.Array]:
        zeros = jp.zeros(self.num_envs)
        out = {"cat/delta_mean": zeros}
        out.update({f"cat/violation/{c.name}": zeros for c in self.constraints})
        return out

    def step(self, state: State, action: jax.Array) -> State:
        info = dict(state.info)
        cat = info.pop("cat")
        nstate = self.inner.step(state.replace(info=info), action)
        violations = nstate.info["violations"]
        steps = cat["steps"][0]
        c_max = {
            name: jp.broadcast_to(
                update_c_max(self.cfg, cat["c_max"][name][0], v, steps == 0), v.shape
            )
            for name, v in violations.items()
        }
        delta = termination_probability(violations, c_max, self.p_max(steps))
        reward = jp.maximum(0.0, nstate.reward * (1.0 - delta))
        info = dict(nstate.info)
        info["termination"] = jp.maximum(info["termination"], delta)
        info["cat"] = {"c_max": c_max, "steps": cat["steps"] + 1}
        metrics = dict(nstate.metrics)
        metrics["cat/delta_mean"] = delta
        metrics.update({f"cat/violation/{k}": v.mean(axis=-1) for k, v in violations.items()})
        return strong_types(nstate.replace(reward=reward, info=info, metrics=metrics))


def wrap_for_training(env, num_envs: int):
    """`TrainingWrapper`, plus `CaTWrapper` when the task declares constraints."""
    wrapped = TrainingWrapper(env, num_envs)
    constraints = getattr(env, "constraints", ())
    if constraints:
        wrapped = CaTWrapper(wrapped, tuple(constraints), env.config.cat)
    return wrapped
