"""Deterministic policy evaluation in MJX: fixed-length episodes, no automatic reset."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jp

from locomotion.envs import Env


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

    @jax.jit
    def run(key):
        state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def one_step(carry, _):
            state, alive, ret, length = carry
            action = act(state.obs["state"])
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

    alive, ret, length, sums = jax.device_get(run(key))
    total = float(length.sum())
    out = {
        "eval/return_mean": float(ret.mean()),
        f"eval/{termination}_rate": float(1.0 - alive.mean()),
        "eval/episode_length_mean": float(length.mean()),
    }
    out.update({f"eval/{k}": float(v) / max(total, 1.0) for k, v in sums.items()})
    return out
