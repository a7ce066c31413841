"""Environment and training throughput of a task at several num_envs (not a test).

    python benchmarks/throughput.py [--task quadruped_joystick] [--num-envs 64 256 512]

Reports control steps per second for (a) stepping the batched MJX environment with random
actions and (b) full PPO iterations (rollout + GAE + updates), each also as a ratio to the
reference measured in the same run: native MuJoCo (C mj_step) on one core stepping the same
model at the same control rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jp
import mujoco
import numpy as np

import locomotion  # noqa: F401  (XLA flags before jax starts)
from locomotion import registry
from locomotion.envs import TrainingWrapper
from locomotion.train import ppo


def native_reference(env, seconds: float = 3.0) -> float:
    """Control steps/s of C MuJoCo on one core with random targets around the default pose."""
    model = env.mj_model
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        data.ctrl[:] = model.key_ctrl[0] + rng.uniform(-0.3, 0.3, model.nu)
        for _ in range(env.n_substeps):
            mujoco.mj_step(model, data)
        steps += 1
        if data.qpos[2] < 0.1:
            mujoco.mj_resetDataKeyframe(model, data, 0)
    return steps / (time.perf_counter() - start)


def env_throughput(env, num_envs: int, unroll: int = 24, repeats: int = 3) -> float:
    wrapped = TrainingWrapper(env, num_envs)

    @jax.jit
    def run(state, key):
        def one(state, k):
            action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1, maxval=1)
            return wrapped.step(state, action), None

        return jax.lax.scan(one, state, jax.random.split(key, unroll))[0]

    state = wrapped.reset(jax.random.PRNGKey(0))
    # Two warm-up calls: the first output is committed to the device, unlike the reset state,
    # and that alone triggers a second compilation.
    for i in range(2):
        state = jax.block_until_ready(run(state, jax.random.PRNGKey(100 + i)))
    start = time.perf_counter()
    for i in range(repeats):
        state = run(state, jax.random.PRNGKey(i))
    jax.block_until_ready(state)
    return num_envs * unroll * repeats / (time.perf_counter() - start)


def train_throughput(env, ppo_cfg, num_envs: int, repeats: int = 2) -> float:
    cfg = dataclasses.replace(ppo_cfg, num_envs=num_envs)
    wrapped = TrainingWrapper(env, num_envs)
    mesh = ppo.make_mesh(num_envs)
    state = ppo.init(wrapped, cfg, jax.random.PRNGKey(0), mesh)
    step = ppo.make_train_step(wrapped, cfg, 100, mesh)
    for _ in range(2):  # compile; the second call sees committed outputs (see env_throughput)
        state, metrics = step(state)
        jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(repeats):
        state, metrics = step(state)
    jax.block_until_ready(metrics)
    return cfg.batch_size * repeats / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="quadruped_joystick")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()

    entry = registry.entry(args.task)
    env = entry.env_class(entry.env_config)
    ppo_cfg = entry.presets["gpu" if jax.default_backend() == "gpu" else "cpu"][0]
    reference = native_reference(env)
    print(
        f"task {args.task} | backend {jax.default_backend()} ({jax.devices()[0].device_kind}) "
        f"| jax {jax.__version__} | control dt {env.dt} s, {env.n_substeps} physics substeps"
    )
    print(f"reference: native MuJoCo, 1 core: {reference:,.0f} control steps/s")
    print(
        f"{'num_envs':>9} | {'env steps/s':>12} | {'x native':>8} | {'train steps/s':>13} | "
        f"{'x native':>8}"
    )
    for n in args.num_envs:
        env_sps = env_throughput(env, n)
        train_sps = float("nan") if args.skip_train else train_throughput(env, ppo_cfg, n)
        print(
            f"{n:>9} | {env_sps:>12,.0f} | {env_sps / reference:>8.2f} | {train_sps:>13,.0f} | "
            f"{train_sps / reference:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    jp.zeros(())  # start the backend before timing
    main()
