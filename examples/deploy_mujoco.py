"""Run an exported locomotion policy in native MuJoCo from its files alone.

This script imports numpy, mujoco and onnxruntime, nothing else: it is the template to copy onto
a robot. Everything it does comes from the policy folder: `policy.onnx` (the actor, observation
normalizer folded in), `policy.json` (what each observation entry is, the action pipeline, gains
and timing; schema in locomotion/policy.schema.json) and `scene.xml` (the robot and its scene).
On a robot, replace `Deployment.read` (MuJoCo's sensors and state) with your drivers and
`Deployment.apply` with your motor commands; the rest stays.

    python examples/deploy_mujoco.py policies/quadruped_joystick --command 0.5,0,0
    python examples/deploy_mujoco.py policies/hand_reorient --goal 0.7071,0,0,0.7071
    python examples/deploy_mujoco.py policies/quadruped_joystick --viewer  # arrow keys steer

Prints one JSON line: for legged policies the mean base velocity in the base frame after the
first 2 s and whether the robot fell (the base's up axis more than 60 degrees from vertical, or
the base below half its starting height); for the hand, the cube's mean turn rate about the
vertical, its final angle to the goal and whether it left the palm.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import mujoco
import numpy as np
import onnxruntime as ort

FORMATS = ("locomotion-policy/2",)


# ------------------------------------------------------------------------------- quaternions
def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (w, x, y, z) quaternions."""
    w1, v1, w2, v2 = a[0], a[1:], b[0], b[1:]
    return np.concatenate([[w1 * w2 - v1 @ v2], w1 * v2 + w2 * v1 + np.cross(v1, v2)])


def canonical(q: np.ndarray) -> np.ndarray:
    """q or -q (the same rotation), whichever has w >= 0."""
    return -q if q[0] < 0 else q


def yaw_of(q: np.ndarray) -> float:
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


# -------------------------------------------------------------------------------- deployment
class Deployment:
    """One policy driving one MuJoCo model: observe, act, apply, step."""

    def __init__(self, folder: str | Path, model: mujoco.MjModel | None = None):
        folder = Path(folder)
        self.meta = meta = json.loads((folder / "policy.json").read_text())
        if meta.get("format") not in FORMATS:
            raise SystemExit(
                f"{folder / 'policy.json'}: format {meta.get('format')!r}, this script reads "
                f"{', '.join(FORMATS)} (re-export the policy)"
            )
        if model is None:
            model = mujoco.MjModel.from_xml_path(str(folder / meta["deployment"]["mjcf"]))
        self.model = model
        if abs(model.opt.timestep - meta["physics_dt"]) > 1e-12:
            raise SystemExit(
                f"the MJCF's timestep {model.opt.timestep} differs from the policy's "
                f"physics_dt {meta['physics_dt']}"
            )
        self.substeps = int(meta["physics_substeps"])
        self.session = ort.InferenceSession(
            str(folder / "policy.onnx"), providers=["CPUExecutionProvider"]
        )
        act = meta["action"]
        self.actuators = np.array([self._id("actuator", n) for n in act["actuators"]])
        self.offset = np.array(act["offset"])
        self.scale = float(act["scale"])
        self.limits = np.array(act["joint_limits"])
        self.layout = meta["observation"]["layout"]
        self.command = np.zeros(3)  # vx [m/s], vy [m/s], wz [rad/s] (legged tasks)
        self.goal = np.array([1.0, 0.0, 0.0, 0.0])  # cube orientation to reach (hand_reorient)
        self.last_action = np.zeros(act["size"])
        self.past: list[dict[str, np.ndarray]] = []  # earlier observations, newest first

    def _id(self, kind: str, name: str) -> int:
        obj = getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}")
        i = mujoco.mj_name2id(self.model, obj, name)
        if i < 0:
            raise SystemExit(f"the MJCF has no {kind} {name!r} that the policy needs")
        return i

    # ------------------------------------------------------------------ reading the robot
    def read(self, data: mujoco.MjData, entry: dict) -> np.ndarray:
        """One observation entry from the simulator, as policy.json defines it."""
        d = entry["definition"]
        kind = d["kind"]
        m = self.model
        if kind == "sensor":
            i = self._id("sensor", d["sensor"])
            adr, dim = m.sensor_adr[i], m.sensor_dim[i]
            return data.sensordata[adr : adr + dim].copy()
        if kind == "projected_gravity":
            return -data.site_xmat[self._id("site", d["site"])].reshape(3, 3)[2].copy()
        if kind == "velocity_command":
            return self.command.copy()
        if kind == "joint_pos":
            adr = [m.jnt_qposadr[self._id("joint", j)] for j in d["joints"]]
            return data.qpos[adr] - np.asarray(d["offset"])
        if kind == "joint_vel":
            adr = [m.jnt_dofadr[self._id("joint", j)] for j in d["joints"]]
            return data.qvel[adr].copy()
        if kind == "last_action":
            return self.last_action.copy()
        if kind == "history":
            # The observation `steps_back` steps ago; before there was one, the oldest.
            frames = self.past or [None]
            frame = frames[min(d["steps_back"], len(frames)) - 1]
            return self.read(data, self._entry(d["of"])) if frame is None else frame[d["of"]]
        if kind == "free_joint_pos":
            adr = m.jnt_qposadr[self._id("joint", d["joint"])]
            return data.qpos[adr : adr + 3] - data.site_xpos[self._id("site", d["minus_site"])]
        if kind == "free_joint_quat":
            adr = m.jnt_qposadr[self._id("joint", d["joint"])] + 3
            q = data.qpos[adr : adr + 4]
            return canonical(q / np.linalg.norm(q))
        if kind == "goal_quat":
            return canonical(self.goal / np.linalg.norm(self.goal))
        if kind == "goal_relative":
            cube = self.read(data, self._entry_of_kind("free_joint_quat"))
            return canonical(quat_mul(self.goal, cube * np.array([1.0, -1.0, -1.0, -1.0])))
        if kind == "height_scan":
            return self.height_scan(data, d)
        raise SystemExit(f"observation entry {entry['name']!r}: unknown kind {kind!r}")

    def _entry(self, name: str) -> dict:
        return next(e for e in self.layout if e["name"] == name)

    def _entry_of_kind(self, kind: str) -> dict:
        return next(e for e in self.layout if e["definition"]["kind"] == kind)

    def height_scan(self, data: mujoco.MjData, d: dict) -> np.ndarray:
        """Terrain heights around the base by vertical rays (on a robot: a height map)."""
        nx, ny = d["points"]
        root = self.model.jnt_qposadr[self._id("joint", self.meta["robot"]["root_joint"])]
        base, q = data.qpos[root : root + 3], data.qpos[root + 3 : root + 7]
        yaw = yaw_of(q)
        gx = (np.arange(nx) - (nx - 1) / 2) * d["spacing"]
        gy = (np.arange(ny) - (ny - 1) / 2) * d["spacing"]
        gx, gy = (g.ravel() for g in np.meshgrid(gx, gy, indexing="ij"))
        x = base[0] + np.cos(yaw) * gx - np.sin(yaw) * gy
        y = base[1] + np.sin(yaw) * gx + np.cos(yaw) * gy
        groups = np.zeros(6, np.uint8)
        groups[d["terrain_geom_groups"]] = 1
        top = base[2] + 2.0
        out = np.empty(len(x))
        geom = np.zeros(1, np.int32)
        for i, (px, py) in enumerate(zip(x, y, strict=True)):
            dist = mujoco.mj_ray(
                self.model,
                data,
                np.array([px, py, top]),
                np.array([0.0, 0.0, -1.0]),
                groups,
                1,
                -1,
                geom,
            )
            h = top - dist if dist >= 0 else -np.inf  # no ground under the point: reads 1
            out[i] = base[2] - h - d["nominal"]
        return np.clip(out, *d["clip"])

    def observe(self, data: mujoco.MjData) -> np.ndarray:
        values = {e["name"]: self.read(data, e) for e in self.layout}
        self.past.insert(0, values)
        del self.past[max(self._history_length(), 1) :]
        obs = np.concatenate([values[e["name"]] for e in self.layout])
        assert obs.shape == (self.meta["observation"]["size"],), obs.shape
        return obs

    def _history_length(self) -> int:
        steps = [e["definition"].get("steps_back", 0) for e in self.layout]
        return max(steps, default=0)

    # -------------------------------------------------------------------------------- acting
    def act(self, obs: np.ndarray) -> np.ndarray:
        onnx = self.meta["onnx"]
        out = self.session.run([onnx["output"]], {onnx["input"]: obs[None].astype(np.float32)})
        lo, hi = self.meta["action"]["clip"]
        return np.clip(out[0][0].astype(np.float64), lo, hi)

    def apply(self, data: mujoco.MjData, action: np.ndarray) -> None:
        """Joint position targets for the actuators' PD loops (held for one control period)."""
        target = np.clip(self.offset + self.scale * action, self.limits[:, 0], self.limits[:, 1])
        data.ctrl[self.actuators] = target
        self.last_action = action

    def reset(self, data: mujoco.MjData) -> None:
        """The scene's first keyframe (the robot's home pose) and a fresh history."""
        mujoco.mj_resetData(self.model, data)
        if self.model.nkey:
            mujoco.mj_resetDataKeyframe(self.model, data, 0)
        mujoco.mj_forward(self.model, data)
        self.reset_history()

    def reset_history(self) -> None:
        """Forget earlier steps: last_action zeros, no earlier observations."""
        self.last_action = np.zeros_like(self.last_action)
        self.past = []

    def step(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """One control period: observe, run the policy, hold its targets for the substeps."""
        obs = self.observe(data)
        action = self.act(obs)
        self.apply(data, action)
        mujoco.mj_step(self.model, data, nstep=self.substeps)
        return obs, action


# --------------------------------------------------------------------------------- monitoring
def keep_pace(viewer, begin: float, dt: float) -> bool:
    """Show the step and wait out the control period (real time); False once closed."""
    if not viewer.is_running():
        return False
    viewer.sync()
    time.sleep(max(0.0, dt - (time.perf_counter() - begin)))
    return True


def legged_summary(dep: Deployment, data: mujoco.MjData, seconds: float, viewer=None) -> dict:
    root = dep.model.jnt_qposadr[dep._id("joint", dep.meta["robot"]["root_joint"])]
    start_height = data.qpos[root + 2]
    dt = dep.meta["control_dt"]
    velocities, fell = [], False
    for k in range(int(round(seconds / dt))):
        begin = time.perf_counter()
        dep.step(data)
        q = data.qpos[root + 3 : root + 7]
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, q)
        rot = rot.reshape(3, 3)
        v_base = rot.T @ data.qvel[0:3]  # free joint: world linear velocity first
        if k * dt >= 2.0:
            velocities.append([v_base[0], v_base[1], data.qvel[5]])
        if rot[2, 2] < 0.5 or data.qpos[root + 2] < 0.5 * start_height:
            fell = True
            break
        if viewer is not None and not keep_pace(viewer, begin, dt):
            break
    mean = np.mean(velocities, axis=0) if velocities else np.full(3, np.nan)
    return {
        "command": dep.command.tolist(),
        "mean_velocity": mean.tolist(),
        "vx_error": float(abs(mean[0] - dep.command[0])),
        "fell": fell,
        "seconds": seconds,
    }


def hand_summary(dep: Deployment, data: mujoco.MjData, seconds: float, viewer=None) -> dict:
    adr = dep.model.jnt_qposadr[dep._id("joint", "cube")]
    start = data.qpos[adr : adr + 3].copy()
    dt = dep.meta["control_dt"]
    yaws, left = [yaw_of(data.qpos[adr + 3 : adr + 7])], False
    for _ in range(int(round(seconds / dt))):
        begin = time.perf_counter()
        dep.step(data)
        yaws.append(yaw_of(data.qpos[adr + 3 : adr + 7]))
        if np.linalg.norm(data.qpos[adr : adr + 3] - start) > 0.06:
            left = True
            break
        if viewer is not None and not keep_pace(viewer, begin, dt):
            break
    turned = np.unwrap(yaws)
    q = data.qpos[adr + 3 : adr + 7] / np.linalg.norm(data.qpos[adr + 3 : adr + 7])
    to_goal = canonical(quat_mul(dep.goal, q * np.array([1.0, -1.0, -1.0, -1.0])))
    return {
        "yaw_rate": float((turned[-1] - turned[0]) / (dt * (len(yaws) - 1))),
        "angle_to_goal_deg": float(np.degrees(2 * np.arccos(np.clip(to_goal[0], -1, 1)))),
        "cube_left_palm": left,
        "seconds": seconds,
    }


def _numbers(text: str, n: int, what: str) -> np.ndarray:
    values = np.array([float(x) for x in text.split(",")])
    if values.shape != (n,):
        raise SystemExit(f"{what} takes {n} comma-separated numbers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("policy", type=Path, help="folder with policy.onnx, policy.json")
    parser.add_argument("--mjcf", type=Path, help="scene to run in (default: its scene.xml)")
    parser.add_argument("--command", default="0.5,0,0", help="legged: vx,vy,wz")
    parser.add_argument("--goal", default="1,0,0,0", help="hand_reorient: cube quaternion")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--viewer", action="store_true", help="watch; arrow keys steer")
    a = parser.parse_args(argv)
    model = mujoco.MjModel.from_xml_path(str(a.mjcf)) if a.mjcf else None
    dep = Deployment(a.policy, model)
    data = mujoco.MjData(dep.model)
    dep.reset(data)
    dep.command = _numbers(a.command, 3, "--command")
    dep.goal = _numbers(a.goal, 4, "--goal")
    legged = any(e["definition"]["kind"] == "velocity_command" for e in dep.layout)
    run = legged_summary if legged else hand_summary
    if not a.viewer:
        print(json.dumps(run(dep, data, a.seconds)))
        return 0
    from mujoco import viewer as mujoco_viewer

    def key(code: int) -> None:  # arrows: vx +-0.1 m/s, wz +-0.2 rad/s
        steps = {265: (0, 0.1), 264: (0, -0.1), 263: (2, 0.2), 262: (2, -0.2)}
        if code in steps:
            i, delta = steps[code]
            dep.command[i] += delta
            print("command", np.round(dep.command, 2))

    with mujoco_viewer.launch_passive(dep.model, data, key_callback=key) as viewer:
        print(json.dumps(run(dep, data, a.seconds, viewer)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
