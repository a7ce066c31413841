"""Export a trained policy: `policy.onnx` (deterministic actor, normalizer folded in) and
`policy.json` (everything needed to run it outside training)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from locomotion import checkpoint, registry
from locomotion import config as config_io
from locomotion.envs import actor_observation_size

FORMAT = "locomotion-policy/2"
"""/2 describes every observation entry, the action pipeline and the actuators, and ships the
scene's MJCF (`scene.xml`): enough to deploy without this package (examples/deploy_mujoco.py);
schema: locomotion/policy.schema.json. /1 files (without those) still load for replay."""
SCENE_FILE = "scene.xml"
ONNX_INPUT, ONNX_OUTPUT = "obs", "action"
NORMALIZER_EPS, NORMALIZER_CLIP = 1e-8, 10.0  # as in locomotion.train.normalizer


def actor_layers(
    arrays: dict[str, np.ndarray], action_size: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of each Dense layer of the actor MLP, input to output. With
    `action_size`, the last layer keeps only the mean head (its first `action_size` outputs;
    a state-dependent std is a second head the deterministic policy does not use)."""
    layers = []
    while f"params/actor/params/MLP_0/Dense_{len(layers)}/kernel" in arrays:
        base = f"params/actor/params/MLP_0/Dense_{len(layers)}"
        layers.append((arrays[f"{base}/kernel"], arrays[f"{base}/bias"]))
    if not layers:
        raise ValueError("checkpoint has no actor network")
    if action_size is not None:
        kernel, bias = layers[-1]
        layers[-1] = (kernel[:, :action_size], bias[:action_size])
    return layers


def build_onnx(
    layers, obs_mean, obs_var, normalize: bool, activation: str = "elu", squash: bool = False
) -> onnx.ModelProto:
    """MLP with `activation` ("elu" or "swish") hidden layers; (obs - mean) / std clipped to
    +-10 first when `normalize`; tanh on the output when `squash`."""
    inits, nodes = [], []
    x = ONNX_INPUT

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    if normalize:
        inv_std = 1.0 / np.sqrt(obs_var.astype(np.float64) + NORMALIZER_EPS)
        nodes += [
            helper.make_node("Sub", [x, const("obs_mean", obs_mean)], ["centered"]),
            helper.make_node("Mul", ["centered", const("obs_inv_std", inv_std)], ["scaled"]),
            helper.make_node(
                "Clip",
                ["scaled", const("clip_lo", -NORMALIZER_CLIP), const("clip_hi", NORMALIZER_CLIP)],
                ["normalized"],
            ),
        ]
        x = "normalized"
    for i, (kernel, bias) in enumerate(layers):
        last = i == len(layers) - 1
        out = ONNX_OUTPUT if last and not squash else f"dense_{i}"
        nodes.append(
            helper.make_node("Gemm", [x, const(f"W{i}", kernel), const(f"b{i}", bias)], [out])
        )
        if last and squash:
            nodes.append(helper.make_node("Tanh", [out], [ONNX_OUTPUT]))
        elif not last and activation == "elu":
            nodes.append(helper.make_node("Elu", [out], [f"elu_{i}"], alpha=1.0))
            out = f"elu_{i}"
        elif not last and activation == "swish":
            nodes.append(helper.make_node("Sigmoid", [out], [f"sigmoid_{i}"]))
            nodes.append(helper.make_node("Mul", [out, f"sigmoid_{i}"], [f"swish_{i}"]))
            out = f"swish_{i}"
        elif not last:
            raise ValueError(f"unknown activation {activation!r}")
        x = out
    obs_size, action_size = layers[0][0].shape[0], layers[-1][0].shape[1]
    graph = helper.make_graph(
        nodes,
        "actor",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["batch", obs_size])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["batch", action_size])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="locomotion"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@dataclasses.dataclass(frozen=True)
class ExportedActor:
    """The actor of an exported policy, as numbers: what `build_onnx` wrote, read back."""

    layers: list[tuple[np.ndarray, np.ndarray]]  # (kernel [in, out], bias [out]), input first
    obs_mean: np.ndarray | None  # normalizer, None when the policy normalizes nothing
    obs_var: np.ndarray | None
    meta: dict  # policy.json


def read_actor(folder: str | Path) -> ExportedActor:
    """Read `policy.onnx` + `policy.json` of an exported policy back into arrays."""
    folder = Path(folder)
    meta = json.loads((folder / "policy.json").read_text())
    inits = {
        t.name: numpy_helper.to_array(t)
        for t in onnx.load(folder / "policy.onnx").graph.initializer
    }
    layers = []
    while f"W{len(layers)}" in inits:
        layers.append((inits[f"W{len(layers)}"], inits[f"b{len(layers)}"]))
    if not layers:
        raise ValueError(f"{folder / 'policy.onnx'} holds no actor written by locomotion export")
    mean, var = inits.get("obs_mean"), None
    if mean is not None:
        var = 1.0 / inits["obs_inv_std"].astype(np.float64) ** 2 - NORMALIZER_EPS
    return ExportedActor(layers, mean, var, meta)


@dataclasses.dataclass(frozen=True)
class AdaptedInput:
    """An exported actor's first layer and normalizer laid out for another observation layout."""

    kernel: np.ndarray  # [obs, units] of the new layout; unmatched rows are zero
    obs_mean: np.ndarray  # [obs]; unmatched entries keep the caller's statistics
    obs_var: np.ndarray
    matched: tuple[str, ...]  # entries taken from the source, in the new layout's order
    new: tuple[str, ...]  # entries the source never saw (zero weight)
    unused: tuple[str, ...]  # source entries the new layout does not have


def adapt_input(
    source: ExportedActor,
    layout: list[tuple[str, int]] | tuple[tuple[str, int], ...],
    obs_mean: np.ndarray,
    obs_var: np.ndarray,
) -> AdaptedInput:
    """Match `source`'s inputs to `layout` by observation name (a warm start's first layer).

    An entry the source never saw gets zero weight, so the adapted actor acts exactly as the
    source did; `obs_mean`/`obs_var` [obs] are kept for those entries (and for all of them when
    the source normalizes nothing). An entry of the same name and another size is refused.
    """
    source_layout = source.meta.get("observation", {}).get("layout")
    if not layout or not source_layout:
        raise ValueError("matching inputs needs named observation entries on both sides")
    rows, start = {}, 0
    for entry in source_layout:
        rows[entry["name"]] = np.arange(start, start + entry["size"])
        start += entry["size"]
    first = source.layers[0][0]
    kernel = np.zeros((sum(size for _, size in layout), first.shape[1]), first.dtype)
    mean, var = np.array(obs_mean, np.float64), np.array(obs_var, np.float64)
    matched, new, start = [], [], 0
    for name, size in layout:
        here = np.arange(start, start + size)
        start += size
        if name not in rows:
            new.append(name)
            continue
        if len(rows[name]) != size:
            raise ValueError(
                f"observation entry {name!r} has {len(rows[name])} values in the policy and "
                f"{size} in this task"
            )
        matched.append(name)
        kernel[here] = first[rows[name]]
        if source.obs_mean is not None:
            mean[here] = source.obs_mean[rows[name]]
            var[here] = source.obs_var[rows[name]]
    names = {name for name, _ in layout}
    unused = tuple(e["name"] for e in source_layout if e["name"] not in names)
    return AdaptedInput(kernel, mean, var, tuple(matched), tuple(new), unused)


def export(
    run_dir: str | Path, out_dir: str | Path | None = None, ckpt: str | Path | None = None
) -> Path:
    """Write policy.onnx + policy.json for the policy of `run_dir` (its newest checkpoint, or
    the best evaluated one of a `run.keep='best'` run; `ckpt`: that checkpoint file of the
    run instead); returns out_dir."""
    from locomotion.train.driver import policy_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    task = json.loads((run_dir / "config.json").read_text())["task"]
    entry = registry.entry(task)
    cfg = config_io.load(run_dir / "config.json", type(entry.env_config))
    if ckpt is None:
        ckpt = policy_checkpoint(run_dir, cfg.run.keep)
    elif not Path(ckpt).is_file():
        raise FileNotFoundError(f"no checkpoint file {ckpt}")
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint to export")
    arrays = checkpoint.read_arrays(ckpt)
    env = entry.env_class(cfg.env)
    layers = actor_layers(arrays, env.action_size)
    model = build_onnx(
        layers,
        arrays["obs_stats/mean"],
        arrays["obs_stats/var"],
        cfg.ppo.normalize_observations,
        cfg.ppo.activation,
        cfg.ppo.squash,
    )

    out_dir = Path(out_dir) if out_dir is not None else run_dir / "policy"
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out_dir / "policy.onnx")
    iteration = int(arrays["iteration"])
    meta = {
        "format": FORMAT,
        "task": task,
        "env_config": config_io.to_dict(cfg.env),
        "onnx": {
            "input": ONNX_INPUT,
            "output": ONNX_OUTPUT,
            "activation": cfg.ppo.activation,
            "output_squash": "tanh" if cfg.ppo.squash else "none",
        },
        "training": {
            "iterations": iteration,
            "env_steps": iteration * cfg.ppo.batch_size,
            "ppo": config_io.to_dict(cfg.ppo),
            "seed": cfg.run.seed,
        },
        "versions": _versions(),
        **describe_env(env),
    }
    write_description(out_dir, meta, env)
    return out_dir


def write_description(out_dir: Path, meta: dict, env) -> None:
    """policy.json (checked against the schema first) and the scene's MJCF beside it."""
    from locomotion.policy import validate

    validate(meta, out_dir / "policy.json")
    robot = getattr(env, "robot", None)
    if robot is not None:
        (out_dir / SCENE_FILE).write_text(deployment_mjcf(robot))
    (out_dir / "policy.json").write_text(json.dumps(meta, indent=2) + "\n")


def deployment_mjcf(robot) -> str:
    """The robot in its first scene (the quadruped's flat floor, the hand's cube) as one
    self-contained MJCF: what a policy runs in outside this package. A terrain policy deploys
    on flat ground too; its height scan reads whatever ground the MJCF it is given has."""
    import mujoco

    return mujoco.MjSpec.from_file(str(robot.scene_path(robot.scenes[0][0]))).to_xml()


def refresh_description(folder: str | Path) -> Path:
    """Rewrite an exported policy's description (policy.json's robot, observation, action
    sections and scene.xml) with this version's, keeping its ONNX, settings and training
    record: how policies exported as locomotion-policy/1 gain the deployment fields."""
    folder = Path(folder)
    meta = json.loads((folder / "policy.json").read_text())
    entry = registry.entry(meta["task"])
    env = entry.env_class(config_io.from_dict(type(entry.env_config), meta["env_config"]))
    meta = {**meta, "format": FORMAT, **describe_env(env)}
    write_description(folder, meta, env)
    return folder


def describe_env(env) -> dict:
    """Robot ids and hash, observation layout, action scaling, timing of an MJX task."""
    out = {"control_dt": env.dt, "observation": {"size": actor_observation_size(env)}}
    robot = getattr(env, "robot", None)
    if robot is not None:
        import mujoco

        m = env.mj_model
        root = m.body_jntadr[env.id("body", robot.root_body)]
        free = root >= 0 and m.jnt_type[root] == mujoco.mjtJoint.mjJNT_FREE
        out["robot"] = {
            "name": robot.name,
            "mjcf_sha256": robot.mjcf_sha256(getattr(env.config, "scene", None)),
            "joint_names": list(robot.joint_names),
            "root_joint": mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, root) if free else None,
        }
        out["deployment"] = {"mjcf": SCENE_FILE, "scene": robot.scenes[0][0]}
        terrain = getattr(env, "terrain", None)
        if terrain is not None:  # rebuilt from env_config on load, and checked against this
            out["terrain"] = terrain.identity()
        out["physics_dt"] = float(env.mj_model.opt.timestep)
        out["physics_substeps"] = env.n_substeps
    layout = getattr(env, "OBSERVATION_LAYOUT", None)
    if layout:
        noise = dataclasses.asdict(env.config.noise) if hasattr(env.config, "noise") else {}
        gain = getattr(env.config, "obs_noise", 1.0)

        def noise_std(name: str) -> float:
            # "joint_pos@t-1" is an older frame of "joint_pos", with the same noise.
            return gain * noise.get(name.split("@", 1)[0].replace("projected_", ""), 0.0)

        definitions = (
            env.observation_definitions() if hasattr(env, "observation_definitions") else {}
        )
        out["observation"]["layout"] = [
            {"name": name, "size": size, "noise_std": noise_std(name)}
            | ({"definition": definitions[name]} if name in definitions else {})
            for name, size in layout
        ]
    if hasattr(env, "default_pose"):
        import mujoco

        m = env.mj_model
        pose = [float(x) for x in env.default_pose]
        out["action"] = {
            "size": env.action_size,
            "clip": [-1.0, 1.0],
            "scale": env.config.action_scale,
            "offset": pose,
            "default_pose": pose,
            "joint_limits": [
                [float(lo), float(hi)]
                for lo, hi in zip(env.joint_lower, env.joint_upper, strict=True)
            ],
            "target": "clip(offset + scale * clip(action, -1, 1), joint_limits) [rad]: "
            "position targets of the actuators (in order), held for one control period",
            "last_action": "clip(action, -1, 1): the next observation's last_action",
            "actuators": [
                mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, i) for i in range(m.nu)
            ],
            "kp": [float(x) for x in m.actuator_gainprm[:, 0]],
            "kd": [float(-x) for x in m.actuator_biasprm[:, 2]],
            "torque_limit": [float(x) for x in m.actuator_forcerange[:, 1]],
            "actuator_model": "torque = clip(kp (target - q) - kd qdot, -torque_limit, "
            "torque_limit) (MuJoCo position actuators with a force range)",
        }
    return out


def _versions() -> dict[str, str]:
    names = ("locomotion", "jax", "mujoco", "mujoco-mjx", "flax", "optax", "onnx")
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out
