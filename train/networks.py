"""Actor and critic MLPs and the policy's action distribution.

Two distributions (`PPOConfig.action_distribution`):
- "normal": a diagonal Gaussian on the action; the task clips the action to [-1, 1] (rsl_rl).
  The log-probability is the Gaussian's: it ignores the clip.
- "tanh_normal": a diagonal Gaussian on a pre-squash action u, the action is tanh(u) (brax,
  SAC). Rollouts store u; log pi(a) = log N(u) - sum log(1 - tanh(u)^2), exact for the action
  the task receives.
The standard deviation is either a learned parameter per action (state-independent) or a second
head of the actor (`state_dependent_std`: std = softplus(head) + MIN_STD, as brax).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jp

MIN_STD = 1e-3  # floor of a state-dependent std
ACTIVATIONS = {"elu": nn.elu, "swish": nn.swish}


def _kernel_init(name: str, scale: float):
    if name == "orthogonal":
        return nn.initializers.orthogonal(scale)
    if name == "lecun_uniform":
        return nn.initializers.lecun_uniform()
    raise ValueError(f"unknown kernel_init {name!r}")


class MLP(nn.Module):
    """MLP with a linear output layer. `kernel_init` "orthogonal" uses gain sqrt(2) in the
    hidden layers and `out_scale` in the output layer; "lecun_uniform" ignores the gains."""

    hidden: Sequence[int]
    out: int
    out_scale: float = 1.0
    activation: str = "elu"
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=_kernel_init(self.kernel_init, jp.sqrt(2.0)))(x))
        return nn.Dense(self.out, kernel_init=_kernel_init(self.kernel_init, self.out_scale))(x)


class Actor(nn.Module):
    """Gaussian policy head: returns (mean, log_std) of the (pre-squash) Gaussian.

    The mean is the first `action_size` outputs of the MLP. With `state_dependent_std` the MLP
    has `action_size` more outputs for the std, biased so that the initial std is about
    exp(init_log_std); otherwise log_std is a learned parameter per action.
    """

    hidden: Sequence[int]
    action_size: int
    init_log_std: float = 0.0
    state_dependent_std: bool = False
    activation: str = "elu"
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        outputs = self.action_size * (2 if self.state_dependent_std else 1)
        out = MLP(self.hidden, outputs, 0.01, self.activation, self.kernel_init)(obs)
        mean = out[..., : self.action_size]
        if self.state_dependent_std:
            # softplus(x + bias) + MIN_STD = exp(init_log_std) at x = 0.
            bias = _softplus_inverse(max(math.exp(self.init_log_std) - MIN_STD, 1e-6))
            std = nn.softplus(out[..., self.action_size :] + bias) + MIN_STD
            return mean, jp.log(std)
        log_std = self.param(
            "log_std", nn.initializers.constant(self.init_log_std), (self.action_size,)
        )
        return mean, jp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    """State-value function."""

    hidden: Sequence[int]
    activation: str = "elu"
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, 1.0, self.activation, self.kernel_init)(obs)[..., 0]


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Log density of a diagonal Gaussian, summed over the last axis."""
    z = (x - mean) * jp.exp(-log_std)
    return jp.sum(-0.5 * z**2 - log_std - 0.5 * jp.log(2 * jp.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of a diagonal Gaussian, summed over the last axis."""
    return jp.sum(log_std + 0.5 * jp.log(2 * jp.pi * jp.e), axis=-1)


def gaussian_kl(mean0, log_std0, mean1, log_std1) -> jax.Array:
    """KL(N0 || N1) of diagonal Gaussians, summed over the last axis. KL is unchanged by a
    bijection of both variables, so this is also the KL of the tanh-squashed policies."""
    var0, var1 = jp.exp(2 * log_std0), jp.exp(2 * log_std1)
    return jp.sum(log_std1 - log_std0 + (var0 + (mean0 - mean1) ** 2) / (2 * var1) - 0.5, axis=-1)


def tanh_log_det_jacobian(u: jax.Array) -> jax.Array:
    """sum log|d tanh(u)/du| = sum log(1 - tanh(u)^2) over the last axis, stable for large |u|."""
    return jp.sum(2.0 * (jp.log(2.0) - u - nn.softplus(-2.0 * u)), axis=-1)


def log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array, squash: bool) -> jax.Array:
    """Log-probability of the action the task receives, from the stored sample u (the action
    itself without squashing, the pre-tanh action with it)."""
    out = gaussian_log_prob(u, mean, log_std)
    return out - tanh_log_det_jacobian(u) if squash else out


def entropy(mean: jax.Array, log_std: jax.Array, noise: jax.Array, squash: bool) -> jax.Array:
    """Entropy of the policy, summed over actions. Without squashing, the Gaussian's (exact).
    With tanh, H[tanh(u)] = H[u] + E[log|d tanh/du|], estimated with one reparameterized sample
    u = mean + std * noise (noise ~ N(0, 1), so the estimate has gradients, as brax's)."""
    out = gaussian_entropy(log_std)
    if squash:
        out = out + tanh_log_det_jacobian(mean + jp.exp(log_std) * noise)
    return out


def deterministic_action(mean: jax.Array, squash: bool) -> jax.Array:
    """The policy's mode as the task receives it."""
    return jp.tanh(mean) if squash else mean
