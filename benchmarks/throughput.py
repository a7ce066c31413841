"""Environment and training throughput of a task at several num_envs (not a test).

    python benchmarks/throughput.py [--task quadruped_joystick] [--num-envs 64 256 512]
    python benchmarks/throughput.py --task quadruped_rough --against quadruped_joystick
    python benchmarks/throughput.py --brax --num-envs 512    # pip install -e ".[bench]"
    python benchmarks/throughput.py --impl jax warp           # pip install -e ".[warp]"
    python benchmarks/throughput.py --impl jax native --num-envs 512 2048
    python benchmarks/throughput.py --brax --impl jax native --num-envs 512


Reports control steps per second for (a) the bare batched step `vmap(env.step)` with random
actions, (b) the same inside the training wrapper (time limit, automatic reset), also as a
ratio to (a), and (c) full PPO iterations (rollout + GAE + updates); (b) and (c) also as a ratio
to the reference measured in the same run: native MuJoCo (C mj_step) on all cores
(`mujoco.rollout`, one thread per core) stepping the same model at the same control rate, the
fastest this machine simulates it. `--brax` trains the task with our PPO and with brax 0.14.2's
PPO (through brax's own wrappers, the same batch geometry, compile excluded) in one run and
prints the ratio of their training steps/s. On a CPU both trainers get one XLA device per
core, as `locomotion train` does (`LOCOMOTION_CPU_DEVICES=1`: one device; locomotion/gpu.py).
`--against TASK` also measures TASK at the same num_envs in the same run and prints the ratios
(e.g. the terrain's cost: rough against flat). `--impl jax warp native` measures the task with
each physics implementation in turn (rows labelled), against the same native reference; with
`--brax`, both trainers train each implementation's env.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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


def native_reference_all_cores(env, batch: int = 256, seconds: float = 2.0) -> float:
    """Control steps/s of C MuJoCo on every core: `mujoco.rollout` with one thread and MjData
    per core stepping `batch` copies of the model from the keyframe, random joint targets
    around the default pose held over each control period (the fastest this machine
    simulates the model; robots that fall keep being simulated)."""
    from mujoco import rollout

    model = env.mj_model
    nthread = os.cpu_count() or 1
    datas = [mujoco.MjData(model) for _ in range(nthread)]
    data = datas[0]
    mujoco.mj_resetDataKeyframe(model, data, 0)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    control_steps = 50
    rng = np.random.default_rng(0)
    targets = model.key_ctrl[0] + rng.uniform(-0.3, 0.3, (batch, control_steps, model.nu))
    control = np.repeat(targets, env.n_substeps, axis=1)  # held over the substeps
    initial = np.tile(state, (batch, 1))
    steps, start = 0, time.perf_counter()
    with rollout.Rollout(nthread=nthread) as pool:
        while time.perf_counter() - start < seconds:
            pool.rollout(model, datas, initial, control)
            steps += batch * control_steps
    return steps / (time.perf_counter() - start)


def _steps_per_second(step, state, num_envs: int, action_size: int, unroll: int, repeats: int):
    """Control steps/s of `step(state, actions)` [num_envs] under random actions in [-1, 1]."""

    @jax.jit
    def run(state, key):
        def one(state, k):
            action = jax.random.uniform(k, (num_envs, action_size), minval=-1, maxval=1)
            return step(state, action), None

        return jax.lax.scan(one, state, jax.random.split(key, unroll))[0]

    # Two warm-up calls: the first output is committed to the device, unlike the reset state,
    # and that alone triggers a second compilation.
    for i in range(2):
        state = jax.block_until_ready(run(state, jax.random.PRNGKey(100 + i)))
    start = time.perf_counter()
    for i in range(repeats):
        state = run(state, jax.random.PRNGKey(i))
    jax.block_until_ready(state)
    return num_envs * unroll * repeats / (time.perf_counter() - start)


def bare_env_throughput(env, num_envs: int, unroll: int = 24, repeats: int = 3) -> float:
    """`vmap(env.step)` alone: no time limit, no automatic reset (episodes that end keep
    stepping), the upper bound of what the training wrapper can reach."""
    env.prepare_batch(num_envs)
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), num_envs))
    step = jax.vmap(env.step)
    return _steps_per_second(step, state, num_envs, env.action_size, unroll, repeats)


def env_throughput(env, num_envs: int, unroll: int = 24, repeats: int = 3) -> float:
    """The training wrapper (time limit, automatic reset) with random actions."""
    wrapped = TrainingWrapper(env, num_envs)
    state = wrapped.reset(jax.random.PRNGKey(0))
    return _steps_per_second(wrapped.step, state, num_envs, env.action_size, unroll, repeats)


def train_throughput(env, ppo_cfg, num_envs: int, repeats: int = 2) -> float:
    cfg = dataclasses.replace(ppo_cfg, num_envs=num_envs)
    wrapped = TrainingWrapper(env, num_envs)
    mesh = ppo.env_mesh(env, num_envs)
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


def brax_train_throughput(env, ppo_cfg, num_envs: int, epochs: int = 3, per_epoch: int = 4):
    """brax 0.14.2's PPO on the same env through brax's own wrappers, the same batch geometry
    (num_envs, unroll, minibatches, epochs) and network sizes: training steps/s of the epochs
    after the first two (which compile), as brax itself reports them (`training/sps`)."""
    from brax.training.agents.ppo import train as brax_ppo
    from brax_settings import brax_ppo_settings

    cfg = dataclasses.replace(ppo_cfg, num_envs=num_envs)
    sps = []
    brax_ppo.train(
        **brax_ppo_settings(env, cfg),
        num_timesteps=epochs * per_epoch * cfg.batch_size,
        num_evals=epochs + 1,
        progress_fn=lambda step, metrics: sps.append(float(metrics["training/sps"])),
        seed=0,
    )
    # brax compiles its training epoch twice: at the first call and again at the second,
    # whose inputs are the first call's outputs (committed to the device, unlike the reset
    # state): both are left out.
    print(f"brax training/sps per epoch (the first two compile): {[round(x) for x in sps]}")
    return float(np.mean(sps[2:]))


def against_brax(task: str, sizes: list[int], impls: list[str], repeats: int = 3) -> None:
    """Our PPO and brax's PPO training the same env at each size, in one run, and the ratio;
    a row per physics implementation (each trainer on the same env), and with several, our
    PPO on each against brax's on the first."""
    entry = registry.entry(task)
    envs = {impl: make_env(entry, impl) for impl in impls}
    cfg = entry.presets["cpu"][0]
    print(f"backend {jax.default_backend()} | jax {jax.__version__} | {task}: ours against brax")
    print(
        f"{'impl':>6} | {'num_envs':>9} | {'ours steps/s':>13} | {'brax steps/s':>13} | "
        f"{'ours / brax':>11}"
    )
    for n in sizes:
        rows = {}
        for impl, env in envs.items():
            ours = train_throughput(env, cfg, n, repeats=repeats * 4)
            brax = brax_train_throughput(env, cfg, n, epochs=repeats + 2)
            rows[impl] = ours, brax
            print(
                f"{impl:>6} | {n:>9} | {ours:>13,.0f} | {brax:>13,.0f} | {ours / brax:>11.2f}",
                flush=True,
            )
        first = impls[0]
        for impl in impls[1:]:
            ratio = rows[impl][0] / rows[first][1]
            print(f"{n:>9} envs: ours on {impl} / brax on {first} = {ratio:.2f}", flush=True)


def make_env(entry, impl: str):
    if impl != "jax" and not hasattr(entry.env_config, "impl"):
        raise SystemExit(f"{entry.name} has no impl setting (not an MJX task)")
    if impl == "jax":
        return entry.env_class(entry.env_config)
    return entry.env_class(dataclasses.replace(entry.env_config, impl=impl))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="quadruped_joystick")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--against", help="a second task measured at the same num_envs")
    parser.add_argument(
        "--impl",
        nargs="+",
        default=["jax"],
        choices=["jax", "warp", "native"],
        help="physics implementations to measure, in turn (native: C MuJoCo on the CPU cores)",
    )
    parser.add_argument(
        "--brax", action="store_true", help="train with our PPO and brax's PPO; print the ratio"
    )
    args = parser.parse_args()
    if args.brax:
        return against_brax(args.task, args.num_envs, args.impl)
    if args.against:
        return compare(args.task, args.against, args.num_envs, args.skip_train)

    entry = registry.entry(args.task)
    envs = {impl: make_env(entry, impl) for impl in args.impl}
    env = envs[args.impl[0]]
    ppo_cfg = entry.presets["gpu" if jax.default_backend() == "gpu" else "cpu"][0]
    one_core = native_reference(env)
    reference = native_reference_all_cores(env)
    print(
        f"task {args.task} | backend {jax.default_backend()} ({jax.devices()[0].device_kind}) "
        f"| jax {jax.__version__} | control dt {env.dt} s, {env.n_substeps} physics substeps"
    )
    print(
        f"reference: native MuJoCo on all {os.cpu_count()} cores (mujoco.rollout): "
        f"{reference:,.0f} control steps/s (1 core, Python loop: {one_core:,.0f})"
    )
    print(
        f"{'impl':>6} | {'num_envs':>9} | {'bare vmap(step)/s':>17} | {'env steps/s':>12} | "
        f"{'x bare':>6} | {'x native':>8} | {'train steps/s':>13} | {'x native':>8}"
    )
    for n in args.num_envs:
        for impl, env in envs.items():
            bare_sps = bare_env_throughput(env, n)
            env_sps = env_throughput(env, n)
            train_sps = float("nan") if args.skip_train else train_throughput(env, ppo_cfg, n)
            print(
                f"{impl:>6} | {n:>9} | {bare_sps:>17,.0f} | {env_sps:>12,.0f} | "
                f"{env_sps / bare_sps:>6.2f} | {env_sps / reference:>8.2f} | "
                f"{train_sps:>13,.0f} | {train_sps / reference:>8.2f}",
                flush=True,
            )


def compare(task: str, against: str, sizes: list[int], skip_train: bool) -> None:
    """env and training steps/s of `task` and `against` at each size, and their ratios."""
    envs = {}
    for name in (task, against):
        entry = registry.entry(name)
        envs[name] = (entry.env_class(entry.env_config), entry.presets["cpu"][0])
    print(f"backend {jax.default_backend()} | jax {jax.__version__} | {task} against {against}")
    print(f"{'num_envs':>9} | {'task':>24} | {'env steps/s':>12} | {'train steps/s':>13}")
    for n in sizes:
        rows = {}
        for name, (env, cfg) in envs.items():
            env_sps = env_throughput(env, n)
            train_sps = float("nan") if skip_train else train_throughput(env, cfg, n)
            rows[name] = (env_sps, train_sps)
            print(f"{n:>9} | {name:>24} | {env_sps:>12,.0f} | {train_sps:>13,.0f}", flush=True)
        (e1, t1), (e2, t2) = rows[task], rows[against]
        print(f"{n:>9} | {'ratio':>24} | {e1 / e2:>12.2f} | {t1 / t2:>13.2f}", flush=True)


if __name__ == "__main__":
    from locomotion import gpu

    gpu.configure_cpu_devices()  # as `locomotion train`: a CPU device per core (before JAX starts)
    jp.zeros(())  # start the backend before timing
    print(
        f"{jax.device_count()} {jax.default_backend()} device(s): PPO (ours and brax's) splits "
        "its batch over them; the env rows step on one"
    )
    main()
