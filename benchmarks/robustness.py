"""Robustness table of the shipped quadruped policies in native MuJoCo (not a test).

    python benchmarks/robustness.py [--policies quadruped_joystick quadruped_cat]
        [--episodes 100] [--seconds 20] [--out benchmarks/results/robustness.json]

Every condition runs the same episodes (seeded commands, initial states and physics draws)
with the task's random commands (resampled every 5 s as in training), in C MuJoCo, and
reports the fall rate and the mean tracking errors:

- nominal:     the MJCF as it is, clean observations, no pushes
- randomized:  the training's randomized physics per episode (friction, masses, motor gains,
               damping) and its observation noise, no pushes
- pushes:      randomized, noise, and the training's pushes (0.3 m/s every 4 s for both
               shipped policies): the robustness bar, at most 2 % of episodes may fall
               (tests/test_robustness.py)
- latency 1/2: the pushes condition with actions applied 1 or 2 control steps (20, 40 ms) late
- gain error:  the pushes condition with each motor's kp and kd off by up to 20 %

Prints a Markdown table and writes the rows to `--out` (JSON). `--falls` lists instead which
episodes fell and with what physics (friction, added mass, motor gain, damping) and their
fastest joint (simulator impulses show up there), e.g.

    python benchmarks/robustness.py --falls --policies quadruped_cat --conditions pushes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import locomotion  # noqa: F401  (XLA flags before jax starts)
from locomotion.policy import load
from locomotion.replay import (
    NativePerturbation,
    eval_config,
    evaluate_native,
    training_conditions_config,
)

# condition: (task settings, or None for nominal; changes to the training conditions; perturbation)
CONDITIONS = {
    "nominal": (None, NativePerturbation()),
    "randomized": ({"push_velocity": 0.0}, NativePerturbation()),
    "pushes": ({}, NativePerturbation()),
    "latency 1": ({}, NativePerturbation(latency_steps=1)),
    "latency 2": ({}, NativePerturbation(latency_steps=2)),
    "gain error 20 %": ({}, NativePerturbation(gain_error=0.2)),
}
BAR = ("pushes", 0.02)  # the condition and the largest fall rate the shipped policies meet


def measure(name: str, condition: str, episodes: int, seconds: float, seed: int) -> dict:
    policy = load(name)
    changes, perturb = CONDITIONS[condition]
    if changes is None:
        config = eval_config(policy)
    else:
        config = training_conditions_config(policy, **changes)
    start = time.perf_counter()
    result = evaluate_native(
        policy, episodes=episodes, seconds=seconds, seed=seed, config=config, perturb=perturb
    )
    return {
        "policy": name,
        "condition": condition,
        "episodes": episodes,
        "seconds": seconds,
        "seed": seed,
        "settings": {
            k: getattr(config, k)
            for k in ("randomize", "obs_noise", "push_velocity", "push_seconds")
        },
        "perturbation": dataclasses.asdict(perturb),
        "fall_rate": result["fall_rate"],
        "fall_rate_ci95": result["fall_rate_ci95"],
        "lin_vel_error": result["lin_vel_error"],
        "ang_vel_error": result["ang_vel_error"],
        "wall_seconds": time.perf_counter() - start,
    }


def falls_by_physics(name: str, condition: str, episodes: int, seconds: float, seed: int):
    """Which episodes fall, and with what physics: prints each falling episode's step, command
    and randomized parameters, then each parameter's mean over the falling episodes and over
    all (the same episodes as `measure`)."""
    import jax
    import numpy as np

    from locomotion.replay import NativeBatch, eval_env

    policy = load(name)
    changes, perturb = CONDITIONS[condition]
    if changes is None:
        raise SystemExit("--falls needs a randomized condition")
    env = eval_env(policy, config=training_conditions_config(policy, **changes))
    batch = NativeBatch(env, episodes, perturb)
    state = batch.reset(jax.random.split(jax.random.PRNGKey(seed), episodes))
    params = jax.device_get(state.info["params"])
    alive = np.ones(episodes, bool)
    top_speed = np.zeros(episodes)  # fastest joint at a control step [rad/s]
    for t in range(int(round(seconds / env.dt))):
        state = batch.step(state, policy(np.asarray(state.obs["state"])), alive)
        speed = np.abs(np.asarray(state.pipeline_state.qvel)[:, 6:]).max(axis=1)
        top_speed = np.where(alive, np.maximum(top_speed, speed), top_speed)
        fell = (np.asarray(state.done) > 0) & alive
        for i in np.flatnonzero(fell):
            command = [round(float(c), 2) for c in np.asarray(state.info["command"][i])]
            physics = {k: round(float(v[i]), 2) for k, v in params.items() if np.ndim(v) == 1}
            print(
                f"episode {i} fell at {t * env.dt:.2f} s, command {command}, {physics}, "
                f"fastest joint {top_speed[i]:.0f} rad/s"
            )
        alive &= ~fell
    fell = ~alive
    print(f"{name} {condition}: {fell.sum()} of {episodes} fell")
    # The motors cannot turn a joint faster than the robot's velocity limit for long; a joint
    # far beyond it for a control step is an impulse of the simulator (an unconverged contact
    # solve did this at 3 Newton iterations), not the policy.
    limit = env.robot.velocity_limit
    jolts = top_speed > 2.5 * limit
    print(
        f"  episodes with a joint above {2.5 * limit:.0f} rad/s: {jolts.sum()} "
        f"({jolts[fell].sum()} of the falls)"
    )
    for k, v in params.items():
        if np.ndim(v) == 1 and fell.any():
            print(f"  {k}: mean {np.mean(v[fell]):.3f} over the falls, {np.mean(v):.3f} over all")


def table(rows: list[dict]) -> str:
    lines = [
        "| policy | condition | falls (95 % interval) | lin. velocity error [m/s] | yaw-rate "
        "error [rad/s] |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        low, high = (100 * x for x in r["fall_rate_ci95"])
        falls = f"{r['fall_rate'] * 100:.0f} % ({round(r['fall_rate'] * r['episodes'])}"
        falls += f"/{r['episodes']}; {low:.0f}-{high:.0f} %)"
        lines.append(
            f"| {r['policy']} | {r['condition']} | {falls} "
            f"| {r['lin_vel_error']:.3f} | {r['ang_vel_error']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", nargs="+", default=["quadruped_joystick", "quadruped_cat"])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--falls", action="store_true", help="list the falling episodes' physics instead"
    )
    a = parser.parse_args()
    if a.falls:
        for name in a.policies:
            for condition in a.conditions:
                falls_by_physics(name, condition, a.episodes, a.seconds, a.seed)
        return
    rows = []
    for name in a.policies:
        for condition in a.conditions:
            rows.append(measure(name, condition, a.episodes, a.seconds, a.seed))
            r = rows[-1]
            print(
                f"{name} {condition}: falls {r['fall_rate']:.2f}, errors "
                f"{r['lin_vel_error']:.3f} m/s {r['ang_vel_error']:.3f} rad/s "
                f"({r['wall_seconds']:.0f} s)",
                flush=True,
            )
    print(table(rows))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
