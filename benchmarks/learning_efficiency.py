"""Learning efficiency: our PPO against brax's PPO on quadruped_joystick (not a test).

    pip install -e ".[bench]"          # brax 0.14.2 (needs jax < 0.10)
    python benchmarks/learning_efficiency.py --seeds 0 1 2 --iterations 250 --eval-every 25

Both trainers get the same environment (`registry.make("quadruped_joystick")`, brax's through
its own training wrappers), the cpu preset's batch geometry and settings (512 envs, unroll 24,
4 minibatches x 5 epochs, lr 1e-3, gamma 0.99, lambda 0.95, clip 0.2, no entropy bonus, max
grad norm 1, observation normalization, (256, 128, 64) networks) and the same number of
control steps. "ours" is our PPO with the preset as it is (its policy and loss settings
included); brax keeps its own policy (tanh-squashed Gaussian, state-dependent std, swish) and
loss. `--set` changes our settings for an ablation, e.g. the quadruped's former ones:

    --label before --set action_distribution=normal state_dependent_std=false activation=elu \
        kernel_init=orthogonal lr_schedule=adaptive clip_value=true vf_coef=1.0
 Every `--eval-every` iterations the deterministic policy is kept and, after
training (so evaluation is not in the wall clock), measured two ways at vx = 0.5 m/s on the
nominal robot:
- native: one 10 s episode in C MuJoCo (the task's reset, key 0), |mean forward speed of the
  base over 2-10 s - 0.5| [m/s], and whether it fell;
- MJX: the walking bar's setting, 100 envs x 10 s, mean tracking error [m/s] and fall rate.
Writes one JSON row per trainer, seed and checkpoint (`--out`) and a plot of error against
steps (`--plot`). Wall clock: training only, the first iteration's compilation included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jp
import mujoco
import numpy as np

import locomotion  # noqa: F401  (XLA flags before jax starts)
from locomotion import registry
from locomotion.cat import wrap_for_training
from locomotion.evaluation import nominal_config
from locomotion.replay import NativeRunner
from locomotion.train import ppo

TASK = "quadruped_joystick"
COMMAND = (0.5, 0.0, 0.0)
SECONDS, SETTLE = 10.0, 2.0  # [s] episode, and the start left out of the mean speed


def train_ours(env, cfg, iterations: int, eval_every: int, seed: int):
    """Our PPO. Returns `apply(params, obs) -> action` (deterministic), the kept
    [(env_steps, wall_seconds, params)] and the total wall clock."""
    wrapped = wrap_for_training(env, cfg.num_envs)
    mesh = ppo.env_mesh(env, cfg.num_envs)
    start = time.perf_counter()
    state = ppo.init(wrapped, cfg, jax.random.PRNGKey(seed), mesh)
    step = ppo.make_train_step(wrapped, cfg, iterations, mesh)
    nets = ppo.make_networks(env.action_size, cfg)
    kept = []
    for it in range(1, iterations + 1):
        state, metrics = step(state)
        if it % eval_every == 0 or it == iterations:
            jax.block_until_ready(metrics)
            params = jax.device_get((state.params, state.obs_stats))
            kept.append((it * cfg.batch_size, time.perf_counter() - start, params))

    def apply(params, obs):
        return ppo.policy_fn(nets, params[0], params[1], cfg)(obs)

    return apply, kept, time.perf_counter() - start


def train_brax(env, cfg, iterations: int, eval_every: int, seed: int):
    """brax 0.14.2's PPO through its own wrappers, same geometry; returns as `train_ours`."""
    from brax.training.agents.ppo import train as brax_ppo
    from brax_settings import brax_ppo_settings

    privileged = env.observation_size["privileged_state"]
    kept, start, made = [], time.perf_counter(), {}

    def keep(steps, make_policy, params):
        made["make_policy"] = make_policy
        if steps > 0:
            kept.append((int(steps), time.perf_counter() - start, jax.device_get(params)))

    def apply(params, obs):
        full = {"state": obs, "privileged_state": jp.zeros((*obs.shape[:-1], privileged))}
        policy = made["make_policy"](params, deterministic=True)
        return policy(full, jax.random.PRNGKey(0))[0]

    brax_ppo.train(
        **brax_ppo_settings(env, cfg),
        num_timesteps=iterations * cfg.batch_size,
        num_evals=iterations // eval_every + 1,
        policy_params_fn=keep,
        seed=seed,
    )
    return apply, kept, time.perf_counter() - start


def native_error(env, act, params) -> tuple[float, bool]:
    """|mean forward speed over SETTLE..SECONDS - 0.5| of one native episode, and a fall;
    `act(params, obs)` is jitted (compiled once per trainer)."""
    runner = NativeRunner(env)
    state = runner.reset(jax.random.PRNGKey(0))
    speeds, fell = [], False
    for t in range(int(round(SECONDS / env.dt))):
        state = runner.step(state, np.asarray(act(params, state.obs["state"][None]))[0])
        quat = runner.data.qpos[3:7]
        body = np.zeros(3)
        mujoco.mju_rotVecQuat(body, runner.data.qvel[:3], quat * np.array([1, -1, -1, -1]))
        if t * env.dt >= SETTLE:
            speeds.append(body[0])
        if float(state.done) > 0:
            fell = True
            break
    return abs(float(np.mean(speeds)) - COMMAND[0]) if speeds else float("nan"), fell


def make_mjx_error(env, act, num_envs: int = 100):
    """`(params) -> (mean tracking error [m/s], fall rate)` of `num_envs` MJX rollouts of
    `act(params, obs)`, as the walking bar (compiled once)."""
    steps = int(round(SECONDS / env.dt))

    @jax.jit
    def run(params, key):
        state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def one(carry, _):
            state, alive, err, n = carry
            state = jax.vmap(env.step)(state, act(params, state.obs["state"]))
            err = err + alive * state.metrics["tracking/lin_vel_error"]
            n = n + alive
            return (state, alive * (1.0 - state.done), err, n), None

        init = (state, jp.ones(num_envs), jp.zeros(num_envs), jp.zeros(num_envs))
        (_, alive, err, n), _ = jax.lax.scan(one, init, None, length=steps)
        return err.sum() / n.sum(), 1.0 - alive.mean()

    def measure(params) -> tuple[float, float]:
        err, fall = run(params, jax.random.PRNGKey(1))
        return float(err), float(fall)

    return measure


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trainers", nargs="+", default=["ours", "brax"], choices=["ours", "brax"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--mjx-envs", type=int, default=100)
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="change our PPO's settings (an ablation), e.g. init_log_std=-0.5; the rows are "
        "labelled with the changes",
    )
    parser.add_argument(
        "--label", help="name of the ablation in the rows (default: the --set changes)"
    )
    parser.add_argument(
        "--impl",
        default="jax",
        choices=["jax", "warp", "native"],
        help="the physics the trainers train on (native: C MuJoCo on the CPU cores); the "
        "evaluations stay as they are (a C MuJoCo episode, MJX-jax for the walking bar)",
    )
    parser.add_argument(
        "--report", action="store_true", help="only print the table and redraw the plot of --out"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/learning_efficiency.json"))
    parser.add_argument("--plot", type=Path, default=Path("runs/learning_efficiency.png"))
    args = parser.parse_args()
    if args.report:
        rows = json.loads(args.out.read_text())
        plot(rows, args.plot)
        print(report(rows))
        return

    entry = registry.entry(TASK)
    env = entry.env_class(dataclasses.replace(entry.env_config, impl=args.impl))
    eval_cfg = dataclasses.replace(nominal_config(entry.env_config), fixed_command=COMMAND)
    eval_env = entry.env_class(eval_cfg)
    cfg = entry.presets["cpu"][0]
    changes = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    ours_cfg = dataclasses.replace(cfg, **changes)
    rows = json.loads(args.out.read_text()) if args.out.is_file() else []
    trainers = {"ours": train_ours, "brax": train_brax}
    for name in args.trainers:
        for seed in args.seeds:
            variant = args.label or ",".join(args.set)
            if args.impl != "jax":
                variant = ",".join(filter(None, [f"impl={args.impl}", variant]))
            label = name + (f"[{variant}]" if name == "ours" and variant else "")
            run_cfg = ours_cfg if name == "ours" else cfg
            apply, kept, wall = trainers[name](env, run_cfg, args.iterations, args.eval_every, seed)
            act = jax.jit(apply)
            measure = make_mjx_error(eval_env, apply, args.mjx_envs)
            for steps, seconds, params in kept:
                native, fell = native_error(eval_env, act, params)
                mjx, fall_rate = measure(params)
                row = {
                    "trainer": label,
                    "seed": seed,
                    "env_steps": steps,
                    "wall_seconds": round(seconds, 1),
                    "native_error": native,
                    "native_fell": fell,
                    "mjx_error": mjx,
                    "mjx_fall_rate": fall_rate,
                    "jax": jax.__version__,
                }
                print(json.dumps(row), flush=True)
                rows = [
                    r
                    for r in rows
                    if (r["trainer"], r["seed"], r["env_steps"]) != (label, seed, steps)
                ]
                rows.append(row)
            print(f"{label} seed {seed}: {args.iterations} iterations in {wall:.0f} s", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.plot)
    print(report(rows))


def _value(text: str):
    """A --set value: JSON (numbers, true/false, lists), else the bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


BAR_ERROR = 0.1  # [m/s] the walking bar: MJX tracking error below this, no falls


def walking(row: dict) -> bool:
    return row["mjx_error"] < BAR_ERROR and row["mjx_fall_rate"] < 0.005  # 0 of 100 envs


def report(rows: list[dict]) -> str:
    """A markdown table per trainer: error at the last common checkpoint over its seeds
    (mean and worst), and the first checkpoint that meets the walking bar per seed."""
    lines = [
        "| trainer | seeds | steps [M] | native error mean / worst | MJX error mean / worst "
        "| MJX falls worst | walking bar first met (steps [M], minutes) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for trainer in sorted({r["trainer"] for r in rows}):
        mine = [r for r in rows if r["trainer"] == trainer]
        seeds = sorted({r["seed"] for r in mine})
        last = min(max(r["env_steps"] for r in mine if r["seed"] == s) for s in seeds)
        final = [r for r in mine if r["env_steps"] == last]
        native = [r["native_error"] for r in final]
        mjx = [r["mjx_error"] for r in final]
        met = []
        for s in seeds:
            hits = sorted(
                (r for r in mine if r["seed"] == s and walking(r)), key=lambda r: r["env_steps"]
            )
            met.append(
                f"{hits[0]['env_steps'] / 1e6:.2f}, {hits[0]['wall_seconds'] / 60:.1f}"
                if hits
                else "not met"
            )
        lines.append(
            f"| {trainer} | {','.join(map(str, seeds))} | {last / 1e6:.2f} "
            f"| {np.mean(native):.3f} / {max(native):.3f} | {np.mean(mjx):.3f} / {max(mjx):.3f} "
            f"| {max(r['mjx_fall_rate'] for r in final):.2f} | {'; '.join(met)} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    """Error against steps: per trainer, the mean over its seeds and the range (band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = sorted({r["trainer"] for r in rows})
    for i, trainer in enumerate(labels):
        mine = [r for r in rows if r["trainer"] == trainer]
        seeds = sorted({r["seed"] for r in mine})
        steps = sorted(
            set.intersection(*({r["env_steps"] for r in mine if r["seed"] == s} for s in seeds))
        )
        for ax, key in zip(axes, ("native_error", "mjx_error"), strict=True):
            values = np.array(
                [
                    [
                        next(r[key] for r in mine if (r["seed"], r["env_steps"]) == (s, n))
                        for n in steps
                    ]
                    for s in seeds
                ]
            )
            x = np.array(steps) / 1e6
            ax.plot(
                x,
                values.mean(0),
                color=f"C{i}",
                lw=1.5,
                label=f"{trainer} (seeds {','.join(map(str, seeds))})",
            )
            ax.fill_between(x, values.min(0), values.max(0), color=f"C{i}", alpha=0.15, lw=0)
    for ax, title in zip(
        axes,
        ("native replay: |mean vx - 0.5| [m/s]", "MJX, 100 envs: tracking error [m/s]"),
        strict=True,
    ):
        ax.axhline(BAR_ERROR, color="gray", ls="--", lw=0.8)
        ax.set_xlabel("environment steps [M]")
        ax.set_title(title + ": mean over seeds, band = range", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
