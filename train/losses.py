"""GAE and the PPO loss, as pure functions on time-major arrays [T, B]."""

from __future__ import annotations

import jax
import jax.numpy as jp

from locomotion.train.config import PPOConfig
from locomotion.train.networks import entropy as policy_entropy
from locomotion.train.networks import log_prob


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminations: jax.Array,
    truncations: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalized advantage estimation with separate termination and truncation.

    Args (all [T, B]):
      rewards: r_t.
      values: V(s_t).
      next_values: V(s_{t+1}); where the episode ended, the value of the final observation
        (before the automatic reset), so truncated episodes bootstrap correctly.
      terminations: probability in [0, 1] that the future rewards end after step t: 1 for a
        real termination, CaT's delta for a soft one, 0 otherwise. Scales the bootstrap by
        (1 - termination).
      truncations: 1 where the time limit ended the episode: bootstrap from next_values, but the
        advantage does not flow back from the next (reset) episode.
    Returns:
      advantages and value targets (advantages + values), both [T, B].
    """
    continuation = 1.0 - terminations
    deltas = rewards + gamma * continuation * next_values - values
    carry_on = gamma * gae_lambda * continuation * (1.0 - truncations)

    def backward(advantage, inputs):
        delta, factor = inputs
        advantage = delta + factor * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jp.zeros_like(values[0]), (deltas, carry_on), reverse=True
    )
    return advantages, advantages + values


def ppo_loss(
    actor_params,
    critic_params,
    actor_apply,
    critic_apply,
    batch: dict[str, jax.Array],
    cfg: PPOConfig,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate + (clipped) value loss - entropy bonus on one minibatch [N, ...].

    `batch` holds normalized observations `obs` and `critic_obs`, the sampled `actions` (pre-tanh
    when squashed) and their standard-normal `noise`, `log_probs`, `advantages`, `returns` and
    the old `values`.
    """
    mean, log_std = actor_apply(actor_params, batch["obs"])
    log_probs = log_prob(batch["actions"], mean, log_std, cfg.squash)
    ratio = jp.exp(log_probs - batch["log_probs"])
    adv = batch["advantages"]
    if cfg.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    surrogate = jp.minimum(ratio * adv, jp.clip(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv)
    policy_loss = -surrogate.mean()

    values = critic_apply(critic_params, batch["critic_obs"])
    value_loss = (values - batch["returns"]) ** 2
    if cfg.clip_value:
        clipped = batch["values"] + jp.clip(values - batch["values"], -cfg.clip_eps, cfg.clip_eps)
        value_loss = jp.maximum(value_loss, (clipped - batch["returns"]) ** 2)
    value_loss = 0.5 * value_loss.mean()

    entropy = policy_entropy(mean, log_std, batch["noise"], cfg.squash).mean()
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
    metrics = {
        "losses/policy": policy_loss,
        "losses/value": value_loss,
        "losses/entropy": entropy,
        "losses/clip_fraction": (jp.abs(ratio - 1) > cfg.clip_eps).mean(),
    }
    return loss, (metrics, mean, log_std)
