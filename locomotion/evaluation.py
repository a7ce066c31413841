"""Deterministic policy evaluation in MJX: fixed-length episodes, no automatic reset."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jp

from locomotion.envs import Env

NOMINAL = (("randomize", False), ("obs_noise", 0.0))
"""The settings that make an evaluation nominal: no physics randomization or pushes, clean
observations. Every evaluation (a run's eval.json, `locomotion eval`) starts from them."""


def nominal_config(cfg: Any) -> Any:
    """`cfg` with nominal physics and clean observations; a task config that lacks one of the
    settings is refused (evaluating it could not promise either)."""
    missing = [name for name, _ in NOMINAL if not hasattr(cfg, name)]
    if missing:
        raise ValueError(
            f"{type(cfg).__name__} has no {' or '.join(missing)} setting: an evaluation on "
            "nominal physics with clean observations cannot be set up for this task"
        )
    return dataclasses.replace(cfg, **dict(NOMINAL))


def make_evaluate(
    env: Env,
    act: Callable[[Any, jax.Array], jax.Array],
    num_envs: int,
    num_steps: int,
    termination: str = "fall",
) -> Callable[[Any, jax.Array], dict[str, float]]:
    """`evaluate(policy, key)` compiled once for `act(policy, obs) -> action`: the policy's
    parameters are an argument, so evaluating checkpoint after checkpoint compiles nothing new.
    Measures what `evaluate` does."""
    env.prepare_batch(num_envs)

    @jax.jit
    def run(policy, key):
        state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def one_step(carry, _):
            state, alive, ret, length = carry
            action = act(policy, state.obs["state"])
            nstate = jax.vmap(env.step)(state, action)
            ret = ret + alive * nstate.reward
            length = length + alive
            metrics = jax.tree.map(lambda m: m * alive, nstate.metrics)
            alive = alive * (1.0 - nstate.done)
            return (nstate, alive, ret, length), metrics

        init = (state, jp.ones(num_envs), jp.zeros(num_envs), jp.zeros(num_envs))
        (_, alive, ret, length), metrics = jax.lax.scan(one_step, init, None, length=num_steps)
        sums = jax.tree.map(lambda m: m.sum(), metrics)
        return alive, ret, length, sums

    def evaluate_policy(policy, key: jax.Array) -> dict[str, float]:
        alive, ret, length, sums = jax.device_get(run(policy, key))
        total = float(length.sum())
        out = {
            "eval/return_mean": float(ret.mean()),
            f"eval/{termination}_rate": float(1.0 - alive.mean()),
            "eval/episode_length_mean": float(length.mean()),
        }
        out.update({f"eval/{k}": float(v) / max(total, 1.0) for k, v in sums.items()})
        return out

    return evaluate_policy


def evaluate(
    env: Env,
    act: Callable[[jax.Array], jax.Array],
    num_envs: int,
    num_steps: int,
    key: jax.Array,
    termination: str = "fall",
) -> dict[str, float]:
    """Roll `act` (obs["state"] -> action) in `num_envs` envs for `num_steps` control steps.

    Step metrics are averaged over the steps each env was still up; an env that terminates
    stops counting. Returns `eval/return_mean`, `eval/<termination>_rate` (the share of envs
    that terminated: `fall` for the quadrupeds, `drop` for the hands), `eval/episode_length_mean`
    and `eval/<metric>` for every step metric of the task.
    """
    run = make_evaluate(env, lambda _, obs: act(obs), num_envs, num_steps, termination)
    return run(None, key)
