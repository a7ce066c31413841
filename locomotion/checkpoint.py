"""Checkpoints as plain .npz arrays keyed by pytree path (no pickle, on save or load)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or written for another task or network."""


def _key(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)


def save(path: str | Path, tree: Any) -> None:
    """Write every leaf of `tree` to `path` atomically (temp file, then rename)."""
    path = Path(path)
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {_key(p): np.asarray(jax.device_get(leaf)) for p, leaf in leaves}
    # Not *.npz: a write cut short (a SIGKILL) must not look like a checkpoint.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load(path: str | Path, template: Any) -> Any:
    """Read a checkpoint into the structure of `template`; clear errors when they differ."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupted: {err}") from None
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for p, leaf in leaves:
        k = _key(p)
        if k not in stored:
            raise CheckpointError(
                f"checkpoint {path} lacks {k!r}: it was written for another "
                "task or network configuration"
            )
        value = stored[k]
        if value.shape != np.shape(leaf):
            raise CheckpointError(
                f"checkpoint {path}: {k!r} has shape {value.shape}, the run "
                f"expects {np.shape(leaf)} (different task or config?)"
            )
        out.append(value.astype(leaf.dtype) if hasattr(leaf, "dtype") else value)
    return jax.tree_util.tree_unflatten(treedef, out)


def read_arrays(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The arrays of a checkpoint whose key starts with `prefix` (no template needed)."""
    try:
        with np.load(Path(path), allow_pickle=False) as f:
            return {k[len(prefix) :]: f[k] for k in f.files if k.startswith(prefix)}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupted: {err}") from None
