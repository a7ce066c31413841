"""Joystick locomotion: the quadruped follows velocity commands (vx, vy, yaw rate) on flat ground.

Observation ("state", 45 + 42 * (history - 1)): gyro (3), projected gravity (3), command (3),
joint positions minus default (12), joint velocities (12), last action (12), each with optional
noise; then the `history - 1` previous frames as the policy saw them, newest first, each
without the command (42): what the policy can infer the ground's grip and its own physics from.
Critic ("privileged_state", 56): the current frame without noise, plus base linear velocity
(3, base frame), foot contacts (4), and the episode's randomized physics (friction, added base
mass, motor gain scale, joint damping scale).
Action (12): joint position offsets around the default pose, scaled by `action_scale` [rad],
held over the physics substeps (50 Hz control).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jp
import numpy as np
from mujoco import mjx

from locomotion.cat import violation_metrics
from locomotion.envs import State
from locomotion.mjx_env import MjxEnv, box_bottom_height
from locomotion.robots import QUADRUPED


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardScales:
    """Weight of each reward term (0 switches a term off). The sum is multiplied by ctrl_dt."""

    tracking_lin_vel: float = 1.5
    tracking_ang_vel: float = 0.75
    lin_vel_z: float = -2.0
    ang_vel_xy: float = -0.05
    orientation: float = -5.0
    torques: float = -2e-3
    joint_acc: float = -2.5e-7
    action_rate: float = -0.01
    feet_air_time: float = 1.0
    collision: float = -1.0
    stand_still: float = -0.5
    feet_slip: float = 0.0  # squared horizontal speed of the feet in contact [(m/s)^2]
    termination: float = -10.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoiseScales:
    """Standard deviation of the observation noise, per component (0 disables)."""

    gyro: float = 0.2  # [rad/s]
    gravity: float = 0.05
    joint_pos: float = 0.01  # [rad]
    joint_vel: float = 1.5  # [rad/s]


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuadrupedJoystickConfig:
    """Task settings; reward, noise and randomization are nested dataclasses."""

    scene: str = "flat"
    # Physics: MJX's jax or warp (the `warp` extra), or C MuJoCo on the CPU cores ("native").
    impl: Literal["jax", "warp", "native"] = "jax"
    ctrl_dt: float = 0.02  # [s] control period
    episode_seconds: float = 20.0  # [s] time limit (a truncation, not a termination)
    action_scale: float = 0.3  # [rad] per unit action
    history: int = 1  # proprioceptive frames in the actor's observation (1: the current only)
    tracking_sigma: float = 0.25  # [(m/s)^2] width of the tracking kernels
    air_time_target: float = 0.2  # [s] feet_air_time rewards swings longer than this
    vx_range: tuple[float, float] = (-0.6, 1.0)  # [m/s]
    vy_range: tuple[float, float] = (-0.5, 0.5)  # [m/s]
    yaw_range: tuple[float, float] = (-1.0, 1.0)  # [rad/s]
    zero_command_prob: float = 0.1  # share of commands that are exactly zero
    resample_seconds: float = 5.0  # [s] commands are redrawn this often within an episode
    fixed_command: tuple[float, float, float] | None = None  # evaluation: always this command
    obs_noise: float = 1.0  # multiplies every NoiseScales entry (0 = clean observations)
    # Share of episodes, drawn per episode, whose actor observations carry no noise: the
    # clean inputs a nominal evaluation (and a well-filtered robot) feeds the policy are then
    # part of training too, not only noisy ones around them.
    clean_obs_share: float = 0.0
    noise: NoiseScales = NoiseScales()
    rewards: RewardScales = RewardScales()
    only_positive_rewards: bool = True  # clip the shaped reward at 0 (termination added after)
    # Domain randomization, drawn per episode.
    randomize: bool = True
    friction_range: tuple[float, float] = (0.4, 1.25)
    added_mass_range: tuple[float, float] = (-0.2, 0.5)  # [kg] on the base
    motor_gain_range: tuple[float, float] = (0.85, 1.15)  # scales kp and kd
    damping_range: tuple[float, float] = (0.5, 2.0)  # scales joint damping
    push_seconds: float = 4.0  # [s] interval between pushes
    push_velocity: float = 0.3  # [m/s] largest horizontal velocity kick
    init_joint_noise: float = 0.1  # [rad] spread of the initial joint positions
    acceleration_limit: float = 800.0  # [rad/s^2] joint acceleration counted as a violation

    def __post_init__(self):
        if self.ctrl_dt <= 0 or self.episode_seconds <= 0:
            raise ValueError("ctrl_dt and episode_seconds must be positive")
        for name in (
            "vx_range",
            "vy_range",
            "yaw_range",
            "friction_range",
            "motor_gain_range",
            "damping_range",
            "added_mass_range",
        ):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low {lo} is above high {hi}")
        if self.history < 1:
            raise ValueError("history must be >= 1")
        if not 0 <= self.zero_command_prob <= 1:
            raise ValueError("zero_command_prob must be in [0, 1]")
        if not 0 <= self.clean_obs_share <= 1:
            raise ValueError("clean_obs_share must be in [0, 1]")


class QuadrupedJoystick(MjxEnv):
    """Velocity-command tracking for the Solo-12-class quadruped."""

    def __init__(self, config: QuadrupedJoystickConfig = QuadrupedJoystickConfig()):
        super().__init__(
            QUADRUPED,
            config.scene,
            config.ctrl_dt,
            impl=config.impl,
            edit_scene=self.scene_edit(config),
        )
        self.config = config
        self.episode_length = int(round(config.episode_seconds / config.ctrl_dt))
        spec, m = self.robot, self.mj_model
        self.default_pose = jp.array(spec.default_pose)
        self.joint_lower, self.joint_upper = jp.array(spec.joint_lower), jp.array(spec.joint_upper)
        self.init_qpos = jp.array(m.key_qpos[0])
        self.base_body = self.id("body", spec.root_body)
        self.imu_site = self.id("site", spec.imu_site)
        self.base_geom = self.id("geom", "base")
        self.base_half_size = np.asarray(m.geom_size[self.base_geom])
        self.knee_geoms = np.array([self.id("geom", g) for g in spec.termination_geoms[1:]])
        self.knee_radius = float(m.geom_size[self.knee_geoms[0], 0])
        self.foot_pairs = np.array([self.id("pair", f"{g}_floor") for g in spec.foot_geoms])
        self.foot_geoms = np.array([self.id("geom", g) for g in spec.foot_geoms])
        self.foot_radius = float(m.geom_size[self.foot_geoms[0], 0])
        self.foot_bodies = m.geom_bodyid[self.foot_geoms]
        self.foot_roots = m.body_rootid[self.foot_bodies]
        self.base_mass = float(m.body_mass[self.base_body])
        self.resample_steps = int(round(config.resample_seconds / config.ctrl_dt))
        self.push_steps = int(round(config.push_seconds / config.ctrl_dt))

    @property
    def action_size(self) -> int:
        return self.robot.num_joints

    # ----------------------------------------------------------------------------------- reset
    def reset(self, key: jax.Array) -> State:
        c = self.config
        key_q, key_cmd, key_dr, key_obs, key = jax.random.split(key, 5)
        qpos = self.init_qpos.at[7:].add(
            jax.random.uniform(key_q, (12,), minval=-c.init_joint_noise, maxval=c.init_joint_noise)
        )
        qpos = qpos.at[7:].set(jp.clip(qpos[7:], self.joint_lower, self.joint_upper))
        # Where the robot starts (a key of its own, so the draws above are those of every
        # version of this task).
        qpos, spawn_info = self.spawn(qpos, jax.random.fold_in(key, 7))
        params = self.sample_params(key_dr)
        data = self.make_data()
        data = data.replace(qpos=qpos, ctrl=qpos[7:])
        data = mjx.forward(self.randomized_model(params), data)
        info = {
            "rng": key,
            "step": jp.zeros((), jp.int32),
            "command": self.sample_command(key_cmd),
            "last_action": jp.zeros(12),
            "last_qvel": jp.zeros(18),
            "feet_air_time": jp.zeros(4),
            "last_contact": jp.ones(4, dtype=bool),
            "params": params,
            **spawn_info,
        }
        if c.clean_obs_share > 0:  # (only then, so states keep their structure otherwise)
            clean = jax.random.uniform(jax.random.fold_in(key, 13)) < c.clean_obs_share
            info["obs_noise"] = jp.where(clean, 0.0, c.obs_noise)
        info = self.steer(info, data, jp.ones((), bool), key_cmd)
        info["history"] = jp.tile(self.proprio_frame(data, info), c.history - 1)
        metrics = {f"reward/{name}": jp.zeros(()) for name in self.reward_names}
        metrics.update(
            {"tracking/lin_vel_error": jp.zeros(()), "tracking/ang_vel_error": jp.zeros(())}
        )
        no_contact = jp.zeros(4, dtype=bool)
        violations = self.violations(
            self.mjx_model, data, jp.zeros(12), info, no_contact, no_contact
        )
        violations = jax.tree.map(jp.zeros_like, violations)
        metrics.update(violation_metrics(violations))
        if self.constraints:
            info["violations"] = violations
        obs = self.observation(data, info, key_obs)
        return State(data, obs, jp.zeros(()), jp.zeros(()), metrics, info)

    def scene_edit(self, config: QuadrupedJoystickConfig):
        """A change to the scene before it compiles (`load_model`'s `edit`); none here."""
        return None

    def spawn(self, qpos: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """The initial configuration's placement and any info it adds; the keyframe's here."""
        return qpos, {}

    def steer(self, info: dict, data: mjx.Data, resampled: jax.Array, key: jax.Array) -> dict:
        """A change to the command each control step, after any resampling (`resampled`);
        none here: the sampled command holds until the next one."""
        return info

    # ------------------------------------------------------------------------------------ step
    def before_physics(self, state: State, action: jax.Array) -> tuple[State, jax.Array]:
        c = self.config
        action = jp.clip(action, -1.0, 1.0)
        target = jp.clip(
            self.default_pose + c.action_scale * action, self.joint_lower, self.joint_upper
        )
        key_push = jax.random.fold_in(state.info["rng"], 1)
        push = jax.random.uniform(key_push, (2,), minval=-1.0, maxval=1.0) * c.push_velocity
        do_push = (state.info["step"] > 0) & (state.info["step"] % self.push_steps == 0)
        data = state.pipeline_state
        data = data.replace(qvel=data.qvel.at[:2].add(push * (do_push & c.randomize)))
        # The frame the policy just acted on (noise included, command left out) becomes the
        # newest of the history.
        obs = state.obs["state"]
        frame = jp.concatenate([obs[:6], obs[9:45]])
        keep = (c.history - 1) * self.FRAME_SIZE
        history = jp.concatenate([frame, state.info["history"]])[:keep]
        info = {**state.info, "history": history}
        return state.replace(pipeline_state=data, info=info), target

    def model_for(self, state: State) -> mjx.Model:
        return self.randomized_model(state.info["params"])

    def after_physics(self, state: State, data: mjx.Data, action: jax.Array) -> State:
        c = self.config
        action = jp.clip(action, -1.0, 1.0)
        info = dict(state.info)
        key, key_cmd, key_obs = jax.random.split(info["rng"], 3)

        contact = self.foot_contacts(data)
        first_contact = (info["feet_air_time"] > 0) & contact & ~info["last_contact"]
        info["feet_air_time"] = info["feet_air_time"] + c.ctrl_dt
        terms = self.reward_terms(data, action, info, first_contact)
        violations = self.violations(
            self.model_for(state), data, action, info, first_contact, contact
        )
        info["feet_air_time"] = jp.where(contact, 0.0, info["feet_air_time"])
        info["last_contact"] = contact

        fallen = self.fallen(data)
        terms["termination"] = fallen * 1.0
        scales = dataclasses.asdict(c.rewards)
        shaped = sum(scales[k] * v for k, v in terms.items() if k != "termination")
        if c.only_positive_rewards:
            shaped = jp.maximum(shaped, 0.0)
        reward = (shaped + scales["termination"] * terms["termination"]) * c.ctrl_dt

        step = info["step"] + 1
        resample = (step % self.resample_steps == 0) & (c.fixed_command is None)
        info["command"] = jp.where(resample, self.sample_command(key_cmd), info["command"])
        info = self.steer(info, data, resample, key_cmd)
        info.update(rng=key, step=step, last_action=action, last_qvel=data.qvel)

        metrics = {f"reward/{k}": v for k, v in terms.items()}
        v_local, w_local = self.sensor(data, "local_linvel"), self.sensor(data, "gyro")
        cmd = state.info["command"]
        metrics["tracking/lin_vel_error"] = jp.linalg.norm(cmd[:2] - v_local[:2])
        metrics["tracking/ang_vel_error"] = jp.abs(cmd[2] - w_local[2])
        metrics.update(violation_metrics(violations))
        if self.constraints:
            info["violations"] = violations
        obs = self.observation(data, info, key_obs)
        return state.replace(
            pipeline_state=data,
            obs=obs,
            reward=reward,
            done=fallen * 1.0,
            metrics=metrics,
            info=info,
        )

    # ----------------------------------------------------------------------------- observation
    def noise_scale(self, info: dict) -> jax.Array | float:
        """This episode's multiplier of the actor's observation noise: `obs_noise`, or 0 in
        the episodes `clean_obs_share` draws clean."""
        return info.get("obs_noise", self.config.obs_noise)

    def observation(self, data: mjx.Data, info: dict, key: jax.Array) -> dict[str, jax.Array]:
        """Actor and critic observations; the single definition used by training and replay."""
        n = self.config.noise
        gyro = self.sensor(data, "gyro")
        gravity = self.projected_gravity(data)
        joint_pos = data.qpos[7:] - self.default_pose
        joint_vel = data.qvel[6:]
        clean = [gyro, gravity, info["command"], joint_pos, joint_vel, info["last_action"]]
        sigmas = [n.gyro, n.gravity, 0.0, n.joint_pos, n.joint_vel, 0.0]
        keys = jax.random.split(key, len(clean))
        scale = self.noise_scale(info)
        noisy = [
            x + scale * s * jax.random.normal(k, x.shape)
            for x, s, k in zip(clean, sigmas, keys, strict=True)
        ]
        p = info["params"]
        privileged = [
            *clean,
            self.sensor(data, "local_linvel"),
            self.foot_contacts(data) * 1.0,
            jp.stack([p["friction"], p["added_mass"], p["motor_gain"], p["damping"]]),
        ]
        state = jp.concatenate([*noisy, info["history"]])
        return {"state": state, "privileged_state": jp.concatenate(privileged)}

    def proprio_frame(self, data: mjx.Data, info: dict) -> jax.Array:
        """One clean history frame (the observation's frame without the command)."""
        gyro, gravity = self.sensor(data, "gyro"), self.projected_gravity(data)
        joint_pos = data.qpos[7:] - self.default_pose
        return jp.concatenate([gyro, gravity, joint_pos, data.qvel[6:], info["last_action"]])

    FRAME = (
        ("gyro", 3),
        ("projected_gravity", 3),
        ("joint_pos", 12),
        ("joint_vel", 12),
        ("last_action", 12),
    )
    FRAME_SIZE = sum(n for _, n in FRAME)

    @property
    def OBSERVATION_LAYOUT(self) -> tuple[tuple[str, int], ...]:  # noqa: N802  (export reads it)
        """Entries of the actor's observation in order; older frames are `<entry>@t-k`."""
        layout = (
            ("gyro", 3),
            ("projected_gravity", 3),
            ("command", 3),
            ("joint_pos", 12),
            ("joint_vel", 12),
            ("last_action", 12),
        )
        for k in range(1, self.config.history):
            layout += tuple((f"{name}@t-{k}", n) for name, n in self.FRAME)
        return layout

    def observation_definitions(self) -> dict[str, dict]:
        """What each entry of the actor's observation is, for policy.json: enough to build it
        from a robot's (or native MuJoCo's) sensors without this package."""
        c = self.config
        joints = list(self.robot.joint_names)
        out = {
            "gyro": {
                "kind": "sensor",
                "sensor": "gyro",
                "units": "rad/s",
                "frame": "imu site",
                "definition": "angular velocity of the base at the IMU (MuJoCo gyro sensor)",
            },
            "projected_gravity": {
                "kind": "projected_gravity",
                "site": self.robot.imu_site,
                "units": "1 (unit vector)",
                "frame": "imu site",
                "definition": "R^T (0, 0, -1), R the imu site's world rotation matrix",
            },
            "command": {
                "kind": "velocity_command",
                "components": ["vx", "vy", "wz"],
                "units": ["m/s", "m/s", "rad/s"],
                "frame": "base: x forward, y left, wz about the vertical",
                "training_ranges": {
                    "vx": list(c.vx_range),
                    "vy": list(c.vy_range),
                    "wz": list(c.yaw_range),
                },
                "definition": "the commanded base velocity, entered as is",
            },
            "joint_pos": {
                "kind": "joint_pos",
                "joints": joints,
                "offset": [float(x) for x in self.default_pose],
                "units": "rad",
                "definition": "joint angle minus the default pose (action.offset)",
            },
            "joint_vel": {
                "kind": "joint_vel",
                "joints": joints,
                "units": "rad/s",
                "definition": "joint angular velocity",
            },
            "last_action": {
                "kind": "last_action",
                "units": "1",
                "definition": "the policy's output at the previous control step clipped to "
                "[-1, 1] (action.clip); zeros at the first step",
            },
        }
        for k in range(1, c.history):
            for name, _ in self.FRAME:
                out[f"{name}@t-{k}"] = {
                    "kind": "history",
                    "of": name,
                    "steps_back": k,
                    "definition": f"the value `{name}` had in the observation {k} control "
                    "step(s) earlier, noise included; before the episode's first step, the "
                    "first step's clean value (last_action zeros)",
                }
        return out

    # ------------------------------------------------------------------------------- rewards
    reward_names = tuple(f.name for f in dataclasses.fields(RewardScales))

    def reward_terms(
        self, data: mjx.Data, action: jax.Array, info: dict, first_contact: jax.Array
    ) -> dict[str, jax.Array]:
        """Unscaled reward terms, one small expression each."""
        c = self.config
        cmd = info["command"]
        v = self.sensor(data, "local_linvel")
        w = self.sensor(data, "gyro")
        moving = jp.linalg.norm(cmd) > 0.1
        return {
            "tracking_lin_vel": jp.exp(-jp.sum((cmd[:2] - v[:2]) ** 2) / c.tracking_sigma),
            "tracking_ang_vel": jp.exp(-((cmd[2] - w[2]) ** 2) / c.tracking_sigma),
            "lin_vel_z": v[2] ** 2,
            "ang_vel_xy": jp.sum(w[:2] ** 2),
            "orientation": jp.sum(self.projected_gravity(data)[:2] ** 2),
            "torques": jp.sum(data.actuator_force**2),
            "joint_acc": jp.sum(((data.qvel[6:] - info["last_qvel"][6:]) / c.ctrl_dt) ** 2),
            "action_rate": jp.sum((action - info["last_action"]) ** 2),
            "feet_air_time": jp.sum((info["feet_air_time"] - c.air_time_target) * first_contact)
            * moving,
            "collision": jp.sum(self.knee_heights(data) < 0.0) * 1.0,
            "stand_still": jp.sum(jp.abs(data.qpos[7:] - self.default_pose)) * ~moving,
            "feet_slip": jp.sum(
                jp.sum(self.foot_velocities(data)[:, :2] ** 2, axis=-1) * self.foot_contacts(data)
            ),
        }

    # CaT constraints the task declares (none here: penalties shape this task's behaviour).
    constraints: tuple = ()

    def violations(
        self,
        model: mjx.Model,
        data: mjx.Data,
        action: jax.Array,
        info: dict,
        first_contact: jax.Array,
        contact: jax.Array,
    ) -> dict[str, jax.Array]:
        """Violations c+ = max(0, c) of the motor limits, per joint; logged as constraint/<name>.

        Torque is the PD torque the servo asks for before its clamp, so the share of steps at
        the clamp is the torque violation rate. Joint acceleration is over one control period.
        """
        spec, c = self.robot, self.config
        torque = (
            model.actuator_gainprm[:, 0] * data.ctrl
            + model.actuator_biasprm[:, 1] * data.actuator_length
            + model.actuator_biasprm[:, 2] * data.actuator_velocity
        )
        qvel = data.qvel[6:]
        acc = (qvel - info["last_qvel"][6:]) / c.ctrl_dt
        return {
            "torque": jp.maximum(0.0, jp.abs(torque) - spec.torque_limit),
            "joint_velocity": jp.maximum(0.0, jp.abs(qvel) - spec.velocity_limit),
            "joint_acceleration": jp.maximum(0.0, jp.abs(acc) - c.acceleration_limit),
        }

    # --------------------------------------------------------------------------------- helpers
    def projected_gravity(self, data: mjx.Data) -> jax.Array:
        """Gravity direction in the IMU frame: R^T [0, 0, -1]."""
        return -data.site_xmat[self.imu_site][2, :]

    def foot_contacts(self, data: mjx.Data) -> jax.Array:
        """Foot touching the floor, from the touch sensors [bool, 4]."""
        names = [f"{leg}_touch" for leg in ("FL", "FR", "HL", "HR")]
        return jp.concatenate([self.sensor(data, s) for s in names]) > 1.0

    def foot_velocities(self, data: mjx.Data) -> jax.Array:
        """World linear velocity of the foot spheres' centres [m/s, 4 x 3], from the bodies'
        com-based velocities (`cvel` = [angular, linear] at the subtree com of the root), as
        `mj_objectVelocity` shifts them: v_p = v + w x (p - com)."""
        ang = data.cvel[self.foot_bodies, :3]
        lin = data.cvel[self.foot_bodies, 3:]
        arm = data.geom_xpos[self.foot_geoms] - data.subtree_com[self.foot_roots]
        return lin + jp.cross(ang, arm)

    def knee_heights(self, data: mjx.Data) -> jax.Array:
        return data.geom_xpos[self.knee_geoms, 2] - self.knee_radius

    def fallen(self, data: mjx.Data) -> jax.Array:
        """Base or a knee touches the floor, or the robot is upside down."""
        base_low = box_bottom_height(data, self.base_geom, self.base_half_size) < 0.005
        knee_low = jp.any(self.knee_heights(data) < 0.002)
        upside_down = self.projected_gravity(data)[2] > 0.0
        return base_low | knee_low | upside_down

    def sample_command(self, key: jax.Array) -> jax.Array:
        c = self.config
        if c.fixed_command is not None:
            return jp.array(c.fixed_command, dtype=jp.float32)
        key_x, key_y, key_w, key_zero = jax.random.split(key, 4)
        cmd = jp.stack(
            [
                jax.random.uniform(key_x, minval=c.vx_range[0], maxval=c.vx_range[1]),
                jax.random.uniform(key_y, minval=c.vy_range[0], maxval=c.vy_range[1]),
                jax.random.uniform(key_w, minval=c.yaw_range[0], maxval=c.yaw_range[1]),
            ]
        )
        return jp.where(jax.random.uniform(key_zero) < c.zero_command_prob, 0.0, cmd)

    def sample_params(self, key: jax.Array) -> dict[str, jax.Array]:
        """Per-episode physics parameters (nominal values when randomization is off)."""
        c = self.config
        if not c.randomize:
            return {
                "friction": jp.array(0.8),
                "added_mass": jp.array(0.0),
                "motor_gain": jp.array(1.0),
                "damping": jp.array(1.0),
            }
        keys = jax.random.split(key, 4)
        u = lambda k, r: jax.random.uniform(k, minval=r[0], maxval=r[1])
        return {
            "friction": u(keys[0], c.friction_range),
            "added_mass": u(keys[1], c.added_mass_range),
            "motor_gain": u(keys[2], c.motor_gain_range),
            "damping": u(keys[3], c.damping_range),
        }

    def randomized_model(self, params: dict[str, jax.Array]) -> mjx.Model:
        """The MJX model with this episode's physics (only JAX-array fields change)."""
        m = self.mjx_model
        friction = m.pair_friction.at[self.foot_pairs, :2].set(params["friction"])
        mass = m.body_mass.at[self.base_body].add(params["added_mass"])
        gain = m.actuator_gainprm.at[:, 0].multiply(params["motor_gain"])
        bias = m.actuator_biasprm.at[:, 1:3].multiply(params["motor_gain"])
        damping = m.dof_damping.at[6:].multiply(params["damping"])
        return m.replace(
            pair_friction=friction,
            body_mass=mass,
            actuator_gainprm=gain,
            actuator_biasprm=bias,
            dof_damping=damping,
        )
