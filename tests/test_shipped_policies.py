"""End-to-end checks of the shipped policies: the exported ONNX policy, by name, in native
MuJoCo (C mj_step), forward command 0.5 m/s, 5 episodes of 10 s."""

import json

import pytest

from locomotion.cli import main


def native_eval(name: str, tmp_path) -> dict:
    out = tmp_path / "eval.json"
    args = ["eval", name, "--episodes", "5", "--seconds", "10", "--command", "0.5,0,0"]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["task"] == name and result["episodes"] == 5
    return result


def test_joystick_policy_walks(tmp_path):
    result = native_eval("quadruped_joystick", tmp_path)
    assert result["fall_rate"] == 0.0
    assert result["lin_vel_error"] < 0.1, result["lin_vel_error"]


def test_cat_policy_walks_within_its_constraints(tmp_path):
    result = native_eval("quadruped_cat", tmp_path)
    assert result["fall_rate"] == 0.0
    assert result["lin_vel_error"] < 0.15, result["lin_vel_error"]
    rates = result["constraint_violation_rate"]
    assert rates["torque"] <= 0.01, rates
    # Every declared constraint is reported from the native rollout.
    assert {"foot_force", "front_hfe_angle", "air_time", "joint_acceleration"} <= set(rates)


@pytest.mark.parametrize("name", ["quadruped_joystick", "quadruped_cat"])
def test_shipped_policy_files(name):
    from locomotion.policy import SHIPPED_DIR

    folder = SHIPPED_DIR / name
    for f in ("policy.onnx", "policy.json", "eval.json", "learning_curve.png"):
        assert (folder / f).is_file(), f
    assert (folder / "training_config.json").is_file()
    assert (folder / "training_summary.json").is_file()
