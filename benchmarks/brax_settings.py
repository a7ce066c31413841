"""brax 0.14.2's PPO with our PPO config's batch geometry and settings (for the benchmarks that
run brax beside ours; `pip install -e ".[bench]"`)."""

from __future__ import annotations

import functools


def brax_ppo_settings(env, cfg) -> dict:
    """Keyword arguments of `brax.training.agents.ppo.train.train` matching `cfg` (a
    PPOConfig): num_envs, unroll, minibatches, epochs, lr, discounting, clipping, gradient
    clip, observation normalization and network sizes; brax keeps its own policy (a
    tanh-squashed Gaussian with a state-dependent std, swish) and loss."""
    from brax.training.agents.ppo import networks as brax_networks

    return dict(
        environment=env,
        num_envs=cfg.num_envs,
        episode_length=env.episode_length,
        unroll_length=cfg.unroll_length,
        batch_size=cfg.num_envs // cfg.num_minibatches,
        num_minibatches=cfg.num_minibatches,
        num_updates_per_batch=cfg.num_epochs,
        learning_rate=cfg.learning_rate,
        entropy_cost=cfg.ent_coef,
        discounting=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clipping_epsilon=cfg.clip_eps,
        max_grad_norm=cfg.max_grad_norm,
        normalize_observations=cfg.normalize_observations,
        reward_scaling=1.0,
        network_factory=functools.partial(
            brax_networks.make_ppo_networks,
            policy_hidden_layer_sizes=cfg.actor_hidden,
            value_hidden_layer_sizes=cfg.critic_hidden,
            policy_obs_key="state",
            value_obs_key="privileged_state",
        ),
        run_evals=False,
    )
