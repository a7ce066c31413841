"""The thin Python loop around the compiled PPO iteration: logging, checkpoints, resume, eval."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util
from tqdm import tqdm

from locomotion import checkpoint, distributed
from locomotion import config as config_io
from locomotion.cat import wrap_for_training
from locomotion.envs import Env
from locomotion.evaluation import make_evaluate
from locomotion.mjx_env import ONE_DEVICE_IMPLS
from locomotion.runlog import MetricsLogger
from locomotion.train import ppo
from locomotion.train.config import PPOConfig

CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 3
BEST = "best.npz"
"""The best evaluated checkpoint of a `keep='best'` run (beside it best.json, its evaluation)."""


def checkpoints(run_dir: Path) -> list[Path]:
    """A run's numbered checkpoints, oldest first (not the temporary file of a write that a
    kill cut short, nor best.npz)."""
    files = (Path(run_dir) / CHECKPOINT_DIR).glob("ckpt_*.npz")
    return sorted(f for f in files if f.stem[len("ckpt_") :].isdigit())


def latest_checkpoint(run_dir: Path) -> Path | None:
    files = checkpoints(run_dir)
    return files[-1] if files else None


def policy_checkpoint(run_dir: Path, keep: str) -> Path | None:
    """The checkpoint a run's policy comes from: the best evaluated one of a `keep='best'`
    run, else the newest."""
    best = Path(run_dir) / CHECKPOINT_DIR / BEST
    if keep == "best" and best.is_file():
        return best
    return latest_checkpoint(run_dir)


def save_checkpoint(run_dir: Path, state: ppo.TrainState) -> Path:
    """Write `state` as the run's newest checkpoint, keeping the last few.

    Called by every process of a multi-process run at the same iteration: all of them gather
    the environment batch (a collective), process 0 alone writes, and all meet at a barrier
    named after the iteration, so none goes on before the file exists or waits on a writer
    that is not coming."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    iteration = int(state.iteration)
    path = folder / f"ckpt_{iteration:07d}.npz"
    host = distributed.to_host(state)
    if distributed.is_primary():
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint.save(path, host)
        for old in checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
            old.unlink()
    distributed.barrier(f"checkpoint {iteration}")
    return path


def restore(
    run_dir: Path, template: ppo.TrainState, mesh, restart_envs: bool = False
) -> ppo.TrainState:
    """Load the newest checkpoint of `run_dir` into the layout of `template`.

    A checkpoint whose environment state no longer fits the task's code (the task changed
    since) is refused, since the run could not continue exactly; with `restart_envs` the
    learned state is kept and the environments start from reset.
    """
    path = latest_checkpoint(run_dir)
    if path is None:
        raise checkpoint.CheckpointError(f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR}")
    if restart_envs:
        state = checkpoint.load(path, template.replace(env_state=None))
        rest = distributed.put(state, _replicated(mesh))
        return rest.replace(env_state=template.env_state)
    else:
        try:
            state = checkpoint.load(path, template)
        except checkpoint.CheckpointError as err:
            if "env_state/" not in str(err):
                raise
            raise checkpoint.CheckpointError(
                f"{err.args[0]}; the task's environment state changed since this checkpoint, so "
                "the run cannot resume exactly: add --restart-envs to keep the learned state "
                "and start from freshly reset environments"
            ) from None
    env_state = ppo.shard_env_state(state.env_state, mesh)
    rest = distributed.put(state.replace(env_state=None), _replicated(mesh))
    return rest.replace(env_state=env_state)


def warm_start(
    state: ppo.TrainState, source: str | Path, mesh, env: Env, pcfg: PPOConfig
) -> ppo.TrainState:
    """`state` (made with `pcfg`) started from `source`: a run directory or checkpoint (its
    networks and normalizers), or an exported policy, by directory or shipped name (its actor)."""
    from locomotion.policy import SHIPPED_DIR

    source = Path(source)
    if not source.exists() and (SHIPPED_DIR / source / "policy.json").is_file():
        source = SHIPPED_DIR / source
    if (source / "policy.json").is_file():
        return warm_start_from_policy(state, source, mesh, env, pcfg)
    path = source if source.is_file() else latest_checkpoint(source)
    if path is None:
        raise checkpoint.CheckpointError(
            f"init_from: no checkpoint file, run directory or exported policy at {source}"
        )
    _check_same_networks(path.parent.parent / "config.json", pcfg)
    learned = ppo.TrainState(
        params=state.params,
        opt_state=None,
        obs_stats=state.obs_stats,
        critic_obs_stats=state.critic_obs_stats,
        env_state=None,
        key=None,
        iteration=None,
    )
    learned = distributed.put(checkpoint.load(path, learned), _replicated(mesh))
    return state.replace(
        params=learned.params,
        obs_stats=learned.obs_stats,
        critic_obs_stats=learned.critic_obs_stats,
    )


NETWORK_FIELDS = ("action_distribution", "state_dependent_std", "activation")


def _check_same_networks(run_config: Path, pcfg: PPOConfig) -> None:
    """Refuse a source run whose networks compute something else from the same parameter
    shapes (another activation or action distribution); a checkpoint without its run's
    config.json is taken as it is (its shapes are still checked on load)."""
    if not run_config.is_file():
        return
    source = json.loads(run_config.read_text()).get("ppo", {})
    # Runs written before these fields existed used the first choice of each.
    before = {"action_distribution": "normal", "state_dependent_std": False, "activation": "elu"}
    differ = [
        f"{f} {source.get(f, before[f])!r} (here {getattr(pcfg, f)!r})"
        for f in NETWORK_FIELDS
        if source.get(f, before[f]) != getattr(pcfg, f)
    ]
    if differ:
        raise checkpoint.CheckpointError(
            f"init_from {run_config.parent}: its networks differ: {', '.join(differ)}; pass the "
            "same --ppo settings"
        )


def warm_start_from_policy(
    state: ppo.TrainState, folder: Path, mesh, env: Env, pcfg: PPOConfig
) -> ppo.TrainState:
    """`state` whose actor is the exported policy in `folder` (a skill to build on).

    Observation entries are matched by name: an entry the policy never saw starts with zero
    weight (so at first the actor acts exactly as the policy did) and with the normalizer
    statistics of the fresh environments' first observations. The critic and the action noise
    start fresh; the hidden layers must have the policy's sizes.
    """
    from locomotion.export import adapt_input, read_actor

    def refuse(why: str):
        raise checkpoint.CheckpointError(f"init_from {folder}: {why}")

    source = read_actor(folder)
    layout = getattr(env, "OBSERVATION_LAYOUT", None)
    if source.meta.get("action", {}).get("size") != env.action_size:
        refuse(
            f"the policy has {source.meta.get('action', {}).get('size')} actions, not "
            f"{env.action_size}"
        )
    graph = source.meta.get("onnx", {})
    activation, squash = graph.get("activation", "elu"), graph.get("output_squash", "none")
    if (activation, squash) != (pcfg.activation, "tanh" if pcfg.squash else "none"):
        refuse(
            f"its actor uses {activation} with output squash {squash}; pass the same "
            "--ppo.activation and --ppo.action-distribution"
        )
    actor = traverse_util.flatten_dict(distributed.to_host(state.params["actor"]), sep="/")
    actor = {k: np.array(v) for k, v in actor.items()}  # writable copies
    units = [
        actor[k].shape[1]
        for k in (f"params/MLP_0/Dense_{i}/kernel" for i in range(9))
        if k in actor
    ]
    if pcfg.state_dependent_std:  # the exported actor has the mean head only
        units[-1] = env.action_size
    if units != [w.shape[1] for w, _ in source.layers]:
        shapes = [w.shape[1] for w, _ in source.layers]
        refuse(f"its layers have {shapes} units; pass the same --ppo.actor-hidden")
    obs = np.asarray(distributed.to_host(state.env_state.obs[ppo.ACTOR_OBS]), np.float64)
    try:
        adapted = adapt_input(source, layout, obs.mean(axis=0), obs.var(axis=0))
    except ValueError as err:
        refuse(str(err))
    if not adapted.matched:
        refuse("it shares no observation entry with this task")
    print(
        f"init_from {folder}: observation entries taken from the policy: "
        f"{', '.join(adapted.matched)}; new, at zero weight: {', '.join(adapted.new) or 'none'}"
        + (f"; policy entries unused: {', '.join(adapted.unused)}" if adapted.unused else "")
    )
    # A task with another action scale (joint targets default + scale * action): the mean
    # head is scaled so that the targets stay the source's, exactly for a Gaussian policy and,
    # through the tanh, for small actions (within 10 % while |mean| < 0.8).
    source_scale = source.meta.get("action", {}).get("scale")
    target_scale = getattr(getattr(env, "config", None), "action_scale", None)
    ratio = 1.0
    if source_scale and target_scale and source_scale != target_scale:
        ratio = source_scale / target_scale
        print(
            f"init_from {folder}: action scale {source_scale} -> {target_scale}: the mean head "
            f"is scaled by {ratio:.3g} to keep the policy's joint targets"
        )
    first, mean, var = adapted.kernel, adapted.obs_mean, adapted.obs_var
    last = len(source.layers) - 1
    for i, (kernel, bias) in enumerate(source.layers):
        kernel = first if i == 0 else kernel
        if i == last:
            kernel, bias = kernel * ratio, bias * ratio
        # A state-dependent std head (the last layer's second half) keeps its fresh weights.
        cols = slice(0, kernel.shape[1])
        actor[f"params/MLP_0/Dense_{i}/kernel"][:, cols] = kernel
        actor[f"params/MLP_0/Dense_{i}/bias"][cols] = bias
    params = {
        **distributed.to_host(state.params),
        "actor": traverse_util.unflatten_dict(actor, sep="/"),
    }
    # The statistics weigh as much as the steps the policy was trained on, so the first
    # batches do not shift the inputs the copied weights were trained with.
    count = float(source.meta.get("training", {}).get("env_steps", obs.shape[0]))
    obs_stats = distributed.to_host(state.obs_stats).replace(mean=mean, var=var, count=count)
    params, obs_stats = distributed.put(
        jax.tree.map(
            lambda x, like: np.asarray(x, like.dtype),
            (params, obs_stats),
            (state.params, state.obs_stats),
        ),
        _replicated(mesh),
    )
    return state.replace(params=params, obs_stats=obs_stats)


def _replicated(mesh):
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def train(
    env: Env,
    cfg: config_io.TrainConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    restart_envs: bool = False,
    progress: bool = True,
) -> tuple[ppo.TrainState, list[dict]]:
    """Train `env` with PPO per `cfg`. Writes config, metrics, checkpoints to `run_dir`.
    `resume` continues the run in `run_dir` exactly; with `restart_envs` its environments
    start from reset (for a task whose state layout changed since the checkpoint)."""
    pcfg, rcfg = cfg.ppo, cfg.run
    deadline = time.perf_counter() + 60 * rcfg.max_minutes if rcfg.max_minutes > 0 else None
    wrapped = wrap_for_training(env, pcfg.num_envs)
    # impl='warp' and 'native' train on one device (locomotion/mjx_env.py, ONE_DEVICE_IMPLS).
    impl = getattr(env, "impl", "jax")
    one_device = impl in ONE_DEVICE_IMPLS
    mesh = ppo.env_mesh(env, pcfg.num_envs)
    if one_device and mesh.size > 1:
        raise ValueError(
            f"impl={impl!r} trains on one device of one process, not on the {mesh.size} "
            "devices of this run: use impl='jax' for a run over several processes"
        )
    if mesh.size < jax.device_count():
        why = {
            "warp": "impl='warp' runs on one (its contact buffers hold the whole batch)",
            "native": "impl='native' runs on one (its physics steps on every core)",
        }
        print(
            f"training on {mesh.size} of the {jax.device_count()} devices: "
            + why.get(impl, f"num_envs={pcfg.num_envs} splits over {mesh.size}")
        )
    state = ppo.init(wrapped, pcfg, jax.random.PRNGKey(rcfg.seed), mesh)
    logger = None
    resume = resume and run_dir is not None
    if resume:
        state = restore(Path(run_dir), state, mesh, restart_envs)
    elif rcfg.init_from is not None:
        state = warm_start(state, rcfg.init_from, mesh, env, pcfg)
    # Process 0 alone writes the run directory (config, metrics, TensorBoard, evaluations);
    # the others compute the same run and take part in the checkpoints' gathers and barriers.
    primary = distributed.is_primary()
    if run_dir is not None:
        run_dir = Path(run_dir)
        if primary:
            run_dir.mkdir(parents=True, exist_ok=True)
            config_io.save(cfg, run_dir / "config.json")
            resumed_at = int(state.iteration) * pcfg.batch_size if resume else None
            logger = MetricsLogger(run_dir, resume_step=resumed_at)
    step_fn = ppo.make_train_step(wrapped, pcfg, rcfg.num_iterations, mesh)

    history: list[dict] = []
    evaluate = make_run_eval(env, cfg) if rcfg.eval_envs > 0 else None
    best_json = run_dir / CHECKPOINT_DIR / "best.json" if run_dir is not None else None
    best = (
        json.loads(best_json.read_text())
        if resume and rcfg.keep == "best" and best_json.is_file()
        else None
    )

    def evaluate_and_keep(state) -> dict[str, float]:
        """Evaluate `state`, log it at its step, and keep it if it is the best so far."""
        nonlocal best
        env_steps = int(state.iteration) * pcfg.batch_size
        results = {**evaluate(state), "eval/iteration": int(state.iteration)}
        history.append({"env_steps": env_steps, **results})
        if logger:
            logger.log(env_steps, results)
        if rcfg.keep == "best" and run_dir is not None:
            # Every process evaluated the same policy on the same episodes: all agree.
            if best is None or results["eval/return_mean"] > best["eval/return_mean"]:
                best = results
                host = distributed.to_host(state)
                if primary:
                    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
                    checkpoint.save(run_dir / CHECKPOINT_DIR / BEST, host)
                    best_json.write_text(json.dumps(best, indent=2) + "\n")
                distributed.barrier(f"best {env_steps}")
        return results

    start_iter = int(state.iteration)
    bar = tqdm(
        total=rcfg.num_iterations,
        initial=start_iter,
        disable=not (progress and primary),
        unit="it",
        dynamic_ncols=True,
        desc=cfg.task,
    )
    t_start = time.perf_counter()
    t_last, steps_last = t_start, start_iter * pcfg.batch_size
    timed_out = False
    for it in range(start_iter, rcfg.num_iterations):
        state, metrics = step_fn(state)
        done_iters = it + 1
        timed_out = deadline is not None and distributed.agree(time.perf_counter() >= deadline)
        last = done_iters == rcfg.num_iterations or timed_out
        # Every iteration, before anything of it is saved: a non-finite loss or parameter
        # stops the run with the last good checkpoint named (one scalar from the device).
        if not float(metrics["losses/finite"]):
            bar.close()
            if logger:
                logger.close()
            raise FloatingPointError(_diverged(done_iters, run_dir))
        if done_iters % rcfg.log_every == 0 or last:
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
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
        if run_dir is not None and (done_iters % rcfg.checkpoint_every == 0 or last):
            save_checkpoint(run_dir, state)
        if rcfg.eval_every and done_iters % rcfg.eval_every == 0 and not last:
            evaluate_and_keep(state)
        if timed_out:
            break
    bar.close()
    if timed_out and done_iters < rcfg.num_iterations and primary:
        print(
            f"{cfg.task}: the {rcfg.max_minutes:g}-minute budget (run.max_minutes) ended the run "
            f"after iteration {done_iters} of {rcfg.num_iterations}"
            + (f"; continue it with: locomotion train --resume {run_dir}" if run_dir else "")
        )

    if evaluate is not None:
        results = evaluate_and_keep(state)
        if rcfg.keep == "best" and best is not None:
            results = best
        if logger:
            (run_dir / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    if logger:
        logger.close()
    return state, history


def _diverged(iteration: int, run_dir: Path | None) -> str:
    """The one-line message of a run stopped by a non-finite loss or parameter."""
    where = f"training diverged at iteration {iteration} (non-finite loss or parameters)"
    if run_dir is None:
        return where
    last = latest_checkpoint(Path(run_dir))
    if last is None:
        return f"{where}; no checkpoint was written before it"
    return (
        f"{where}; nothing of it was saved, the last good checkpoint is {last} (resume from "
        f"it with: locomotion train --resume {run_dir})"
    )


def make_run_eval(env: Env, cfg: config_io.TrainConfig):
    """`evaluate(state) -> dict`: the deterministic MJX evaluation of a training state's policy
    on the task's evaluation config (`TaskEntry.eval_env_config`: nominal physics and clean
    observations for the robot tasks), compiled once; what a run writes to eval.json. Every
    call uses the same key, so checkpoints are compared on the same episodes."""
    from locomotion import registry
    from locomotion.replay import eval_report

    entry = registry.entry(cfg.task)
    eval_env = entry.env_class(entry.eval_env_config(cfg.env))
    nets = ppo.make_networks(env.action_size, cfg.ppo)
    num_steps = int(round(cfg.run.eval_seconds / eval_env.dt))
    key = jax.random.PRNGKey(cfg.run.seed + 1)
    termination = eval_report(cfg.task).termination

    def act(policy, obs):
        params, obs_stats = policy
        return ppo.policy_fn(nets, params, obs_stats, cfg.ppo)(obs)

    run = make_evaluate(eval_env, act, cfg.run.eval_envs, num_steps, termination)
    # On this process's default device (every process of a multi-process run evaluates the
    # same replicated policy; no collective).
    return lambda state: run(distributed.to_host((state.params, state.obs_stats)), key)


def _postfix(metrics: dict[str, float]) -> dict[str, str]:
    shown = {"sps": metrics["perf/sps"], "return": metrics.get("episode/return", np.nan)}
    rewards = sorted(
        (k for k in metrics if k.startswith("reward/")), key=lambda k: -abs(metrics[k])
    )[:3]
    shown.update({k.split("/", 1)[1]: metrics[k] for k in rewards})
    return {k: f"{v:.3g}" for k, v in shown.items()}
