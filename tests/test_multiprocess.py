"""One run over several processes (JAX's distributed runtime on CPU, gloo collectives): equal
bit for bit to one process with the same number of devices, checkpoints that resume in either
layout, one writer, and failures that end every process in one line. Every process a test
starts is killed at its end (and the launcher's children die with it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from locomotion import distributed, gpu
from locomotion.runlog import read_metrics
from locomotion.train.driver import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PENDULUM = [
    "pendulum_swingup",
    "--preset",
    "smoke",
    "--run.num-iterations",
    "4",
    "--run.checkpoint-every",
    "2",
    # A budget these runs do not reach: the processes agree on it after every iteration (a
    # collective); tests/test_ppo.py ends a run by one.
    "--run.max-minutes",
    "600",
    "--no-progress",
]
# Variables a launcher around the test run could have set: the runs here choose their own.
OUTSIDE = (
    distributed.COORDINATOR,
    distributed.NUM_PROCESSES,
    distributed.PROCESS_ID,
    "JAX_NUM_CPU_DEVICES",
    "XLA_FLAGS",
    *distributed._LAUNCHER_VARIABLES,
)


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE}
    # XLA's optimizations off (locomotion.gpu.CPU_FAST_COMPILE): these runs compile graphs
    # that run for seconds; every process a comparison runs gets the same flags.
    env["XLA_FLAGS"] = gpu.CPU_FAST_COMPILE
    return {**env, **extra}


class Processes:
    """Starts `locomotion` processes and kills whatever is left of them at the test's end."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def start(self, args, env=None, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locomotion.cli", *args],
            cwd=kwargs.pop("cwd", ROOT),
            env=env or environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kwargs,
        )
        self.started.append(proc)
        return proc

    def run(self, args, env=None, timeout=600, **kwargs) -> subprocess.CompletedProcess:
        proc = self.start(args, env, **kwargs)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def start_peers(self, args, count=2, per_process=None, **env) -> list[subprocess.Popen]:
        """`count` processes of one run joined by JAX's variables (no launcher)."""
        address = f"127.0.0.1:{distributed._free_port()}"
        return [
            self.start(
                [*args, *(per_process[i] if per_process else [])],
                environment(
                    **{
                        distributed.COORDINATOR: address,
                        distributed.NUM_PROCESSES: str(count),
                        distributed.PROCESS_ID: str(i),
                    },
                    **env,
                ),
            )
            for i in range(count)
        ]

    def kill_all(self):
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def checkpoint_arrays(run_dir: Path, iteration: int) -> dict[str, np.ndarray]:
    with np.load(run_dir / "checkpoints" / f"ckpt_{iteration:07d}.npz") as f:
        return {k: f[k] for k in f.files}


def assert_identical(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    differ = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not differ, f"{len(differ)} arrays differ, e.g. {differ[:5]}"


@pytest.fixture(scope="module")
def pendulum_runs(procs, tmp_path_factory):
    """The same 4-iteration run as 1 process x 2 devices and as 2 processes x 1 device (the
    launcher), and each one's iteration-2 checkpoint resumed in the other layout."""
    base = tmp_path_factory.mktemp("pendulum")
    runs = {"one": base / "one", "two": base / "two"}
    # One process asks for its 2 devices as users do (locomotion/gpu.py: one per core).
    result = procs.run(
        ["train", *PENDULUM, "--run-dir", str(runs["one"])], environment(LOCOMOTION_CPU_DEVICES="2")
    )
    assert "jax_num_cpu_devices=2" in result.stdout, result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    # cwd: an empty folder, so a stray relative write by any process would show there.
    cwd = base / "cwd"
    cwd.mkdir()
    result = procs.run(
        ["train", *PENDULUM, "--run-dir", str(runs["two"]), "--processes", "2"],
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs["two_stdout"] = result.stdout
    runs["cwd"] = cwd
    for source, target, layout in (
        ("two", "two_resumed_in_one", []),
        ("one", "one_resumed_in_two", ["--processes", "2"]),
    ):
        runs[target] = base / target
        shutil.copytree(runs[source], runs[target])
        (runs[target] / "checkpoints" / "ckpt_0000004.npz").unlink()
        env = environment(LOCOMOTION_CPU_DEVICES="2") if not layout else environment()
        result = procs.run(
            ["train", "--resume", str(runs[target]), "--no-progress", *layout], env=env
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return runs


def test_two_processes_train_bit_identical_to_one_process_with_two_devices(pendulum_runs):
    one, two = pendulum_runs["one"], pendulum_runs["two"]
    for iteration in (2, 4):
        assert_identical(checkpoint_arrays(one, iteration), checkpoint_arrays(two, iteration))
    rows_one, rows_two = read_metrics(one), read_metrics(two)
    drop = lambda r: {k: v for k, v in r.items() if not k.startswith("perf/")}  # noqa: E731
    assert [drop(r) for r in rows_one] == [drop(r) for r in rows_two]


def test_only_process_zero_writes(pendulum_runs):
    two = pendulum_runs["two"]
    # One writer: one TensorBoard file, each iteration logged once, the launcher's processes
    # printed the run's lines once, and nothing was written where they were started.
    assert len(list((two / "tensorboard").iterdir())) == 1
    assert [r["perf/iteration"] for r in read_metrics(two)] == [1, 2, 3, 4]
    stdout = pendulum_runs["two_stdout"]
    assert stdout.count("training pendulum_swingup on cpu: 2 processes x 1 device(s)") == 1
    assert stdout.count("exported policy:") == 1
    assert (two / "policy" / "policy.onnx").is_file()
    assert not list(pendulum_runs["cwd"].iterdir())
    assert json.loads((two / "config.json").read_text())["task"] == "pendulum_swingup"


def test_checkpoints_resume_in_the_other_layout_and_continue_identically(pendulum_runs):
    final = checkpoint_arrays(pendulum_runs["one"], 4)
    for name in ("two_resumed_in_one", "one_resumed_in_two"):
        run = pendulum_runs[name]
        assert_identical(final, checkpoint_arrays(run, 4))
        # The killed-run clean-up of --resume: each iteration once, in order.
        assert [r["perf/iteration"] for r in read_metrics(run)] == [1, 2, 3, 4]


def wait_for_rows(run_dir: Path, peers, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "metrics.jsonl").is_file() and read_metrics(run_dir):
            return
        for p in peers:
            assert p.poll() is None, p.communicate()[1][-3000:]
        time.sleep(0.2)
    raise AssertionError("the run logged no iteration")


LONG = ["pendulum_swingup", "--preset", "smoke", "--run.num-iterations", "100000", "--no-progress"]


def test_a_killed_process_makes_the_other_exit_with_one_line(procs, tmp_path):
    run_dir = tmp_path / "run"
    peers = procs.start_peers(["train", *LONG, "--run-dir", str(run_dir)])
    wait_for_rows(run_dir, peers)
    peers[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    _, err = peers[0].communicate(timeout=120)
    assert time.monotonic() - start < 60
    assert peers[0].returncode == 1
    lines = [line for line in err.splitlines() if line.startswith("locomotion: error:")]
    assert len(lines) == 1 and "[process 0/2] another process of this run stopped" in lines[0]


def test_launcher_stops_every_process_when_one_dies_and_on_ctrl_c(procs, tmp_path):
    for how in ("kill a process", "ctrl-c"):
        run_dir = tmp_path / how.replace(" ", "_")
        launcher = procs.start(["train", *LONG, "--run-dir", str(run_dir), "--processes", "2"])
        children = []
        deadline = time.monotonic() + 300
        while len(children) < 2 or not (run_dir / "metrics.jsonl").is_file():
            assert time.monotonic() < deadline and launcher.poll() is None
            children = _children_of(launcher.pid)
            time.sleep(0.2)
        if how == "kill a process":
            os.kill(children[1], signal.SIGKILL)
        else:
            launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=60)
        if how == "kill a process":
            assert launcher.returncode == 1
            assert "process 1 of 2 was killed by signal 9; stopped the others" in err
        else:
            assert launcher.returncode == 128 + signal.SIGINT
            assert "interrupted; stopped every process" in err
        for pid in children:  # none left behind, not even as zombies of the launcher
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), how


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_run_killed_with_sigkill_resumes_without_duplicated_rows(procs, tmp_path):
    """One process, killed while it trains (rows logged past its last checkpoint, maybe a
    torn last line): --resume cuts metrics.jsonl back to the checkpoint and goes on."""
    run_dir = tmp_path / "run"
    args = [*LONG, "--run.checkpoint-every", "3", "--run-dir", str(run_dir)]
    run = procs.start(["train", *args])
    deadline = time.monotonic() + 300
    # Kill between two checkpoints (every 3 iterations), a row or two past the last one.
    rows = 0
    while rows < 5 or rows % 3 == 0:
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.02)
        if (run_dir / "metrics.jsonl").is_file():
            rows = len((run_dir / "metrics.jsonl").read_text().splitlines())
    run.send_signal(signal.SIGKILL)
    run.communicate()
    logged = len((run_dir / "metrics.jsonl").read_text().splitlines())
    last = latest_checkpoint(run_dir)  # a checkpoint the kill cut short is not one
    assert int(last.stem.split("_")[1]) < logged  # it had logged past its checkpoint
    stop = logged + 2
    result = procs.run(
        ["train", "--resume", str(run_dir), "--run.num-iterations", str(stop), "--no-progress"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["perf/iteration"] for r in read_metrics(run_dir)] == list(range(1, stop + 1))


def test_mismatched_configurations_and_batches_are_one_line_errors_on_every_process(procs):
    cases = [
        (
            [["--ppo.learning-rate", "3e-3"], ["--ppo.learning-rate", "1e-3"]],
            "the configuration differs between processes: process(es) 1 resolved another",
        ),
        (
            [["--ppo.num-envs", "33"]] * 2,
            "num_envs=33 does not split evenly over 2 devices (2 processes x 1)",
        ),
    ]
    for per_process, message in cases:
        peers = procs.start_peers(["train", *PENDULUM], per_process=per_process)
        for i, p in enumerate(peers):
            _, err = p.communicate(timeout=120)
            assert p.returncode != 0
            lines = [line for line in err.splitlines() if line.startswith("locomotion: error:")]
            assert len(lines) == 1 and f"[process {i}/2]" in lines[0], err[-2000:]
            assert message in lines[0]


BARRIER = """
import sys, time
from locomotion import distributed
distributed.initialize(distributed.requested())
if distributed.is_primary():
    try:
        distributed.barrier("checkpoint 1", timeout_s=2)
    except distributed.DistributedError as err:
        print("ERROR", err, flush=True)
else:
    time.sleep(8)  # stuck: never reaches the barrier in time
"""


def test_a_process_that_does_not_reach_a_barrier_is_an_error_not_a_wait(procs, tmp_path):
    script = tmp_path / "barrier.py"
    script.write_text(BARRIER)
    address = f"127.0.0.1:{distributed._free_port()}"
    peers = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env=environment(
                **{
                    distributed.COORDINATOR: address,
                    distributed.NUM_PROCESSES: "2",
                    distributed.PROCESS_ID: str(i),
                }
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    procs.started += peers
    start = time.monotonic()
    out, _ = peers[0].communicate(timeout=120)
    error = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert error and "did not all reach 'checkpoint 1' within 2 s" in error[0], out
    assert time.monotonic() - start < 60


def test_unreachable_coordinator_is_a_one_line_error(procs):
    env = environment(
        **{
            distributed.COORDINATOR: f"127.0.0.1:{distributed._free_port()}",
            distributed.NUM_PROCESSES: "2",
            distributed.PROCESS_ID: "1",
        },
        LOCOMOTION_INIT_TIMEOUT="2",
    )
    result = procs.run(["train", *PENDULUM], env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("locomotion: error: cannot reach the coordinator at 127.0.0.1")
    assert len(result.stderr.strip().splitlines()) == 1


def test_launch_variables_are_read_and_checked():
    c, n, i = distributed.COORDINATOR, distributed.NUM_PROCESSES, distributed.PROCESS_ID
    assert distributed.requested({}) is None
    launch = distributed.requested({c: "node0:1234", n: "4", i: "3"})
    assert (launch.coordinator, launch.num_processes, launch.process_id) == ("node0:1234", 4, 3)
    assert distributed.requested({c: "node0:1234", n: "1", i: "0"}) is None  # one process
    srun = {"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_PROCID": "3", "SLURM_LOCALID": "1"}
    assert distributed.requested({"SLURM_NTASKS": "8", **srun}).launcher == "SLURM"
    assert distributed.requested({"SLURM_NTASKS": "1", **srun}) is None  # one task
    assert distributed.requested({"SLURM_NTASKS": "8", "SLURM_JOB_ID": "7"}) is None  # sbatch
    mpi = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}
    assert distributed.requested(mpi).launcher == "Open MPI"
    for bad, match in (
        ({c: "node0:1234"}, "JAX_NUM_PROCESSES, JAX_PROCESS_ID not set"),
        ({c: "node0:1234", n: "two", i: "0"}, "must be integers"),
        ({c: "node0:1234", n: "2", i: "2"}, r"must be in 0\.\.1"),
        ({c: "node0", n: "2", i: "0"}, "is not host:port"),
    ):
        with pytest.raises(distributed.DistributedError, match=match):
            distributed.requested(bad)


def test_launcher_splits_the_visible_gpus_evenly(monkeypatch):
    from locomotion import cli

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert distributed._visible_gpus() == ["0", "1", "2"]
    assert cli.main(["train", "pendulum_swingup", "--processes", "2"]) == 2  # refused
    assert cli._without_processes(["a", "--processes", "2", "--processes=3", "b"]) == ["a", "b"]


DATA_PARALLEL = """
import jax
from locomotion import registry
from locomotion.cat import wrap_for_training
from locomotion.train import ppo
entry = registry.entry("pendulum_swingup")
cfg = entry.presets["smoke"][0]
env = wrap_for_training(entry.env_class(entry.env_config), cfg.num_envs)
mesh = ppo.make_mesh(cfg.num_envs)
state = ppo.init(env, cfg, jax.random.PRNGKey(0), mesh)
step = jax.jit(lambda s: ppo.train_step(env, cfg, 10, s, mesh))
text = step.lower(state).compile().as_text()
for line in text.splitlines():
    for op in ("all-gather", "all-to-all", "collective-permute", "all-reduce"):
        if f" {op}(" in line or f" {op}-start(" in line:
            print(op, line.split("=", 1)[1].split(op)[0].strip())
"""


def test_the_update_is_data_parallel(procs, tmp_path):
    """Over 2 devices, samples stay on the device that collected them: the compiled iteration
    moves no sample between devices (no all-gather), only all-reduces, the gradients' among
    them (as large as the parameters)."""
    script = tmp_path / "collectives.py"
    script.write_text(DATA_PARALLEL)
    result = subprocess.run(
        [sys.executable, str(script)],
        env=environment(JAX_NUM_CPU_DEVICES="2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ops = [line.split(" ", 1) for line in result.stdout.splitlines()]
    assert ops and {op for op, _ in ops} == {"all-reduce"}, result.stdout
    # The actor's first layer (3 inputs x 32 units: pendulum, actor_hidden (32, 32); XLA may
    # store it transposed) is among the reduced arrays: its gradient.
    assert any("f32[3,32]" in s or "f32[32,3]" in s for _, s in ops), result.stdout
