"""Runs that survive faults: an environment whose physics or observation goes non-finite is
restarted and counted while the others step on untouched, and a run whose loss or parameters
go non-finite stops before saving anything of that iteration, naming the last good checkpoint."""

import dataclasses

import jax
import jax.numpy as jp
import numpy as np
import pytest

from locomotion import registry
from locomotion.config import TrainConfig
from locomotion.envs import NONFINITE_RESETS, TrainingWrapper
from locomotion.registry import RunConfig
from locomotion.runlog import read_metrics
from locomotion.train import driver, ppo

BROKEN = 1  # the env that goes non-finite


def all_finite(tree) -> bool:
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def poison(state):
    """`state` with env BROKEN's pendulum angle and velocity made NaN."""
    return state.replace(pipeline_state=state.pipeline_state.at[BROKEN].set(jp.nan))


def test_a_nonfinite_env_restarts_counted_and_the_others_step_on(task="pendulum_swingup"):
    """(The quadruped's MJX physics going non-finite: tests/test_envs.py, on its time-limit
    test's compiled rollout.)"""
    env = registry.make(task)
    num_envs = 3
    wrapped = TrainingWrapper(env, num_envs)
    state = jax.jit(wrapped.reset)(jax.random.PRNGKey(0))
    step = jax.jit(wrapped.step)
    action = jp.zeros((num_envs, env.action_size))
    clean = step(state, action)
    after = step(poison(state), action)

    assert all_finite(after)  # nothing non-finite left in the batch's state
    np.testing.assert_array_equal(after.metrics[NONFINITE_RESETS], [0, 1, 0])
    assert after.done[BROKEN] == 1 and after.info["truncation"][BROKEN] == 1
    assert after.info["termination"][BROKEN] == 0 and after.reward[BROKEN] == 0
    # It restarts from its fresh reserve state, bootstrapped from its last finite observation.
    reserve = state.info["reset_pool"].obs["state"][BROKEN]
    np.testing.assert_array_equal(after.obs["state"][BROKEN], reserve)
    np.testing.assert_array_equal(
        after.info["final_obs"]["state"][BROKEN], state.obs["state"][BROKEN]
    )
    for i in range(num_envs):
        if i != BROKEN:  # bit for bit what they do without the broken neighbour
            np.testing.assert_array_equal(after.obs["state"][i], clean.obs["state"][i])
            assert after.reward[i] == clean.reward[i] and after.done[i] == clean.done[i]
    # The next step goes on from there, finite.
    assert all_finite(step(after, action))


def pendulum_config(iterations: int) -> TrainConfig:
    entry = registry.entry("pendulum_swingup")
    ppo_cfg, _ = entry.presets["cpu"]
    return TrainConfig(
        task=entry.name,
        env=entry.env_config,
        ppo=dataclasses.replace(ppo_cfg, num_envs=16),
        run=RunConfig(num_iterations=iterations, checkpoint_every=2, eval_envs=0),
    )


def test_a_ppo_iteration_with_a_broken_env_learns_from_finite_data_only():
    """The broken env's NaN reaches neither the observation normalizer nor the update: the
    iteration's losses, parameters and statistics stay finite, and its count is logged."""
    cfg = pendulum_config(10)
    env = registry.make("pendulum_swingup")
    wrapped = TrainingWrapper(env, cfg.ppo.num_envs)
    mesh = ppo.make_mesh(cfg.ppo.num_envs)
    state = ppo.init(wrapped, cfg.ppo, jax.random.PRNGKey(0), mesh)
    state = state.replace(env_state=poison(state.env_state))
    step = ppo.make_train_step(wrapped, cfg.ppo, cfg.run.num_iterations, mesh)
    state, metrics = step(state)
    metrics = jax.device_get(metrics)
    assert metrics[NONFINITE_RESETS] == 1  # one env, once, in 24 x 16 steps
    assert metrics["losses/finite"] == 1
    assert all(np.isfinite(v) for v in metrics.values())
    assert all_finite(state.params) and all_finite(state.obs_stats)
    assert all_finite(state.critic_obs_stats) and all_finite(state.env_state)


def test_a_diverged_run_stops_before_saving_and_names_the_last_good_checkpoint(
    tmp_path, monkeypatch
):
    """Parameters made NaN before the third iteration: the device-side check stops the run at
    that iteration, before its checkpoint or metrics are written."""
    real = ppo.make_train_step

    def poisoned(*args, **kwargs):
        step = real(*args, **kwargs)
        calls = []

        def call(state):
            calls.append(1)
            if len(calls) == 3:
                state = state.replace(params=jax.tree.map(lambda x: x * jp.nan, state.params))
            return step(state)

        return call

    monkeypatch.setattr(driver.ppo, "make_train_step", poisoned)
    run_dir = tmp_path / "run"
    with pytest.raises(FloatingPointError) as err:
        driver.train(registry.make("pendulum_swingup"), pendulum_config(6), run_dir, progress=False)
    message = str(err.value)
    assert "diverged at iteration 3 (non-finite loss or parameters)" in message
    assert "ckpt_0000002.npz" in message and f"--resume {run_dir}" in message
    assert [p.name for p in (run_dir / "checkpoints").glob("ckpt_*")] == ["ckpt_0000002.npz"]
    assert [int(row["perf/iteration"]) for row in read_metrics(run_dir)] == [1, 2]
