"""Running mean and variance of observations (parallel Welford update)."""

from __future__ import annotations

import jax
import jax.numpy as jp
from flax import struct


@struct.dataclass
class RunningStats:
    """Per-feature statistics of everything seen so far."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, size: int) -> RunningStats:
        return cls(jp.zeros(size), jp.ones(size), jp.zeros(()))

    def update(self, x: jax.Array) -> RunningStats:
        """Merge a batch x [..., size] into the statistics."""
        x = x.reshape(-1, x.shape[-1])
        n = x.shape[0]
        batch_mean = x.mean(axis=0)
        batch_var = x.var(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        return RunningStats(mean, m2 / total, total)

    def normalize(self, x: jax.Array, clip: float = 10.0) -> jax.Array:
        return jp.clip((x - self.mean) / jp.sqrt(self.var + 1e-8), -clip, clip)
