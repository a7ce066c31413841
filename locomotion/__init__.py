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
