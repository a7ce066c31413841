"""The deployment contract: examples/deploy_mujoco.py runs exported policies from their files
with numpy, mujoco and onnxruntime only, builds the observations exactly as the tasks do, and
policy.json files that break the schema are refused in one line."""

import ast
import dataclasses
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import mujoco
import numpy as np
import onnx
import pytest

from locomotion import registry
from locomotion.evaluation import nominal_config
from locomotion.export import FORMAT, build_onnx, deployment_mjcf, describe_env
from locomotion.policy import SHIPPED_DIR, PolicyError, load
from locomotion.replay import NativeRunner

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "deploy_mujoco.py"


def deploy_module():
    spec = importlib.util.spec_from_file_location("deploy_mujoco", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_imports_only_numpy_mujoco_and_onnxruntime():
    tree = ast.parse(SCRIPT.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "argparse", "json", "time", "pathlib"} | {
        "numpy",
        "mujoco",
        "onnxruntime",
    }, imported


def run_script(policy: str, *args: str, cwd: Path) -> dict:
    """The script in a fresh interpreter where `import locomotion` fails."""
    code = (
        "import sys, runpy; sys.modules['locomotion'] = None; "
        f"sys.argv = ['deploy_mujoco.py', *{list(args)!r}]; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    folder = cwd / policy
    shutil.copytree(SHIPPED_DIR / policy, folder)  # outside the package: its files only
    out = subprocess.run(
        [sys.executable, "-c", code.replace("POLICY", str(folder))],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("policy", ["quadruped_joystick", "quadruped_cat"])
def test_the_script_walks_the_shipped_quadruped_policies(policy, tmp_path):
    result = run_script(policy, "POLICY", "--command", "0.5,0,0", "--seconds", "10", cwd=tmp_path)
    assert not result["fell"] and result["vx_error"] < 0.1, result


def test_the_script_turns_the_cube_with_the_shipped_rotate_policy(tmp_path):
    result = run_script("hand_rotate_z", "POLICY", "--seconds", "10", cwd=tmp_path)
    assert not result["cube_left_palm"] and result["yaw_rate"] > 0.5, result


def random_policy_folder(task: str, env, folder: Path, seed: int = 0) -> Path:
    """policy.json + scene.xml of `env` and an ONNX actor with small random weights: the
    deployment mechanism without a trained policy."""
    rng = np.random.default_rng(seed)
    size = env.observation_size["state"]
    layers = [
        (rng.normal(0, 0.3 / np.sqrt(size), (size, 32)), np.zeros(32)),
        (rng.normal(0, 0.3, (32, env.action_size)), np.zeros(env.action_size)),
    ]
    model = build_onnx(layers, None, None, normalize=False, activation="elu", squash=True)
    folder.mkdir()
    onnx.save(model, folder / "policy.onnx")
    meta = {
        "format": FORMAT,
        "task": task,
        "env_config": {},
        "onnx": {"input": "obs", "output": "action", "activation": "elu", "output_squash": "tanh"},
        **describe_env(env),
    }
    (folder / "policy.json").write_text(json.dumps(meta))
    (folder / "scene.xml").write_text(deployment_mjcf(env.robot))
    return folder


@pytest.mark.parametrize(
    "task, command",
    [("quadruped_rough", (0.4, 0.1, -0.2)), ("hand_reorient", None)],
)
def test_the_scripts_observations_are_the_tasks(task, command, tmp_path):
    """The script against the task's own code (native replay, clean observations) for 30
    control steps of a random policy: the script's observation of the native state equals the
    task's (tolerance 1e-5: the task computes in float32) and its joint targets equal the
    task's (1e-6). quadruped_rough covers every quadruped entry, its stacked frames and the
    scan (mj_ray in the script, the height array in the task), hand_reorient the hand's
    history, cube and goal entries."""
    entry = registry.entry(task)
    config = nominal_config(entry.env_config)
    if command is not None:
        config = dataclasses.replace(config, fixed_command=command)
        if task == "quadruped_rough":  # on stairs, to give the scan something to read
            config = dataclasses.replace(config, terrain_type="stairs_up", level=6, history=3)
    env = entry.env_class(config)
    folder = random_policy_folder(task, env, tmp_path / "policy")
    runner = NativeRunner(env)
    dep = deploy_module().Deployment(folder, model=runner.model)
    assert dep.substeps == env.n_substeps
    scratch = mujoco.MjData(runner.model)
    state = runner.reset(jax.random.PRNGKey(4))
    dep.reset_history()
    if command is not None:
        dep.command = np.array(command)
    scans = []
    for _ in range(30):
        if "goal" in state.info:
            dep.goal = np.asarray(state.info["goal"], np.float64)
        obs = dep.observe(runner.data)
        np.testing.assert_allclose(obs, state.obs["state"], atol=1e-5)
        action = dep.act(obs)
        dep.apply(scratch, action)
        state = runner.step(state, action)
        np.testing.assert_allclose(scratch.ctrl, runner.data.ctrl, atol=1e-6)
        scans.append(obs[-187:])
    if task == "quadruped_rough":
        assert np.ptp(scans) > 0.03  # the stairs are in view


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.pop("control_dt"), "at the top level: 'control_dt' is a required property"),
        (lambda m: m["action"].pop("kp"), "at action: 'kp' is a required property"),
        (
            lambda m: m["observation"]["layout"][3]["definition"].update(kind="guess"),
            "at observation/layout/3/definition/kind",
        ),
        (
            lambda m: m["observation"]["layout"][0]["definition"].pop("sensor"),
            "'sensor' is a required property",
        ),
        (lambda m: m["observation"].update(size=44), "add up to 45 values, not"),
    ],
)
def test_policy_files_that_break_the_schema_are_refused_in_one_line(edit, message, tmp_path):
    folder = tmp_path / "policy"
    shutil.copytree(SHIPPED_DIR / "quadruped_joystick", folder)
    meta = json.loads((folder / "policy.json").read_text())
    edit(meta)
    (folder / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyError, match="policy") as err:
        load(folder)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_every_shipped_policy_has_the_deployment_fields():
    for folder in sorted(p for p in SHIPPED_DIR.iterdir() if (p / "policy.json").is_file()):
        meta = load(folder).meta
        assert meta["format"] == FORMAT and (folder / meta["deployment"]["mjcf"]).is_file()
        assert all("definition" in e for e in meta["observation"]["layout"]), folder.name
