"""`RobotSpec`: what a task needs to know about a robot, checked against its MJCF."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np

ROBOTS_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True, kw_only=True)
class RobotSpec:
    """Names, default pose, gains and limits of one robot. Units are SI (m, rad, N*m, s)."""

    name: str
    model_dir: str  # folder under robots/ holding the MJCF files
    scenes: tuple[tuple[str, str], ...]  # (scene name, MJCF file) pairs; the first is the default
    joint_names: tuple[str, ...]  # actuated joints, in actuator order
    actuator_names: tuple[str, ...]
    default_pose: tuple[float, ...]  # [rad] standing pose, one per joint
    kp: float  # [N*m/rad] position gain of every actuator
    kd: float  # [N*m*s/rad] velocity gain of every actuator
    torque_limit: float  # [N*m] actuator force clamp
    velocity_limit: float  # [rad/s] joint speed the motors can reach (used by constraints)
    joint_lower: tuple[float, ...]  # [rad]
    joint_upper: tuple[float, ...]  # [rad]
    root_body: str  # the floating base of a legged robot, the fixed palm of a hand
    imu_site: str = ""  # "" for robots without one (a fixed-base hand)
    foot_sites: tuple[str, ...] = ()
    foot_geoms: tuple[str, ...] = ()
    termination_geoms: tuple[str, ...] = ()  # touching the floor with these ends an episode
    floor_geom: str = "floor"
    sensors: tuple[str, ...] = ()  # sensor names the tasks read
    fingertip_sites: tuple[str, ...] = ()  # hands: one site per fingertip
    object_body: str = ""  # the manipulated object's body in the scenes ("" if none)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def scene_path(self, scene: str | None = None) -> Path:
        """Path of a scene's MJCF (the default scene when `scene` is None)."""
        names = dict(self.scenes)
        if scene is None:
            scene = self.scenes[0][0]
        if scene not in names:
            raise ValueError(
                f"robot {self.name!r} has no scene {scene!r}; known scenes: {sorted(names)}"
            )
        return ROBOTS_DIR / self.model_dir / names[scene]

    def mjcf_sha256(self, scene: str | None = None) -> str:
        """Hash of the MJCF files of this robot that a scene uses (the robot's own files and
        that scene's, not the other scenes'): exported policies detect a changed model."""
        other_scenes = {f for name, f in self.scenes if name != (scene or self.scenes[0][0])}
        digest = hashlib.sha256()
        for path in sorted((ROBOTS_DIR / self.model_dir).glob("*.xml")):
            if path.name in other_scenes:
                continue
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def check(self, model: mujoco.MjModel) -> None:
        """Raise ValueError if `model` disagrees with this spec (names, order, gains, limits)."""
        problems = []

        def id_of(kind: mujoco.mjtObj, name: str) -> int:
            i = mujoco.mj_name2id(model, kind, name)
            if i < 0:
                problems.append(f"missing {kind.name.lower()[6:]} {name!r}")
            return i

        if model.nu != self.num_joints:
            problems.append(f"{model.nu} actuators in MJCF, {self.num_joints} in spec")
        for k, (joint, act) in enumerate(zip(self.joint_names, self.actuator_names, strict=True)):
            j = id_of(mujoco.mjtObj.mjOBJ_JOINT, joint)
            a = id_of(mujoco.mjtObj.mjOBJ_ACTUATOR, act)
            if j < 0 or a < 0:
                continue
            if a != k:
                problems.append(f"actuator {act!r} is number {a}, spec says {k}")
            if model.actuator_trnid[a, 0] != j:
                problems.append(f"actuator {act!r} does not drive joint {joint!r}")
            lo, hi = model.jnt_range[j]
            if not np.allclose([lo, hi], [self.joint_lower[k], self.joint_upper[k]], atol=1e-6):
                problems.append(f"joint {joint!r} range {lo, hi} differs from spec")
            if not self.joint_lower[k] <= self.default_pose[k] <= self.joint_upper[k]:
                problems.append(f"default pose of {joint!r} is outside its range")
            if not np.isclose(model.actuator_gainprm[a, 0], self.kp):
                problems.append(f"actuator {act!r} kp {model.actuator_gainprm[a, 0]} != {self.kp}")
            if not np.isclose(-model.actuator_biasprm[a, 2], self.kd):
                problems.append(f"actuator {act!r} kd {-model.actuator_biasprm[a, 2]} != {self.kd}")
            limit = self.torque_limit
            if not np.allclose(model.actuator_forcerange[a], [-limit, limit]):
                problems.append(f"actuator {act!r} force range differs from torque limit")
        id_of(mujoco.mjtObj.mjOBJ_BODY, self.root_body)
        if self.imu_site:
            id_of(mujoco.mjtObj.mjOBJ_SITE, self.imu_site)
        if self.object_body:
            id_of(mujoco.mjtObj.mjOBJ_BODY, self.object_body)
        for site in (*self.foot_sites, *self.fingertip_sites):
            id_of(mujoco.mjtObj.mjOBJ_SITE, site)
        for geom in (*self.foot_geoms, *self.termination_geoms, self.floor_geom):
            id_of(mujoco.mjtObj.mjOBJ_GEOM, geom)
        for sensor in self.sensors:
            id_of(mujoco.mjtObj.mjOBJ_SENSOR, sensor)
        if problems:
            raise ValueError(
                f"MJCF of robot {self.name!r} does not match its RobotSpec: " + "; ".join(problems)
            )


def load_model(
    spec: RobotSpec,
    scene: str | None = None,
    edit: Callable[[mujoco.MjSpec], None] | None = None,
) -> mujoco.MjModel:
    """Compile a scene's MJCF and check it against the spec; clear errors for bad files.
    `edit` changes the parsed scene before it compiles (e.g. `terrain.add_to_spec` gives the
    rough scene its heightfield)."""
    path = spec.scene_path(scene)
    try:
        if edit is None:
            model = mujoco.MjModel.from_xml_path(str(path))
        else:
            mjspec = mujoco.MjSpec.from_file(str(path))
            edit(mjspec)
            model = mjspec.compile()
    except ValueError as err:  # mujoco raises ValueError with the parser's message
        raise ValueError(f"cannot compile MJCF {path}: {err}") from None
    spec.check(model)
    return model
