"""C MuJoCo as the physics of a task's step (`impl="native"`): the task code stays JAX, and
each control period's physics steps in C on this machine's CPU cores, inside the compiled
graph, through `jax.pure_callback`.

Why: on a CPU, C MuJoCo steps our models several times faster than MJX does (the quadruped
on flat ground: 9.4 k control steps/s on one core of the 2-core CI machine, against MJX's
2.9 k for its whole batch on the same core; see benchmarks/NOTES.md), and an episode trained
in it runs in the simulator its policy is evaluated in (`locomotion eval` replays in C
MuJoCo). On a GPU the batch would cross to the host every step: there MJX stays the choice.

The callback is stateless: the JAX state stays the source of truth. Every call copies the
physics state MJX keeps (time, positions, velocities, actuator activations, controls, the
solver's warm start, mocap poses, applied forces) into an `MjData`, steps the control period
and returns what C MuJoCo recomputed that task code reads (`replay._NATIVE_FIELDS`, the
fields native replay hands the same task code, plus the warm start). So automatic resets,
checkpoints and resumes work as with MJX, and a batch splits over worker threads (one per
usable core) in any order with the same result. Per-episode randomized physics reaches C
MuJoCo as the fields of the task's `model_for(state)` that differ from the nominal model
(each env's values are written into a worker's copy of the MjModel before its step).

Contacts and constraint rows are not copied back: the `mjx.Data` keeps the arrays of its
reset, which no task reads (foot contacts come from touch sensors), as in native replay.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

# The physics state of an `mjx.Data` that C MuJoCo's step starts from (MuJoCo's
# mjSTATE_INTEGRATION, less equality activations, user data and plugin state, which no model
# of ours uses).
STATE_FIELDS = (
    "time",
    "qpos",
    "qvel",
    "act",
    "ctrl",
    "qacc_warmstart",
    "mocap_pos",
    "mocap_quat",
    "qfrc_applied",
    "xfrc_applied",
)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


class NativePhysics:
    """Steps batches of `mj_model` in C MuJoCo for a task's `physics_step`.

    `threads` workers (default: the usable cores) share each batch. Each worker keeps its own
    copy of the MjModel (for the episodes' randomized fields) and `MjData`, made at first use:
    changes to `mj_model` after the first step do not reach them."""

    def __init__(self, mj_model: mujoco.MjModel, n_substeps: int, threads: int | None = None):
        from locomotion.replay import _NATIVE_FIELDS  # (replay imports the tasks' modules)

        self.nominal = mj_model
        self.n_substeps = int(n_substeps)
        self.threads = int(threads or usable_cores())
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, not {self.threads}")
        self.public = (*_NATIVE_FIELDS[0], "qacc_warmstart")
        self.private = _NATIVE_FIELDS[1]
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()

    # ------------------------------------------------------------------------ inside the graph
    def step(
        self, nominal: mjx.Model, model: mjx.Model, data: mjx.Data, ctrl: jax.Array
    ) -> mjx.Data:
        """`data` after one control period holding `ctrl`, stepped by C MuJoCo with `model`'s
        physics (`nominal` is the task's unrandomized MJX model: the fields of `model` that
        are not `nominal`'s own arrays are the episode's randomized ones)."""
        impl_fields = dataclasses.fields(model._impl)
        if model.opt is not nominal.opt or any(
            getattr(model._impl, f.name) is not getattr(nominal._impl, f.name) for f in impl_fields
        ):
            raise NotImplementedError(
                "impl='native' takes the randomized fields of a task's model, not its options "
                "(model.opt) or MJX's own (model._impl): use impl='jax' for such a task"
            )
        varied = {
            f.name: getattr(model, f.name)
            for f in dataclasses.fields(model)
            if f.name not in ("opt", "stat", "_impl")
            and getattr(model, f.name) is not getattr(nominal, f.name)
        }
        for name in varied:
            if not hasattr(self.nominal, name):
                raise NotImplementedError(
                    f"impl='native': the task randomizes mjx.Model.{name}, which MjModel lacks"
                )
        data = data.replace(ctrl=ctrl)
        inputs = [jp.asarray(getattr(data, name)) for name in STATE_FIELDS]
        inputs += [jp.asarray(v) for v in varied.values()]
        shapes = {name: getattr(data, name) for name in self.public}
        shapes.update({name: getattr(data._impl, name) for name in self.private})
        result = {
            name: jax.ShapeDtypeStruct(np.shape(v), jp.asarray(v).dtype)
            for name, v in shapes.items()
        }
        per_env = {name: np.shape(getattr(data, name)) for name in STATE_FIELDS}
        per_env.update({name: np.shape(v) for name, v in varied.items()})
        out = jax.pure_callback(
            lambda *arrays: self._host(per_env, tuple(varied), result, arrays),
            result,
            *inputs,
            vmap_method="broadcast_all",
        )
        public = {name: out[name] for name in self.public}
        private = {name: out[name] for name in self.private}
        return data.replace(**public, _impl=data._impl.replace(**private))

    # ------------------------------------------------------------------------------- the host
    def _host(self, per_env: dict, varied: tuple, result: dict, arrays: tuple) -> dict:
        names = (*STATE_FIELDS, *varied)
        arrays = [np.asarray(a) for a in arrays]
        qpos = arrays[names.index("qpos")]
        batch = qpos.shape[: qpos.ndim - len(per_env["qpos"])]
        n = int(np.prod(batch))
        flat = {name: a.reshape((n, *per_env[name])) for name, a in zip(names, arrays, strict=True)}
        out = {name: np.empty((n, *r.shape), r.dtype) for name, r in result.items()}
        # Always on the pool's threads, never on the caller's: XLA runs callbacks on threads
        # of its own, whose stacks are too small for C MuJoCo (a segmentation fault).
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mujoco")
        chunks = np.array_split(np.arange(n), min(self.threads, n))
        jobs = [self._pool.submit(self._step_envs, c, flat, varied, out) for c in chunks]
        for job in jobs:
            job.result()
        return {name: a.reshape(batch + a.shape[1:]) for name, a in out.items()}

    def _worker(self, read: tuple) -> tuple:
        """This thread's copy of the model, its MjData and the reader of `read`'s fields. The
        copy does not reset an unstable simulation (MuJoCo's auto-reset to the model's
        reference pose): its non-finite state goes back to the task as MJX's does, where the
        training wrapper restarts the episode and counts it."""
        local = self._local
        if not hasattr(local, "model"):
            local.model = copy.copy(self.nominal)
            local.model.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_AUTORESET
            local.data = mujoco.MjData(local.model)
            local.readers = {}
        if read not in local.readers:
            local.readers[read] = _Reader(local.data, read)
        return local.model, local.data, local.readers[read]

    def _step_envs(self, envs: np.ndarray, flat: dict, varied: tuple, out: dict) -> None:
        read = tuple(name for name in out if name != "time")
        m, d, reader = self._worker(read)
        targets = [(getattr(m, name), flat[name]) for name in varied]
        targets += [
            (getattr(d, name), flat[name]) for name in STATE_FIELDS[1:] if getattr(d, name).size
        ]
        # A non-finite input (a NaN action: C MuJoCo would zero that control and go on) gives
        # a non-finite output, as in MJX.
        finite = np.ones(len(envs), bool)
        for name in STATE_FIELDS:
            values = flat[name][envs[0] : envs[-1] + 1].reshape(len(envs), -1)
            finite &= np.isfinite(values).all(axis=1)
        staged = reader.stage(len(envs))
        time = flat["time"]
        try:
            for j, i in enumerate(envs):
                if not finite[j]:
                    continue
                for field, values in targets:
                    field[...] = values[i].reshape(field.shape)
                d.time = time[i]
                mujoco.mj_step(m, d, nstep=self.n_substeps)
                reader.copy(staged, j)
                out["time"][i] = d.time
        finally:
            for name in varied:  # back to nominal for a later call without these fields
                getattr(m, name)[...] = getattr(self.nominal, name)
        chunk = {name: out[name][envs[0] : envs[-1] + 1] for name in out}
        reader.unstage(staged, chunk)
        for values in chunk.values():
            values[~finite] = np.nan

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


class _Reader:
    """Copies fields of one `MjData` out after each env's step, fast: into a float64 row per
    env through views made once (MjData's attributes make a new array at every access), then
    one conversion per field for the whole chunk to the task's dtype. Field by field and env
    by env, with the attribute access and the conversion each time, the copy cost more than
    the quadruped's physics."""

    def __init__(self, data: mujoco.MjData, names: tuple):
        self.views = [getattr(data, name).reshape(-1) for name in names]  # views of `data`
        sizes = [v.size for v in self.views]
        offsets = np.cumsum([0, *sizes])
        self.fields = list(zip(names, offsets[:-1], sizes, strict=True))
        self.width = int(offsets[-1])

    def stage(self, n: int) -> np.ndarray:
        return np.empty((n, self.width))

    def copy(self, staged: np.ndarray, j: int) -> None:
        row = staged[j]
        for (_, offset, size), view in zip(self.fields, self.views, strict=True):
            row[offset : offset + size] = view

    def unstage(self, staged: np.ndarray, out: dict) -> None:
        for name, offset, size in self.fields:
            target = out[name]
            target[...] = staged[:, offset : offset + size].reshape(target.shape)
