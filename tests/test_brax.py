"""Our tasks inside brax: brax's own training wrappers and PPO train them unchanged, and the
task's step is compiled once (strongly typed outputs, which tests/test_tasks.py checks for
every task: no second compilation)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from locomotion import registry

brax_ppo = pytest.importorskip("brax.training.agents.ppo.train", reason="pip install -e '.[test]'")
brax_networks = pytest.importorskip("brax.training.agents.ppo.networks")
if tuple(int(p) for p in jax.__version__.split(".")[:2]) >= (0, 10):
    pytest.skip("brax 0.14.2 needs jax < 0.10 (jax.device_put_replicated)", allow_module_level=True)


@pytest.fixture
def brief_compiles():
    """XLA's optimizations off for every graph the test compiles, brax's own jits included,
    which take no compiler options (JAX's `jax_disable_most_optimizations`: LLVM at -O0
    without its expensive passes, as `BRIEF_RUN` in locomotion/envs.py). Three tiny epochs,
    where compiling is nearly all of the cost."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def train_with_brax(task: str, num_envs: int, unroll: int, epochs: int):
    """brax PPO for `epochs` training epochs (one iteration each); returns the number of times
    the task's step and reset were traced at each epoch's end, and the final parameters."""
    env = registry.make(task)
    traced = {"step": 0, "reset": 0}
    for name in traced:
        method = getattr(env, name)

        def counted(*args, _method=method, _name=name):
            traced[_name] += 1
            return _method(*args)

        setattr(env, name, counted)  # this instance only
    seen, kept = [], {}

    def after_epoch(steps, make_policy, params):
        seen.append(dict(traced))
        kept["params"] = params

    brax_ppo.train(
        environment=env,
        num_timesteps=epochs * num_envs * unroll,
        num_envs=num_envs,
        episode_length=env.episode_length,
        unroll_length=unroll,
        batch_size=num_envs // 2,
        num_minibatches=2,
        num_updates_per_batch=2,
        num_evals=epochs + 1,
        run_evals=False,
        policy_params_fn=after_epoch,
        seed=0,
        network_factory=functools.partial(
            brax_networks.make_ppo_networks,
            policy_hidden_layer_sizes=(32, 32),
            value_hidden_layer_sizes=(32, 32),
            policy_obs_key="state",
            value_obs_key="privileged_state",
        ),
    )
    return seen, kept["params"]


@pytest.mark.parametrize(
    "task, num_envs, unroll", [("pendulum_swingup", 64, 20), ("quadruped_joystick", 16, 8)]
)
def test_brax_ppo_trains_our_task_compiling_its_step_once(task, num_envs, unroll, brief_compiles):
    seen, params = train_with_brax(task, num_envs, unroll, epochs=3)
    # policy_params_fn runs once before training and after each of the 3 epochs.
    assert len(seen) == 4 and seen[0]["step"] == 0
    assert seen[1]["step"] >= 1
    assert seen[-1] == seen[1], f"the task was traced again after the first epoch: {seen}"
    leaves = jax.tree.leaves(params)
    assert leaves and all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


def test_brax_training_wrappers_compile_our_step_once():
    """brax's wrappers (vmap, episode, auto-reset) around our task: the jitted step traces our
    step once over three calls. Traced, not compiled: a call whose input types differ from the
    last (a weakly typed output fed back) traces again, which abstract evaluation shows as a
    compiled call would (checked by making a metric weak: two traces either way)."""
    from brax.envs.wrappers.training import wrap

    env = registry.make("quadruped_joystick")
    traced = []
    step = env.step
    env.step = lambda state, action: traced.append(1) or step(state, action)
    wrapped = wrap(env, episode_length=env.episode_length)
    state = jax.eval_shape(wrapped.reset, jax.ShapeDtypeStruct((2, 2), np.uint32))
    jit_step = jax.jit(wrapped.step)
    action = jax.ShapeDtypeStruct((2, env.action_size), np.float32)
    for _ in range(3):
        state = jax.eval_shape(jit_step, state, action)
    assert len(traced) == 1
