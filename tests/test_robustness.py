"""Native perturbations for robustness evaluation: the training randomization applied to the
native MjModel (seeded, per episode), PD gain errors, and actuation latency of exactly k steps."""

import dataclasses

import jax
import numpy as np
import pytest

from locomotion.replay import NativePerturbation, NativeRunner
from locomotion.tasks.quadruped_joystick import QuadrupedJoystick, QuadrupedJoystickConfig


@pytest.fixture(scope="module")
def runner():
    config = QuadrupedJoystickConfig(push_seconds=100.0)  # randomized physics, no push in 2 s
    return NativeRunner(QuadrupedJoystick(config))


def test_randomization_changes_the_native_model_per_episode_and_is_seeded(runner):
    env, nominal, model = runner.env, runner.nominal, runner.model
    feet = env.foot_pairs
    state = runner.reset(jax.random.PRNGKey(1))
    p = jax.device_get(state.info["params"])
    np.testing.assert_allclose(model.pair_friction[feet, :2], p["friction"], rtol=1e-6)
    base = env.base_body
    np.testing.assert_allclose(
        model.body_mass[base], nominal.body_mass[base] + p["added_mass"], rtol=1e-6
    )
    np.testing.assert_allclose(
        model.actuator_gainprm[:, 0], nominal.actuator_gainprm[:, 0] * p["motor_gain"], rtol=1e-6
    )
    np.testing.assert_allclose(model.dof_damping[6:], nominal.dof_damping[6:] * p["damping"])
    first = model.pair_friction.copy(), model.body_mass.copy()
    runner.reset(jax.random.PRNGKey(2))
    assert not np.allclose(model.pair_friction[feet], first[0][feet])
    assert model.body_mass[base] != first[1][base]
    runner.reset(jax.random.PRNGKey(1))  # the same key, the same physics
    np.testing.assert_array_equal(model.pair_friction, first[0])
    np.testing.assert_array_equal(model.body_mass, first[1])
    assert nominal.body_mass[base] != first[1][base]  # the task's own model is untouched


def test_gain_errors_scale_each_actuator_per_episode(runner):
    runner.perturb = NativePerturbation(gain_error=0.2)
    try:
        state = runner.reset(jax.random.PRNGKey(3))
        gain = float(jax.device_get(state.info["params"]["motor_gain"]))
        kp = runner.model.actuator_gainprm[:, 0] / (runner.nominal.actuator_gainprm[:, 0] * gain)
        kd = runner.model.actuator_biasprm[:, 2] / (runner.nominal.actuator_biasprm[:, 2] * gain)
        np.testing.assert_allclose(kp, kd)
        assert kp.min() >= 0.8 and kp.max() <= 1.2 and np.ptp(kp) > 0.05
        runner.reset(jax.random.PRNGKey(3))
        np.testing.assert_allclose(
            runner.model.actuator_gainprm[:, 0] / (runner.nominal.actuator_gainprm[:, 0] * gain),
            kp,
        )
    finally:
        runner.perturb = NativePerturbation()


@pytest.mark.parametrize("latency", [0, 2])
def test_latency_delays_actions_by_exactly_k_steps(runner, latency):
    env = runner.env
    runner.perturb = NativePerturbation(latency_steps=latency)
    try:
        state = runner.reset(jax.random.PRNGKey(0))
        actions = np.random.default_rng(0).uniform(-0.5, 0.5, (6, env.action_size))
        for t, action in enumerate(actions):
            state = runner.step(state, action)
            sent = actions[t - latency] if t >= latency else np.zeros(env.action_size)
            target = np.clip(
                env.default_pose + env.config.action_scale * sent, env.joint_lower, env.joint_upper
            )
            np.testing.assert_allclose(runner.data.ctrl, target, atol=1e-6)
            # The observation's last_action is the policy's own latest output.
            np.testing.assert_allclose(state.info["last_action"], action, atol=1e-6)
    finally:
        runner.perturb = NativePerturbation()


def test_bad_perturbations_are_refused():
    with pytest.raises(ValueError, match="latency_steps must be >= 0"):
        NativePerturbation(latency_steps=-1)
    with pytest.raises(ValueError, match="gain_error in"):
        dataclasses.replace(NativePerturbation(), gain_error=1.5)
