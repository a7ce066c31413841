"""Training throughput of one run over processes against one process with as many devices, and
the cost of the cross-process reductions (not a test).

    python benchmarks/multiprocess.py [--task quadruped_joystick] [--num-envs 256]
                                      [--iterations 8] [--out FILE.json]

Runs the task's PPO iteration (the cpu preset's settings at --num-envs) in two layouts with the
same total of 2 devices, one after the other on an otherwise idle machine:

    1 process x 2 devices     (JAX_NUM_CPU_DEVICES=2: XLA's in-process collectives)
    2 processes x 1 device    (JAX's distributed runtime; gloo collectives over TCP on CPU)

and reports training steps/s (compile excluded) and their ratio. In each layout it also times
what PPO all-reduces per iteration: one gradient (the parameter count x 4 bytes) per
minibatch and epoch, as a chain of that many `psum`s of a parameter-sized vector over the mesh.
Last, the estimate on paper for N GPU nodes that the README quotes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
H200_TRAIN_STEPS_PER_S = 607_000  # quadruped_joystick, gpu preset settings (gpu_h200.json)


def worker(args) -> dict:
    """One process of a layout: train `args.iterations` timed iterations after a warm one."""
    from locomotion import distributed

    launch = distributed.requested()
    if launch is not None:
        distributed.initialize(launch)
    import jax
    import jax.numpy as jp
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from locomotion import registry
    from locomotion.cat import wrap_for_training
    from locomotion.train import ppo

    entry = registry.entry(args.task)
    pcfg = dataclasses.replace(entry.presets["cpu"][0], num_envs=args.num_envs)
    env = entry.env_class(entry.env_config)
    wrapped = wrap_for_training(env, pcfg.num_envs)
    mesh = ppo.make_mesh(pcfg.num_envs)
    state = ppo.init(wrapped, pcfg, jax.random.PRNGKey(0), mesh)
    step = ppo.make_train_step(wrapped, pcfg, 1000, mesh)
    start = time.perf_counter()
    state, metrics = step(state)
    float(metrics["losses/total"])
    compile_s = time.perf_counter() - start
    state, metrics = step(state)  # warm
    float(metrics["losses/total"])
    start = time.perf_counter()
    for _ in range(args.iterations):
        state, metrics = step(state)
    float(metrics["losses/total"])
    train_s = time.perf_counter() - start

    # The gradient all-reduces of one iteration, alone: minibatches x epochs psums, chained.
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    count = pcfg.num_minibatches * pcfg.num_epochs

    def chain(x):
        def one(c, _):
            # the sum is the same on every device; pcast marks it per-device again (the carry)
            return jax.lax.pcast(jax.lax.psum(c, "batch") * 0.5, "batch", to="varying"), None

        return jax.lax.scan(one, x, None, length=count)[0]

    reduce = jax.jit(
        jax.shard_map(chain, mesh=mesh, in_specs=P("batch"), out_specs=P("batch")),
    )
    x = distributed.put(np.ones((mesh.size, n_params), np.float32), NamedSharding(mesh, P("batch")))
    jax.block_until_ready(reduce(x))
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        x = reduce(x)
    jax.block_until_ready(x)
    reduce_s = (time.perf_counter() - start) / repeats
    distributed.barrier("done")
    return {
        "processes": jax.process_count(),
        "devices_per_process": jax.local_device_count(),
        "num_envs": pcfg.num_envs,
        "batch_per_iteration": pcfg.batch_size,
        "compile_s": compile_s,
        "train_steps_per_s": args.iterations * pcfg.batch_size / train_s,
        "iteration_ms": 1e3 * train_s / args.iterations,
        "params": n_params,
        "allreduces_per_iteration": count,
        "allreduce_bytes_per_iteration": 4 * n_params * count,
        "allreduce_ms_per_iteration": 1e3 * reduce_s,
        "finite": bool(jp.isfinite(metrics["losses/total"])),
    }


def run_layout(processes: int, devices: int, args) -> dict:
    """Start the layout's processes, return process 0's measurements."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))
    }
    base["JAX_NUM_CPU_DEVICES"] = str(devices)
    cmd = [sys.executable, __file__, "--worker", *sys.argv[1:]]
    procs = []
    for i in range(processes):
        env = dict(base)
        if processes > 1:
            env.update(
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES=str(processes),
                JAX_PROCESS_ID=str(i),
            )
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=1800)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise SystemExit(f"layout {processes} x {devices} failed")
    line = [x for x in outs[0].splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def on_paper(params: int, count: int, steps_per_s: float, unroll: int, envs: int) -> dict:
    """All-reduce time per iteration for N nodes of one GPU each (ring all-reduce: each node
    sends and receives 2 (N-1)/N of the bytes, 2 (N-1) latency hops per reduction), against
    one node's iteration compute time at `envs` environments (`steps_per_s` measured), and the
    environments per GPU from which the reductions take at most 10 % of an iteration. They
    cannot overlap the rollout: the minibatch updates run one after the other."""
    iteration_s = envs * unroll / steps_per_s
    rows = []
    for nodes in (2, 8, 32):
        for link, bandwidth, latency in (
            ("InfiniBand HDR 200 Gb/s", 25e9, 5e-6),
            ("Ethernet 25 Gb/s", 3.1e9, 30e-6),
        ):
            one = 2 * (nodes - 1) / nodes * 4 * params / bandwidth + 2 * (nodes - 1) * latency
            reduce_s = one * count
            rows.append(
                {
                    "nodes": nodes,
                    "link": link,
                    "allreduce_ms_per_iteration": 1e3 * reduce_s,
                    "share_of_iteration": reduce_s / (reduce_s + iteration_s),
                    "envs_per_gpu_for_10_percent": int(9 * reduce_s * steps_per_s / unroll),
                }
            )
    return {
        "params": params,
        "allreduces_per_iteration": count,
        "bytes_per_allreduce": 4 * params,
        "envs_per_gpu": envs,
        "iteration_ms_on_one_gpu": 1e3 * iteration_s,
        "nodes": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="quadruped_joystick")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/multiprocess_cpu.json"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args)
        from locomotion import distributed

        if distributed.is_primary():
            print("RESULT " + json.dumps(result), flush=True)
        return

    one = run_layout(1, 2, args)
    two = run_layout(2, 1, args)
    import jax

    # On paper, for the task's gpu preset over N GPU nodes: its parameter and reduction counts,
    # and the steps/s one H200 measured for quadruped_joystick (benchmarks/results/gpu_h200.json).
    from locomotion import registry

    gpu = registry.entry(args.task).presets["gpu"][0]
    report = {
        "script": "benchmarks/multiprocess.py",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": args.task,
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "one_process_two_devices": one,
        "two_processes_one_device": two,
        "train_ratio_two_processes_over_one": two["train_steps_per_s"] / one["train_steps_per_s"],
        "gpu_preset_on_paper": on_paper(
            one["params"],
            gpu.num_minibatches * gpu.num_epochs,
            H200_TRAIN_STEPS_PER_S,
            gpu.unroll_length,
            gpu.num_envs,
        )
        if args.task == "quadruped_joystick"
        else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.task}, {args.num_envs} envs in all, jax {jax.__version__}")
    print("layout                  train steps/s  iteration ms  all-reduce ms/iteration")
    for name, r in (("1 process x 2 devices", one), ("2 processes x 1 device", two)):
        print(
            f"{name:<24}{r['train_steps_per_s']:>13,.0f}{r['iteration_ms']:>14.1f}"
            f"{r['allreduce_ms_per_iteration']:>25.2f}"
        )
    print(f"ratio 2 processes / 1 process: {report['train_ratio_two_processes_over_one']:.2f}")
    paper = report["gpu_preset_on_paper"]
    if paper:
        print(
            f"on paper, gpu preset ({paper['params']:,} parameters, "
            f"{paper['allreduces_per_iteration']} all-reduces of {paper['bytes_per_allreduce']:,} "
            f"bytes per iteration, {paper['iteration_ms_on_one_gpu']:.0f} ms per iteration on "
            "one H200):"
        )
        for r in paper["nodes"]:
            print(
                f"  {r['nodes']:>2} nodes, {r['link']:<24} {r['allreduce_ms_per_iteration']:7.2f} "
                f"ms ({100 * r['share_of_iteration']:.1f} % of an iteration); <= 10 % from "
                f"{r['envs_per_gpu_for_10_percent']:,} envs per GPU"
            )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
