"""The thin Python loop around the compiled PPO iteration: logging, checkpoints, resume, eval."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from locomotion import checkpoint
from locomotion import config as config_io
from locomotion.cat import wrap_for_training
from locomotion.envs import Env
from locomotion.evaluation import evaluate
from locomotion.runlog import MetricsLogger
from locomotion.train import ppo

CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 3


def latest_checkpoint(run_dir: Path) -> Path | None:
    files = sorted((Path(run_dir) / CHECKPOINT_DIR).glob("ckpt_*.npz"))
    return files[-1] if files else None


def save_checkpoint(run_dir: Path, state: ppo.TrainState) -> Path:
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{int(state.iteration):07d}.npz"
    checkpoint.save(path, state)
    for old in sorted(folder.glob("ckpt_*.npz"))[:-KEEP_CHECKPOINTS]:
        old.unlink()
    return path


def restore(run_dir: Path, template: ppo.TrainState, mesh) -> ppo.TrainState:
    """Load the newest checkpoint of `run_dir` into the layout of `template`."""
    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR}")
    try:
        state = checkpoint.load(path, template)
    except ValueError as err:
        if "env_state/" not in str(err):
            raise
        # The task's state layout changed since the checkpoint (new code): keep the learned
        # state and start from freshly reset environments.
        warnings.warn(f"environments restart from reset: {err}", stacklevel=2)
        state = checkpoint.load(path, template.replace(env_state=None))
        state = state.replace(env_state=template.env_state)
    env_state = ppo.shard_env_state(state.env_state, mesh)
    rest = jax.device_put(
        state.replace(env_state=None),
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()),
    )
    return rest.replace(env_state=env_state)


def train(
    env: Env,
    cfg: config_io.TrainConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
) -> tuple[ppo.TrainState, list[dict]]:
    """Train `env` with PPO per `cfg`. Writes config, metrics, checkpoints to `run_dir`."""
    pcfg, rcfg = cfg.ppo, cfg.run
    wrapped = wrap_for_training(env, pcfg.num_envs)
    mesh = ppo.make_mesh(pcfg.num_envs)
    state = ppo.init(wrapped, pcfg, jax.random.PRNGKey(rcfg.seed), mesh)
    logger = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            state = restore(run_dir, state, mesh)
        config_io.save(cfg, run_dir / "config.json")
        logger = MetricsLogger(run_dir)
    step_fn = ppo.make_train_step(wrapped, pcfg, rcfg.num_iterations, mesh)

    history: list[dict] = []
    start_iter = int(state.iteration)
    bar = tqdm(
        total=rcfg.num_iterations,
        initial=start_iter,
        disable=not progress,
        unit="it",
        dynamic_ncols=True,
        desc=cfg.task,
    )
    t_start = time.perf_counter()
    t_last, steps_last = t_start, start_iter * pcfg.batch_size
    for it in range(start_iter, rcfg.num_iterations):
        state, metrics = step_fn(state)
        done_iters = it + 1
        if done_iters % rcfg.log_every == 0 or done_iters == rcfg.num_iterations:
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(metrics["losses/total"]):
                raise FloatingPointError(
                    f"training diverged at iteration {done_iters} (non-finite loss); the last "
                    f"checkpoint in {run_dir} is intact"
                )
            now = time.perf_counter()
            env_steps = done_iters * pcfg.batch_size
            metrics["perf/sps"] = (env_steps - steps_last) / max(now - t_last, 1e-9)
            metrics["perf/wall_seconds"] = now - t_start
            metrics["perf/iteration"] = done_iters
            t_last, steps_last = now, env_steps
            history.append({"env_steps": env_steps, **metrics})
            if logger:
                logger.log(env_steps, metrics)
            bar.set_postfix(_postfix(metrics), refresh=False)
        bar.update(1)
        if run_dir is not None and (
            done_iters % rcfg.checkpoint_every == 0 or done_iters == rcfg.num_iterations
        ):
            save_checkpoint(run_dir, state)
    bar.close()

    if rcfg.eval_envs > 0:
        results = run_eval(env, cfg, state)
        history.append({"env_steps": rcfg.num_iterations * pcfg.batch_size, **results})
        if logger:
            logger.log(rcfg.num_iterations * pcfg.batch_size, results)
            (run_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    if logger:
        logger.close()
    return state, history


def run_eval(env: Env, cfg: config_io.TrainConfig, state: ppo.TrainState) -> dict[str, float]:
    """Deterministic MJX evaluation of the current policy on the task's evaluation config."""
    from locomotion import registry
    from locomotion.replay import eval_report

    entry = registry.entry(cfg.task)
    eval_env = entry.env_class(entry.eval_env_config(cfg.env))
    nets = ppo.make_networks(env.action_size, cfg.ppo)
    act = ppo.policy_fn(nets, state.params, state.obs_stats, cfg.ppo)
    num_steps = int(round(cfg.run.eval_seconds / eval_env.dt))
    key = jax.random.PRNGKey(cfg.run.seed + 1)
    termination = eval_report(cfg.task).termination
    return evaluate(eval_env, act, cfg.run.eval_envs, num_steps, key, termination)


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    shown = {"sps": metrics["perf/sps"], "return": metrics.get("episode/return", np.nan)}
    rewards = sorted(
        (k for k in metrics if k.startswith("reward/")), key=lambda k: -abs(metrics[k])
    )[:3]
    shown.update({k.split("/", 1)[1]: metrics[k] for k in rewards})
    return {k: f"{v:.3g}" for k, v in shown.items()}
