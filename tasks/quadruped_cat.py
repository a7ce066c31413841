"""Joystick locomotion with Constraints as Terminations (CaT, Chane-Sane et al., IROS 2024).

The reward is velocity tracking only,
    exp(-|v_xy* - v_xy|^2 / 0.25) + 0.5 exp(-(w_z* - w_z)^2 / 0.25)   (times the control period),
and every other wish becomes a constraint whose violation is a probability of ending the
future rewards (`locomotion.cat`). Robot, observations (no base linear velocity in the actor's),
randomization, pushes and real terminations are those of `quadruped_joystick`.

The limits are the paper's, which was written for Solo-12, the robot ours is modelled on, so
none needed rescaling. Two definitions the paper leaves open are ours: the action rate is on
the policy output (units of action per second), and "moving fast" for the two-feet-contact
style constraint means a planar command above `fast_speed`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jp
from mujoco import mjx

from locomotion.cat import CaTConfig, Constraint
from locomotion.tasks.quadruped_joystick import (
    QuadrupedJoystick,
    QuadrupedJoystickConfig,
    RewardScales,
)

TRACKING_ONLY = RewardScales(
    tracking_lin_vel=1.0,
    tracking_ang_vel=0.5,
    lin_vel_z=0.0,
    ang_vel_xy=0.0,
    orientation=0.0,
    torques=0.0,
    joint_acc=0.0,
    action_rate=0.0,
    feet_air_time=0.0,
    collision=0.0,
    stand_still=0.0,
    feet_slip=0.0,
    termination=0.0,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Constraint bounds (the paper's values for Solo-12, policy period 0.02 s). Torque and
    joint velocity come from the RobotSpec (3 N*m, 16 rad/s), joint acceleration from the
    joystick config (800 rad/s^2)."""

    action_rate: float = 80.0  # [1/s] of the policy output
    base_orientation: float = 0.1  # projected gravity, x and y components
    haa_angle: float = 0.2  # [rad] from the default pose, when |vy*| < straight_vy
    air_time: float = 0.25  # [s] smallest swing duration at touchdown, when moving
    no_move_velocity: float = 4.0  # [rad/s] joint speed when the command is ~0
    foot_force: float = 50.0  # [N] normal contact force per foot (hard)
    front_hfe_angle: float = 1.3  # [rad] front hip flexion (hard)
    straight_vy: float = 0.1  # [m/s]
    still_command: float = 0.1  # command norm below which the robot must stand still
    fast_speed: float = 0.3  # [m/s] planar command above which two feet touch the ground
    no_move_p_max: float = 0.1


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuadrupedCatConfig(QuadrupedJoystickConfig):
    """Joystick settings with the paper's command ranges, tracking-only reward, and limits."""

    vx_range: tuple[float, float] = (-0.3, 1.0)
    vy_range: tuple[float, float] = (-0.7, 0.7)
    yaw_range: tuple[float, float] = (-0.78, 0.78)
    rewards: RewardScales = TRACKING_ONLY
    limits: Limits = Limits()
    cat: CaTConfig = CaTConfig()


class QuadrupedCat(QuadrupedJoystick):
    """quadruped_joystick with CaT constraints instead of penalty terms."""

    def __init__(self, config: QuadrupedCatConfig = QuadrupedCatConfig()):
        super().__init__(config)
        lim = config.limits
        self.haa = jp.arange(0, 12, 3)
        self.front_hfe = jp.array([1, 4])  # FL, FR hip flexion
        self.constraints = (
            Constraint(name="torque", kind="soft", limit=self.robot.torque_limit),
            Constraint(name="joint_velocity", kind="soft", limit=self.robot.velocity_limit),
            Constraint(name="joint_acceleration", kind="soft", limit=config.acceleration_limit),
            Constraint(name="action_rate", kind="soft", limit=lim.action_rate),
            Constraint(name="base_orientation", kind="soft", limit=lim.base_orientation),
            Constraint(name="haa_angle", kind="style", limit=lim.haa_angle),
            Constraint(name="air_time", kind="style", limit=lim.air_time),
            Constraint(
                name="no_move", kind="soft", limit=lim.no_move_velocity, p_max=lim.no_move_p_max
            ),
            Constraint(name="two_feet_contact", kind="style", limit=2.0),
            Constraint(name="foot_force", kind="hard", limit=lim.foot_force),
            Constraint(name="front_hfe_angle", kind="hard", limit=lim.front_hfe_angle),
        )

    def violations(
        self,
        model: mjx.Model,
        data: mjx.Data,
        action: jax.Array,
        info: dict,
        first_contact: jax.Array,
        contact: jax.Array,
    ) -> dict[str, jax.Array]:
        """c+ for every constraint, per column (joint, foot or axis)."""
        c, lim = self.config, self.config.limits
        out = super().violations(model, data, action, info, first_contact, contact)
        over = lambda x, bound: jp.maximum(0.0, x - bound)
        cmd = info["command"]
        qpos, qvel = data.qpos[7:], data.qvel[6:]
        still = jp.linalg.norm(cmd) < lim.still_command
        moving = ~still
        fast = jp.linalg.norm(cmd[:2]) > lim.fast_speed
        straight = jp.abs(cmd[1]) < lim.straight_vy
        feet = ("FL", "FR", "HL", "HR")
        force = jp.concatenate([self.sensor(data, f"{f}_touch") for f in feet])
        out.update(
            {
                "action_rate": over(
                    jp.abs(action - info["last_action"]) / c.ctrl_dt, lim.action_rate
                ),
                "base_orientation": over(
                    jp.abs(self.projected_gravity(data)[:2]), lim.base_orientation
                ),
                "haa_angle": over(
                    jp.abs(qpos[self.haa] - self.default_pose[self.haa]), lim.haa_angle
                )
                * straight,
                "air_time": over(lim.air_time, info["feet_air_time"]) * first_contact * moving,
                "no_move": over(jp.abs(qvel), lim.no_move_velocity) * still,
                "two_feet_contact": jp.abs(jp.sum(contact) - 2.0)[None] * fast,
                "foot_force": over(force, lim.foot_force),
                "front_hfe_angle": over(jp.abs(qpos[self.front_hfe]), lim.front_hfe_angle),
            }
        )
        return out


def _rough():  # imported late: quadruped_rough imports the evaluation code
    from locomotion.tasks.quadruped_rough import QuadrupedRough, QuadrupedRoughConfig

    return QuadrupedRough, QuadrupedRoughConfig


_QuadrupedRough, _QuadrupedRoughConfig = _rough()


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuadrupedCatRoughConfig(_QuadrupedRoughConfig, QuadrupedCatConfig):
    """quadruped_cat's commands, reward and limits on quadruped_rough's terrain. (Each base
    carries every joystick field; the later base in the MRO would win, so the fields
    QuadrupedCatConfig changes are stated again.)"""

    vx_range: tuple[float, float] = QuadrupedCatConfig.vx_range
    vy_range: tuple[float, float] = QuadrupedCatConfig.vy_range
    yaw_range: tuple[float, float] = QuadrupedCatConfig.yaw_range
    rewards: RewardScales = TRACKING_ONLY


class QuadrupedCatRough(QuadrupedCat, _QuadrupedRough):
    """CaT on the terrain (the paper's setting: its Solo-12 runs a parkour of steps): the
    constraints of quadruped_cat, the terrain, curriculum and height scan of quadruped_rough."""

    def __init__(self, config: QuadrupedCatRoughConfig = QuadrupedCatRoughConfig()):
        super().__init__(config)
