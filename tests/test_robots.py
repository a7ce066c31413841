"""The quadruped MJCF: compiles, matches its RobotSpec, and MJX agrees with native MuJoCo."""

import dataclasses

import mujoco
import numpy as np
import pytest
from mujoco import mjx

from locomotion.envs import jit_brief
from locomotion.robots import QUADRUPED, load_model


def test_mjcf_compiles_and_matches_spec():
    model = load_model(QUADRUPED)
    assert model.nu == 12 and model.nq == 19
    mass = model.body_subtreemass[model.body("base").id]
    assert 2.3 < mass < 2.8  # Solo-12 class: about 2.5 kg
    np.testing.assert_allclose(model.key_qpos[0, 7:], QUADRUPED.default_pose)
    # Upper and lower legs are 0.16 m (HFE -> KFE -> foot).
    assert np.isclose(-model.body("FL_lower").pos[2], 0.16)
    assert np.isclose(-model.site("FL_foot").pos[2], 0.16)


def test_spec_mismatch_is_reported():
    model = load_model(QUADRUPED)
    wrong = dataclasses.replace(QUADRUPED, kp=QUADRUPED.kp * 2, foot_sites=("nope",))
    with pytest.raises(ValueError) as err:
        wrong.check(model)
    message = str(err.value)
    assert f"actuator 'FL_HAA' kp {QUADRUPED.kp} != {2 * QUADRUPED.kp}" in message, message
    assert "missing site 'nope'" in message


def test_malformed_mjcf_gives_clear_error(tmp_path, monkeypatch):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "scene.xml").write_text("<mujoco><worldbody><body></mujoco>")
    monkeypatch.setattr("locomotion.robots.spec.ROBOTS_DIR", tmp_path)
    spec = dataclasses.replace(QUADRUPED, model_dir="bad", scenes=(("flat", "scene.xml"),))
    with pytest.raises(ValueError, match="cannot compile MJCF"):
        load_model(spec)
    with pytest.raises(ValueError, match="no scene 'ice'; known scenes: \\['flat', 'rough'\\]"):
        QUADRUPED.scene_path("ice")


def test_robot_stands_under_default_pose():
    model = load_model(QUADRUPED)
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    for _ in range(int(3.0 / model.opt.timestep)):
        mujoco.mj_step(model, data)
    assert 0.2 < data.qpos[2] < 0.27  # base height [m]
    assert np.abs(data.qvel).max() < 0.05  # at rest


def test_mjx_matches_native_from_perturbed_state():
    """Step C MuJoCo and MJX from the same perturbed, in-contact state and compare."""
    model = load_model(QUADRUPED)
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, 0)
    rng = np.random.default_rng(0)
    for _ in range(100):  # settle onto the feet
        mujoco.mj_step(model, data)
    data.qvel[:] += rng.normal(0, 0.3, model.nv)
    data.ctrl[:] = model.key_ctrl[0] + rng.uniform(-0.3, 0.3, model.nu)
    mujoco.mj_forward(model, data)
    assert data.ncon >= 4  # feet on the floor

    mx = mjx.put_model(model)
    dx = mjx.put_data(model, data)
    step = jit_brief(mjx.step)  # 10 steps: compiled for a brief run
    n = 10  # 50 ms of physics
    for _ in range(n):
        mujoco.mj_step(model, data)
        dx = step(mx, dx)
    # Tolerances: MJX is float32 and its solver takes a different path through the same
    # contact problem; over 10 steps positions agree to about 1e-4 m/rad, velocities to 1e-2.
    np.testing.assert_allclose(dx.qpos, data.qpos, atol=2e-4)
    np.testing.assert_allclose(dx.qvel, data.qvel, atol=2e-2)
    np.testing.assert_allclose(dx.sensordata[:10], data.sensordata[:10], atol=5e-2)
