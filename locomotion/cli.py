"""The `locomotion` command.

    locomotion list
    locomotion info [--json]
    locomotion train TASK [--preset smoke|cpu|gpu] [--run-dir DIR] [--processes N] [overrides]
    locomotion train --resume RUN_DIR [--restart-envs] [--processes N] [overrides]
    locomotion export RUN_DIR [-o DIR]
    locomotion eval POLICY [--episodes N] [--seconds S] [--seed S] [--command vx,vy,wz]
                           [--json FILE] [--compare-mjx] [--env.FIELD VALUE ...]
                           [--terrain TYPE ...|all] [--level L ...|all]
    locomotion video POLICY -o FILE.mp4 [--seconds S] [--command vx,vy,wz] [--width W --height H]

POLICY is an exported policy directory or the name of a shipped policy (`locomotion list`).

Overrides are generated from the config dataclasses by tyro, e.g. `--ppo.num-envs 256`
`--run.num-iterations 100` `--env.rewards.torques -1e-3`; see `locomotion train TASK --help`.
`--run.init-from RUN_DIR` starts from another run's networks (a curriculum step).

`--processes N` trains one run in N processes on this machine (JAX's distributed runtime); a
run over several machines starts one `locomotion train` per process with JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID set, or under SLURM's srun (README: "Many processes").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "list":
            return _list()
        if command == "info":
            return _info(rest)
        if command == "train":
            return _train(rest)
        if command == "export":
            return _export(rest)
        if command == "eval":
            return _eval(rest)
        if command == "video":
            return _video(rest)
        raise UserError(
            f"unknown command {command!r}; commands: list, info, train, export, eval, video"
        )
    except UserError as err:
        print(f"locomotion: error: {err}", file=sys.stderr)
        return 2


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, no traceback."""


def _configure_cpu_devices() -> dict[str, str]:
    """`gpu.configure_cpu_devices()`, a bad LOCOMOTION_CPU_DEVICES reported in one line."""
    from locomotion import gpu

    try:
        return gpu.configure_cpu_devices()
    except ValueError as err:
        raise UserError(str(err)) from None


def _list() -> int:
    from locomotion import registry
    from locomotion.policy import shipped_policies

    print("tasks:")
    for name in registry.names():
        print(f"  {name:24s} {registry.entry(name).description}")
    print("shipped policies: " + (", ".join(shipped_policies()) or "none"))
    return 0


def _info(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="locomotion info",
        description="Backend, devices, versions, rendering, XLA settings and shipped policies: "
        "what to paste into a bug report.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    a = parser.parse_args(args)
    from locomotion import gpu

    gpu.configure()  # before JAX starts, so the report shows what training would run with
    _configure_cpu_devices()

    from locomotion.info import collect, table

    # Libraries print notes on import (MJX: "Failed to import warp"): keep stdout for the report.
    with contextlib.redirect_stdout(sys.stderr):
        info = collect()
    print(json.dumps(info, indent=2) if a.json else table(info))
    return 0


def _load_policy(name: str):
    from locomotion.policy import PolicyError, load

    try:
        return load(name)
    except PolicyError as err:
        raise UserError(str(err)) from None


def _parse_command(text: str | None):
    if text is None:
        return None
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise UserError(f"--command takes vx,vy,wz (three numbers), got {text!r}")
    return values


def _export(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="locomotion export")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("-o", "--out", type=Path)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="export this checkpoint of the run (a .npz under its checkpoints/) instead of "
        "its policy (the newest, or the best evaluated of a keep=best run)",
    )
    a = parser.parse_args(args)
    from locomotion.export import export

    try:
        out = export(a.run_dir, a.out, a.checkpoint)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise UserError(str(err.args[0] if err.args else err)) from None
    print(f"exported {out / 'policy.onnx'} and {out / 'policy.json'}")
    return 0


def _eval(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="locomotion eval",
        epilog="Any --env.FIELD VALUE changes the task setting FIELD for this evaluation, e.g. "
        "--env.obs-noise 1.0 (default: the policy's training settings with nominal physics and "
        "clean observations; --env.randomize true gives each native episode the training's "
        "randomized physics, --env.push-velocity V its pushes).",
    )
    parser.add_argument("policy")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--command", help="fixed command vx,vy,wz (default: the task's sampling)")
    parser.add_argument("--json", type=Path, help="write the metrics to this file")
    parser.add_argument(
        "--compare-mjx",
        action="store_true",
        help="also roll out in MJX with the same policy and commands",
    )
    parser.add_argument(
        "--terrain",
        nargs="+",
        metavar="TYPE",
        help="terrain tasks: evaluate on tiles of this type only; several, or 'all': a table "
        "of success and falls with one row per type and level, --episodes each",
    )
    parser.add_argument(
        "--level",
        nargs="+",
        metavar="L",
        help="terrain tasks: evaluate on this difficulty level only; several, or 'all': one "
        "row each",
    )
    parser.add_argument(
        "--latency",
        type=int,
        default=0,
        metavar="K",
        help="native: actions reach the motors K control steps late",
    )
    parser.add_argument(
        "--gain-error",
        type=float,
        default=0.0,
        metavar="X",
        help="native: each actuator's kp and kd scaled per episode by a factor in [1-X, 1+X]",
    )
    parser.add_argument(
        "--sweep",
        metavar="NAME=V1,V2,...",
        help="a table of falls and tracking against one perturbation: latency, gain_error or a "
        "numeric task setting (push_velocity, obs_noise, ...), --episodes per value",
    )
    parser.add_argument("--plot", type=Path, help="with --sweep: also plot it to this PNG")
    a, overrides = parser.parse_known_args(args)
    if a.episodes < 1 or a.seconds <= 0:
        raise UserError("--episodes must be >= 1 and --seconds positive")
    command = _parse_command(a.command)
    policy = _load_policy(a.policy)

    from locomotion.replay import NativePerturbation, eval_config, evaluate_mjx, evaluate_native

    try:
        perturb = NativePerturbation(latency_steps=a.latency, gain_error=a.gain_error)
    except ValueError as err:
        raise UserError(f"--latency / --gain-error: {err}") from None
    if a.terrain or a.level:
        return _eval_terrain(a, policy, command, overrides, perturb)
    if a.sweep and a.compare_mjx:
        raise UserError("--compare-mjx compares one evaluation; it does not combine with --sweep")
    if a.sweep:
        return _eval_sweep(a, policy, command, overrides, perturb)
    try:
        config = _env_overrides(eval_config(policy, command), overrides)
        result = evaluate_native(
            policy, a.episodes, a.seconds, a.seed, command, config=config, perturb=perturb
        )
        if a.compare_mjx:
            result["mjx"] = evaluate_mjx(policy, a.episodes, a.seconds, a.seed, command, config)
    except ValueError as err:
        raise UserError(str(err)) from None
    result.update(seconds=a.seconds, seed=a.seed, command=command, policy=str(policy.path))
    result["env_overrides"] = overrides
    if perturb != NativePerturbation():  # recorded when there is one
        result["native_perturbation"] = dataclasses.asdict(perturb)
    print(_table(result))
    _write_json(a.json, result)
    return 0


def _write_json(path: Path | None, result: dict) -> None:
    if path is None:
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def _eval_sweep(a, policy, command, overrides: list[str], perturb) -> int:
    """`locomotion eval --sweep NAME=V1,V2,...`: one native evaluation per value of one
    perturbation (the others as given), a table of falls and the task's step metrics, and with
    --plot a PNG of them against the value."""

    from locomotion.replay import eval_config, eval_report, evaluate_native

    name, _, values = a.sweep.partition("=")
    name = name.strip().replace("-", "_")
    try:
        numbers = [float(v) for v in values.split(",")]
    except ValueError:
        numbers = []
    if not name or not numbers:
        raise UserError(f"--sweep takes NAME=V1,V2,... with numbers, got {a.sweep!r}")
    try:
        config = _env_overrides(eval_config(policy, command), overrides)
    except ValueError as err:
        raise UserError(str(err)) from None
    native = {"latency": "latency_steps", "gain_error": "gain_error"}
    if name not in native:
        field = getattr(config, name, None)
        if isinstance(field, bool) or not isinstance(field, (int, float)):
            raise UserError(
                f"--sweep {name}: not latency, gain_error or a numeric setting of {policy.task}"
            )
    report = eval_report(policy.task)
    columns = [f"{report.termination}_rate", *(key for key, _, _ in report.step_means)]
    rows = []
    print(f"{name:>14s} " + " ".join(f"{c:>16s}" for c in columns), flush=True)
    for value in numbers:
        try:
            if name in native:
                kind = int if name == "latency" else float
                if kind is int and value != int(value):
                    raise ValueError("latency takes whole control steps")
                p = dataclasses.replace(perturb, **{native[name]: kind(value)})
                c = config
            else:
                p = perturb
                c = dataclasses.replace(config, **{name: type(getattr(config, name))(value)})
            res = evaluate_native(
                policy, a.episodes, a.seconds, a.seed, command, config=c, perturb=p
            )
        except ValueError as err:
            raise UserError(f"--sweep {name}={value:g}: {err}") from None
        rows.append({"value": value, **{k: res[k] for k in columns}, "result": res})
        print(f"{value:>14g} " + " ".join(f"{res[k]:>16.4g}" for k in columns), flush=True)
    out = {
        "task": policy.task,
        "policy": str(policy.path),
        "sweep": name,
        "episodes": a.episodes,
        "seconds": a.seconds,
        "seed": a.seed,
        "command": command,
        "env_overrides": overrides,
        "native_perturbation": dataclasses.asdict(perturb),
        "rows": rows,
    }
    _write_json(a.json, out)
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2))
        for ax, key in zip(np.atleast_1d(axes), columns, strict=True):
            ax.plot([r["value"] for r in rows], [r[key] for r in rows], "o-")
            ax.set_xlabel(name)
            ax.set_title(key)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{policy.task}: {a.episodes} native episodes x {a.seconds:g} s per value")
        fig.tight_layout()
        a.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.plot, dpi=100)
        print(f"wrote {a.plot}")
    return 0


def _eval_terrain(a, policy, command, overrides: list[str], perturb) -> int:
    """`locomotion eval` pinned to terrain types and levels: one native evaluation per
    (type, level), each `--episodes` episodes; one combination prints the usual table, several
    a table of success (tile crossed) and falls per row. Without --terrain (or --level), the
    policy's own setting (any type, the curriculum's start levels unless pinned by --env)."""
    import itertools

    from locomotion.replay import eval_config, evaluate_mjx, evaluate_native

    try:
        config = _env_overrides(eval_config(policy, command), overrides)
    except ValueError as err:
        raise UserError(str(err)) from None
    terrain, types = _terrain_types(config, policy)
    kinds = types if a.terrain == ["all"] else a.terrain or [config.terrain_type]
    levels = [config.level]
    if a.level == ["all"]:
        levels = list(range(terrain.num_levels))
    elif a.level:
        try:
            levels = [int(x) for x in a.level]
        except ValueError:
            raise UserError(f"--level takes level numbers or 'all', got {a.level}") from None
    rows = list(itertools.product(kinds, levels))
    configs = [_pin_terrain(config, policy, kind, level) for kind, level in rows]  # all checked
    results = []
    for (kind, level), pinned in zip(rows, configs, strict=True):
        try:
            res = evaluate_native(
                policy, a.episodes, a.seconds, a.seed, command, config=pinned, perturb=perturb
            )
            if a.compare_mjx:  # the same initial states and commands; one compilation per row
                res["mjx"] = evaluate_mjx(policy, a.episodes, a.seconds, a.seed, command, pinned)
        except ValueError as err:
            raise UserError(str(err)) from None
        res.update(terrain_type=kind, level=level)
        if kind is not None and level is not None:
            res["tile"] = terrain.describe(kind, level)
        results.append(res)
        if len(rows) > 1:
            print(_terrain_row(res, header=len(results) == 1), flush=True)
    out = {
        "task": policy.task,
        "policy": str(policy.path),
        "episodes": a.episodes,
        "seconds": a.seconds,
        "seed": a.seed,
        "command": command,
        "env_overrides": overrides,
        "rows": results,
    }
    if len(rows) == 1:
        out = {**results[0], **{k: v for k, v in out.items() if k != "rows"}}
        print(_table(out))
    _write_json(a.json, out)
    return 0


def _terrain_row(res: dict, header: bool) -> str:
    """One line of the terrain sweep's table (with the header above the first); with
    --compare-mjx, MJX's figures for the same episodes follow native MuJoCo's."""
    runs = [res] + ([res["mjx"]] if "mjx" in res else [])
    columns = (("crossed", "crossed_mean", 2), ("95%", "crossed_ci95", 2))
    columns += (("fell_tile", "fell_on_tile_mean", 2), ("fell", "fall_rate", 2))
    columns += (("vel_err", "lin_vel_error", 3),)
    head = f"{'terrain':12s} {'level':>5s} {'tile':>15s}"
    line = f"{str(res['terrain_type']):12s} {str(res['level']):>5s} {res.get('tile', ''):>15s}"
    for prefix, r in zip(("", "mjx_"), runs, strict=False):
        for name, key, digits in columns:
            width = max(9, len(prefix + name))
            head += f" {prefix + name:>{width}s}"
            value = r[key]
            if isinstance(value, list):  # an interval: low-high
                value = "-".join(f"{x:.{digits}f}" for x in value)
                line += f" {value:>{width}s}"
            else:
                line += f" {value:>{width}.{digits}f}"
    return head + "\n" + line if header else line


def _terrain_types(config, policy):
    """The task's terrain config and its column types in grid order; a task without a
    terrain is refused."""
    terrain = getattr(config, "terrain", None)
    if terrain is None or not hasattr(config, "level"):
        raise UserError(f"--terrain and --level need a terrain task; {policy.task} has no terrain")
    return terrain, sorted(set(terrain.column_types()), key=terrain.column_types().index)


def _pin_terrain(config, policy, kind: str | None, level: int | None):
    """`config` pinned to tiles of terrain type `kind` at `level` (None: left as it is)."""
    import dataclasses

    terrain, types = _terrain_types(config, policy)
    if kind is not None and kind not in types:
        raise UserError(f"--terrain {kind!r}: this terrain's types are {', '.join(types)}")
    if level is not None and not 0 <= level < terrain.num_levels:
        raise UserError(f"--level {level}: levels are 0 to {terrain.num_levels - 1}")
    changes = {k: v for k, v in (("terrain_type", kind), ("level", level)) if v is not None}
    return dataclasses.replace(config, **changes)


def _env_overrides(config, overrides: list[str]):
    """`config` with the `--env.FIELD VALUE` options applied (tyro over its dataclass)."""
    if not overrides:
        return config
    stray = [o for o in overrides if o.startswith("-") and not o.startswith("--env.")]
    if stray:
        raise UserError(f"unknown option {stray[0]!r} (task settings are --env.FIELD VALUE)")
    import tyro

    from locomotion.config import EnvOverrides

    # Booleans take a value like every other setting (--env.randomize true), any case.
    overrides = [o.capitalize() if o.lower() in ("true", "false") else o for o in overrides]
    # tyro reports a bad option or value in a box on stderr and exits: keep its words, one line.
    box = io.StringIO()
    try:
        with contextlib.redirect_stderr(box):
            parsed = tyro.cli(
                EnvOverrides[type(config)],
                default=EnvOverrides(env=config),
                args=overrides,
                prog="locomotion eval POLICY",
                config=(tyro.conf.FlagConversionOff,),
            )
    except SystemExit:
        words = [
            line.strip(" │|─-╭╮╰╯")
            for line in box.getvalue().splitlines()
            if "helptext" not in line
        ]
        reason = " ".join(w for w in words if w)
        raise UserError(f"{' '.join(overrides)}: {reason}") from None
    return parsed.env


def _table(result: dict) -> str:
    from locomotion import registry
    from locomotion.replay import eval_report

    mjx = result.get("mjx")
    report = eval_report(result["task"])
    rows = [
        ("return_mean", "return (mean)"),
        ("episode_length_mean", "episode length [steps]"),
        (f"{report.termination}_rate", f"{report.termination} rate"),
    ]
    rows += [(key, label) for key, _, label in report.step_means]
    for key, _, label in report.episode_counts:
        rows += [(f"{key}_median", f"{label} (median)"), (f"{key}_mean", f"{label} (mean)")]
    rows += [
        (f"constraint_violation_rate/{k}", f"violations: {k} [share of steps]")
        for k in result["constraint_violation_rate"]
    ]

    def get(res, key):
        if key.startswith("constraint_violation_rate/"):
            return res["constraint_violation_rate"][key.split("/", 1)[1]]
        return res[key]

    head = f"{result['task']}: {result['episodes']} episodes x {result['seconds']} s"
    if hasattr(registry.entry(result["task"]).env_config, "fixed_command"):
        head += f", command {result['command'] or 'sampled'}"
    if result.get("tile"):
        head += f", {result['terrain_type']} level {result['level']} ({result['tile']})"
    lines = [
        head,
        f"{'metric':46s} {'native MuJoCo':>14s}" + (f" {'MJX':>10s} {'gap':>10s}" if mjx else ""),
    ]
    for key, label in rows:
        native = get(result, key)
        line = f"{label:46s} {native:14.4g}"
        if mjx:
            line += f" {get(mjx, key):10.4g} {native - get(mjx, key):10.3g}"
        # A share of episodes (`<key>_mean` or the termination rate) with its 95 % interval.
        interval = result.get(f"{key.removesuffix('_mean')}_ci95")
        if interval is not None:
            line += f"  (native 95 %: {interval[0]:.2f}-{interval[1]:.2f})"
        lines.append(line)
    return "\n".join(lines)


def _video(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="locomotion video",
        epilog="Any --env.FIELD VALUE changes the task setting FIELD for this rollout, as in "
        "`locomotion eval`.",
    )
    parser.add_argument("policy")
    parser.add_argument(
        "-o", "--out", type=Path, required=True, help="an .mp4, or a .png: one still frame"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="video length; a .png: the frame's time"
    )
    parser.add_argument("--command", help="fixed command vx,vy,wz (default: the task's sampling)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--terrain", metavar="TYPE", help="terrain tasks: a tile of this type")
    parser.add_argument("--level", type=int, metavar="L", help="terrain tasks: at this level")
    a, overrides = parser.parse_known_args(args)
    if a.seconds <= 0 or a.width < 16 or a.height < 16:
        raise UserError("--seconds must be positive and --width/--height at least 16")
    if a.out.suffix.lower() not in (".mp4", ".png"):
        raise UserError(f"--out must end in .mp4 (a video) or .png (a still), got {a.out}")
    command = _parse_command(a.command)
    policy = _load_policy(a.policy)
    from locomotion.replay import eval_config
    from locomotion.video import RenderError, render_policy

    try:
        config = _env_overrides(eval_config(policy, command), overrides)
    except ValueError as err:
        raise UserError(str(err)) from None
    if a.terrain is not None or a.level is not None:
        config = _pin_terrain(config, policy, a.terrain, a.level)
    try:
        render_policy(policy, a.out, a.seconds, command, a.width, a.height, a.seed, config)
    except (RenderError, ValueError) as err:
        raise UserError(str(err)) from None
    print(f"wrote {a.out}")
    return 0


def _train(args: list[str]) -> int:
    # The task, when given, comes first; everything argparse does not know goes to tyro (so a
    # value like `--ppo.ent-coef 0.0` is never mistaken for the task).
    task_arg = args[0] if args and not args[0].startswith("-") else None
    args = args[1:] if task_arg is not None else args
    parser = argparse.ArgumentParser(prog="locomotion train", add_help=False)
    parser.add_argument("--preset", choices=("smoke", "cpu", "gpu"))
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--restart-envs", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--processes", type=int, default=1)
    known, overrides = parser.parse_known_args(args)
    help_only = any(a in ("-h", "--help") for a in overrides)

    from locomotion import distributed, gpu

    try:
        launch = distributed.requested()
    except distributed.DistributedError as err:
        raise UserError(str(err)) from None
    if known.processes < 1:
        raise UserError(f"--processes must be >= 1, got {known.processes}")
    if known.processes > 1 and not help_only:
        if launch is not None:
            raise UserError(
                f"--processes {known.processes}: this process is already part of a "
                f"multi-process run ({launch.describe()})"
            )
        # The launcher starts the processes and supervises them; it never starts JAX itself.
        child_args = ([task_arg] if task_arg else []) + _without_processes(args)
        try:
            return distributed.launch_local(known.processes, ["train", *child_args])
        except distributed.DistributedError as err:
            raise UserError(str(err)) from None

    # GPU settings (matmul precision, XLA flags, MUJOCO_GL) before anything starts JAX's
    # backend: XLA reads its flags once, at that start (locomotion/gpu.py).
    settings = gpu.configure()
    if launch is None:  # one process: a CPU device per core (several processes: one each)
        settings.update(_configure_cpu_devices())
    if launch is not None and not help_only:
        try:
            distributed.initialize(launch)
        except distributed.DistributedError as err:
            raise UserError(str(err)) from None
    import jax
    import tyro

    from locomotion import config as config_io
    from locomotion import registry
    from locomotion.train.driver import train

    if known.restart_envs and known.resume is None:
        raise UserError("--restart-envs only applies with --resume RUN_DIR")
    if known.resume is not None:
        run_dir = known.resume
        if not (run_dir / "config.json").is_file():
            raise UserError(f"cannot resume: {run_dir} has no config.json (not a run directory)")

        task = json.loads((run_dir / "config.json").read_text())["task"]
        entry = _entry(task)
        try:
            default = config_io.load(run_dir / "config.json", type(entry.env_config))
        except ValueError as err:  # a field added or removed since the run was written
            raise UserError(f"cannot resume {run_dir}: config.json: {err}") from None
    else:
        if task_arg is None:
            raise UserError(
                "usage: locomotion train TASK [--preset ...]; tasks: " + ", ".join(registry.names())
            )
        entry = _entry(task_arg)
        preset = known.preset or ("gpu" if jax.default_backend() == "gpu" else "cpu")
        ppo_cfg, run_cfg = entry.presets[preset]
        default = config_io.TrainConfig(
            task=entry.name, env=entry.env_config, ppo=ppo_cfg, run=run_cfg
        )
        run_dir = known.run_dir or Path("runs") / entry.name / time.strftime("%Y%m%d-%H%M%S")
        # Every process of a run writes to (and resumes from) process 0's directory.
        run_dir = Path(distributed.broadcast_text(str(run_dir)))
    cfg_type = config_io.TrainConfig[type(entry.env_config)]
    try:
        cfg = tyro.cli(
            cfg_type, default=default, args=overrides, prog=f"locomotion train {entry.name}"
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    if help_only:
        return 0
    if cfg.task != entry.name:
        raise UserError("--task cannot be overridden")
    if jax.process_count() > 1:
        return _train_process(entry, cfg, run_dir, known, settings)
    env = entry.env_class(cfg.env)
    print(
        f"training {entry.name} on {jax.default_backend()} ({jax.device_count()} device(s)), "
        f"{cfg.ppo.num_envs} envs, {cfg.run.num_iterations} iterations -> {run_dir}"
    )
    if settings:
        print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    from locomotion.checkpoint import CheckpointError

    try:
        train(
            env,
            cfg,
            run_dir,
            resume=known.resume is not None,
            restart_envs=known.restart_envs,
            progress=not known.no_progress,
        )
    except CheckpointError as err:  # resume / init_from: a missing or mismatched checkpoint
        raise UserError(str(err)) from None
    except FloatingPointError as err:  # diverged: the message names the last good checkpoint
        raise UserError(str(err)) from None
    _report_run(run_dir, cfg)
    return 0


def _train_process(entry, cfg, run_dir: Path, known, settings) -> int:
    """One process of a multi-process run: the same checks and training as alone, but any
    error ends this process at once, in one line (its peers see the broken connection and do
    the same), and only process 0 reports, exports and renders."""
    import jax

    from locomotion import config as config_io
    from locomotion import distributed
    from locomotion.train.driver import train

    try:
        distributed.check_same("configuration", json.dumps(config_io.to_dict(cfg), sort_keys=True))
        if distributed.is_primary():
            print(
                f"training {entry.name} on {jax.default_backend()}: {jax.process_count()} "
                f"processes x {jax.local_device_count()} device(s), {cfg.ppo.num_envs} envs in "
                f"all, {cfg.run.num_iterations} iterations -> {run_dir}"
            )
            if settings:
                print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        train(
            entry.env_class(cfg.env),
            cfg,
            run_dir,
            resume=known.resume is not None,
            restart_envs=known.restart_envs,
            progress=not known.no_progress,
        )
        distributed.barrier("trained")
        primary = distributed.is_primary()
        # Every file the run needs is written: leave the distributed runtime together now,
        # rather than have the others wait at JAX's exit while process 0 exports and renders.
        jax.distributed.shutdown()
    except (Exception, KeyboardInterrupt) as err:
        distributed.exit_after_peer_failure(err)
    if primary:
        _report_run(run_dir, cfg)
    return 0


def _without_processes(args: list[str]) -> list[str]:
    """`args` without `--processes N` / `--processes=N` (what the launched processes get)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            out.append(a)
    return out


def _report_run(run_dir: Path, cfg) -> None:
    if (run_dir / "eval.json").is_file():
        evals = json.loads((run_dir / "eval.json").read_text())
        which = "best evaluated" if cfg.run.keep == "best" else "final"
        print(
            f"{which} policy's evaluation: "
            + ", ".join(f"{k[5:]}={v:.3g}" for k, v in evals.items())
        )
    _finish_run(run_dir, cfg)
    print(f"run directory: {run_dir}")


def _finish_run(run_dir: Path, cfg) -> None:
    """Export the policy, plot the learning curves and render a short video into the run."""
    from locomotion.export import export
    from locomotion.replay import eval_report
    from locomotion.runlog import read_metrics
    from locomotion.video import RenderError, plot_learning_curves, render_policy

    out = export(run_dir)
    report = eval_report(cfg.task)
    plot_learning_curves(
        read_metrics(run_dir),
        run_dir / "learning_curve.png",
        cfg.task,
        extra_panels=[(metric, label) for _, metric, label in report.step_means]
        + [(metric, f"{metric} (mean per step)") for _, metric, _ in report.episode_counts],
    )
    print(f"exported policy: {out}")
    if cfg.run.video_seconds > 0:
        try:
            render_policy(
                _load_policy(str(out)),
                run_dir / "video.mp4",
                cfg.run.video_seconds,
                width=480,
                height=270,
            )
        except RenderError as err:  # training results stay valid without a video
            print(f"warning: no video: {err}", file=sys.stderr)


def _entry(task: str):
    from locomotion import registry

    try:
        return registry.entry(task)
    except KeyError as err:
        raise UserError(err.args[0]) from None


if __name__ == "__main__":
    sys.exit(main())
