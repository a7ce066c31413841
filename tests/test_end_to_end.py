"""The main job end to end, as users run it: `locomotion train quadruped_joystick --preset smoke`
(1 process x 2 devices, with its final evaluation, export and video), then the GPU check's dry
run of the same preset (`benchmarks/gpu_check.py --dry-run`) in the same settings. The dry run
trains and evaluates with the very graphs the training compiled, so it loads them from the
run's compilation cache (tests/conftest.py) instead of compiling them again, and it must
reach the same policy and the same evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_multiprocess import ROOT, environment

from locomotion import gpu
from locomotion.runlog import read_metrics

# Both processes: 2 CPU devices, and the dry run's own code generation (XLA's optimizations
# off: a quarter of the suite's compile time for graphs that run for seconds).
SETTINGS = {"JAX_NUM_CPU_DEVICES": "2", "XLA_FLAGS": gpu.CPU_FAST_COMPILE}


@pytest.fixture(scope="module")
def quadruped_run(procs, tmp_path_factory):
    """`locomotion train quadruped_joystick --preset smoke` in 1 process x 2 devices, with its
    final evaluation, export and video. (That 2 processes x 1 device train bit for bit as
    1 x 2 is tested on the pendulum in tests/test_multiprocess.py: the mechanism is the task's
    pytree, whatever it holds; a second quadruped run to compare cost about 3 minutes of the
    suite.)"""
    run_dir = tmp_path_factory.mktemp("quadruped") / "one"
    args = ["train", "quadruped_joystick", "--preset", "smoke", "--no-progress"]
    result = procs.run([*args, "--run-dir", str(run_dir)], environment(**SETTINGS))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_train_quadruped_smoke_end_to_end(quadruped_run):
    """config, metrics, TensorBoard, checkpoints and the final evaluation all land in the run
    directory, with an exported policy, learning curves and a short video."""
    run_dir = quadruped_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "quadruped_joystick" and config["ppo"]["num_envs"] == 32
    rows = read_metrics(run_dir)
    assert [r["perf/iteration"] for r in rows if "perf/iteration" in r] == [1, 2, 3]
    assert all(
        "reward/tracking_lin_vel" in r and "losses/total" in r
        for r in rows
        if "perf/iteration" in r
    )
    events = (run_dir / "tensorboard").iterdir()
    assert any(p.name.startswith("events.out.tfevents") for p in events)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "ckpt_0000002.npz",
        "ckpt_0000003.npz",
    ]
    for name in ("policy/policy.onnx", "policy/policy.json", "learning_curve.png", "video.mp4"):
        assert (run_dir / name).is_file(), name
    # The final evaluation: nominal robot, command vx = 0.5 m/s, 8 envs x 1 s. Three
    # iterations teach no gait: the robots stand without falling, so the tracking error is
    # about the whole commanded speed.
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["eval/fall_rate"] == 0.0, evaluation
    assert evaluation["eval/episode_length_mean"] == 50.0  # 1 s at 50 Hz, none ended early
    assert 0.35 < evaluation["eval/tracking/lin_vel_error"] < 0.65, evaluation


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_json(quadruped_run, tmp_path):
    out = tmp_path / "gpu_check.json"
    args = ["--dry-run", "--sections", "physics,throughput,train", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", *args],
        cwd=ROOT,
        env=environment(**SETTINGS),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["gpu_settings"] == {}
    assert report["info"]["backend"] == "cpu" and report["total_minutes"] > 0

    assert report["sections"] == ["physics", "throughput", "train"]
    # Every row measured or skipped with its reason: a row's error is caught and written into
    # it (so that one failing measurement does not cost a GPU session the others), which is
    # how the warp row's failure on two devices went unnoticed.
    for row in report["physics"] + report["throughput"]:
        assert row.get("skipped") or row["error"] is None, row
    (physics,) = [r for r in report["physics"] if r["impl"] == "jax"]
    assert physics["num_envs"] == 32 and physics["error"] is None and physics["finite"]
    assert physics["physics_ctrl_steps_per_s"] > 0
    assert 0.15 < physics["base_height"] < 0.35  # standing, not fallen through the floor
    jax_rows = [r for r in report["throughput"] if r["impl"] == "jax"]
    assert [r["num_envs"] for r in jax_rows] == [32]
    assert jax_rows[0]["error"] is None
    assert jax_rows[0]["env_steps_per_s"] > 0 and jax_rows[0]["train_steps_per_s"] > 0
    (warp,) = [r for r in report["throughput"] if r["impl"] == "warp"]
    if not warp.get("skipped"):  # measured (on one of the 2 devices, as `locomotion train`)
        assert warp["error"] is None and warp["train_steps_per_s"] > 0, warp

    t = report["train_to_bar"]
    assert t["task"] == "quadruped_joystick" and t["bar"]["command"] == [0.5, 0.0, 0.0]
    assert t["bar"]["lin_vel_error_below"] == 0.1
    assert t["bar"]["eval_envs"] == 8 and t["bar"]["eval_seconds"] == 1.0  # the preset's
    assert t["reached"] is False and t["minutes_to_bar"] is None  # 3 tiny iterations
    assert t["stopped_by"] == "preset's iterations" and t["iterations"] == 3
    # Iterations 1 and 2 were the throughput rows' timed ones; the check comes after the third.
    assert [c["iteration"] for c in t["checks"]] == [3]
    for key in ("lin_vel_error", "fall_rate", "train_minutes", "minutes", "env_steps"):
        assert isinstance(t["checks"][-1][key], (int, float)), key
    # The last check is the task's evaluation of the final policy (locomotion.evaluation),
    # and the dry run trained what `locomotion train --preset smoke` trains (same seed, same
    # devices): the same final evaluation as the run's eval.json, to the bit.
    final = t["final_eval"]
    assert final["eval/tracking/lin_vel_error"] == t["checks"][-1]["lin_vel_error"]
    evaluation = json.loads((quadruped_run / "eval.json").read_text())
    assert final == {k: evaluation[k] for k in final}, (final, evaluation)
    # The trained policy is exported as `locomotion export` writes it, and loads.
    policy_dir = Path(t["policy_dir"])
    assert policy_dir == tmp_path / "gpu_check_policy"
    assert {"policy.onnx", "policy.json", "scene.xml"} <= {p.name for p in policy_dir.iterdir()}
    from locomotion.policy import load

    assert load(policy_dir).task == "quadruped_joystick"
