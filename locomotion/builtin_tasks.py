"""Registration of the tasks that ship with locomotion, with their training presets.

Presets: `smoke` runs the whole pipeline in about a minute on a CPU; `cpu` is sized for a
2-core machine; `gpu` for one modern GPU.
"""

from __future__ import annotations

import dataclasses

from locomotion.evaluation import nominal_config
from locomotion.registry import RunConfig, TaskEntry, register
from locomotion.train.config import PPOConfig


def _legged_eval_config(cfg):
    """A run's final evaluation of a legged task: nominal physics, clean observations and the
    forward command vx = 0.5 m/s (the walking bar's setting)."""
    return dataclasses.replace(nominal_config(cfg), fixed_command=(0.5, 0.0, 0.0))


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


# The quadruped's PPO. No entropy bonus: the policy's noise then shrinks as tracking improves,
# which the 0.1 m/s tracking target needs (measured: a bonus of 0.005 kept std near 1).
# The policy and loss are brax's choices (tanh-squashed Gaussian with a state-dependent std,
# swish, LeCun init, constant learning rate, no value clipping, value weight 0.5): over 3 seeds
# they learn quadruped_joystick about twice as fast per sample as our former rsl_rl-style
# settings (QUADRUPED_PPO_BEFORE) and faster than brax's own PPO (benchmarks/NOTES.md).
QUADRUPED_PPO_BEFORE = dict(
    num_envs=512, unroll_length=24, num_minibatches=4, num_epochs=5, ent_coef=0.0
)
QUADRUPED_PPO = dict(
    QUADRUPED_PPO_BEFORE,
    action_distribution="tanh_normal",
    state_dependent_std=True,
    activation="swish",
    kernel_init="lecun_uniform",
    lr_schedule="constant",
    clip_value=False,
    vf_coef=0.5,
)


# The smoke presets of the robot tasks: the whole pipeline (train, checkpoint, evaluate,
# video) in seconds, with small networks.
SMOKE_PPO = dict(
    num_envs=32, unroll_length=8, num_epochs=2, actor_hidden=(64, 64), critic_hidden=(64, 64)
)
SMOKE_RUN = RunConfig(
    num_iterations=3, checkpoint_every=2, eval_envs=8, eval_seconds=1.0, video_seconds=1.0
)


def _quadruped_presets(ppo: dict, cpu_iterations: int, keep_best: bool = False) -> dict:
    """smoke / cpu / gpu presets of the quadruped tasks from one PPO setting. `keep_best`:
    evaluate every 25 (cpu) / 50 (gpu) iterations and end with the best evaluated policy."""
    cpu = PPOConfig(**ppo)
    smoke = dataclasses.replace(cpu, **SMOKE_PPO)
    best = lambda every: dict(eval_every=every, keep="best") if keep_best else {}  # noqa: E731
    return {
        "smoke": (smoke, SMOKE_RUN),
        "cpu": (
            cpu,
            RunConfig(num_iterations=cpu_iterations, checkpoint_every=50, **best(25)),
        ),
        "gpu": (
            dataclasses.replace(cpu, num_envs=8192, num_minibatches=8),
            RunConfig(num_iterations=1500, checkpoint_every=100, **best(50)),
        ),
    }


@register("quadruped_joystick")
def _quadruped_joystick() -> TaskEntry:
    from locomotion.tasks.quadruped_joystick import QuadrupedJoystick, QuadrupedJoystickConfig

    return TaskEntry(
        name="quadruped_joystick",
        description="Solo-12-class quadruped follows velocity commands on flat ground (MJX)",
        env_class=QuadrupedJoystick,
        env_config=QuadrupedJoystickConfig(),
        # 500 iterations (6.1 M steps, about 17 minutes on 2 cores), keeping the best
        # evaluated policy: the walking bar was first met at 1.2-2.5 M steps, and the error
        # swings between checkpoints after that (benchmarks/NOTES.md).
        presets=_quadruped_presets(QUADRUPED_PPO, cpu_iterations=500, keep_best=True),
        eval_env_config=_legged_eval_config,
    )


def _rough_entry(name: str, description: str, height_scan: bool) -> TaskEntry:
    from locomotion.tasks.quadruped_rough import QuadrupedRough, QuadrupedRoughConfig

    # Trained like the joystick (its presets' PPO). `run.init_from quadruped_joystick` starts
    # from the shipped flat-ground policy: its height-scan inputs at zero weight, its mean head
    # scaled for the terrain tasks' larger action scale (QuadrupedRoughConfig.action_scale).
    return TaskEntry(
        name=name,
        description=description,
        env_class=QuadrupedRough,
        env_config=QuadrupedRoughConfig(height_scan=height_scan),
        presets=_quadruped_presets(QUADRUPED_PPO, cpu_iterations=1700),
        eval_env_config=_legged_eval_config,
    )


@register("quadruped_rough")
def _quadruped_rough() -> TaskEntry:
    return _rough_entry(
        "quadruped_rough",
        "quadruped_joystick on procedural terrain (slopes, stairs, obstacles) with a terrain "
        "curriculum and a height scan (MJX)",
        height_scan=True,
    )


@register("quadruped_rough_blind")
def _quadruped_rough_blind() -> TaskEntry:
    return _rough_entry(
        "quadruped_rough_blind",
        "quadruped_rough without the height scan: proprioception only (MJX)",
        height_scan=False,
    )


@register("quadruped_cat")
def _quadruped_cat() -> TaskEntry:
    from locomotion.tasks.quadruped_cat import QuadrupedCat, QuadrupedCatConfig

    # The joystick's PPO settings: 600 iterations, about 23 minutes on 2 CPU cores, keeping the
    # best evaluated policy (the shipped one met the walking bar from iteration 150 on). The
    # soft-constraint curriculum (CaTConfig.curriculum_steps, 12k control steps per env) spans
    # the first 500 of these iterations.
    return dataclasses.replace(
        _quadruped_joystick(),
        name="quadruped_cat",
        description="quadruped_joystick with Constraints as Terminations: tracking reward only",
        env_class=QuadrupedCat,
        env_config=QuadrupedCatConfig(),
        presets=_quadruped_presets(QUADRUPED_PPO, cpu_iterations=600, keep_best=True),
    )


@register("quadruped_cat_rough")
def _quadruped_cat_rough() -> TaskEntry:
    from locomotion.tasks.quadruped_cat import QuadrupedCatRough, QuadrupedCatRoughConfig

    return dataclasses.replace(
        _quadruped_rough(),
        name="quadruped_cat_rough",
        description="quadruped_cat on quadruped_rough's terrain, curriculum and height scan",
        env_class=QuadrupedCatRough,
        env_config=QuadrupedCatRoughConfig(),
        presets=_quadruped_presets(QUADRUPED_PPO_BEFORE, cpu_iterations=1700),
    )


# Hand tasks on 2 CPU cores: MJX steps about 1.15k control steps/s in training (10 physics
# substeps of 8 solver iterations each, 256 envs), flat in num_envs, so more envs only make
# iterations longer. Exploration noise starts at std 0.6 (0.3 rad of joint target) for a task
# learned from scratch, 0.37 for one that starts from another task's policy (a warm start:
# `RunConfig.init_from`), whose gait the noise should not drown.
HAND_PPO = PPOConfig(
    num_envs=256,
    unroll_length=20,
    num_minibatches=4,
    num_epochs=5,
    gamma=0.99,
    ent_coef=0.002,
    init_log_std=-0.5,
)


def _hand_presets(
    cpu_iterations: int,
    gpu_iterations: int,
    init_from: str | None = None,
    warm_log_std: float = -1.0,
) -> dict:
    """smoke / cpu / gpu presets of the hand-and-cube tasks; cpu and gpu start from the
    exported policy `init_from` (a shipped name) when given, with the initial action log-std
    `warm_log_std`; smoke from scratch."""
    smoke = dataclasses.replace(HAND_PPO, **SMOKE_PPO)
    ppo = (
        HAND_PPO if init_from is None else dataclasses.replace(HAND_PPO, init_log_std=warm_log_std)
    )
    return {
        "smoke": (smoke, SMOKE_RUN),
        "cpu": (
            ppo,
            RunConfig(num_iterations=cpu_iterations, checkpoint_every=50, init_from=init_from),
        ),
        "gpu": (
            dataclasses.replace(ppo, num_envs=8192, num_minibatches=8),
            RunConfig(num_iterations=gpu_iterations, checkpoint_every=100, init_from=init_from),
        ),
    }


@register("hand_rotate_z")
def _hand_rotate_z() -> TaskEntry:
    from locomotion.tasks.hand_rotate_z import HandRotateZ, HandRotateZConfig

    # cpu: 300 iterations x 5120 steps = 1.5 M control steps, about 25 minutes; after them the
    # cube turns at 2.3 rad/s in native replay (README).
    return TaskEntry(
        name="hand_rotate_z",
        description="16-DoF hand keeps a cube turning about the vertical axis on its palm (MJX)",
        env_class=HandRotateZ,
        env_config=HandRotateZConfig(),
        presets=_hand_presets(cpu_iterations=300, gpu_iterations=1000),
        eval_env_config=nominal_config,
    )


@register("hand_reorient")
def _hand_reorient() -> TaskEntry:
    from locomotion.tasks.hand_reorient import HandReorient, HandReorientConfig

    # Most uniformly random goals need the cube rolled onto another face: on a CPU it starts
    # from the shipped roll-goal policy (action std kept near the 0.57 it ended with).
    return TaskEntry(
        name="hand_reorient",
        description="16-DoF hand turns a cube on its palm to random goal orientations (MJX)",
        env_class=HandReorient,
        env_config=HandReorientConfig(),
        presets=_hand_presets(
            cpu_iterations=600,
            gpu_iterations=3000,
            init_from="hand_reorient_roll",
            warm_log_std=-0.55,
        ),
        eval_env_config=nominal_config,
    )


@register("hand_reorient_roll")
def _hand_reorient_roll() -> TaskEntry:
    from locomotion.tasks.hand_reorient import HandReorientConfig

    # Every goal is the cube rolled a quarter turn onto a neighbouring face: the skill that
    # uniformly random goals mostly need and upright goals never teach. Trains from scratch.
    return dataclasses.replace(
        _hand_reorient(),
        name="hand_reorient_roll",
        description="hand_reorient with roll goals: a quarter turn onto a neighbouring face",
        env_config=HandReorientConfig(roll_goals=1.0),
        presets=_hand_presets(cpu_iterations=400, gpu_iterations=1000),
    )


@register("hand_reorient_upright")
def _hand_reorient_upright() -> TaskEntry:
    from locomotion.tasks.hand_reorient import HandReorientConfig

    # Every goal keeps the cube's top face up (yaw goals). It starts from the shipped
    # hand_rotate_z policy: the cube already turns, the goal inputs start at zero weight.
    return dataclasses.replace(
        _hand_reorient(),
        name="hand_reorient_upright",
        description="hand_reorient with upright goals: the top face stays up, the yaw changes",
        env_config=HandReorientConfig(upright_goals=1.0),
        presets=_hand_presets(cpu_iterations=400, gpu_iterations=1000, init_from="hand_rotate_z"),
    )
