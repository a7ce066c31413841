"""C MuJoCo as a task's physics (`impl="native"`, locomotion/native_physics.py): each control
step is C MuJoCo's from the state the task holds, with the episode's randomized physics, split
over worker threads without changing a bit, and it trains on two XLA devices. (Automatic resets
and non-finite restarts with it: tests/test_envs.py.)"""

import dataclasses

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest

from locomotion import registry
from locomotion.native_physics import STATE_FIELDS

NUM_ENVS = 6


def make(task: str, impl: str, **changes):
    entry = registry.entry(task)
    return entry.env_class(dataclasses.replace(entry.env_config, impl=impl, **changes))


def c_mujoco_step(env, model: mujoco.MjModel, data, i: int, ctrl: np.ndarray) -> mujoco.MjData:
    """Env i of the batched `data` stepped by C MuJoCo over one control period from its float32
    state, as a fresh MjData."""
    d = mujoco.MjData(model)
    for name in STATE_FIELDS[1:]:
        field = getattr(d, name)
        if field.size:
            field[...] = np.asarray(getattr(data, name)[i]).reshape(field.shape)
    d.ctrl[:] = ctrl[i]
    d.time = float(data.time[i])
    mujoco.mj_step(model, d, nstep=env.n_substeps)
    return d


@pytest.mark.parametrize("task", ["quadruped_joystick", "hand_reorient"])
def test_native_steps_are_c_mujocos_with_the_episodes_physics(task, randomized_mj_models):
    """quadruped_joystick and hand_reorient (a cube and a mocap goal marker) with the training's
    randomized physics: 20 control steps of the native physics, each against C MuJoCo stepping
    the same float32 state with that env's randomized MjModel. The state (positions,
    velocities, the solver's warm start, time) and what task code reads of kinematics, sensors
    and actuators equal C MuJoCo's, rounded to float32. One worker thread or two: the same
    bits."""
    env = make(task, "native", randomize=True)
    keys = jax.random.split(jax.random.PRNGKey(3), NUM_ENVS)
    state = jax.jit(jax.vmap(env.reset))(keys)
    physics = jax.jit(
        jax.vmap(lambda s, ctrl: env.physics_step(env.model_for(s), s.pipeline_state, ctrl))
    )
    models, changed = randomized_mj_models(env, state)
    assert changed, task  # the episodes' physics differs from the nominal model
    rng = np.random.default_rng(0)
    mid = 0.5 * (env.mj_model.actuator_ctrlrange[:, 0] + env.mj_model.actuator_ctrlrange[:, 1])
    data = state.pipeline_state
    for t in range(20):
        ctrl = (mid + rng.uniform(-0.3, 0.3, (NUM_ENVS, mid.size))).astype(np.float32)
        stepped = physics(state.replace(pipeline_state=data), jp.asarray(ctrl))
        if t == 5:  # one worker thread instead of two: the same result
            env.native.threads = 1
            env.native.close()
            one = physics(state.replace(pipeline_state=data), jp.asarray(ctrl))
            env.native.threads = 2
            env.native.close()
            for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(stepped), strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for i in range(NUM_ENVS):
            c = c_mujoco_step(env, models[i], data, i, ctrl)
            for name in ("time", "qpos", "qvel", "qacc_warmstart", "sensordata", "geom_xpos"):
                np.testing.assert_array_equal(
                    np.asarray(getattr(stepped, name)[i]),
                    np.asarray(getattr(c, name), np.float32).reshape(
                        np.shape(getattr(stepped, name)[i])
                    ),
                    err_msg=f"{task}: {name}, env {i}, step {t}",
                )
            for name in ("site_xmat", "cvel", "subtree_com", "actuator_force"):
                np.testing.assert_allclose(
                    np.asarray(getattr(stepped, name)[i]).ravel(),
                    getattr(c, name).ravel(),
                    rtol=1e-6,
                    atol=1e-6,
                    err_msg=f"{task}: {name}, env {i}, step {t}",
                )
        data = stepped
    assert np.isfinite(np.asarray(data.qpos)).all()
    env.native.close()


def test_native_physics_trains_on_one_of_two_cpu_devices(train_on_two_cpu_devices):
    """`locomotion train` with `--env.impl native` where XLA has a device per core (as
    training on a CPU runs): it trains on one device, whose physics callback steps the whole
    batch on both cores; two iterations, the final evaluation and the export, one process."""
    result = train_on_two_cpu_devices("native", iterations=2)
    assert "training on 1 of the 2 devices: impl='native' runs on one" in result.stdout
