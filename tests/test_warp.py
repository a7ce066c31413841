"""MJX's warp implementation as a task setting (`impl="warp"`), on CPU: the tasks reset and step
through the training wrapper, start exactly where the jax implementation starts (the
quadruped's comparison is in tests/test_envs.py, beside the jax graphs it uses), and follow
native MuJoCo step by step under the training's randomized physics.

Needs the `warp` extra (warp-lang; mujoco-mjx bundles MuJoCo Warp); skipped without it."""

import dataclasses

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

pytest.importorskip("warp", reason="the warp extra (warp-lang) is not installed")

from locomotion import registry  # noqa: E402
from locomotion.envs import TrainingWrapper, jit_brief  # noqa: E402

NUM_ENVS = 8
SOLVER_ITERATIONS = 10  # Newton iterations at which warp's solution is C MuJoCo's


def make(task: str, impl: str, **changes):
    entry = registry.entry(task)
    return entry.env_class(dataclasses.replace(entry.env_config, impl=impl, **changes))


def warp_rollout(wrapped, reset, step, seconds: float = 0.5):
    """A rollout of random actions through the training wrapper: the actor's observations
    (first state, then every step) and done flags, checking at every step that each env whose
    episode ended continues from its reserve state (the reserve the step used, drawn anew on
    that step or kept from before, is the one the state carries on)."""
    env, num_envs = wrapped.env, wrapped.num_envs
    state = reset(jax.random.PRNGKey(0))
    obs, done = [np.asarray(state.obs["state"])], []
    for i in range(int(round(seconds / env.dt))):
        action = 0.3 * jax.random.uniform(
            jax.random.PRNGKey(i), (num_envs, env.action_size), minval=-1, maxval=1
        )
        state = step(state, action)
        obs.append(np.asarray(state.obs["state"]))
        done.append(np.asarray(state.done))
        ended = done[-1] > 0
        reserve = np.asarray(state.info["reset_pool"].obs["state"])
        np.testing.assert_array_equal(obs[-1][ended], reserve[ended])
    assert np.isfinite(np.stack(obs)).all(), env.impl
    if env.impl == "warp":
        assert state.pipeline_state._impl.naconmax == num_envs * env.contacts_per_world
    return np.stack(obs), np.stack(done)


def test_warp_hand_resets_and_restarts_episodes():
    """Short episodes (0.2 s) so that several end inside the rollout: the rollout stays
    finite, every env restarts from its fresh reserve state, and the batch's contact buffers
    keep their shared size. (The quadruped's case, against the jax implementation on the same
    keys, is in tests/test_envs.py, beside the jax graphs it compares with.)"""
    wrapped = TrainingWrapper(make("hand_rotate_z", "warp", episode_seconds=0.2), NUM_ENVS)
    _, done = warp_rollout(wrapped, jax.jit(wrapped.reset), jax.jit(wrapped.step))
    assert done.sum() >= 2 * NUM_ENVS


def converged(env, iterations: int = SOLVER_ITERATIONS):
    """`env` with its constraint solver run to convergence (its MjModel and MJX model)."""
    env.mj_model.opt.iterations = iterations
    env.mjx_model = mjx.put_model(env.mj_model, impl=env.impl)
    return env


def test_warp_follows_native_mujoco_over_1000_randomized_steps(randomized_mj_models):
    """8 quadrupeds x 125 control steps (1000 steps, 4000 physics steps) with the training's
    per-episode randomization (friction, added mass, motor gains, damping): after every
    control step of MJX-warp, C MuJoCo steps the same state with the same randomized model and
    joint targets, and both land in the same place.

    With the solver converged: at the quadruped's own Newton iterations (its MJCF's option)
    MJX-jax takes C MuJoCo's path through the solver exactly, while warp's Newton steps need
    not be C's (`test_warp_at_the_models_solver_iterations`)."""
    env = converged(make("quadruped_joystick", "warp", randomize=True))
    reference = make("quadruped_joystick", "jax", randomize=True)
    env.prepare_batch(NUM_ENVS)
    keys = jax.random.split(jax.random.PRNGKey(3), NUM_ENVS)
    state = jax.jit(jax.vmap(env.reset))(keys)
    physics = jax.jit(
        jax.vmap(lambda s, ctrl: env.physics_step(env.model_for(s), s.pipeline_state, ctrl))
    )
    models, changed = randomized_mj_models(env, state, reference)
    assert {"pair_friction", "body_mass", "actuator_gainprm", "dof_damping"} <= changed
    native = [mujoco.MjData(m) for m in models]

    default = np.asarray(env.default_pose)
    rng = np.random.default_rng(0)
    qpos_err, qvel_err = [], []
    data = state.pipeline_state
    for _ in range(125):
        ctrl = default + rng.uniform(-0.3, 0.3, (NUM_ENVS, default.size))
        qpos, qvel = np.asarray(data.qpos), np.asarray(data.qvel)
        data = physics(state.replace(pipeline_state=data), jp.asarray(ctrl, jp.float32))
        for i, (m, d) in enumerate(zip(models, native, strict=True)):
            d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[i], qvel[i], ctrl[i]
            d.qacc_warmstart[:] = 0
            mujoco.mj_step(m, d, nstep=env.n_substeps)
        qpos_err.append(np.abs(np.asarray(data.qpos) - np.stack([d.qpos for d in native])).max())
        qvel_err.append(np.abs(np.asarray(data.qvel) - np.stack([d.qvel for d in native])).max())
    heights = np.asarray(data.qpos[:, 2])
    assert np.isfinite(np.asarray(data.qpos)).all()
    assert (heights > 0.1).all()  # on its feet: no contact lost to a full buffer
    print(f"max |qpos| error {max(qpos_err):.2e}, |qvel| {max(qvel_err):.2e}")
    # Measured: 7.2e-4 m/rad and 4.6e-2 rad/s at worst over the 1000 steps.
    assert max(qpos_err) < 2e-3 and max(qvel_err) < 0.15


def test_warp_at_the_models_solver_iterations():
    """Why the test above converges the solver: from a perturbed standing state, one physics
    step of MJX-jax equals C MuJoCo's at the MJCF's own Newton iterations (5) and at 3, while
    MJX-warp's does not before it converges (measured: 1.1 rad/s apart at 3 iterations,
    0.011 at 5); from 10 iterations on, warp's equals C's too."""
    own = make("quadruped_joystick", "jax").mj_model.opt.iterations
    errors = {}
    cases = (("jax", own), ("jax", 3), ("warp", own), ("warp", 3), ("warp", SOLVER_ITERATIONS))
    for impl, iterations in cases:
        env = converged(make("quadruped_joystick", impl), iterations)
        m = env.mj_model
        d = mujoco.MjData(m)
        mujoco.mj_resetDataKeyframe(m, d, 0)
        mujoco.mj_step(m, d, nstep=100)  # settle onto the feet
        rng = np.random.default_rng(0)
        d.qvel[:] += rng.normal(0, 0.3, m.nv)
        d.ctrl[:] = m.key_ctrl[0] + rng.uniform(-0.3, 0.3, m.nu)
        env.prepare_batch(1)
        dx = env.make_data().replace(
            qpos=jp.asarray(d.qpos, jp.float32),
            qvel=jp.asarray(d.qvel, jp.float32),
            ctrl=jp.asarray(d.ctrl, jp.float32),
        )
        dx = jit_brief(mjx.step)(env.mjx_model, dx)  # one step
        native = mujoco.MjData(m)  # no warm start, as the MJX data
        native.qpos[:], native.qvel[:], native.ctrl[:] = d.qpos, d.qvel, d.ctrl
        mujoco.mj_step(m, native)
        assert native.ncon == 4  # the four feet
        errors[impl, iterations] = float(np.abs(np.asarray(dx.qvel) - native.qvel).max())
    print({f"{impl} {n}": f"{e:.1e}" for (impl, n), e in errors.items()})
    assert own == 5
    assert errors["jax", own] < 1e-3 and errors["jax", 3] < 1e-3
    assert errors["warp", 3] > 0.1
    assert 1e-3 < errors["warp", own] < 0.05
    assert errors["warp", SOLVER_ITERATIONS] < 1e-3


def test_warp_trains_on_one_of_several_cpu_devices(train_on_two_cpu_devices):
    """`locomotion train` gives XLA a CPU device per core; warp's contact buffers are shared by
    the whole batch, so a warp run trains on one of them instead of refusing to start."""
    result = train_on_two_cpu_devices("warp", iterations=1)
    assert "training on 1 of the 2 devices: impl='warp' runs on one" in result.stdout
