"""locomotion: train legged robots and robot hands with RL on MJX (MuJoCo XLA)."""

import os as _os
import sys as _sys

# XLA's multi-threaded Eigen pool on CPU wedges now and then on large vmapped graphs (a run blocks
# forever in block_until_ready; seen here with jax 0.10.2 and MJX at 512 envs). Single-threaded
# Eigen avoids it; XLA still runs independent ops in parallel. Must be set before jax starts.
if "--xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

# Headless rendering: choose the OpenGL platform before mujoco is first imported (EGL, then
# OSMesa). An explicit MUJOCO_GL wins; macOS keeps its native default.
if "MUJOCO_GL" not in _os.environ and _sys.platform.startswith("linux"):
    import ctypes.util as _cu

    if _cu.find_library("EGL"):
        _os.environ["MUJOCO_GL"] = "egl"
    elif _cu.find_library("OSMesa"):
        _os.environ["MUJOCO_GL"] = "osmesa"
        _os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

__version__ = "0.1.0"


def _check_flax_for_jax() -> None:
    """flax 0.12.6 and older call `jax.core.get_opaque_trace_state`, which jax 0.11 removed;
    flax 0.12.7 and newer need jax >= 0.10. pip picks the right pair when it installs both, but
    an image that ships jax 0.11 beside an older flax fails deep inside the first network
    init: say so at import instead (measured on a GPU machine with jax 0.11.2, flax 0.12.6)."""
    from importlib import metadata

    def release(name: str) -> tuple[int, ...] | None:
        try:
            parts = metadata.version(name).split(".")[:3]
            return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in parts)
        except metadata.PackageNotFoundError:
            return None

    jax_v, flax_v = release("jax"), release("flax")
    if jax_v and flax_v and jax_v >= (0, 11) and flax_v < (0, 12, 7):
        raise ImportError(
            f"flax {'.'.join(map(str, flax_v))} does not run on jax "
            f"{'.'.join(map(str, jax_v))} (it calls jax.core.get_opaque_trace_state, removed in "
            "jax 0.11): pip install 'flax>=0.12.7,<0.13'"
        )


_check_flax_for_jax()
