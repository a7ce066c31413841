"""One training run over many processes: JAX's distributed runtime, and what it asks of us.

A run spans processes (on one machine or many) when it is started with JAX's variables set on
every process, or under a launcher that `jax.distributed.initialize()` detects:

    JAX_COORDINATOR_ADDRESS=host:port   process 0's machine and a free port (JAX's own variable)
    JAX_NUM_PROCESSES=N                 the number of processes
    JAX_PROCESS_ID=i                    this process, 0 <= i < N
    (optional) JAX_LOCAL_DEVICE_IDS     the accelerators this process drives (JAX's own)

or with SLURM (`srun`, more than one task) or Open MPI (`mpirun`, more than one rank), which JAX
reads itself. `locomotion train TASK --processes N` starts N such processes on this machine
(`launch_local`). Then:

- the mesh spans every device of every process (`jax.devices()`); `num_envs` is the global
  batch, each process steps only the environments on its own devices; parameters, optimizer
  state and normalizers are replicated; every key comes from the one run seed, so a run equals
  the single-process run with the same number of devices, bit for bit;
- process 0 alone writes the run directory (`is_primary`); arrays that live on several
  processes are gathered by all of them (`to_host`) and the write is followed by a barrier;
- a process that dies makes the others fail at their next collective; they exit with one line
  (`exit_after_peer_failure`) instead of waiting at JAX's shutdown barrier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

COORDINATOR, NUM_PROCESSES, PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
)
LAUNCHERS = {  # launcher: (its process count, variables only its started processes have)
    # SLURM: a task of `srun` (not the batch script itself, which has SLURM_NTASKS too);
    # JAX reads the same variables (jax._src.clusters.SlurmCluster).
    "SLURM": ("SLURM_NTASKS", ("SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID")),
    "Open MPI": ("OMPI_COMM_WORLD_SIZE", ("OMPI_COMM_WORLD_RANK",)),
}
INIT_TIMEOUT_S = int(os.environ.get("LOCOMOTION_INIT_TIMEOUT", "300"))
"""How long a process waits for the coordinator and the others to start (seconds)."""
BARRIER_TIMEOUT_S = float(os.environ.get("LOCOMOTION_BARRIER_TIMEOUT", "900"))
"""How long a process waits at a barrier (after a checkpoint, at the end) for the others."""


class DistributedError(RuntimeError):
    """A multi-process run that cannot start or go on: reported in one line on every process."""


@dataclasses.dataclass(frozen=True)
class Launch:
    """How this process joins a run: explicit variables, or a launcher JAX detects itself."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    launcher: str | None = None  # "SLURM" / "Open MPI": JAX reads its variables

    def describe(self) -> str:
        if self.launcher is not None:
            return f"{self.launcher} (detected by jax.distributed)"
        return f"process {self.process_id} of {self.num_processes}, coordinator {self.coordinator}"


def requested(environ: Mapping[str, str] = os.environ) -> Launch | None:
    """The multi-process run this process was started for, or None for a single process.

    The explicit variables win over a launcher's; a partial or malformed set is an error (a
    process that silently trained alone would waste its machine and write a second run)."""
    explicit = {k: environ.get(k) for k in (COORDINATOR, NUM_PROCESSES, PROCESS_ID)}
    if any(v is not None for v in explicit.values()):
        missing = [k for k, v in explicit.items() if v is None]
        if missing:
            raise DistributedError(
                f"a multi-process run needs {COORDINATOR}, {NUM_PROCESSES} and {PROCESS_ID} "
                f"together; {', '.join(missing)} not set"
            )
        try:
            count, index = int(explicit[NUM_PROCESSES]), int(explicit[PROCESS_ID])
        except ValueError:
            raise DistributedError(
                f"{NUM_PROCESSES}={explicit[NUM_PROCESSES]!r} and {PROCESS_ID}="
                f"{explicit[PROCESS_ID]!r} must be integers"
            ) from None
        if count < 1 or not 0 <= index < count:
            raise DistributedError(
                f"{PROCESS_ID}={index} must be in 0..{count - 1} ({NUM_PROCESSES}={count})"
            )
        address = explicit[COORDINATOR]
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise DistributedError(f"{COORDINATOR}={address!r} is not host:port")
        return Launch(address, count, index) if count > 1 else None
    for launcher, (count, present) in LAUNCHERS.items():
        value = environ.get(count, "")
        if value.isdigit() and int(value) > 1 and all(v in environ for v in present):
            return Launch(launcher=launcher)
    return None


def initialize(launch: Launch, timeout_s: int = INIT_TIMEOUT_S) -> None:
    """Join the run described by `launch` (before anything else starts JAX's backend).

    A coordinator that cannot be reached is a one-line error after `timeout_s` (JAX itself would
    abort the process with a C++ stack trace); so is a second call."""
    import jax

    if jax.distributed.is_initialized():
        return
    if launch.launcher is not None:
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return
    if launch.process_id != 0:
        _wait_until_reachable(launch.coordinator, timeout_s)
    else:  # JAX aborts with a C++ trace if they do not come; say first what it waits for
        print(
            f"{launch.describe()}: waiting up to {timeout_s} s for the other "
            f"{launch.num_processes - 1} process(es) to join",
            file=sys.stderr,
            flush=True,
        )
    jax.distributed.initialize(
        coordinator_address=launch.coordinator,
        num_processes=launch.num_processes,
        process_id=launch.process_id,
        initialization_timeout=timeout_s,
    )


def _wait_until_reachable(address: str, timeout_s: float) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"cannot reach the coordinator at {address} within {timeout_s:g} s ({err}); "
                    "is process 0 running, and is the address one this machine can reach?"
                ) from None
            time.sleep(0.5)


def process_count() -> int:
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """True on the process that writes the run directory (process 0)."""
    import jax

    return jax.process_index() == 0


def tag() -> str:
    """'[process i/N] ' in a multi-process run, else ''."""
    import jax

    if jax.process_count() == 1:
        return ""
    return f"[process {jax.process_index()}/{jax.process_count()}] "


def to_host(tree: Any) -> Any:
    """`tree` as numpy arrays on this process. Arrays split over several processes (the
    environment batch) are gathered, which is a collective: every process must call this at the
    same point of the run."""
    import jax
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def put(tree: Any, sharding) -> Any:
    """Host values (identical on every process) placed with `sharding`, which may span
    processes: each process transfers only the pieces its own devices hold."""
    import jax

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)


def barrier(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """All processes meet here (a no-op for one process), at the coordinator, for at most
    `timeout_s`: a process that does not come (stuck, or gone) is a one-line error on the
    others, not a wait without end. Each name is used once per run."""
    import jax
    from jax._src import distributed as jax_distributed

    if jax.process_count() == 1:
        return
    try:
        jax_distributed.global_state.client.wait_at_barrier(name, int(timeout_s * 1000))
    except Exception as err:  # jaxlib's XlaRuntimeError: DEADLINE_EXCEEDED, or a peer's error
        raise DistributedError(
            f"the processes did not all reach '{name}' within {timeout_s:g} s ("
            f"{str(err).strip().splitlines()[0][:200]})"
        ) from None


def broadcast_text(text: str) -> str:
    """Process 0's `text` on every process (for example the run directory it chose)."""
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return text
    data = text.encode()
    if len(data) > 4096:
        raise DistributedError(f"cannot share a text of {len(data)} bytes between processes")
    buf = np.zeros(4096 + 4, np.uint8)
    buf[:4] = np.frombuffer(np.uint32(len(data)).tobytes(), np.uint8)
    buf[4 : 4 + len(data)] = np.frombuffer(data, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    size = int(np.frombuffer(out[:4].tobytes(), np.uint32)[0])
    return out[4 : 4 + size].tobytes().decode()


def agree(flag: bool) -> bool:
    """Process 0's `flag` on every process (a decision they must all take at the same point,
    such as stopping on a clock); a collective in a multi-process run."""
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.int32))))


def check_same(what: str, text: str) -> None:
    """Every process must hold the same `text` (a resolved configuration): compares a hash of
    it across processes and raises the same one-line error on all of them when they differ."""
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:16], np.uint32)
    every = np.asarray(multihost_utils.process_allgather(digest)).reshape(jax.process_count(), -1)
    differ = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
    if differ:
        raise DistributedError(
            f"the {what} differs between processes: process(es) {', '.join(map(str, differ))} "
            f"resolved another {what} than process 0 (hash {every[0].tobytes().hex()[:12]}); "
            "start every process with the same arguments and files"
        )


def exit_after_peer_failure(err: BaseException) -> None:
    """Leave a multi-process run at once after `err`, in one line (LOCOMOTION_TRACEBACK=1 adds
    the traceback): JAX's own exit would wait at its shutdown barrier for processes that may be
    gone, then abort with a C++ trace."""
    text = str(err).strip()
    first = text.splitlines()[0][:400] if text else type(err).__name__
    code = 1
    if isinstance(err, KeyboardInterrupt):
        why, code = "interrupted", 130
    elif any(s in text for s in ("Connection closed", "Connection reset", "Gloo", "heartbeat")):
        why = f"another process of this run stopped or became unreachable ({first})"
    elif isinstance(err, (DistributedError, ValueError, FloatingPointError, OSError)):
        why = first  # our own one-line errors (configs, checkpoints, divergence, files)
    else:
        why = f"{type(err).__name__}: {first}"
    if os.environ.get("LOCOMOTION_TRACEBACK"):
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    print(f"locomotion: error: {tag()}{why}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


# ------------------------------------------------------------------------- local launcher
def launch_local(num_processes: int, cli_args: list[str], poll_s: float = 0.2) -> int:
    """Run `locomotion CLI_ARGS` as `num_processes` processes of one run on this machine and
    supervise them: the exit code is 0 when all succeed; when one fails (or is killed) the
    others are stopped at once and its code is returned; Ctrl-C (or SIGTERM) is passed on to
    every process, which are killed if they have not left within 10 s. The processes die with
    this one (Linux: PR_SET_PDEATHSIG), so none is left behind.

    Each process gets JAX's variables (coordinator on a free local port); on a machine with
    GPUs each gets an equal share of them (CUDA_VISIBLE_DEVICES)."""
    import signal
    import subprocess

    gpus = _visible_gpus()
    if gpus and len(gpus) % num_processes:
        raise DistributedError(
            f"--processes {num_processes} does not split the {len(gpus)} visible GPUs evenly"
        )
    address = f"127.0.0.1:{_free_port()}"
    children: list[subprocess.Popen] = []
    stopping = {"signal": None}

    def on_signal(signum, frame):
        stopping["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(num_processes):
            env = {
                **{k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARIABLES},
                COORDINATOR: address,
                NUM_PROCESSES: str(num_processes),
                PROCESS_ID: str(i),
            }
            if gpus:
                share = len(gpus) // num_processes
                env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[i * share : (i + 1) * share])
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "locomotion.cli", *cli_args],
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches them through this process only
                    preexec_fn=_die_with_parent,
                )
            )
        while True:
            if stopping["signal"] is not None:
                return _interrupt(children, stopping["signal"])
            codes = [c.poll() for c in children]
            failed = [(i, code) for i, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                index, code = failed[0]
                _kill(children)
                how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
                print(
                    f"locomotion: error: process {index} of {num_processes} {how}; stopped "
                    "the others",
                    file=sys.stderr,
                    flush=True,
                )
                return code if code > 0 else 1
            if all(code == 0 for code in codes):
                return 0
            time.sleep(poll_s)
    finally:
        _kill(children)
        for s, handler in previous.items():
            signal.signal(s, handler)


_LAUNCHER_VARIABLES = {v for count, present in LAUNCHERS.values() for v in (count, *present)}


def _interrupt(children, signum: int, grace_s: float = 10.0) -> int:
    import signal

    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGINT)  # JAX keeps SIGTERM for itself (preemption notice)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(c.poll() is None for c in children):
        time.sleep(0.1)
    _kill(children)
    print("locomotion: interrupted; stopped every process", file=sys.stderr, flush=True)
    return 128 + signum


def _kill(children) -> None:
    for c in children:
        if c.poll() is None:
            c.kill()
    for c in children:
        c.wait()


def _die_with_parent() -> None:  # in the child, before exec
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the launcher's own clean-up still stops them
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _visible_gpus() -> list[str]:
    """The NVIDIA GPUs this machine shows (CUDA_VISIBLE_DEVICES when set), without starting
    JAX (which would take the GPUs' memory in the launcher)."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]
