"""The `locomotion` command.

    locomotion list
    locomotion train TASK [--preset smoke|cpu|gpu] [--run-dir DIR] [--resume RUN_DIR] [overrides]

Overrides are generated from the config dataclasses by tyro, e.g. `--ppo.num-envs 256`
`--run.num-iterations 100` `--env.rewards.torques -1e-3`; see `locomotion train TASK --help`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "list":
            return _list()
        if command == "train":
            return _train(rest)
        raise UserError(f"unknown command {command!r}; commands: list, train")
    except UserError as err:
        print(f"locomotion: error: {err}", file=sys.stderr)
        return 2


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, no traceback."""


def _list() -> int:
    from locomotion import registry

    for name in registry.names():
        print(f"{name:24s} {registry.entry(name).description}")
    return 0


def _train(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="locomotion train", add_help=False)
    parser.add_argument("task", nargs="?")
    parser.add_argument("--preset", choices=("smoke", "cpu", "gpu"))
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--no-progress", action="store_true")
    known, overrides = parser.parse_known_args(args)
    help_only = any(a in ("-h", "--help") for a in overrides)

    import jax
    import tyro

    from locomotion import config as config_io
    from locomotion import registry
    from locomotion.train.driver import train

    if known.resume is not None:
        run_dir = known.resume
        if not (run_dir / "config.json").is_file():
            raise UserError(f"cannot resume: {run_dir} has no config.json (not a run directory)")
        import json

        task = json.loads((run_dir / "config.json").read_text())["task"]
        entry = _entry(task)
        default = config_io.load(run_dir / "config.json", type(entry.env_config))
    else:
        if known.task is None:
            raise UserError("usage: locomotion train TASK [--preset ...]; tasks: "
                            + ", ".join(registry.names()))
        entry = _entry(known.task)
        preset = known.preset or ("gpu" if jax.default_backend() == "gpu" else "cpu")
        ppo_cfg, run_cfg = entry.presets[preset]
        default = config_io.TrainConfig(task=entry.name, env=entry.env_config, ppo=ppo_cfg,
                                        run=run_cfg)
        run_dir = known.run_dir or Path("runs") / entry.name / time.strftime("%Y%m%d-%H%M%S")
    cfg_type = config_io.TrainConfig[type(entry.env_config)]
    try:
        cfg = tyro.cli(cfg_type, default=default, args=overrides,
                       prog=f"locomotion train {entry.name}")
    except ValueError as err:
        raise UserError(str(err)) from None
    if help_only:
        return 0
    if cfg.task != entry.name:
        raise UserError("--task cannot be overridden")
    env = entry.env_class(cfg.env)
    print(f"training {entry.name} on {jax.default_backend()} ({jax.device_count()} device(s)), "
          f"{cfg.ppo.num_envs} envs, {cfg.run.num_iterations} iterations -> {run_dir}")
    _, history = train(env, cfg, run_dir, resume=known.resume is not None,
                       progress=not known.no_progress)
    evals = {k: v for row in history for k, v in row.items() if k.startswith("eval/")}
    if evals:
        print("final evaluation: " + ", ".join(f"{k[5:]}={v:.3g}" for k, v in evals.items()))
    print(f"run directory: {run_dir}")
    return 0


def _entry(task: str):
    from locomotion import registry

    try:
        return registry.entry(task)
    except KeyError as err:
        raise UserError(err.args[0]) from None


if __name__ == "__main__":
    sys.exit(main())
