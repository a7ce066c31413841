"""The run configuration (task, PPO, run) and its JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Generic, TypeVar

from locomotion.registry import RunConfig
from locomotion.train.config import PPOConfig

E = TypeVar("E")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(Generic[E]):
    """Everything a training run depends on; saved as config.json in the run directory."""

    task: str
    """Registered task name."""
    env: E
    """Task settings."""
    ppo: PPOConfig
    """PPO settings."""
    run: RunConfig
    """Run length, seed, checkpointing."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnvOverrides(Generic[E]):
    """Task settings alone, for `--env.FIELD VALUE` options outside training (evaluation)."""

    env: E
    """Task settings."""


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# Fields added to task settings after runs and policies were written without them, with the
# value every one of those runs used (not today's default by chance: the only value there was).
ADDED_FIELDS = {
    "impl": "jax",  # MJX physics implementation; only jax existed before
    "history": 1,  # the quadruped tasks' stacked frames: none before
    "feet_slip": 0.0,  # the quadruped's foot-slip penalty: none before
    "heading_command": False,  # the terrain tasks' heading commands: yaw rates before
    "heading_gain": 0.5,
    "clean_obs_share": 0.0,  # the quadruped's per-episode clean observations: none before
    "max_minutes": 0.0,  # a run's wall-clock budget: none before
}


def from_dict(cls: type, data: Any) -> Any:
    """Rebuild a (nested, frozen) dataclass from `to_dict` output. Every field must be there:
    a field added to the code since the file was written would otherwise silently take
    today's default, which need not be what the file's run used."""
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        data = {**{k: v for k, v in ADDED_FIELDS.items() if k in known}, **data}
        missing = known - set(data)
        if missing:
            raise ValueError(
                f"{cls.__name__} fields missing: {sorted(missing)} (written by an older "
                "version?); add them with the values the run used"
            )
        return cls(**{k: from_dict(hints[k], v) for k, v in data.items()})
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        options = [a for a in typing.get_args(cls) if a is not type(None)]
        return from_dict(options[0], data)
    if origin is tuple:
        args = typing.get_args(cls)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_dict(args[0], v) for v in data)
        return tuple(from_dict(a, v) for a, v in zip(args, data, strict=True))
    return data


def save(cfg: TrainConfig, path: Path) -> None:
    path.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def load(path: Path, env_config_cls: type) -> TrainConfig:
    data = json.loads(path.read_text())
    return TrainConfig(
        task=data["task"],
        env=from_dict(env_config_cls, data["env"]),
        ppo=from_dict(PPOConfig, data["ppo"]),
        run=from_dict(RunConfig, data["run"]),
    )
