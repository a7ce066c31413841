"""Pendulum swing-up: a tiny pure-JAX task that checks PPO learns, in seconds on a CPU.

theta = 0 hangs down, theta = pi is upright. Cost per step (the classic course's):
(theta - pi)^2 + 0.01 omega^2 + 1e-5 u^2, with theta - pi wrapped to [-pi, pi]; reward = -cost.
The torque limit is below m*g*l, so the pendulum must be pumped up, not lifted.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jp

from locomotion.envs import Env, State


@dataclasses.dataclass(frozen=True, kw_only=True)
class PendulumConfig:
    """Physical constants and episode settings."""

    mass: float = 1.0  # [kg] point mass at the tip
    length: float = 1.0  # [m]
    gravity: float = 9.81  # [m/s^2]
    damping: float = 0.05  # [N*m*s/rad]
    max_torque: float = 3.0  # [N*m] below m*g*l = 9.81: swing-up needs pumping
    max_speed: float = 10.0  # [rad/s]
    ctrl_dt: float = 0.05  # [s]
    episode_length: int = 100  # control steps (5 s)
    obs_noise: float = 0.0  # std of observation noise


class Pendulum(Env):
    """Torque-limited pendulum swing-up."""

    def __init__(self, config: PendulumConfig = PendulumConfig()):
        self.config = config
        self.episode_length = config.episode_length

    @property
    def action_size(self) -> int:
        return 1

    @property
    def dt(self) -> float:
        return self.config.ctrl_dt

    def reset(self, key: jax.Array) -> State:
        key_theta, key_omega, key_obs = jax.random.split(key, 3)
        theta = jax.random.uniform(key_theta, (), minval=-jp.pi, maxval=jp.pi)
        omega = jax.random.uniform(key_omega, (), minval=-1.0, maxval=1.0)
        q = jp.stack([theta, omega])
        info = {"rng": key_obs}
        return State(
            q,
            self._obs(q, key_obs),
            jp.zeros(()),
            jp.zeros(()),
            {"reward/cost": jp.zeros(())},
            info,
        )

    def step(self, state: State, action: jax.Array) -> State:
        c = self.config
        theta, omega = state.pipeline_state
        u = c.max_torque * jp.clip(action[0], -1.0, 1.0)
        inertia = c.mass * c.length**2
        alpha = (u - c.mass * c.gravity * c.length * jp.sin(theta) - c.damping * omega) / inertia
        omega = jp.clip(omega + c.ctrl_dt * alpha, -c.max_speed, c.max_speed)
        theta = theta + c.ctrl_dt * omega  # semi-implicit Euler
        error = jp.mod(theta - jp.pi + jp.pi, 2 * jp.pi) - jp.pi
        cost = error**2 + 0.01 * omega**2 + 1e-5 * u**2
        key, key_obs = jax.random.split(state.info["rng"])
        q = jp.stack([theta, omega])
        info = {**state.info, "rng": key}
        return state.replace(
            pipeline_state=q,
            obs=self._obs(q, key_obs),
            reward=-cost,
            done=jp.zeros(()),
            metrics={"reward/cost": cost},
            info=info,
        )

    def _obs(self, q: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
        theta, omega = q
        obs = jp.stack([jp.cos(theta), jp.sin(theta), omega / self.config.max_speed])
        obs = obs + self.config.obs_noise * jax.random.normal(key, obs.shape)
        return {"state": obs, "privileged_state": obs}
