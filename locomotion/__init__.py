"""locomotion: train legged robots and robot hands with RL on MJX (MuJoCo XLA)."""

import os as _os

# XLA's multi-threaded Eigen pool on CPU wedges now and then on large vmapped graphs (a run blocks
# forever in block_until_ready; seen here with jax 0.10.2 and MJX at 512 envs). Single-threaded
# Eigen avoids it; XLA still runs independent ops in parallel. Must be set before jax starts.
if "--xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

__version__ = "0.1.0"
