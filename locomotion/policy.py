"""Load an exported policy (a directory or the name of a shipped one) and check it fits."""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
from pathlib import Path

import jsonschema
import numpy as np

from locomotion import config as config_io
from locomotion import registry
from locomotion.envs import actor_observation_size

SHIPPED_DIR = Path(str(importlib.resources.files("locomotion.policies")))


class PolicyError(ValueError):
    """A policy that cannot be used here; the message says why in one line."""


@dataclasses.dataclass
class Policy:
    """An ONNX actor plus its metadata; call it on a batch of observations [N, obs]."""

    path: Path
    meta: dict
    session: object

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32).reshape(-1, self.meta["observation"]["size"])
        return self.session.run([self.meta["onnx"]["output"]], {self.meta["onnx"]["input"]: obs})[0]

    @property
    def task(self) -> str:
        return self.meta["task"]

    def env_config(self, **changes):
        """The task config the policy was trained with, with `changes` applied."""
        entry = registry.entry(self.task)
        cfg = config_io.from_dict(type(entry.env_config), self.meta["env_config"])
        return dataclasses.replace(cfg, **changes)


def shipped_policies() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "policy.json").is_file())


def resolve(name_or_dir: str | Path) -> Path:
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if (SHIPPED_DIR / str(name_or_dir)).is_dir():
        return SHIPPED_DIR / str(name_or_dir)
    known = ", ".join(shipped_policies()) or "none"
    raise PolicyError(
        f"no policy directory {str(name_or_dir)!r} and no shipped policy of that "
        f"name (shipped: {known})"
    )


def load(name_or_dir: str | Path, task: str | None = None) -> Policy:
    """Load and validate: metadata, task, robot MJCF hash, ONNX file, the observation layout
    (names, sizes, order) and the task settings (every field present)."""
    import onnxruntime as ort

    path = resolve(name_or_dir)
    meta_path, onnx_path = path / "policy.json", path / "policy.onnx"
    for p in (meta_path, onnx_path):
        if not p.is_file():
            raise PolicyError(f"{path} is not an exported policy: {p.name} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise PolicyError(f"{meta_path} is not valid JSON: {err}") from None
    if not str(meta.get("format", "")).startswith("locomotion-policy/"):
        raise PolicyError(f"{meta_path} is not a locomotion policy description")
    validate(meta, meta_path)
    if task is not None and meta["task"] != task:
        raise PolicyError(f"policy was trained for task {meta['task']!r}, not {task!r}")
    try:
        entry = registry.entry(meta["task"])
    except KeyError as err:
        raise PolicyError(err.args[0]) from None
    # The task as the policy was trained (its observation layout follows its settings, e.g.
    # the stacked frames), not today's default settings.
    try:
        trained = config_io.from_dict(type(entry.env_config), meta["env_config"])
    except (ValueError, TypeError) as err:
        raise PolicyError(f"{meta_path}: env_config: {err}") from None
    env = entry.env_class(trained)
    robot = getattr(env, "robot", None)
    if robot is not None:
        want = meta.get("robot", {})
        if want.get("name") != robot.name:
            raise PolicyError(
                f"policy is for robot {want.get('name')!r}, the task uses {robot.name!r}"
            )
        if want.get("mjcf_sha256") != robot.mjcf_sha256(getattr(env.config, "scene", None)):
            raise PolicyError(
                f"robot {robot.name!r} MJCF has changed since the policy was "
                "exported (sha256 differs); re-export or retrain the policy"
            )
    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PolicyError(f"{onnx_path} is not a loadable ONNX model ({first})") from None
    obs_size = actor_observation_size(env)
    in_shape = session.get_inputs()[0].shape
    if meta["observation"]["size"] != obs_size or in_shape[-1] != obs_size:
        raise PolicyError(
            f"policy expects {in_shape[-1]} observations, task {meta['task']!r} gives {obs_size}"
        )
    check_layout(meta, env)
    policy = Policy(path, meta, session)
    try:
        config = policy.env_config()
    except ValueError as err:
        raise PolicyError(f"{meta_path}: {err}") from None
    if "terrain" in meta:
        from locomotion import terrain

        rebuilt = terrain.generate(config.terrain, config.terrain_seed).identity()
        if rebuilt != meta["terrain"]:
            what = [k for k in rebuilt if rebuilt[k] != meta["terrain"].get(k)]
            raise PolicyError(
                f"{meta_path}: the terrain rebuilt from its settings differs from the one the "
                f"policy was trained on ({', '.join(what)} differ): the terrain generator or "
                "its settings changed since the export"
            )
    return policy


SCHEMA_PATH = Path(__file__).with_name("policy.schema.json")


@functools.cache
def _schema_validator():
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def validate(meta: dict, where: Path | str = "policy.json") -> None:
    """`meta` against locomotion/policy.schema.json; PolicyError naming the first problem
    (its place in the file and what is wrong) in one line."""
    error = jsonschema.exceptions.best_match(_schema_validator().iter_errors(meta))
    if error is not None:
        place = "/".join(str(p) for p in error.absolute_path) or "the top level"
        message = " ".join(error.message.split())
        if len(message) > 200:
            message = message[:200] + "..."
        raise PolicyError(f"{where} does not follow the policy schema at {place}: {message}")
    layout = meta["observation"].get("layout")
    if layout and sum(e["size"] for e in layout) != meta["observation"]["size"]:
        raise PolicyError(
            f"{where}: the observation entries add up to {sum(e['size'] for e in layout)} "
            f"values, not observation.size {meta['observation']['size']}"
        )


def check_layout(meta: dict, env) -> None:
    """The policy's observation entries are the task's, by name, size and order."""
    layout = getattr(env, "OBSERVATION_LAYOUT", None)
    stored = meta["observation"].get("layout")
    if layout is None and stored is None:
        return
    if layout is None or stored is None:
        raise PolicyError(
            f"task {meta['task']!r} and the policy do not both name their observation entries"
        )
    stored = [(e["name"], e["size"]) for e in stored]
    layout = [(name, size) for name, size in layout]
    if stored != layout:
        where = next(
            (i for i, (a, b) in enumerate(zip(stored, layout, strict=False)) if a != b),
            min(len(stored), len(layout)),
        )
        show = lambda entries: entries[where] if where < len(entries) else "nothing"  # noqa: E731
        raise PolicyError(
            f"observation layout differs from task {meta['task']!r} at entry {where}: the "
            f"policy has {show(stored)}, the task {show(layout)}"
        )
