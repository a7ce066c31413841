"""GPU verification in one call (not a test): the environment, throughput, and time to walk.

    python benchmarks/gpu_check.py                  # about 9 minutes on one GPU (--budget-minutes)
    python benchmarks/gpu_check.py --dry-run        # tiny sizes: end to end on a CPU

1. `locomotion info` (printed; "info" in the JSON), after `locomotion.gpu.configure()`.
   Physics alone (`--sections physics`, "physics" in the JSON): the quadruped's MJX model
   stepped bare, `vmap(mjx.step)` from its keyframe under random joint targets (+-0.3 rad
   about the default pose, redrawn every control step), with each physics implementation
   installed (`jax`, and `warp` with warp-lang: data made from the MjModel with contact
   buffers sized for the batch), at the throughput sizes; the robots' mean base height after
   the timed steps shows both simulate the same thing.
2. quadruped_joystick at 8192, 16384 and 4096 envs (the preset's size first: its compiled
   run goes on to train), for each physics implementation (`jax`;
   `warp` only when warp-lang is installed and the task has an `impl` setting, otherwise one
   row that says why not): control steps/s of the bare batched step `vmap(env.step)` under
   random actions (no time limit or reset), and of whole PPO iterations (rollout, GAE,
   updates) with the gpu preset's settings at that many envs; compilation excluded.
3. The gpu preset of quadruped_joystick trained from scratch until the walking bar or the time
   left: every `--check-every` iterations the deterministic policy walks in MJX, 100 envs x
   10 s at vx = 0.5 m/s on the nominal robot (the setting of a run's eval.json), through the
   run's own evaluation (`train/driver.py`'s `make_run_eval`, what eval.json holds, compiled
   once with the parameters as an argument); the bar is a mean linear-velocity tracking error below
   0.1 m/s with no falls. Reports the minutes and control steps to the bar, training alone
   (compilation included) and with the checks; the last check's whole evaluation is the
   final one, and that policy is exported (policy.onnx, policy.json, scene.xml in
   `--policy-dir`) for native replay elsewhere.
   The run at the preset's size is the one whose first iterations step 2 timed: those
   iterations count towards the bar, and the run is compiled once.

Everything goes to one JSON file (`--out`), rewritten after every measurement, so a run cut
short keeps what it measured; a size that fails (out of GPU memory, say) is recorded with its
error and the others go on. The whole run keeps within `--budget-minutes`: throughput gets at
most 40 % of it, training what is left less a reserve for the final evaluation.
`--sections` picks the parts (default: throughput and training; add `physics`).
`--dry-run` runs the smoke preset as `locomotion train --preset smoke` does (32 envs, 3
iterations, checks of 8 envs x 1 s) and, unless XLA_FLAGS sets an optimization level,
compiles with XLA's optimizations off: it measures nothing, it shows that every step runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import sys
import time
from pathlib import Path

from locomotion import gpu

TASK = "quadruped_joystick"
BAR_ERROR = 0.1  # [m/s] mean linear-velocity tracking error, and no falls


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What one run measures: the real check, or the tiny `--dry-run`. None: the preset's."""

    num_envs: tuple[int, ...] | None  # throughput sizes; None: the preset's num_envs alone
    preset: str  # PPO settings for throughput and training
    train_envs: int | None  # envs of the training run
    max_iterations: int | None  # the preset's num_iterations
    check_every: int  # iterations between walking checks
    eval_envs: int | None  # the preset's final evaluation (RunConfig.eval_envs)
    eval_seconds: float | None  # [s] (RunConfig.eval_seconds)
    unroll: int  # control steps per timed call of the bare step
    repeats: int  # timed calls per measurement
    policies: bool  # load the shipped policies in `info`
    reserve_seconds: float  # kept from training for the final evaluation

    def of_preset(self, ppo_cfg, run_cfg) -> Sizes:
        """These sizes with every None replaced by the preset's setting."""
        train_envs = self.train_envs or ppo_cfg.num_envs
        return dataclasses.replace(
            self,
            num_envs=self.num_envs or (train_envs,),
            train_envs=train_envs,
            max_iterations=self.max_iterations or run_cfg.num_iterations,
            eval_envs=self.eval_envs or run_cfg.eval_envs,
            eval_seconds=self.eval_seconds or run_cfg.eval_seconds,
        )


SECTIONS = ("physics", "throughput", "train")
FULL = Sizes((8192, 16384, 4096), "gpu", None, None, 20, 100, 10.0, 24, 3, True, 60.0)
# The smoke preset as `locomotion train --preset smoke` runs it (32 envs, 3 iterations, the
# final evaluation's 8 envs x 1 s): the same training and evaluation graphs, which the test
# suite's run of it has already compiled (tests/test_end_to_end.py).
DRY = Sizes(None, "smoke", None, None, 1, None, None, 4, 1, False, 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check.json"))
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, for a CPU")
    parser.add_argument("--budget-minutes", type=float, default=9.0)
    parser.add_argument("--num-envs", type=int, nargs="+", help="throughput sizes")
    parser.add_argument("--check-every", type=int, help="iterations between walking checks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sections",
        default="throughput,train",
        help="comma-separated parts to run, of: physics, throughput, train",
    )
    parser.add_argument(
        "--policy-dir",
        type=Path,
        help="where the trained policy is exported (default: beside --out, <stem>_policy)",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        parser.error(f"--sections: unknown {unknown or 'none given'}; choose from {SECTIONS}")
    sizes = DRY if args.dry_run else FULL
    if args.num_envs:
        sizes = dataclasses.replace(sizes, num_envs=tuple(args.num_envs))
    if args.check_every:
        sizes = dataclasses.replace(sizes, check_every=args.check_every)
    flags = os.environ.get("XLA_FLAGS", "")
    if args.dry_run and "--xla_backend_optimization_level" not in flags:
        # Before JAX starts: compile in seconds what runs for milliseconds (unless the caller
        # chose the code generation, as the test suite does).
        os.environ["XLA_FLAGS"] = f"{flags} {gpu.CPU_FAST_COMPILE}".strip()

    settings = gpu.configure()  # before anything starts JAX's backend (locomotion/gpu.py)
    start = time.perf_counter()
    deadline = start + 60 * args.budget_minutes
    report = {
        "script": "benchmarks/gpu_check.py",
        "dry_run": args.dry_run,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "budget_minutes": args.budget_minutes,
        "gpu_settings": settings,
    }

    def save() -> None:
        report["total_minutes"] = round((time.perf_counter() - start) / 60, 3)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")

    from locomotion import registry
    from locomotion.info import collect, table

    report["info"] = collect(policies=sizes.policies)
    print(table(report["info"]), flush=True)
    save()

    entry = registry.entry(TASK)
    ppo_cfg, run_cfg = entry.presets[sizes.preset]
    sizes = sizes.of_preset(ppo_cfg, run_cfg)
    train_cfg = dataclasses.replace(ppo_cfg, num_envs=sizes.train_envs)
    env = entry.env_class(entry.env_config)
    runs: dict[int, Training] = {}  # the training run, once a size has started it
    report["sections"] = sections

    if "physics" in sections:
        report["physics"] = []
        # The whole budget when physics runs alone, else a fifth of it.
        share = 1.0 if sections == ["physics"] else 0.2
        end = time.perf_counter() + share * (deadline - time.perf_counter())
        for row in physics(env, sizes, end):
            report["physics"].append(row)
            print(json.dumps(row), flush=True)
            save()

    if "throughput" in sections:
        report["throughput"] = []
        share = 1.0 if "train" not in sections else 0.4
        end = time.perf_counter() + share * (deadline - time.perf_counter())
        for row in throughput(entry, sizes, ppo_cfg, train_cfg, run_cfg, args.seed, end, runs):
            report["throughput"].append(row)
            print(json.dumps(row), flush=True)
            save()

    if "train" in sections:
        run = runs.get(train_cfg.num_envs) or Training.start(env, train_cfg, run_cfg, args.seed)
        report["train_to_bar"] = {}
        train_to_bar(entry, run, sizes, args.seed, deadline, report["train_to_bar"], save)
        save()
        policy_dir = args.policy_dir or args.out.with_name(f"{args.out.stem}_policy")
        try:
            report["train_to_bar"]["policy_dir"] = str(
                export_policy(entry, run, run_cfg, args.seed, policy_dir)
            )
        except Exception as err:  # the figures above stay written
            report["train_to_bar"]["policy_dir"] = f"{type(err).__name__}: {err}"
        save()
    print(f"wrote {args.out} ({report['total_minutes']:.1f} min)")
    return 0


@dataclasses.dataclass
class Training:
    """A PPO run of the task from scratch, compiled once, advanced an iteration at a time."""

    env: object
    cfg: object  # PPOConfig
    state: object  # ppo.TrainState
    step: object  # the compiled iteration
    iterations: int = 0
    seconds: float = 0.0  # [s] in iterations, compilation and initialization included

    @classmethod
    def start(cls, env, cfg, run_cfg, seed: int) -> Training:
        import jax

        from locomotion.cat import wrap_for_training
        from locomotion.train import ppo

        t = time.perf_counter()
        wrapped = wrap_for_training(env, cfg.num_envs)
        # As `locomotion train`: impl='warp' trains on one device (its contact buffers are
        # shared by the whole batch).
        warp = getattr(env, "impl", "jax") == "warp"
        mesh = ppo.make_mesh(cfg.num_envs, max_devices=1 if warp else None)
        state = ppo.init(wrapped, cfg, jax.random.PRNGKey(seed), mesh)
        # The preset's iteration count fixes the learning-rate schedule, as in `locomotion train`.
        step = ppo.make_train_step(wrapped, cfg, run_cfg.num_iterations, mesh)
        jax.block_until_ready(state)
        return cls(env, cfg, state, step, seconds=time.perf_counter() - t)

    def advance(self, n: int) -> dict[str, float]:
        """`n` iterations; the last one's metrics (waits for them, so `seconds` is right)."""
        import jax

        t = time.perf_counter()
        for _ in range(n):
            self.state, metrics = self.step(self.state)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        self.seconds += time.perf_counter() - t
        self.iterations += n
        return metrics


def throughput(entry, sizes: Sizes, ppo_cfg, train_cfg, run_cfg, seed, end: float, runs):
    """Rows {impl, num_envs, env_steps_per_s, train_steps_per_s, error} per physics
    implementation and size, until `end` (a perf_counter time; later sizes are skipped). The
    training run at `train_cfg`'s size goes into `runs`."""
    for impl in ("jax", "warp"):
        why_not = _impl_unavailable(entry, impl)
        if why_not:
            yield {"impl": impl, "num_envs": None, "skipped": why_not}
            continue
        config = entry.env_config
        if impl != "jax":
            config = dataclasses.replace(config, impl=impl)
        env = entry.env_class(config)
        for n in sizes.num_envs:
            row = {"impl": impl, "num_envs": n, "env_steps_per_s": None, "train_steps_per_s": None}
            if time.perf_counter() > end:
                yield {**row, "skipped": "time budget spent"}
                continue
            try:
                row["env_steps_per_s"] = round(
                    bare_steps_per_second(env, n, sizes.unroll, sizes.repeats), 1
                )
                keep = impl == "jax" and n == train_cfg.num_envs
                run = Training.start(
                    env,
                    train_cfg if keep else dataclasses.replace(ppo_cfg, num_envs=n),
                    run_cfg,
                    seed,
                )
                run.advance(1)  # compilation
                t = time.perf_counter()
                run.advance(sizes.repeats)
                row["train_steps_per_s"] = round(
                    run.cfg.batch_size * sizes.repeats / (time.perf_counter() - t), 1
                )
                row["error"] = None
                if keep:
                    runs[n] = run
            except Exception as err:  # out of memory at one size must not end the check
                row["error"] = f"{type(err).__name__}: {str(err).strip()[:300]}"
            yield row


def bare_steps_per_second(env, num_envs: int, unroll: int, repeats: int) -> float:
    """Control steps/s of `vmap(env.step)` under random actions in [-1, 1]: no time limit, no
    automatic reset (as benchmarks/throughput.py, compiled once)."""
    import jax
    import jax.numpy as jp

    # Some fields of the state come out of reset and step weakly typed; one call's output as the
    # next call's input would then compile again. All strongly typed, it compiles once.
    def strong(tree):
        return jax.tree.map(lambda x: jp.asarray(x, dtype=x.dtype), tree)

    @jax.jit
    def run(state, key):
        def one(state, k):
            action = jax.random.uniform(k, (num_envs, env.action_size), minval=-1, maxval=1)
            return jax.vmap(env.step)(state, action), None

        return strong(jax.lax.scan(one, state, jax.random.split(key, unroll))[0])

    env.prepare_batch(num_envs)
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), num_envs))
    state = strong(state)
    state = jax.block_until_ready(run(state, jax.random.PRNGKey(100)))  # compilation
    start = time.perf_counter()
    for i in range(repeats):
        state = run(state, jax.random.PRNGKey(i))
    jax.block_until_ready(state)
    return num_envs * unroll * repeats / (time.perf_counter() - start)


def physics(env, sizes: Sizes, end: float):
    """Rows {impl, num_envs, physics_ctrl_steps_per_s, compile_seconds, base_height, error}:
    the task's MjModel stepped bare (no task code), per size and then per installed MJX
    implementation (the two side by side before the next size), until `end` (a perf_counter
    time; later rows are skipped)."""
    impls = ["jax"]
    try:
        importlib.metadata.version("warp-lang")
        impls.append("warp")
    except importlib.metadata.PackageNotFoundError:
        yield {"impl": "warp", "num_envs": None, "skipped": "not installed (warp-lang)"}
    for n in sizes.num_envs:
        for impl in impls:
            row = {"impl": impl, "num_envs": n}
            if time.perf_counter() > end:
                yield {**row, "skipped": "time budget spent"}
                continue
            try:
                row.update(physics_steps_per_second(env, impl, n, sizes.unroll, sizes.repeats))
                row["error"] = None
            except Exception as err:  # out of memory or an unsupported feature: go on
                row["error"] = f"{type(err).__name__}: {str(err).strip()[:300]}"
            yield row


def physics_steps_per_second(env, impl: str, num_envs: int, unroll: int, repeats: int) -> dict:
    """Control steps/s of `vmap(mjx.step)` on `env`'s MjModel with implementation `impl`:
    every robot starts at the keyframe; joint targets are the default pose plus uniform noise
    of +-0.3 rad, redrawn every control step and held over its physics substeps."""
    import jax
    import jax.numpy as jp
    from mujoco import mjx

    m = env.mj_model
    model = mjx.put_model(m, impl=impl)
    buffers = {"naconmax": 8 * num_envs, "njmax": 64} if impl == "warp" else {}
    qpos0 = jp.asarray(m.key_qpos[0])
    default = qpos0[7:]

    def make(_):
        return mjx.make_data(m, impl=impl, **buffers).replace(qpos=qpos0, ctrl=default)

    data = jax.jit(jax.vmap(make))(jp.arange(num_envs))
    substeps = env.n_substeps

    @jax.jit
    def run(data, key):
        def control_step(data, k):
            noise = jax.random.uniform(k, (num_envs, default.shape[0]), minval=-0.3, maxval=0.3)
            data = data.replace(ctrl=default + noise)
            step = jax.vmap(mjx.step, in_axes=(None, 0))
            return jax.lax.fori_loop(0, substeps, lambda _, d: step(model, d), data), None

        return jax.lax.scan(control_step, data, jax.random.split(key, unroll))[0]

    t = time.perf_counter()
    data = jax.block_until_ready(run(data, jax.random.PRNGKey(100)))  # compilation
    compile_seconds = time.perf_counter() - t
    start = time.perf_counter()
    for i in range(repeats):
        data = run(data, jax.random.PRNGKey(i))
    jax.block_until_ready(data)
    seconds = time.perf_counter() - start
    height = float(jp.mean(data.qpos[:, 2]))
    return {
        "physics_ctrl_steps_per_s": round(num_envs * unroll * repeats / seconds, 1),
        "physics_steps_per_s": round(num_envs * unroll * repeats * substeps / seconds, 1),
        "compile_seconds": round(compile_seconds, 1),
        "base_height": round(height, 4),
        "finite": bool(jp.all(jp.isfinite(data.qpos))),
    }


def export_policy(entry, run: Training, run_cfg, seed: int, policy_dir: Path) -> Path:
    """The trained policy as `locomotion export` writes it (policy.onnx, policy.json,
    scene.xml), through a run directory (config.json + the last checkpoint) beside it."""
    from locomotion import config as config_io
    from locomotion.export import export
    from locomotion.train.driver import save_checkpoint

    run_dir = policy_dir.with_name(f"{policy_dir.name}_run")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = config_io.TrainConfig(
        task=TASK,
        env=entry.env_config,
        ppo=run.cfg,
        run=dataclasses.replace(run_cfg, seed=seed, keep="last"),
    )
    config_io.save(cfg, run_dir / "config.json")
    save_checkpoint(run_dir, run.state)
    return export(run_dir, policy_dir)


def _impl_unavailable(entry, impl: str) -> str | None:
    """Why the task cannot be stepped with physics implementation `impl` here, or None."""
    if impl == "jax":
        return None
    package = {"warp": "warp-lang"}[impl]  # mujoco-mjx bundles MuJoCo Warp itself
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return f"not installed ({package})"
    fields = {f.name for f in dataclasses.fields(entry.env_config)}
    if "impl" not in fields:
        return (
            f"not supported: {type(entry.env_config).__name__} has no impl setting "
            "(the task builds its MJX model with impl='jax')"
        )
    return None


def train_to_bar(
    entry, run: Training, sizes: Sizes, seed: int, deadline: float, out: dict, save
) -> None:
    """Train `run` on until the walking bar, its preset's iterations or `deadline`; fills
    `out` (and calls `save()` after every check)."""
    from locomotion import config as config_io
    from locomotion.train.driver import make_run_eval

    cfg = run.cfg
    iterations = sizes.max_iterations
    # The walking check is a run's own evaluation (what eval.json holds: nominal robot,
    # vx = 0.5 m/s, the run's key), compiled once with the parameters as an argument.
    run_cfg = entry.presets[sizes.preset][1]
    check = make_run_eval(
        run.env,
        config_io.TrainConfig(
            task=TASK,
            env=entry.env_config,
            ppo=cfg,
            run=dataclasses.replace(
                run_cfg, seed=seed, eval_envs=sizes.eval_envs, eval_seconds=sizes.eval_seconds
            ),
        ),
    )
    limit = deadline - sizes.reserve_seconds
    out.update(
        task=TASK,
        preset=sizes.preset,
        num_envs=cfg.num_envs,
        steps_per_iteration=cfg.batch_size,
        max_iterations=iterations,
        time_limit_minutes=round(max(limit - time.perf_counter(), 0.0) / 60 + run.seconds / 60, 2),
        bar={
            "lin_vel_error_below": BAR_ERROR,
            "fall_rate": 0.0,
            "eval_envs": sizes.eval_envs,
            "eval_seconds": sizes.eval_seconds,
            "command": list(entry.eval_env_config(entry.env_config).fixed_command),
        },
        reached=False,
        minutes_to_bar=None,
        train_minutes_to_bar=None,
        env_steps_to_bar=None,
        stopped_by=None,
        checks=[],
    )
    print(f"training {TASK} ({sizes.preset} preset, {cfg.num_envs} envs) until the walking bar")
    check_seconds = 0.0
    while out["stopped_by"] is None:
        todo = min(
            sizes.check_every - run.iterations % sizes.check_every, iterations - run.iterations
        )
        metrics = run.advance(todo) if todo > 0 else {}
        t = time.perf_counter()
        final = check(run.state)
        result = {
            "lin_vel_error": final["eval/tracking/lin_vel_error"],
            "fall_rate": final["eval/fall_rate"],
            "return_mean": final["eval/return_mean"],
        }
        check_seconds += time.perf_counter() - t
        row = {
            "iteration": run.iterations,
            "env_steps": run.iterations * cfg.batch_size,
            "train_minutes": round(run.seconds / 60, 3),
            "minutes": round((run.seconds + check_seconds) / 60, 3),
            "episode_return": metrics.get("episode/return"),
            **result,
        }
        out["checks"].append(row)
        print(json.dumps(row), flush=True)
        if not math.isfinite(metrics.get("losses/total", 0.0)):
            out["stopped_by"] = "diverged (non-finite loss)"
        elif result["lin_vel_error"] < BAR_ERROR and result["fall_rate"] == 0.0:
            out.update(
                reached=True,
                stopped_by="walking bar",
                minutes_to_bar=row["minutes"],
                train_minutes_to_bar=row["train_minutes"],
                env_steps_to_bar=row["env_steps"],
            )
        elif run.iterations >= iterations:
            out["stopped_by"] = "preset's iterations"
        elif time.perf_counter() > limit:
            out["stopped_by"] = "time limit"
        save()
    out["iterations"] = run.iterations
    # Over the whole run, initialization and compilation included (the throughput rows leave
    # them out).
    out["steps_per_s_with_compilation"] = round(run.iterations * cfg.batch_size / run.seconds, 1)
    # The last check is the final evaluation: the task's evaluation of the final policy.
    out["final_eval"] = final


if __name__ == "__main__":
    sys.exit(main())
