"""Shared pieces of MJX tasks: model loading, named sensor access, physics substeps."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from locomotion.envs import Env, State
from locomotion.native_physics import NativePhysics
from locomotion.robots.spec import RobotSpec, load_model

# Physics implementations a task can use (config `impl`): MJX's jax and warp, or C MuJoCo on
# this machine's CPU cores (locomotion/native_physics.py).
IMPLS = ("jax", "warp", "native")
# Implementations that train on one XLA device: warp shares its contact buffers across the
# whole batch, and native steps the whole batch on every core from one callback (XLA's
# partitioner gathers a batch split over devices onto one of them for a callback, and the
# devices' collectives can then wait on each other).
ONE_DEVICE_IMPLS = ("warp", "native")


def check_warp_installed() -> None:
    """A clear error where MJX's warp implementation cannot run."""
    try:
        import warp  # noqa: F401
        from mujoco.mjx.third_party import mujoco_warp  # noqa: F401  (vendored by mujoco-mjx)
    except ImportError as err:
        raise ImportError(
            "impl='warp' needs NVIDIA Warp, which mujoco-mjx's bundled MuJoCo Warp runs on: "
            f"pip install -e '.[warp]' (warp-lang; {err})"
        ) from None


def warp_buffer_sizes(m: mujoco.MjModel) -> tuple[int, int]:
    """(contacts, constraint rows) to reserve per environment for MuJoCo Warp: its own
    heuristics for the model (MuJoCo Warp's `_default_nconmax` and `_default_njmax`: 48 and 64
    for the quadruped on flat ground, 128 and 1024 on a heightfield)."""
    from mujoco.mjx.third_party.mujoco_warp._src import io as warp_io

    return int(warp_io._default_nconmax(m)), int(warp_io._default_njmax(m))


class MjxEnv(Env):
    """An `Env` backed by an MJCF model stepped with MJX. Subclasses write the task.

    `impl` picks the physics: MJX's "jax" (XLA, the default) or "warp" (MuJoCo Warp's kernels
    through XLA's foreign-function interface; needs the `warp` extra), or "native", C MuJoCo
    stepped on the CPU cores from inside the graph (`NativePhysics`; CPU only: the task code
    and the resets stay MJX's jax implementation). Warp
    keeps the contacts and constraint rows of a whole batch in buffers shared by all its
    environments, so their size depends on the batch: whoever vmaps `reset` over N
    environments calls `prepare_batch(N)` first (the training wrapper and the evaluations do).
    """

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
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, not {impl!r}")
        if impl == "warp":
            check_warp_installed()
        self.impl = impl
        # On this process's own device: MJX's default, jax.devices()[0], belongs to process 0
        # in a multi-process run, and no other process may close over its arrays.
        self.device = jax.local_devices()[0]
        self.native: NativePhysics | None = None
        if impl == "native":
            if self.device.platform != "cpu":
                raise ValueError(
                    f"impl='native' steps C MuJoCo on this machine's CPU cores, for training "
                    f"on a CPU; JAX runs on {self.device.platform} here: use impl='jax' or "
                    f"'warp' (every step's batch would cross to the host and back)"
                )
            self.native = NativePhysics(self.mj_model, self.n_substeps)
        mjx_impl = "jax" if impl == "native" else impl
        self.mjx_model: mjx.Model = mjx.put_model(self.mj_model, device=self.device, impl=mjx_impl)
        self.num_worlds = 1  # warp: environments that share the contact buffers
        sizes = warp_buffer_sizes(self.mj_model) if impl == "warp" else (0, 0)
        self.contacts_per_world, self.constraints_per_world = sizes

    def prepare_batch(self, num_envs: int) -> None:
        """Size warp's shared contact buffer for `num_envs` environments stepped together (a
        no-op for the jax implementation)."""
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, not {num_envs}")
        if self.impl == "warp":
            self.num_worlds = int(num_envs)  # drops the kept traces (`Env`): a new graph
        else:  # jax's graphs do not read it: keep the traces
            self.__dict__["num_worlds"] = int(num_envs)

    def make_data(self) -> mjx.Data:
        """Fresh `mjx.Data` of this model and implementation (warp: buffers for
        `prepare_batch`'s batch)."""
        if self.impl == "warp":
            return mjx.make_data(
                self.mj_model,
                device=self.device,
                impl="warp",
                naconmax=self.num_worlds * self.contacts_per_world,
                njmax=self.constraints_per_world,
            )
        return mjx.make_data(self.mjx_model, device=self.device, impl=self.mjx_model.impl.value)

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
        if self.native is not None:
            return self.native.step(self.mjx_model, model, data, ctrl)
        data = data.replace(ctrl=ctrl)
        return jax.lax.fori_loop(0, self.n_substeps, lambda _, d: mjx.step(model, d), data)


def box_bottom_height(data: mjx.Data, geom_id: int, half_size: np.ndarray) -> jax.Array:
    """Lowest z of a box geom: its centre minus the box's half-extent along world z."""
    rot = data.geom_xmat[geom_id]
    return data.geom_xpos[geom_id, 2] - jp.sum(jp.abs(rot[2, :]) * half_size)
