"""What the hand-and-cube tasks share: the MJX environment base, domain randomization, the
proprioceptive observation with its short history, drop detection and quaternion helpers.

The hand (robots/hand) is fixed palm up with the cube resting on the palm and the fingertips on
the cube's top face. qpos = 16 hand joints, then the cube's free joint (position [m], quaternion
w, x, y, z); qvel = 16 joint velocities, then the cube's linear velocity (world frame) and angular
velocity (cube frame, MuJoCo's free-joint convention).

Action (16): joint position targets `default_pose + action_scale * clip(action, -1, 1)`, clipped
to the joint ranges, held over the physics substeps of one control period.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from locomotion.envs import State
from locomotion.mjx_env import MjxEnv
from locomotion.replay import EvalReport
from locomotion.robots import HAND

NUM_JOINTS = HAND.num_joints  # 16


@dataclasses.dataclass(frozen=True, kw_only=True)
class HandNoise:
    """Standard deviation of the actor's observation noise (0 disables), times `obs_noise`."""

    joint_pos: float = 0.02  # [rad]
    cube_pos: float = 0.005  # [m]
    cube_quat: float = 0.1  # [rad] angle std of a random rotation applied to the cube's pose


@dataclasses.dataclass(frozen=True, kw_only=True)
class HandRandomization:
    """Per-episode physics ranges, used when the task's `randomize` is on."""

    cube_mass: tuple[float, float] = (0.07, 0.13)  # [kg], nominal 0.1
    cube_half_size: tuple[float, float] = (0.031, 0.034)  # [m], nominal 0.0325 (side 0.065)
    friction: tuple[float, float] = (0.7, 1.2)  # scales the sliding friction of every cube pair
    damping: tuple[float, float] = (0.7, 1.5)  # scales the hand's joint damping
    armature: tuple[float, float] = (0.8, 1.3)  # scales the hand's joint armature
    motor_gain: tuple[float, float] = (0.85, 1.15)  # scales kp and kv of every servo

    def __post_init__(self):
        for f in dataclasses.fields(self):
            lo, hi = getattr(self, f.name)
            if lo > hi or lo <= 0:
                raise ValueError(f"randomization {f.name}: need 0 < low <= high, got {lo, hi}")


PARAM_NAMES = tuple(f.name for f in dataclasses.fields(HandRandomization))


@dataclasses.dataclass(frozen=True, kw_only=True)
class HandConfig:
    """Settings every hand-and-cube task shares; a task's config extends it (rewards etc.)."""

    scene: str = "cube"
    # Physics: MJX's jax or warp (the `warp` extra), or C MuJoCo on the CPU cores ("native").
    impl: Literal["jax", "warp", "native"] = "jax"
    ctrl_dt: float = 0.05  # [s] control period (10 physics steps of 0.005 s)
    episode_seconds: float = 20.0  # [s] time limit (a truncation, not a termination)
    action_scale: float = 0.5  # [rad] per unit action
    history: int = 3  # proprioceptive frames in the actor's observation
    obs_noise: float = 1.0  # multiplies every HandNoise entry (0 = clean observations)
    noise: HandNoise = HandNoise()
    randomize: bool = True  # domain randomization per episode (HandRandomization ranges)
    domain: HandRandomization = HandRandomization()
    init_joint_noise: float = 0.03  # [rad] spread of the initial joint positions
    drop_below_palm: float = 0.0  # [m] dropped: cube centre this far below the palm's top face
    max_cube_distance: float = 0.06  # [m] dropped: cube centre this far from its start

    def __post_init__(self):
        if self.ctrl_dt <= 0 or self.episode_seconds <= 0:
            raise ValueError("ctrl_dt and episode_seconds must be positive")
        if self.history < 1:
            raise ValueError("history must be >= 1")


# --------------------------------------------------------------------------------- quaternions
def quat_mul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Hamilton product a * b of (w, x, y, z) quaternions."""
    w1, v1, w2, v2 = a[0], a[1:], b[0], b[1:]
    return jp.concatenate([(w1 * w2 - v1 @ v2)[None], w1 * v2 + w2 * v1 + jp.cross(v1, v2)])


def quat_conj(q: jax.Array) -> jax.Array:
    return q * jp.array([1.0, -1.0, -1.0, -1.0])


def quat_rotate(q: jax.Array, v: jax.Array) -> jax.Array:
    """The vector v rotated by the unit quaternion q."""
    w, u = q[0], q[1:]
    return v + 2.0 * jp.cross(u, jp.cross(u, v) + w * v)


def axis_angle_quat(rotvec: jax.Array) -> jax.Array:
    """Unit quaternion of the rotation vector `rotvec` (axis * angle [rad])."""
    angle = jp.linalg.norm(rotvec)
    axis = rotvec / jp.maximum(angle, 1e-9)
    return jp.concatenate([jp.cos(angle / 2)[None], jp.sin(angle / 2) * axis])


def random_quat(key: jax.Array) -> jax.Array:
    """A uniformly random rotation (Shoemake's method)."""
    u1, u2, u3 = jax.random.uniform(key, (3,))
    a, b = jp.sqrt(1.0 - u1), jp.sqrt(u1)
    return jp.stack(
        [
            b * jp.cos(2 * jp.pi * u3),
            a * jp.sin(2 * jp.pi * u2),
            a * jp.cos(2 * jp.pi * u2),
            b * jp.sin(2 * jp.pi * u3),
        ]
    )


def canonical(q: jax.Array) -> jax.Array:
    """q or -q (the same rotation), whichever has w >= 0: one observation per orientation."""
    return jp.where(q[0] < 0, -q, q)


def yaw_turned(q_from: jax.Array, q_to: jax.Array) -> jax.Array:
    """World-z component [rad] of the rotation vector that takes q_from to q_to: how far the
    cube really turned about the vertical between two samples (unlike a sampled angular
    velocity, which a vibrating cube can keep positive without turning at all)."""
    diff = canonical(quat_mul(q_to, quat_conj(q_from)))
    sin_half = jp.linalg.norm(diff[1:])
    angle = 2.0 * jp.arctan2(sin_half, diff[0])
    return angle * diff[3] / jp.maximum(sin_half, 1e-9)


def orientation_error(q: jax.Array, goal: jax.Array) -> jax.Array:
    """Angle [rad, 0..pi] of the rotation from q to goal (atan2: exact near 0 and pi)."""
    diff = quat_mul(goal, quat_conj(q))
    return 2.0 * jp.arctan2(jp.linalg.norm(diff[1:]), jp.abs(diff[0]))


# ---------------------------------------------------------------------------------- the base
class HandCubeEnv(MjxEnv):
    """The hand holding a cube in MJX. Subclasses add the task: goal, rewards, observation;
    their config extends HandConfig."""

    VIDEO_CAMERA = "palm"  # videos use this fixed scene camera (locomotion/video.py)
    EVAL_REPORT = EvalReport(termination="drop")

    def __init__(self, config: HandConfig):
        super().__init__(HAND, config.scene, config.ctrl_dt, impl=config.impl)
        self.config = config
        self.episode_length = int(round(config.episode_seconds / config.ctrl_dt))
        spec, m = self.robot, self.mj_model
        self.default_pose = jp.array(spec.default_pose)
        self.joint_lower, self.joint_upper = jp.array(spec.joint_lower), jp.array(spec.joint_upper)
        self.init_qpos = jp.array(m.key_qpos[m.key("home").id])
        cube_joint = self.id("joint", "cube")
        self.cube_qpos = int(m.jnt_qposadr[cube_joint])  # 16: position, then quaternion
        self.cube_qvel = int(m.jnt_dofadr[cube_joint])  # 16: linear, then angular velocity
        self.cube_body = self.id("body", spec.object_body)
        self.cube_geom = self.id("geom", "cube")
        cube_pairs = (m.pair_geom1 == self.cube_geom) | (m.pair_geom2 == self.cube_geom)
        self.cube_pairs = np.flatnonzero(cube_pairs)
        self.goal_mocap = int(m.body_mocapid[self.id("body", "goal")])
        self.fingertips = np.array([self.id("site", s) for s in spec.fingertip_sites])
        # Palm geometry and the cube's rest position, from the compiled model (no hard-coded ids).
        data = mujoco.MjData(m)
        mujoco.mj_resetDataKeyframe(m, data, m.key("home").id)
        mujoco.mj_forward(m, data)
        self.palm_center = jp.array(data.site_xpos[self.id("site", "palm_center")])
        self.cube_half = float(m.geom_size[self.cube_geom, 0])
        self.cube_rest = jp.array(data.qpos[self.cube_qpos : self.cube_qpos + 3])

    @property
    def action_size(self) -> int:
        return NUM_JOINTS

    @property
    def frame_size(self) -> int:
        """One proprioceptive frame: joint positions and the last action."""
        return 2 * NUM_JOINTS

    def proprio_layout(self) -> tuple[tuple[str, int], ...]:
        """Layout of the frames, newest first; older frames are named `<entry>@t-k`."""
        out = (("joint_pos", NUM_JOINTS), ("last_action", NUM_JOINTS))
        for k in range(1, self.config.history):
            out += ((f"joint_pos@t-{k}", NUM_JOINTS), (f"last_action@t-{k}", NUM_JOINTS))
        return out

    def observation_definitions(self) -> dict[str, dict]:
        """What each entry of the actor's observation is, for policy.json (see the quadruped's
        `observation_definitions`); tasks add their cube and goal entries."""
        out = {
            "joint_pos": {
                "kind": "joint_pos",
                "joints": list(self.robot.joint_names),
                "offset": [float(x) for x in self.default_pose],
                "units": "rad",
                "definition": "joint angle minus the default pose (action.offset)",
            },
            "last_action": {
                "kind": "last_action",
                "units": "1",
                "definition": "the policy's output at the previous control step clipped to "
                "[-1, 1] (action.clip); zeros at the first step",
            },
        }
        for k in range(1, self.config.history):
            for name in ("joint_pos", "last_action"):
                out[f"{name}@t-{k}"] = {
                    "kind": "history",
                    "of": name,
                    "steps_back": k,
                    "definition": f"the value `{name}` had in the observation {k} control "
                    "step(s) earlier, noise included; before the first step, the first "
                    "step's clean value (joint_pos without noise, last_action zeros)",
                }
        return out

    def cube_definitions(self) -> dict[str, dict]:
        """The cube's pose entries (hand_reorient's observation)."""
        return {
            "cube_pos": {
                "kind": "free_joint_pos",
                "joint": "cube",
                "minus_site": "palm_center",
                "units": "m",
                "frame": "world",
                "definition": "cube centre (its free joint's position) minus the palm_center "
                "site's position",
            },
            "cube_quat": {
                "kind": "free_joint_quat",
                "joint": "cube",
                "units": "1 (w, x, y, z)",
                "frame": "world",
                "definition": "cube orientation, the sign chosen so that w >= 0",
            },
        }

    # ------------------------------------------------------------------------ randomization
    def sample_params(self, key: jax.Array) -> dict[str, jax.Array]:
        """Per-episode physics: cube mass [kg] and half-size [m], scales of the rest."""
        c, r = self.config, self.config.domain
        if not c.randomize:
            nominal = {name: 1.0 for name in PARAM_NAMES}
            nominal.update(
                cube_mass=float(self.mj_model.body_mass[self.cube_body]),
                cube_half_size=self.cube_half,
            )
            return {k: jp.array(v) for k, v in nominal.items()}
        keys = jax.random.split(key, len(PARAM_NAMES))
        return {
            name: jax.random.uniform(k, minval=getattr(r, name)[0], maxval=getattr(r, name)[1])
            for name, k in zip(PARAM_NAMES, keys, strict=True)
        }

    def randomized_model(self, params: dict[str, jax.Array]) -> mjx.Model:
        """The MJX model with this episode's physics (only JAX-array fields change).

        The cube's collision box and inertia follow its size and mass (uniform density); its
        visual face plates keep their nominal place.
        """
        m, n = self.mjx_model, NUM_JOINTS
        half, mass = params["cube_half_size"], params["cube_mass"]
        inertia = 2.0 / 3.0 * mass * half**2  # m * side^2 / 6
        friction = m.pair_friction.at[self.cube_pairs, :2].multiply(params["friction"])
        return m.replace(
            geom_size=m.geom_size.at[self.cube_geom].set(half),
            geom_rbound=m.geom_rbound.at[self.cube_geom].set(jp.sqrt(3.0) * half),
            body_mass=m.body_mass.at[self.cube_body].set(mass),
            body_inertia=m.body_inertia.at[self.cube_body].set(inertia),
            pair_friction=friction,
            dof_damping=m.dof_damping.at[:n].multiply(params["damping"]),
            dof_armature=m.dof_armature.at[:n].multiply(params["armature"]),
            actuator_gainprm=m.actuator_gainprm.at[:, 0].multiply(params["motor_gain"]),
            actuator_biasprm=m.actuator_biasprm.at[:, 1:3].multiply(params["motor_gain"]),
        )

    def model_for(self, state: State) -> mjx.Model:
        return self.randomized_model(state.info["params"])

    def params_vector(self, params: dict[str, jax.Array]) -> jax.Array:
        return jp.stack([params[k] for k in PARAM_NAMES])

    # -------------------------------------------------------------------------------- reset
    def initial_data(self, key: jax.Array, params: dict[str, jax.Array]) -> mjx.Data:
        """The home grasp with joint noise, the cube resting on the palm (sized per episode)."""
        c = self.config
        noise = c.init_joint_noise * jax.random.uniform(key, (NUM_JOINTS,), minval=-1, maxval=1)
        joints = jp.clip(self.default_pose + noise, self.joint_lower, self.joint_upper)
        # A resized cube still sits on the palm: its centre moves with the half-size.
        cube_pos = self.cube_rest.at[2].add(params["cube_half_size"] - self.cube_half)
        qpos = self.init_qpos.at[:NUM_JOINTS].set(joints)
        qpos = qpos.at[self.cube_qpos : self.cube_qpos + 3].set(cube_pos)
        data = self.make_data()
        data = data.replace(
            qpos=qpos,
            ctrl=joints,
            mocap_pos=jp.array(self.mj_model.key_mpos[0]).reshape(data.mocap_pos.shape),
            mocap_quat=jp.array(self.mj_model.key_mquat[0]).reshape(data.mocap_quat.shape),
        )
        return mjx.forward(self.randomized_model(params), data)

    def initial_info(self, key: jax.Array, params: dict[str, jax.Array], data: mjx.Data) -> dict:
        """Info every hand task carries; the history starts as copies of the clean frame."""
        clean = jp.concatenate([data.qpos[:NUM_JOINTS] - self.default_pose, jp.zeros(NUM_JOINTS)])
        return {
            "rng": key,
            "step": jp.zeros((), jp.int32),
            "last_action": jp.zeros(NUM_JOINTS),
            "history": jp.tile(clean, self.config.history - 1),
            "cube_start": self.cube_pose(data)[0],
            "params": params,
        }

    # ------------------------------------------------------------------------------- step
    def before_physics(self, state: State, action: jax.Array) -> tuple[State, jax.Array]:
        """Joint targets to hold; the newest frames of the last observation become history."""
        c = self.config
        action = jp.clip(action, -1.0, 1.0)
        target = self.default_pose + c.action_scale * action
        target = jp.clip(target, self.joint_lower, self.joint_upper)
        keep = (c.history - 1) * self.frame_size
        info = {**state.info, "history": state.obs["state"][:keep]}
        return state.replace(info=info), target

    # ------------------------------------------------------------------------ observation
    def proprio(self, data: mjx.Data, info: dict, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(noisy frame followed by the history, clean frame) for the actor and critic."""
        c = self.config
        joint_pos = data.qpos[:NUM_JOINTS] - self.default_pose
        sigma = c.obs_noise * c.noise.joint_pos
        noisy = joint_pos + sigma * jax.random.normal(key, joint_pos.shape)
        clean = jp.concatenate([joint_pos, info["last_action"]])
        return jp.concatenate([noisy, info["last_action"], info["history"]]), clean

    def noisy_cube_pose(self, data: mjx.Data, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Cube position relative to the palm centre [m] and quaternion, with sensor noise."""
        c = self.config
        pos, quat = self.cube_pose(data)
        key_pos, key_rot = jax.random.split(key)
        pos = pos + c.obs_noise * c.noise.cube_pos * jax.random.normal(key_pos, (3,))
        rotvec = c.obs_noise * c.noise.cube_quat * jax.random.normal(key_rot, (3,))
        return pos - self.palm_center, canonical(quat_mul(axis_angle_quat(rotvec), quat))

    def privileged_common(self, data: mjx.Data, info: dict, clean: jax.Array) -> list[jax.Array]:
        """The critic's view shared by the hand tasks (83 numbers)."""
        pos, quat = self.cube_pose(data)
        lin, ang = self.cube_velocity(data)
        tips = data.site_xpos[self.fingertips] - self.palm_center
        touch = jp.concatenate([self.sensor(data, s) for s in self.robot.sensors])
        return [
            clean,  # joint positions - default, last action (32)
            data.qvel[:NUM_JOINTS],  # joint velocities [rad/s] (16)
            pos - self.palm_center,  # [m] (3)
            canonical(quat),  # (4)
            lin,  # [m/s] world frame (3)
            ang,  # [rad/s] world frame (3)
            tips.ravel(),  # fingertip positions relative to the palm centre [m] (12)
            jp.log1p(touch),  # fingertip touch, log(1 + N) (4)
            self.params_vector(info["params"]),  # randomized physics (6)
        ]

    # ----------------------------------------------------------------------------- cube
    def cube_pose(self, data: mjx.Data) -> tuple[jax.Array, jax.Array]:
        """World position [m] and unit quaternion (w, x, y, z) of the cube."""
        q = data.qpos[self.cube_qpos : self.cube_qpos + 7]
        return q[:3], q[3:] / jp.linalg.norm(q[3:])

    def cube_velocity(self, data: mjx.Data) -> tuple[jax.Array, jax.Array]:
        """Linear [m/s] and angular [rad/s] velocity of the cube, both in the world frame."""
        v = data.qvel[self.cube_qvel : self.cube_qvel + 6]
        return v[:3], quat_rotate(self.cube_pose(data)[1], v[3:])

    def dropped(self, data: mjx.Data, start: jax.Array) -> jax.Array:
        """The cube fell off the palm (centre below the palm top) or left its place."""
        c = self.config
        pos = self.cube_pose(data)[0]
        low = pos[2] < self.palm_center[2] - c.drop_below_palm
        far = jp.linalg.norm(pos - start) > c.max_cube_distance
        return low | far

    def score(self, terms: dict[str, jax.Array], data: mjx.Data, info: dict):
        """Adds the drop (float32, as the state keeps its types: no recompile) to the task's
        unscaled reward terms; returns (terms, reward = sum of scale * term * ctrl_dt, done)."""
        dropped = self.dropped(data, info["cube_start"]).astype(jp.float32)
        terms = {**terms, "termination": dropped}
        scales = dataclasses.asdict(self.config.rewards)
        reward = sum(scales[k] * v for k, v in terms.items()) * self.config.ctrl_dt
        return terms, reward, dropped

    def energy(self, data: mjx.Data) -> jax.Array:
        """Mechanical power of the servos, sum of |torque * joint velocity| [W]."""
        return jp.sum(jp.abs(data.actuator_force * data.qvel[:NUM_JOINTS]))
