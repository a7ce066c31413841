"""PPO as pure functions: `init(...) -> TrainState`, `train_step(state) -> (state, metrics)`.

One call of the jitted `train_step` is a whole iteration: rollout (lax.scan over the vmapped,
batched environment), GAE, and all epochs of minibatch updates (a scan of scans). The environment
batch is sharded over all devices, of every process of a multi-process run, along the "batch"
mesh axis; parameters are replicated, and XLA inserts the cross-device reductions (gradients,
batch statistics), over JAX's collectives between processes (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from locomotion import distributed
from locomotion.envs import NONFINITE_RESETS, State, TrainingWrapper, jit_brief
from locomotion.train.config import PPOConfig
from locomotion.train.losses import compute_gae, ppo_loss
from locomotion.train.networks import (
    Actor,
    Critic,
    deterministic_action,
    gaussian_kl,
    log_prob,
)
from locomotion.train.normalizer import RunningStats

ACTOR_OBS, CRITIC_OBS = "state", "privileged_state"


@struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly: saved whole in checkpoints."""

    params: dict[str, Any]  # {"actor": ..., "critic": ...}
    opt_state: Any
    obs_stats: RunningStats
    critic_obs_stats: RunningStats
    env_state: State
    key: jax.Array
    iteration: jax.Array  # int32 scalar


@dataclasses.dataclass(frozen=True)
class Networks:
    actor: Actor
    critic: Critic


def make_networks(action_size: int, cfg: PPOConfig) -> Networks:
    return Networks(
        Actor(
            cfg.actor_hidden,
            action_size,
            cfg.init_log_std,
            cfg.state_dependent_std,
            cfg.activation,
            cfg.kernel_init,
        ),
        Critic(cfg.critic_hidden, cfg.activation, cfg.kernel_init),
    )


def make_optimizer(cfg: PPOConfig) -> optax.GradientTransformation:
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=cfg.learning_rate)
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adam)


def make_mesh(num_envs: int, max_devices: int | None = None) -> Mesh:
    """A 1-D mesh over all devices of all processes; num_envs (the global batch) must split
    evenly across them. In one process the mesh takes the most devices, up to `max_devices`,
    that the batch splits over (num_envs=100 on 8 CPU devices: 5 of them), since the device
    count there is the machine's (one per core, locomotion/gpu.py) rather than the user's."""
    devices = jax.devices()
    if jax.process_count() == 1:
        most = min(len(devices), max_devices or len(devices))
        devices = devices[: max(d for d in range(1, most + 1) if num_envs % d == 0)]
    if num_envs % len(devices):
        where = f"{len(devices)} devices"
        if jax.process_count() > 1:
            where += f" ({jax.process_count()} processes x {jax.local_device_count()})"
        raise ValueError(
            f"num_envs={num_envs} does not split evenly over {where}: pick a multiple of "
            f"{len(devices)}"
        )
    return Mesh(np.array(devices), ("batch",))


def env_mesh(env, num_envs: int) -> Mesh:
    """`make_mesh` for training `env`: one device for the physics implementations that run
    on one (`ONE_DEVICE_IMPLS`: warp, native)."""
    from locomotion.mjx_env import ONE_DEVICE_IMPLS

    impl = getattr(getattr(env, "env", env), "impl", "jax")  # (a training wrapper's env)
    return make_mesh(num_envs, max_devices=1 if impl in ONE_DEVICE_IMPLS else None)


def shard_env_state(env_state: State, mesh: Mesh) -> State:
    """Place a host env batch (leading axis; the same on every process) across the mesh."""
    return distributed.put(env_state, NamedSharding(mesh, PartitionSpec("batch")))


def init(env: TrainingWrapper, cfg: PPOConfig, key: jax.Array, mesh: Mesh) -> TrainState:
    """Fresh parameters, optimizer, normalizers and a reset environment batch."""
    nets = make_networks(env.action_size, cfg)
    key_actor, key_critic, key_env, key = jax.random.split(key, 4)
    # Reset under jit straight into the batch sharding: each process computes only the
    # environments of its own devices (the per-env keys are split from one key inside). It
    # runs once: compiled for a brief run (`jit_brief`).
    env_state = jit_brief(env.reset, out_shardings=NamedSharding(mesh, PartitionSpec("batch")))(
        distributed.put(key_env, NamedSharding(mesh, PartitionSpec()))
    )
    # The sizes from the reset state, not `env.observation_size`: that traces the task's
    # reset outside the mesh, a trace the reset above (inside it) cannot reuse.
    sizes = {name: obs.shape[-1] for name, obs in env_state.obs.items()}
    params = {
        "actor": nets.actor.init(key_actor, jp.zeros((1, sizes[ACTOR_OBS]))),
        "critic": nets.critic.init(key_critic, jp.zeros((1, sizes[CRITIC_OBS]))),
    }
    replicated = NamedSharding(mesh, PartitionSpec())
    state = TrainState(
        params=params,
        opt_state=make_optimizer(cfg).init(params),
        obs_stats=RunningStats.create(sizes[ACTOR_OBS]),
        critic_obs_stats=RunningStats.create(sizes[CRITIC_OBS]),
        env_state=env_state,
        key=key,
        iteration=jp.zeros((), jp.int32),
    )
    rest = distributed.put(jax.device_get(state.replace(env_state=None)), replicated)
    return rest.replace(env_state=env_state)


def policy_fn(nets: Networks, params, obs_stats: RunningStats, cfg: PPOConfig):
    """Deterministic policy obs -> action (the Gaussian's mean, squashed if the policy is),
    normalizer included."""

    def act(obs: jax.Array) -> jax.Array:
        if cfg.normalize_observations:
            obs = obs_stats.normalize(obs)
        return deterministic_action(nets.actor.apply(params["actor"], obs)[0], cfg.squash)

    return act


def rollout(
    env: TrainingWrapper, nets: Networks, cfg: PPOConfig, state: TrainState, key: jax.Array
) -> tuple[State, dict[str, jax.Array]]:
    """Collect cfg.unroll_length steps from every env. Returns the new env state and [T, B] data."""
    normalize = cfg.normalize_observations

    def one_step(env_state: State, key_step: jax.Array):
        obs = env_state.obs[ACTOR_OBS]
        obs_in = state.obs_stats.normalize(obs) if normalize else obs
        mean, log_std = nets.actor.apply(state.params["actor"], obs_in)
        noise = jax.random.normal(key_step, mean.shape)
        action = mean + jp.exp(log_std) * noise  # pre-tanh when squashed
        next_state = env.step(env_state, jp.tanh(action) if cfg.squash else action)
        data = {
            "obs": obs,
            "critic_obs": env_state.obs[CRITIC_OBS],
            "next_critic_obs": next_state.info["final_obs"][CRITIC_OBS],
            "actions": action,
            "noise": noise,
            "log_probs": log_prob(action, mean, log_std, cfg.squash),
            "old_mean": mean,
            "old_log_std": log_std,
            "rewards": next_state.reward,
            "terminations": next_state.info["termination"],
            "truncations": next_state.info["truncation"],
            "dones": next_state.done,
            "metrics": next_state.metrics,
        }
        return next_state, data

    keys = jax.random.split(key, cfg.unroll_length)
    return jax.lax.scan(one_step, state.env_state, keys)


def summarize(data: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-iteration means: step metrics over all steps, episode metrics over finished episodes."""
    dones = data["dones"]
    finished = dones.sum()
    out = {"episode/count": finished}
    for name, value in data["metrics"].items():
        if name.startswith("episode/"):
            out[name] = jp.sum(value * dones) / jp.maximum(finished, 1.0)
        elif name == NONFINITE_RESETS:
            out[name] = value.sum()  # a count per iteration
        else:
            out[name] = value.mean()
    out["episode/termination_rate"] = data["terminations"].mean()
    return out


def train_step(
    env: TrainingWrapper,
    cfg: PPOConfig,
    num_iterations: int,
    state: TrainState,
    mesh: Mesh | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One PPO iteration: rollout, normalizer update, GAE, minibatch epochs.

    `mesh`: the devices the env batch is split over. Each device's samples are shuffled
    among themselves and every minibatch takes an equal slice from each device, so the update
    is data-parallel: the samples stay where they were collected and only gradients and
    scalars cross devices (a shuffle over the whole batch would gather every sample to every
    device and repeat the whole update on each). With one shard this is the plain shuffle of
    the whole batch."""
    num_shards = 1 if mesh is None else mesh.size

    def on_shards(x, axis):  # keep `axis` split over the devices (XLA would gather instead)
        if num_shards == 1:
            return x
        spec = PartitionSpec(*([None] * axis), "batch")
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    per_shard = cfg.batch_size // num_shards

    def to_shards(x):  # [T, B, ...] -> [shards, T * B / shards, ...], (t, env) order in each
        x = jp.swapaxes(x.reshape(x.shape[0], num_shards, -1, *x.shape[2:]), 0, 1)
        return on_shards(x.reshape(num_shards, per_shard, *x.shape[3:]), 0)

    nets = make_networks(env.action_size, cfg)
    optimizer = make_optimizer(cfg)
    key_rollout, key_update, key = jax.random.split(state.key, 3)
    env_state, data = rollout(env, nets, cfg, state, key_rollout)

    # By default the update normalizes with the statistics the rollout acted with, so the
    # probability ratios see only the parameter change; the statistics absorb this batch
    # afterwards (cfg.update_normalizer_first: before, as brax does).
    obs_stats, critic_stats = state.obs_stats, state.critic_obs_stats
    if cfg.normalize_observations:
        norm, cnorm = obs_stats.normalize, critic_stats.normalize
        # Over the shard-major layout: each device reduces its own samples first.
        obs_stats = obs_stats.update(to_shards(data["obs"]))
        critic_stats = critic_stats.update(to_shards(data["critic_obs"]))
        if cfg.update_normalizer_first:
            norm, cnorm = obs_stats.normalize, critic_stats.normalize
    else:
        norm = cnorm = lambda x: x

    critic = functools.partial(nets.critic.apply, state.params["critic"])
    values = critic(cnorm(data["critic_obs"]))
    next_values = critic(cnorm(data["next_critic_obs"]))
    advantages, returns = compute_gae(
        data["rewards"],
        values,
        next_values,
        data["terminations"],
        data["truncations"],
        cfg.gamma,
        cfg.gae_lambda,
    )
    batch = {
        "obs": norm(data["obs"]),
        "critic_obs": cnorm(data["critic_obs"]),
        "actions": data["actions"],
        "noise": data["noise"],
        "log_probs": data["log_probs"],
        "old_mean": data["old_mean"],
        "old_log_std": data["old_log_std"],
        "advantages": advantages,
        "returns": returns,
        "values": values,
    }
    batch = jax.tree.map(to_shards, batch)

    opt_state = state.opt_state
    if cfg.lr_schedule == "linear":
        frac = 1.0 - state.iteration / max(num_iterations, 1)
        opt_state = set_learning_rate(opt_state, cfg.learning_rate * jp.maximum(frac, 0.0))

    def loss_fn(params, minibatch):
        return ppo_loss(
            params["actor"], params["critic"], nets.actor.apply, nets.critic.apply, minibatch, cfg
        )

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        (loss, (metrics, mean, log_std)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, minibatch
        )
        kl = gaussian_kl(minibatch["old_mean"], minibatch["old_log_std"], mean, log_std).mean()
        if cfg.lr_schedule == "adaptive":
            lr = get_learning_rate(opt_state)
            lr = jp.where(kl > 2.0 * cfg.desired_kl, jp.maximum(lr / 1.5, 1e-5), lr)
            lr = jp.where(kl < 0.5 * cfg.desired_kl, jp.minimum(lr * 1.5, 1e-2), lr)
            opt_state = set_learning_rate(opt_state, lr)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {
            **metrics,
            "losses/total": loss,
            "losses/approx_kl": kl,
            "losses/grad_norm": optax.tree.norm(grads),
        }
        return (params, opt_state), metrics

    def epoch(carry, key_epoch):
        # One permutation per shard, of that shard's samples only (one shard: the key itself).
        keys = key_epoch[None] if num_shards == 1 else jax.random.split(key_epoch, num_shards)
        perms = on_shards(jax.vmap(jax.random.permutation, (0, None))(keys, per_shard), 0)

        def minibatches(x):  # [shards, per_shard, ...] -> [minibatches, shards * size, ...]
            x = on_shards(jax.vmap(lambda xs, p: xs[p])(x, perms), 0)
            x = x.reshape(num_shards, cfg.num_minibatches, -1, *x.shape[2:])
            x = jp.swapaxes(x, 0, 1).reshape(cfg.num_minibatches, -1, *x.shape[3:])
            return on_shards(x, 1)

        return jax.lax.scan(minibatch_step, carry, jax.tree.map(minibatches, batch))

    (params, opt_state), losses = jax.lax.scan(
        epoch, (state.params, opt_state), jax.random.split(key_update, cfg.num_epochs)
    )

    metrics = summarize(data)
    metrics.update(jax.tree.map(jp.mean, losses))
    # 1 while the loss and every parameter are finite (checked on the device; the driver stops
    # a run at the first iteration where it is 0, before that iteration is checkpointed).
    params_finite = jp.all(jp.stack([jp.all(jp.isfinite(x)) for x in jax.tree.leaves(params)]))
    metrics["losses/finite"] = (params_finite & jp.all(jp.isfinite(losses["losses/total"]))).astype(
        jp.float32
    )
    metrics["losses/learning_rate"] = get_learning_rate(opt_state)
    metrics["losses/action_std"] = jp.exp(data["old_log_std"]).mean()  # the rollout's
    metrics["losses/explained_variance"] = 1.0 - jp.var(returns - values) / (jp.var(returns) + 1e-8)
    new_state = TrainState(
        params=params,
        opt_state=opt_state,
        obs_stats=obs_stats,
        critic_obs_stats=critic_stats,
        env_state=env_state,
        key=key,
        iteration=state.iteration + 1,
    )
    return new_state, metrics


def get_learning_rate(opt_state) -> jax.Array:
    return opt_state[1].hyperparams["learning_rate"]


def set_learning_rate(opt_state, lr: jax.Array):
    adam_state = opt_state[1]
    hyperparams = {**adam_state.hyperparams, "learning_rate": jp.asarray(lr, jp.float32)}
    return (opt_state[0], adam_state._replace(hyperparams=hyperparams), *opt_state[2:])


def state_shardings(state: TrainState, mesh: Mesh) -> TrainState:
    """The placement of every leaf: the env batch split over the mesh, the rest replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    env_sharding = NamedSharding(mesh, PartitionSpec("batch"))
    rest = jax.tree.map(lambda _: replicated, state.replace(env_state=None))
    return rest.replace(env_state=jax.tree.map(lambda _: env_sharding, state.env_state))


def make_train_step(env: TrainingWrapper, cfg: PPOConfig, num_iterations: int, mesh: Mesh):
    """The jitted iteration; the env state keeps its batch sharding across calls.

    Input and output placements are fixed (`state_shardings`), so the outputs of one call are
    valid inputs of the next without a second compilation.
    """
    if (cfg.batch_size // mesh.size) % cfg.num_minibatches:
        raise ValueError(
            f"each of the {mesh.size} devices collects num_envs * unroll_length / {mesh.size} = "
            f"{cfg.batch_size // mesh.size} samples, which num_minibatches="
            f"{cfg.num_minibatches} does not divide (every minibatch takes an equal share of "
            "every device's samples)"
        )
    compiled = {}

    def call(state: TrainState):
        if "step" not in compiled:
            shardings = state_shardings(state, mesh)
            replicated = NamedSharding(mesh, PartitionSpec())
            compiled["step"] = jax.jit(
                lambda s: train_step(env, cfg, num_iterations, s, mesh),
                in_shardings=(shardings,),
                out_shardings=(shardings, replicated),
                donate_argnums=0,
            )
        return compiled["step"](state)

    return call
