"""Where a PPO iteration's time goes: physics, task logic, reset, policy, update (not a test).

    python benchmarks/iteration_profile.py [--tasks quadruped_joystick hand_rotate_z]
                                          [--num-envs 512]

Each part is compiled and timed on its own at the task's cpu preset geometry (num_envs x
unroll_length control steps per iteration; compile excluded, the median of --repeats):

- iteration:   the whole compiled PPO iteration (`ppo.make_train_step`)
- rollout:     `ppo.rollout` alone (policy sampling + the training wrapper's steps)
- task step:   `vmap(env.step)` with the rollout's actions (physics + task logic, no reset)
- task logic:  the task step with its physics replaced by holding the controls (rewards,
               observations, commands, randomized model, pushes: everything but `mjx.step`)
- policy:      the actor's forward pass and sampling on the rollout's observations

and reported as: task logic; physics = task step - task logic; reset and policy = rollout -
task step (the automatic reset, the actor's sampling and the rollout's bookkeeping; the reset
is not timed apart: its cost varies from call to call with how many episodes end); update
(normalizer, GAE, epochs of minibatch SGD) = iteration - rollout; and the actor's forward pass
and sampling alone. The parts are separate programs, so XLA cannot fuse across them as it does
inside the iteration: their sum is close to, not equal to, the whole.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import jax
import jax.numpy as jp

import locomotion  # noqa: F401  (XLA flags before jax starts)
from locomotion import registry
from locomotion.cat import wrap_for_training
from locomotion.train import ppo


def timed(fn, *args, repeats: int) -> float:
    """Median wall seconds of `fn(*args)` after two warm-up calls."""
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile(task: str, num_envs: int | None, repeats: int) -> dict[str, float]:
    entry = registry.entry(task)
    env = entry.env_class(entry.env_config)
    cfg = entry.presets["cpu"][0]
    if num_envs:
        cfg = dataclasses.replace(cfg, num_envs=num_envs)
    wrapped = wrap_for_training(env, cfg.num_envs)
    mesh = ppo.env_mesh(env, cfg.num_envs)
    state = ppo.init(wrapped, cfg, jax.random.PRNGKey(0), mesh)
    step = ppo.make_train_step(wrapped, cfg, 100, mesh)
    for _ in range(3):  # compile, and a state that training would see
        state, metrics = step(state)
    jax.block_until_ready(metrics)
    nets = ppo.make_networks(env.action_size, cfg)
    T = cfg.unroll_length

    times = []  # `step` donates its input: chain the calls
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    iteration = statistics.median(times)
    rollout = jax.jit(lambda s, k: ppo.rollout(wrapped, nets, cfg, s, k))
    t_rollout = timed(rollout, state, jax.random.PRNGKey(1), repeats=repeats)
    data = rollout(state, jax.random.PRNGKey(1))[1]
    actions = jp.tanh(data["actions"]) if cfg.squash else data["actions"]  # [T, B, A]

    @jax.jit
    def task_steps(s, actions):
        return jax.lax.scan(lambda s, a: (jax.vmap(env.step)(s, a), None), s, actions)[0]

    # The same steps with the physics replaced by holding the controls: the task logic alone.
    logic_only = copy.copy(env)
    logic_only.physics_step = lambda model, data, ctrl: data.replace(ctrl=ctrl)

    @jax.jit
    def logic_steps(s, actions):
        return jax.lax.scan(lambda s, a: (jax.vmap(logic_only.step)(s, a), None), s, actions)[0]

    @jax.jit
    def policy_steps(params, obs_stats, obs, key):
        def f(carry, x):
            o, k = x
            o = obs_stats.normalize(o) if cfg.normalize_observations else o
            mean, log_std = nets.actor.apply(params["actor"], o)
            return carry + jp.sum(mean + jp.exp(log_std) * jax.random.normal(k, mean.shape)), None

        return jax.lax.scan(f, 0.0, (obs, jax.random.split(key, T)))[0]

    env.prepare_batch(cfg.num_envs)
    bare = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(2), cfg.num_envs))
    t_task = timed(task_steps, bare, actions, repeats=repeats)
    t_logic = timed(logic_steps, bare, actions, repeats=repeats)
    t_policy = timed(
        policy_steps,
        state.params,
        state.obs_stats,
        data["obs"],
        jax.random.PRNGKey(3),
        repeats=repeats,
    )
    steps = cfg.num_envs * T
    return {
        "task": task,
        "num_envs": cfg.num_envs,
        "unroll_length": T,
        "iteration_s": iteration,
        "steps_per_s": steps / iteration,
        "physics": t_task - t_logic,
        "task_logic": t_logic,
        "reset_and_policy": t_rollout - t_task,
        "policy_forward": t_policy,
        "update": iteration - t_rollout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["quadruped_joystick", "hand_rotate_z"])
    parser.add_argument("--num-envs", type=int, default=None, help="default: the cpu preset's")
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    print(f"backend {jax.default_backend()} | jax {jax.__version__}")
    parts = ("physics", "task_logic", "reset_and_policy", "update")
    print("| task | envs x unroll | iteration [ms] | " + " | ".join(parts) + " | policy forward |")
    print("| --- | --- | --- |" + " --- |" * (len(parts) + 1))
    for task in a.tasks:
        r = profile(task, a.num_envs, a.repeats)
        total = r["iteration_s"]
        cells = [f"{r[p] * 1e3:,.0f} ms ({r[p] / total:.0%})" for p in parts]
        print(
            f"| {task} | {r['num_envs']} x {r['unroll_length']} | {total * 1e3:,.0f} "
            f"({r['steps_per_s']:,.0f} steps/s) | "
            + " | ".join(cells)
            + f" | {r['policy_forward'] * 1e3:,.0f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
