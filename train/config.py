"""PPO hyper-parameters (one vocabulary: STYLE.md rule 7)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOConfig:
    """Proximal Policy Optimization settings."""

    num_envs: int = 512
    """Parallel environments (split across all local devices)."""
    unroll_length: int = 24
    """Control steps collected per environment per iteration."""
    num_minibatches: int = 4
    """Minibatches per epoch; the batch num_envs * unroll_length must divide evenly."""
    num_epochs: int = 5
    """Passes over each batch."""
    learning_rate: float = 1e-3
    """Initial Adam learning rate."""
    lr_schedule: Literal["adaptive", "linear", "constant"] = "adaptive"
    """adaptive: scale by KL like rsl_rl; linear: decay to 0 over the run; constant."""
    desired_kl: float = 0.01
    """Target KL divergence for the adaptive schedule."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_eps: float = 0.2
    """PPO ratio clip."""
    clip_value: bool = True
    """Clip the value update around the old value, like rsl_rl."""
    ent_coef: float = 0.005
    """Entropy bonus weight."""
    vf_coef: float = 1.0
    """Value loss weight."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    actor_hidden: tuple[int, ...] = (256, 128, 64)
    """Actor MLP hidden sizes."""
    critic_hidden: tuple[int, ...] = (256, 128, 64)
    """Critic MLP hidden sizes."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the Gaussian policy (before any squashing)."""
    action_distribution: Literal["normal", "tanh_normal"] = "normal"
    """normal: Gaussian actions, clipped to [-1, 1] by the task (rsl_rl); tanh_normal: a
    Gaussian squashed by tanh, log-probabilities with the Jacobian (brax). train/networks.py."""
    state_dependent_std: bool = False
    """The std is a second output head of the actor (softplus) instead of a parameter."""
    activation: Literal["elu", "swish"] = "elu"
    """Hidden-layer activation of actor and critic."""
    kernel_init: Literal["orthogonal", "lecun_uniform"] = "orthogonal"
    """Weight initialization of actor and critic (orthogonal: gain sqrt 2, policy output 0.01)."""
    normalize_observations: bool = True
    """Normalize observations by running mean and variance."""
    update_normalizer_first: bool = False
    """Fold the rollout into the observation statistics before the update and normalize the
    update's batch with the new statistics (brax's order). False: the update normalizes with
    the statistics the rollout acted with, so its probability ratios see only the parameter
    change, and the statistics absorb the batch afterwards."""
    normalize_advantages: bool = True
    """Normalize advantages per minibatch."""

    def __post_init__(self):
        checks = {
            "num_envs must be positive": self.num_envs > 0,
            "unroll_length must be positive": self.unroll_length > 0,
            "num_minibatches must be positive": self.num_minibatches > 0,
            "num_epochs must be positive": self.num_epochs > 0,
            "learning_rate must be positive": self.learning_rate > 0,
            "gamma must be in (0, 1]": 0 < self.gamma <= 1,
            "gae_lambda must be in [0, 1]": 0 <= self.gae_lambda <= 1,
            "clip_eps must be positive": self.clip_eps > 0,
            "desired_kl must be positive": self.desired_kl > 0,
            "action_distribution must be normal or tanh_normal": self.action_distribution
            in ("normal", "tanh_normal"),
            "activation must be elu or swish": self.activation in ("elu", "swish"),
            "kernel_init must be orthogonal or lecun_uniform": self.kernel_init
            in ("orthogonal", "lecun_uniform"),
            "lr_schedule must be adaptive, linear or constant": self.lr_schedule
            in ("adaptive", "linear", "constant"),
            "num_envs * unroll_length must be divisible by num_minibatches": (
                self.num_envs * self.unroll_length
            )
            % self.num_minibatches
            == 0,
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid PPO config: " + "; ".join(bad))

    @property
    def squash(self) -> bool:
        """Whether actions are tanh-squashed."""
        return self.action_distribution == "tanh_normal"

    @property
    def batch_size(self) -> int:
        """Transitions per iteration."""
        return self.num_envs * self.unroll_length
