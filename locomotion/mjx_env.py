"""Shared pieces of MJX tasks: model loading, named sensor access, physics substeps."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from locomotion.envs import Env, State
from locomotion.robots.spec import RobotSpec, load_model


class MjxEnv(Env):
    """An `Env` backed by an MJCF model stepped with MJX. Subclasses write the task."""

    def __init__(
        self,
        robot: RobotSpec,
        scene: str | None,
        ctrl_dt: float,
        impl: str = "jax",
        edit_scene: Callable[[mujoco.MjSpec], None] | None = None,
    ):
        self.robot = robot
        self.mj_model: mujoco.MjModel = load_model(robot, scene, edit_scene)
        sim_dt = float(self.mj_model.opt.timestep)
        self.n_substeps = int(round(ctrl_dt / sim_dt))
        if self.n_substeps < 1 or abs(self.n_substeps * sim_dt - ctrl_dt) > 1e-9:
            raise ValueError(f"ctrl_dt={ctrl_dt} is not a multiple of the physics step {sim_dt}")
        self._ctrl_dt = ctrl_dt
        self.impl = impl
        self.mjx_model: mjx.Model = mjx.put_model(self.mj_model, impl=impl)

    @property
    def dt(self) -> float:
        return self._ctrl_dt

    def id(self, kind: str, name: str) -> int:
        """Id of a named MJCF element ("body", "geom", "site", "joint", "actuator", "sensor")."""
        obj = getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}")
        i = mujoco.mj_name2id(self.mj_model, obj, name)
        if i < 0:
            raise ValueError(f"{kind} {name!r} not found in {self.robot.name} MJCF")
        return i

    def sensor_slice(self, name: str) -> slice:
        i = self.id("sensor", name)
        adr, dim = int(self.mj_model.sensor_adr[i]), int(self.mj_model.sensor_dim[i])
        return slice(adr, adr + dim)

    def sensor(self, data: mjx.Data, name: str) -> jax.Array:
        return data.sensordata[self.sensor_slice(name)]

    # A task step is split around the physics so that native-MuJoCo replay can run the very
    # same task code with C mj_step in the middle (locomotion/replay.py).
    def before_physics(self, state: State, action: jax.Array) -> tuple[State, jax.Array]:
        """Task logic before the physics: returns the state (e.g. pushed) and the ctrl to hold."""
        raise NotImplementedError

    def after_physics(self, state: State, data: mjx.Data, action: jax.Array) -> State:
        """Task logic after the physics: observation, rewards, termination, bookkeeping."""
        raise NotImplementedError

    def model_for(self, state: State) -> mjx.Model:
        """The MJX model of this episode (domain randomization); the nominal one by default."""
        return self.mjx_model

    def step(self, state: State, action: jax.Array) -> State:
        state, ctrl = self.before_physics(state, action)
        data = self.physics_step(self.model_for(state), state.pipeline_state, ctrl)
        return self.after_physics(state, data, action)

    def physics_step(self, model: mjx.Model, data: mjx.Data, ctrl: jax.Array) -> mjx.Data:
        """Hold `ctrl` over the substeps of one control period."""
        data = data.replace(ctrl=ctrl)
        return jax.lax.fori_loop(0, self.n_substeps, lambda _, d: mjx.step(model, d), data)


def box_bottom_height(data: mjx.Data, geom_id: int, half_size: np.ndarray) -> jax.Array:
    """Lowest z of a box geom: its centre minus the box's half-extent along world z."""
    rot = data.geom_xmat[geom_id]
    return data.geom_xpos[geom_id, 2] - jp.sum(jp.abs(rot[2, :]) * half_size)
