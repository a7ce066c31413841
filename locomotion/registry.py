"""One registry: task name -> environment class, default config, training presets.

from locomotion import registry
env = registry.make("quadruped_joystick")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from locomotion.envs import Env


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """How long to train and how to record it."""

    num_iterations: int = 1000
    """PPO iterations (each collects num_envs * unroll_length steps)."""
    seed: int = 0
    """Seed of the whole run (parameters, environments, sampling)."""
    checkpoint_every: int = 50
    """Save a checkpoint every this many iterations (and at the end)."""
    log_every: int = 1
    """Write metrics every this many iterations."""
    eval_envs: int = 100
    """Environments in the final deterministic evaluation (0 disables it)."""
    eval_seconds: float = 10.0
    """Length of the final evaluation [s]."""
    eval_every: int = 0
    """Also evaluate (the final evaluation's setting) every this many iterations, logged as
    eval/* at that step; 0: only at the end."""
    keep: Literal["last", "best"] = "last"
    """Which policy the run ends with (export, eval.json, video): `last`, the final
    parameters, or `best`, the evaluated checkpoint with the highest eval/return_mean
    (checkpoints/best.npz; needs eval_every). Chosen on the evaluation it reports, so that
    number is optimistic: check the policy elsewhere (native replay, `locomotion eval`)."""
    video_seconds: float = 5.0
    """Length of the video rendered at the end of training [s] (0 disables it)."""
    max_minutes: float = 0.0
    """Wall-clock budget of the training [min], counted from the start of `train` (setup and
    compiling included): past it the run stops after the iteration in progress and ends as a
    finished run does (checkpoint, final evaluation, export, video, which come after the
    budget); `--resume` continues it. 0: no limit. In a multi-process run process 0's clock
    decides for all. The learning rate's `linear` schedule still runs to num_iterations."""
    init_from: str | None = None
    """Warm start: begin with the network parameters and observation normalizers of this run
    directory's newest checkpoint (or this .npz checkpoint), e.g. a run of an easier variant
    of the task (a curriculum). Optimizer, environments and iteration count start fresh; the
    networks and observation sizes must match. Ignored when resuming."""

    def __post_init__(self):
        if self.num_iterations < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("num_iterations, checkpoint_every and log_every must be >= 1")
        if not self.max_minutes >= 0:
            raise ValueError(f"max_minutes must be >= 0 (0: no limit), not {self.max_minutes}")
        if self.eval_envs < 0 or self.eval_seconds <= 0 or self.eval_every < 0:
            raise ValueError("eval_envs and eval_every must be >= 0 and eval_seconds positive")
        if self.keep not in ("last", "best"):
            raise ValueError(f"keep must be 'last' or 'best', not {self.keep!r}")
        if self.keep == "best" and (self.eval_every == 0 or self.eval_envs == 0):
            raise ValueError("keep='best' needs eval_every > 0 and eval_envs > 0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskEntry:
    """Everything needed to build and train one task."""

    name: str
    description: str
    env_class: Callable[[Any], Env]
    env_config: Any
    presets: dict[str, tuple[Any, RunConfig]]  # preset name -> (PPOConfig, RunConfig)
    eval_env_config: Callable[[Any], Any] = lambda cfg: cfg
    """The task config of a run's final evaluation (eval.json) from the training config: for
    every shipped robot task, nominal physics and clean observations
    (`locomotion.evaluation.nominal_config`), as in `locomotion eval`."""


_TASKS: dict[str, Callable[[], TaskEntry]] = {}


def register(name: str):
    """Decorator for a zero-argument function that returns the TaskEntry (built lazily)."""

    def wrap(fn: Callable[[], TaskEntry]):
        _TASKS[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    """Registered task names."""
    _load_builtin()
    return sorted(_TASKS)


def entry(name: str) -> TaskEntry:
    _load_builtin()
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]()


def make(name: str, config: Any = None) -> Env:
    """Build a task's environment, with its default config unless one is given."""
    task = entry(name)
    return task.env_class(task.env_config if config is None else config)


def _load_builtin() -> None:
    import locomotion.builtin_tasks  # noqa: F401  (registers the shipped tasks)
