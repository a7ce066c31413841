"""Registration of the tasks that ship with locomotion, with their training presets.

Presets: `smoke` runs the whole pipeline in about a minute on a CPU; `cpu` is sized for a
2-core machine; `gpu` for one modern GPU.
"""

from __future__ import annotations

import dataclasses

from locomotion.registry import RunConfig, TaskEntry, register
from locomotion.train.config import PPOConfig


@register("pendulum_swingup")
def _pendulum() -> TaskEntry:
    from locomotion.tasks.pendulum import Pendulum, PendulumConfig

    ppo = PPOConfig(
        num_envs=64,
        unroll_length=32,
        num_minibatches=4,
        num_epochs=4,
        learning_rate=3e-3,
        gamma=0.97,
        ent_coef=0.0,
        actor_hidden=(32, 32),
        critic_hidden=(64, 64),
        init_log_std=-0.5,
    )
    return TaskEntry(
        name="pendulum_swingup",
        description="Torque-limited pendulum swing-up (pure JAX, a fast check that PPO learns)",
        env_class=Pendulum,
        env_config=PendulumConfig(),
        presets={
            "smoke": (
                ppo,
                RunConfig(num_iterations=5, checkpoint_every=5, eval_envs=0, video_seconds=0),
            ),
            "cpu": (
                ppo,
                RunConfig(num_iterations=150, checkpoint_every=50, eval_envs=0, video_seconds=0),
            ),
            "gpu": (
                dataclasses.replace(ppo, num_envs=1024),
                RunConfig(num_iterations=150, checkpoint_every=50, eval_envs=0, video_seconds=0),
            ),
        },
    )


@register("quadruped_joystick")
def _quadruped_joystick() -> TaskEntry:
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystick, QuadrupedJoystickConfig

    # No entropy bonus: the policy's noise then shrinks as tracking improves, which the
    # 0.1 m/s tracking target needs (measured: a bonus of 0.005 kept std near 1).
    cpu = PPOConfig(num_envs=512, unroll_length=24, num_minibatches=4, num_epochs=5, ent_coef=0.0)
    return TaskEntry(
        name="quadruped_joystick",
        description="Solo-12-class quadruped follows velocity commands on flat ground (MJX)",
        env_class=QuadrupedJoystick,
        env_config=QuadrupedJoystickConfig(),
        presets={
            "smoke": (
                dataclasses.replace(
                    cpu,
                    num_envs=32,
                    unroll_length=8,
                    num_epochs=2,
                    actor_hidden=(64, 64),
                    critic_hidden=(64, 64),
                ),
                RunConfig(
                    num_iterations=3,
                    checkpoint_every=2,
                    eval_envs=8,
                    eval_seconds=1.0,
                    video_seconds=1.0,
                ),
            ),
            "cpu": (cpu, RunConfig(num_iterations=1700, checkpoint_every=50)),
            "gpu": (
                dataclasses.replace(cpu, num_envs=8192, num_minibatches=8),
                RunConfig(num_iterations=1500, checkpoint_every=100),
            ),
        },
        eval_env_config=lambda cfg: dataclasses.replace(cfg, fixed_command=(0.5, 0.0, 0.0)),
    )


@register("quadruped_cat")
def _quadruped_cat() -> TaskEntry:
    from locomotion.tasks.quadruped_cat import QuadrupedCat, QuadrupedCatConfig

    joystick = _quadruped_joystick()
    presets = dict(joystick.presets)
    # About an hour on 2 CPU cores; the soft-constraint curriculum (CaTConfig.curriculum_steps,
    # 12k control steps) spans the first 500 of these iterations.
    presets["cpu"] = (presets["cpu"][0], RunConfig(num_iterations=1100, checkpoint_every=50))
    return dataclasses.replace(
        joystick,
        name="quadruped_cat",
        description="quadruped_joystick with Constraints as Terminations: tracking reward only",
        env_class=QuadrupedCat,
        env_config=QuadrupedCatConfig(),
        presets=presets,
    )
