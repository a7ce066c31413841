"""GPU settings, and the CPU's device count, in one place, applied before JAX starts its backend.

    from locomotion import gpu
    gpu.configure()          # first thing: before any array, jax.devices() or default_backend()
    gpu.configure_cpu_devices()   # a CPU-only machine: one XLA device per core

XLA reads `XLA_FLAGS` and the `XLA_PYTHON_CLIENT_*` variables once, when the backend starts
(the first computation, `jax.devices()` or `jax.default_backend()`); a flag set later does
nothing in that process. So `configure` finds the backend JAX *will* start without starting it
(`detect_backend`), and `locomotion train`, `locomotion info` and `benchmarks/gpu_check.py`
call it before anything else touches JAX. On a CPU it does nothing. On a GPU it sets, each
only where the user has not set it already (an environment variable or jax config wins):

- `jax_default_matmul_precision = "highest"`: float32 matrix products in full float32. JAX's
  default on Ampere and newer GPUs lets XLA use TF32 (10 mantissa bits) for them, in the
  policy and value networks and in MJX's physics alike; PPO's ratios and MJX's solver are where
  that rounding hurts.
- `--xla_gpu_triton_gemm_any=True` added to `XLA_FLAGS` (MuJoCo Playground's setting: Triton
  kernels for every matrix product they support), once a CPU-only probe process has shown this
  XLA accepts the flag: an unknown flag in `XLA_FLAGS` aborts the process at backend start.
- `MUJOCO_GL=egl` when unset and libEGL is found (`import locomotion` already picks EGL first).

On a CPU, `configure_cpu_devices` gives XLA one device per core this process may run on
(`jax_num_cpu_devices`). XLA runs each CPU device's program on one thread (`import locomotion`
turns Eigen's thread pool off, see locomotion/__init__.py), so with the one device JAX starts by
default a training run leaves all but one core nearly idle; with a device per core, PPO splits
its environment batch over them exactly as over GPUs (data-parallel, train/ppo.py). Measured on
the 2-core CPU (quadruped_joystick, 512 envs, benchmarks/NOTES.md): 2,577 -> 3,342 training
steps/s. `LOCOMOTION_CPU_DEVICES=N` asks for N (1: a single device, runs bit for bit as before);
`--xla_force_host_platform_device_count` in XLA_FLAGS or `JAX_NUM_CPU_DEVICES` win over both.

GPU memory is left to JAX: it preallocates 75 % of the GPU's memory when the backend starts,
the fastest choice for one training process per GPU. When processes share a GPU, set
`XLA_PYTHON_CLIENT_PREALLOCATE=false` (allocate on demand) or `XLA_PYTHON_CLIENT_MEM_FRACTION`
(e.g. 0.45 for two) before starting them; `configure` never overrides them.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import os
import subprocess
import sys
import warnings

import jax

TRITON_FLAG = "--xla_gpu_triton_gemm_any=True"
MEMORY_VARIABLES = (
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
)

# XLA:CPU settings for runs that compile large graphs and run them for seconds (smoke runs,
# `benchmarks/gpu_check.py --dry-run`): LLVM at -O0 without its expensive passes and the
# older loop-fusion emitters compile MJX graphs in about a third of XLA's default time, and
# run them several times slower. Code generation only: what is computed is the same.
CPU_FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_use_fusion_emitters=false"
)

APPLIED: dict[str, str] = {}
"""Everything `configure` has set in this process (what `locomotion info` reports)."""


def configure(backend: str | None = None) -> dict[str, str]:
    """Apply the GPU settings when `backend` (default: `detect_backend()`) is "gpu"; returns
    {setting: value} of what it set, {} on any other backend or when the user set them all."""
    backend = backend or detect_backend()
    if backend != "gpu":
        return {}
    applied: dict[str, str] = {}
    if jax.config.jax_default_matmul_precision is None:  # JAX_DEFAULT_MATMUL_PRECISION unset
        jax.config.update("jax_default_matmul_precision", "highest")
        applied["jax_default_matmul_precision"] = "highest"
    flags = os.environ.get("XLA_FLAGS", "")
    if TRITON_FLAG.split("=")[0] not in flags:
        if _backend_started():
            warnings.warn(
                f"locomotion.gpu.configure() ran after JAX started its backend: {TRITON_FLAG} "
                "is not applied (call configure() before the first computation)",
                stacklevel=2,
            )
        elif xla_accepts(TRITON_FLAG):
            os.environ["XLA_FLAGS"] = f"{flags} {TRITON_FLAG}".strip()
            applied["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    if "MUJOCO_GL" not in os.environ and _egl_found():
        os.environ["MUJOCO_GL"] = "egl"
        applied["MUJOCO_GL"] = "egl"
    APPLIED.update(applied)
    return applied


CPU_DEVICES_VARIABLE = "LOCOMOTION_CPU_DEVICES"


def cpu_device_count() -> int:
    """The CPU devices to ask for: `LOCOMOTION_CPU_DEVICES` ("auto" or unset: one per core this
    process may run on). A value that is not a positive integer is a ValueError that names it."""
    value = os.environ.get(CPU_DEVICES_VARIABLE, "auto").strip().lower()
    if value in ("", "auto"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # macOS, Windows: no affinity mask
            return max(1, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{CPU_DEVICES_VARIABLE}={value!r}: a positive integer or 'auto'")
    return int(value)


def configure_cpu_devices(backend: str | None = None) -> dict[str, str]:
    """On a CPU backend (default: `detect_backend()`), ask JAX for `cpu_device_count()` devices
    before it starts; returns {"jax_num_cpu_devices": "N"} when it set it, else {} (another
    backend, one device asked for, the user's own XLA_FLAGS or JAX_NUM_CPU_DEVICES setting, or
    JAX already started: the count is fixed at the start)."""
    count = cpu_device_count()  # a bad LOCOMOTION_CPU_DEVICES is an error on every backend
    backend = backend or detect_backend()
    user_set = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "") or (
        "JAX_NUM_CPU_DEVICES" in os.environ
    )
    if backend != "cpu" or count == 1 or user_set or _backend_started():
        return {}
    jax.config.update("jax_num_cpu_devices", count)
    applied = {"jax_num_cpu_devices": str(count)}
    APPLIED.update(applied)
    return applied


def detect_backend() -> str:
    """ "gpu", "tpu" or "cpu": the backend JAX has started, or, before it has, the one it will
    start, read from JAX_PLATFORMS, the installed GPU plugins and the driver's device files."""
    if _backend_started():
        return jax.default_backend()
    platforms = _platforms()
    if platforms:
        first = platforms.split(",")[0].strip().lower()
        return "gpu" if first in ("cuda", "rocm", "gpu") else first
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return "cpu"  # every GPU hidden: JAX falls back to the CPU
    plugins = gpu_plugins()
    for vendor in ("cuda", "rocm"):
        if any(vendor in name for name in plugins) and _driver_present(vendor):
            return "gpu"
    return "cpu"


def gpu_plugins() -> dict[str, str]:
    """Installed JAX GPU plugin distributions {name: version} (jax-cuda12-plugin, ...)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(("jax-cuda", "jax-rocm")):
            found[name] = dist.version
    return dict(sorted(found.items()))


def xla_accepts(flag: str) -> bool:
    """Whether this jaxlib's XLA starts with `flag` added to the current XLA_FLAGS, tried in a
    CPU-only child process (about a second): XLA aborts on a flag it does not know."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    probe = "import jax; jax.numpy.zeros(1).block_until_ready()"
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _driver_present(vendor: str) -> bool:
    """Whether the kernel driver of `vendor`'s GPUs ("cuda": NVIDIA, "rocm": AMD) is loaded."""
    files = {"cuda": ("/dev/nvidiactl", "/proc/driver/nvidia/version"), "rocm": ("/dev/kfd",)}
    return any(os.path.exists(f) for f in files[vendor])


def _egl_found() -> bool:
    return ctypes.util.find_library("EGL") is not None


def _platforms() -> str:
    """The `jax_platforms` setting (JAX_PLATFORMS, e.g. "cuda,cpu"), "" when unset."""
    return jax.config.jax_platforms or ""


def _backend_started() -> bool:
    """Whether JAX has started its backends (XLA_FLAGS is read then, never after)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a private API: assume not started if it moved
        return False
