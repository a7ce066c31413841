"""Actor and critic MLPs and the diagonal Gaussian policy."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jp


class MLP(nn.Module):
    """ELU MLP with a linear output layer."""

    hidden: Sequence[int]
    out: int
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.elu(nn.Dense(width, kernel_init=nn.initializers.orthogonal(jp.sqrt(2.0)))(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(self.out_scale))(x)


class Actor(nn.Module):
    """Gaussian policy: mean from an MLP, state-independent learned log-std."""

    hidden: Sequence[int]
    action_size: int
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden, self.action_size, out_scale=0.01)(obs)
        log_std = self.param(
            "log_std", nn.initializers.constant(self.init_log_std), (self.action_size,)
        )
        return mean, jp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    """State-value function."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1)(obs)[..., 0]


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Log density of a diagonal Gaussian, summed over the last axis."""
    z = (x - mean) * jp.exp(-log_std)
    return jp.sum(-0.5 * z**2 - log_std - 0.5 * jp.log(2 * jp.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of a diagonal Gaussian, summed over the last axis."""
    return jp.sum(log_std + 0.5 * jp.log(2 * jp.pi * jp.e), axis=-1)


def gaussian_kl(mean0, log_std0, mean1, log_std1) -> jax.Array:
    """KL(N0 || N1) of diagonal Gaussians, summed over the last axis."""
    var0, var1 = jp.exp(2 * log_std0), jp.exp(2 * log_std1)
    return jp.sum(log_std1 - log_std0 + (var0 + (mean0 - mean1) ** 2) / (2 * var1) - 0.5, axis=-1)
