"""PPO: learns the pendulum swing-up, reproduces with a seed, checkpoints restore exactly and
resume continues, and the batch sharded over 2 devices gives the 1-device result."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from locomotion import checkpoint, registry
from locomotion.config import TrainConfig
from locomotion.evaluation import evaluate
from locomotion.registry import RunConfig
from locomotion.runlog import read_metrics
from locomotion.train import ppo
from locomotion.train.driver import (
    latest_checkpoint,
    make_run_eval,
    policy_checkpoint,
    train,
    warm_start,
)


def pendulum_config(iterations: int, seed: int = 0, **ppo_changes) -> TrainConfig:
    entry = registry.entry("pendulum_swingup")
    ppo_cfg, _ = entry.presets["cpu"]
    return TrainConfig(
        task=entry.name,
        env=entry.env_config,
        ppo=dataclasses.replace(ppo_cfg, **ppo_changes),
        run=RunConfig(num_iterations=iterations, seed=seed, checkpoint_every=2, eval_envs=0),
    )


def eval_return(env, cfg, state) -> float:
    nets = ppo.make_networks(env.action_size, cfg.ppo)
    act = ppo.policy_fn(nets, state.params, state.obs_stats, cfg.ppo)
    return evaluate(env, act, 256, env.episode_length, jax.random.PRNGKey(123))["eval/return_mean"]


def leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y)
        for x, y in zip(
            jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b)), strict=True
        )
    )


@pytest.mark.parametrize(
    "policy", [{}, {"action_distribution": "tanh_normal"}], ids=["normal", "tanh_normal"]
)
def test_ppo_learns_pendulum_swingup(policy):
    cfg = pendulum_config(200, **policy)
    env = registry.make("pendulum_swingup")
    untrained = ppo.init(
        ppo_wrapper(env, cfg), cfg.ppo, jax.random.PRNGKey(0), ppo.make_mesh(cfg.ppo.num_envs)
    )
    before = eval_return(env, cfg, untrained)
    state, history = train(env, cfg, progress=False)
    after = eval_return(env, cfg, state)
    # Hanging still costs pi^2 per step (-987 per 100-step episode); a policy that swings up
    # and balances scores about -180. The threshold sits well between the two.
    assert before < -400, before
    assert after > -300, (before, after)
    assert all(np.isfinite(h["losses/total"]) for h in history)


def ppo_wrapper(env, cfg):
    from locomotion.envs import TrainingWrapper

    return TrainingWrapper(env, cfg.ppo.num_envs)


def test_seeded_runs_reproduce():
    env = registry.make("pendulum_swingup")
    a, _ = train(env, pendulum_config(3, seed=7), progress=False)
    b, _ = train(env, pendulum_config(3, seed=7), progress=False)
    c, _ = train(env, pendulum_config(3, seed=8), progress=False)
    assert leaves_equal(a.params, b.params)
    assert not leaves_equal(a.params, c.params)


def test_checkpoint_restores_exactly_and_resume_continues(tmp_path):
    env = registry.make("pendulum_swingup")
    straight, _ = train(env, pendulum_config(4), tmp_path / "straight", progress=False)
    path = latest_checkpoint(tmp_path / "straight")
    assert path.name == "ckpt_0000004.npz"
    restored = checkpoint.load(path, straight)
    assert leaves_equal(restored, straight)  # params, optimizer, normalizers, envs, key

    # Stop after 2 iterations (as if killed), then resume to 4: identical to the straight run.
    _, first = train(env, pendulum_config(2), tmp_path / "resumed", progress=False)
    # The killed run had logged an iteration past its last checkpoint: resuming cuts it.
    batch = first[-1]["env_steps"] // 2
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"env_steps": 3 * batch, "perf/iteration": 3.0, "stale": 1.0}) + "\n")
    resumed, history = train(
        env, pendulum_config(4), tmp_path / "resumed", resume=True, progress=False
    )
    assert int(resumed.iteration) == 4 and len(history) == 2
    assert leaves_equal(resumed.params, straight.params)
    assert leaves_equal(resumed.opt_state, straight.opt_state)
    rows = read_metrics(tmp_path / "resumed")
    assert [r["perf/iteration"] for r in rows] == [1, 2, 3, 4]
    assert not any("stale" in r for r in rows)

    # A wall-clock budget (run.max_minutes) spent in the first iteration ends the run there
    # like a finished one, with its checkpoint; resuming without it ends as the straight run.
    cfg = pendulum_config(4)
    budget = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, max_minutes=1e-6))
    stopped, history = train(env, budget, tmp_path / "budget", progress=False)
    assert int(stopped.iteration) == 1 and len(history) == 1
    assert latest_checkpoint(tmp_path / "budget").name == "ckpt_0000001.npz"
    resumed, _ = train(env, cfg, tmp_path / "budget", resume=True, progress=False)
    assert int(resumed.iteration) == 4 and leaves_equal(resumed.params, straight.params)
    with pytest.raises(ValueError, match="max_minutes"):
        RunConfig(max_minutes=-1.0)


def test_keep_best_ends_with_the_best_evaluated_checkpoint_across_a_resume(tmp_path):
    """run.eval_every evaluates during training; run.keep='best' exports and reports the
    checkpoint with the highest evaluated return, and a resumed run remembers it."""
    import json

    from locomotion.export import export

    def config(iterations):
        cfg = pendulum_config(iterations, seed=1)
        run = dataclasses.replace(
            cfg.run, eval_every=1, eval_envs=16, eval_seconds=2.0, keep="best"
        )
        return dataclasses.replace(cfg, run=run)

    env = registry.make("pendulum_swingup")
    run_dir = tmp_path / "run"
    _, first = train(env, config(4), run_dir, progress=False)
    final, second = train(env, config(6), run_dir, resume=True, progress=False)
    evals = {
        row["eval/iteration"]: {k: v for k, v in row.items() if k != "env_steps"}
        for row in first + second
        if "eval/iteration" in row
    }
    # Every iteration, the end included; the first before any checkpoint was written.
    assert sorted(evals) == [1, 2, 3, 4, 5, 6]
    best_it = max(evals, key=lambda it: evals[it]["eval/return_mean"])
    best = json.loads((run_dir / "checkpoints" / "best.json").read_text())
    assert best == evals[best_it]
    assert json.loads((run_dir / "eval.json").read_text()) == best
    assert policy_checkpoint(run_dir, "best").name == "best.npz"
    assert policy_checkpoint(run_dir, "last").name == "ckpt_0000006.npz"
    # The kept parameters are the evaluated ones: evaluating them again gives the same numbers.
    kept = checkpoint.load(run_dir / "checkpoints" / "best.npz", final)
    assert int(kept.iteration) == best_it
    assert make_run_eval(env, config(6))(kept) == {
        k: v for k, v in best.items() if k != "eval/iteration"
    }
    meta = json.loads((export(run_dir) / "policy.json").read_text())
    assert meta["training"]["iterations"] == best_it
    with pytest.raises(ValueError, match="keep='best' needs eval_every > 0"):
        RunConfig(keep="best")


def test_resume_refuses_a_changed_environment_state_unless_asked(tmp_path):
    """A checkpoint whose environment state no longer fits the task (its code changed) cannot
    resume exactly: refused with a message naming --restart-envs, which keeps the learned state
    and starts from reset."""
    env = registry.make("pendulum_swingup")
    saved, _ = train(env, pendulum_config(2), tmp_path / "run", progress=False)
    path = latest_checkpoint(tmp_path / "run")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    dropped = next(k for k in arrays if k.startswith("env_state/"))
    del arrays[dropped]  # as if the task had gained a state field since
    np.savez(path, **arrays)
    with pytest.raises(checkpoint.CheckpointError, match="--restart-envs"):
        train(env, pendulum_config(3), tmp_path / "run", resume=True, progress=False)
    resumed, history = train(
        env, pendulum_config(3), tmp_path / "run", resume=True, restart_envs=True, progress=False
    )
    assert int(resumed.iteration) == 3 and len(history) == 1


def test_warm_start_takes_networks_and_normalizers_but_starts_fresh(tmp_path):
    """`run.init_from`: another run's parameters and observation normalizers; the optimizer,
    environments and iteration count are those of a new run."""
    env = registry.make("pendulum_swingup")
    source, _ = train(env, pendulum_config(2), tmp_path / "source", progress=False)
    cfg = pendulum_config(2, seed=5)
    fresh = ppo.init(ppo_wrapper(env, cfg), cfg.ppo, jax.random.PRNGKey(5), ppo.make_mesh(64))
    warm = warm_start(fresh, tmp_path / "source", ppo.make_mesh(64), env, cfg.ppo)
    assert leaves_equal(warm.params, source.params)
    assert leaves_equal(
        (warm.obs_stats, warm.critic_obs_stats), (source.obs_stats, source.critic_obs_stats)
    )
    assert not leaves_equal(fresh.params, source.params)
    assert leaves_equal(
        (warm.opt_state, warm.env_state, warm.iteration),
        (fresh.opt_state, fresh.env_state, fresh.iteration),
    )
    # Through the driver: training continues from the source's networks.
    init_cfg = dataclasses.replace(
        cfg, run=dataclasses.replace(cfg.run, init_from=str(tmp_path / "source"))
    )
    trained, _ = train(env, init_cfg, tmp_path / "warm", progress=False)
    assert int(trained.iteration) == 2
    # A source of another network shape, or none at all, is a CheckpointError.
    other = dataclasses.replace(init_cfg, ppo=dataclasses.replace(cfg.ppo, actor_hidden=(16,)))
    with pytest.raises(checkpoint.CheckpointError, match="shape|lacks"):
        train(env, other, progress=False)
    # Same parameter shapes, other computation (swish instead of ELU): refused, not loaded.
    swish = dataclasses.replace(init_cfg, ppo=dataclasses.replace(cfg.ppo, activation="swish"))
    with pytest.raises(checkpoint.CheckpointError, match="activation 'elu' \\(here 'swish'\\)"):
        train(env, swish, progress=False)
    missing = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, init_from="/no/run"))
    with pytest.raises(checkpoint.CheckpointError, match="init_from"):
        train(env, missing, progress=False)


def test_a_checkpoint_write_cut_short_is_not_taken_for_a_checkpoint(tmp_path):
    """A kill during a save leaves its temporary file (this version's name, and the former
    `.tmp.npz`); resume takes the newest complete checkpoint."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("ckpt_0000003.npz", "ckpt_0000006.npz.tmp", "ckpt_0000006.tmp.npz", "best.npz"):
        (folder / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "ckpt_0000003.npz"
    checkpoint.save(folder / "ckpt_0000009.npz", {"x": np.zeros(2)})
    assert latest_checkpoint(tmp_path).name == "ckpt_0000009.npz"
    assert not list(folder.glob("ckpt_0000009*tmp*"))


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    env = registry.make("pendulum_swingup")
    state, _ = train(env, pendulum_config(2), tmp_path / "run", progress=False)
    path = latest_checkpoint(tmp_path / "run")
    path.write_bytes(path.read_bytes()[:100])  # truncated file
    with pytest.raises(ValueError, match="unreadable or corrupted"):
        checkpoint.load(path, state)
    other, _ = train(
        env, pendulum_config(2, actor_hidden=(16,)), tmp_path / "other", progress=False
    )
    with pytest.raises(ValueError, match="lacks|shape"):
        checkpoint.load(latest_checkpoint(tmp_path / "other"), state)


SHARDED = textwrap.dedent("""
    import json, sys
    import locomotion
    import jax, numpy as np
    from locomotion import registry
    from locomotion.envs import TrainingWrapper
    from locomotion.train import ppo
    sys.path.insert(0, sys.argv[1])
    from test_ppo import pendulum_config
    assert jax.device_count() == 2, jax.devices()
    cfg = pendulum_config(3, num_minibatches=1)
    env = TrainingWrapper(registry.make("pendulum_swingup"), cfg.ppo.num_envs)
    out = {}
    for n in (1, 2):
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:n]), ("batch",))
        state = ppo.init(env, cfg.ppo, jax.random.PRNGKey(0), mesh)
        step = ppo.make_train_step(env, cfg.ppo, 3, mesh)
        for _ in range(3):
            state, metrics = step(state)
        if n == 2:
            shards = state.env_state.obs["state"].addressable_shards
            assert len({s.device for s in shards}) == 2
        out[n] = [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.params)]
    diff = max(np.abs(np.array(a) - np.array(b)).max() for a, b in zip(out[1], out[2]))
    print(json.dumps({"max_abs_diff": float(diff)}))
""")


def run_on_two_devices(script: str, timeout: int = 600) -> str:
    """Runs `script` in a fresh Python with 2 forced CPU devices (tests/ on sys.argv[1]);
    returns its last line of output."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = dict(os.environ, XLA_FLAGS=flags.strip())  # the suite's flags (tests/conftest.py)
    result = subprocess.run(
        [sys.executable, "-c", script, os.path.dirname(__file__)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_two_device_sharding_matches_one_device():
    """The batch split over 2 devices computes the same update as on one. Minibatches are
    drawn per device (each takes an equal share of every device's samples, so no sample moves;
    tests/test_multiprocess.py), which draws other minibatches than one device's shuffle does:
    with one minibatch (the whole batch, in any order) only the order of float32 reductions
    differs."""
    diff = float(run_on_two_devices(SHARDED).split(":")[1].strip(" }"))
    assert diff < 1e-4, diff


def test_mesh_takes_the_most_devices_the_batch_splits_over():
    """In one process the device count is the machine's (a CPU device per core), so a batch
    that does not split over all of them uses the most that it does split over (and no more
    than asked: impl='warp' trains on one)."""
    script = (
        "from locomotion.train import ppo\n"
        "print([ppo.make_mesh(n).devices.size for n in (64, 9, 7, 6)]"
        " + [ppo.make_mesh(6, max_devices=m).devices.size for m in (1, 2)])"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[2, 3, 1, 3, 1, 2]"
