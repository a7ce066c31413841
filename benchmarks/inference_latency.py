"""ONNX inference latency per control step of each shipped policy (not a test).

    python benchmarks/inference_latency.py [--steps 5000] [--json out.json]

One observation at a time (batch 1), onnxruntime on one CPU thread (intra- and inter-op
threads 1, sequential execution), as a robot's control loop runs the policy. Observations are
recorded from native rollouts of the policy itself (examples/deploy_mujoco.py's loop), so the
inputs are realistic; reports p50, p99 and max latency in microseconds and the share of the
control period it takes at p99. Run it on an otherwise idle CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import mujoco
import numpy as np
import onnxruntime as ort

from locomotion.policy import SHIPPED_DIR, shipped_policies

ROOT = Path(__file__).resolve().parents[1]


def deploy_module():
    spec = importlib.util.spec_from_file_location("deploy", ROOT / "examples" / "deploy_mujoco.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def observations(folder: Path, steps: int) -> np.ndarray:
    """Observations of the policy's own native rollout (restarted when it ends)."""
    dep = deploy_module().Deployment(folder)
    data = mujoco.MjData(dep.model)
    dep.reset(data)
    dep.command = np.array([0.5, 0.0, 0.0])
    out = []
    for _ in range(steps):
        obs, _ = dep.step(data)
        out.append(obs)
    return np.asarray(out, np.float32)


def latency(folder: Path, obs: np.ndarray, warmup: int = 200) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        str(folder / "policy.onnx"), options, providers=["CPUExecutionProvider"]
    )
    meta = json.loads((folder / "policy.json").read_text())
    feed, out = meta["onnx"]["input"], [meta["onnx"]["output"]]
    for x in obs[:warmup]:
        session.run(out, {feed: x[None]})
    times = np.empty(len(obs))
    for i, x in enumerate(obs):
        start = time.perf_counter_ns()
        session.run(out, {feed: x[None]})
        times[i] = (time.perf_counter_ns() - start) / 1e3
    p50, p99 = np.percentile(times, [50, 99])
    return {
        "policy": folder.name,
        "observation_size": int(obs.shape[1]),
        "p50_us": float(p50),
        "p99_us": float(p99),
        "max_us": float(times.max()),
        "control_period_us": meta["control_dt"] * 1e6,
        "p99_share_of_period": float(p99 / (meta["control_dt"] * 1e6)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    rows = []
    print(f"onnxruntime {ort.__version__}, 1 thread, batch 1, {a.steps} steps per policy")
    print(
        f"{'policy':24s} {'obs':>5s} {'p50 [us]':>9s} {'p99 [us]':>9s} {'max [us]':>9s} "
        f"{'p99/period':>10s}"
    )
    for name in shipped_policies():
        folder = SHIPPED_DIR / name
        row = latency(folder, observations(folder, a.steps))
        rows.append(row)
        print(
            f"{name:24s} {row['observation_size']:5d} {row['p50_us']:9.1f} {row['p99_us']:9.1f} "
            f"{row['max_us']:9.1f} {row['p99_share_of_period']:10.2%}"
        )
    if a.json:
        a.json.write_text(json.dumps({"onnxruntime": ort.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
