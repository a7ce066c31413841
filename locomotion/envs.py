"""Environment interface shared by every task, and the wrappers training uses.

The interface is brax's: `reset(key) -> State`, `step(state, action) -> State`, both pure and
jit/vmap-able, with `State(pipeline_state, obs, reward, done, metrics, info)`. Observations are a
dict: "state" for the actor and "privileged_state" for the critic (asymmetric actor-critic).

Signals to the learner are kept apart (STYLE.md, rule 6):
  * `done`                 episode ended (termination or time limit): the env was reset
  * `info["truncation"]`   the episode hit its time limit: keep bootstrapping
  * `info["termination"]`  probability in [0, 1] that the future rewards end here: 1 for a real
                           termination (fall), CaT's delta for constraint violations, else 0
  * `info["final_obs"]`    the observation before an automatic reset, to bootstrap truncations
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jp
from flax import struct
from mujoco import mjx

Observation = dict[str, jax.Array]


@struct.dataclass
class State:
    """One environment's state (or a batch of them, with a leading batch axis)."""

    pipeline_state: Any
    obs: Observation
    reward: jax.Array
    done: jax.Array
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    info: dict[str, Any] = struct.field(default_factory=dict)


class Env(abc.ABC):
    """A single, unbatched environment. Subclasses set `episode_length` (control steps).

    Every subclass's `reset` and `step` return strongly typed states (wrapped here with
    `strong_types`): a compiled step then returns exactly the types it was given, so any
    wrapper around it (ours, brax's) compiles it once, not a second time after the first call.

    They are also traced once per env (and argument shapes), however many compiled graphs call
    them (`TrainingWrapper`'s reset and step, a training iteration, the evaluation,
    `observation_size`): each is a `jax.jit` of the method bound to the env (`own_function`),
    made on first use and kept on the env, which XLA inlines into every graph that calls it, so
    what is compiled and computed is the same. Tracing MJX is slow (hand_rotate_z's reset about
    8 s on a CPU core): quadruped_joystick's wrapper reset and step trace in 11.6 s instead of
    20.5 s. Setting an attribute of the env (a new MJX model, say) drops the kept traces: the
    next call traces the env as it is then.
    """

    episode_length: int

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("reset", "step"):
            method = cls.__dict__.get(name)
            if method is not None and not isinstance(method, _TracedOnce):
                setattr(cls, name, _TracedOnce(_strongly_typed(method)))

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        self.__dict__.pop(_TRACES, None)

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> State:
        """Sample an initial state."""

    @abc.abstractmethod
    def step(self, state: State, action: jax.Array) -> State:
        """Advance one control period. `done` is the real termination only (0. or 1.)."""

    @property
    @abc.abstractmethod
    def action_size(self) -> int:
        """Number of action dimensions (actions live in [-1, 1])."""

    @functools.cached_property
    def observation_size(self) -> dict[str, int]:
        """Size of each observation entry, found by tracing `reset` once per env (no
        computation; a quadruped's reset takes seconds to trace)."""
        shapes = jax.eval_shape(self.reset, jax.ShapeDtypeStruct((2,), jp.uint32))
        return {name: leaf.shape[-1] for name, leaf in shapes.obs.items()}

    @property
    def dt(self) -> float:
        """Control period [s]."""
        return 0.02

    def prepare_batch(self, num_envs: int) -> None:
        """Called before `reset` is vmapped over `num_envs` environments that step together
        (MJX's warp implementation sizes its shared contact buffers here); nothing by default."""
        del num_envs

    def restart(self, ended: State, fresh: State) -> State:
        """The state the next episode starts from, where `ended`'s episode just ended and
        `fresh` is a reset state drawn for it: what must survive an automatic reset goes
        from `ended` into `fresh` here (a terrain curriculum's level). `fresh` unchanged by
        default. Called for every env at every step (the result is used where one ended)."""
        return fresh


def actor_observation_size(env) -> int:
    """Size of the actor's observation ("state"): the sum of the task's declared
    `OBSERVATION_LAYOUT` (tests/test_tasks.py checks it against what the reset returns), so
    that loading or exporting a policy traces nothing; traced from the reset for a task that
    declares no layout."""
    layout = getattr(env, "OBSERVATION_LAYOUT", None)
    return sum(n for _, n in layout) if layout else env.observation_size["state"]


def select(pred: jax.Array, new, old):
    """`new` where `pred`, else `old`, leaf by leaf; an `mjx.Data` through its own `where`,
    which keeps the warp implementation's shared buffers (contacts and constraint rows of the
    whole batch, recomputed every step) out of the per-env selection."""
    if isinstance(old, mjx.Data):
        return old.where(pred, new)
    return jax.tree.map(lambda a, b: jp.where(pred, a, b), new, old)


def strong_types(tree):
    """Drops JAX's weak types (`x * 1.0` of a bool is weakly typed), so that a state returned
    by a compiled step has exactly the types of the state it got: no recompilation."""
    return jax.tree.map(lambda x: x.astype(x.dtype), tree)


def _strongly_typed(method):
    @functools.wraps(method)
    def typed(self, *args, **kwargs):
        return strong_types(method(self, *args, **kwargs))

    return typed


_TRACES = "_traces"  # an env's kept jitted methods: (id of the env, {function: jitted})


class _TracedOnce:
    """An env method (`reset`, `step`) that `Env` traces once per env: see `Env`."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, env, owner=None):
        if env is None:
            return self.fn
        # Keyed by function: a subclass's method and its super()'s differ.
        return kept(env, self.fn, lambda: jax.jit(own_function(self.fn.__get__(env))))


def own_function(method: Callable) -> Callable:
    """A bound method as a function object of its own, for `jax.jit`. JAX caches traces by
    the function while it lives, and two bound methods of one object compare equal: a jit made
    after an attribute of the env changed would take the trace made before it whenever the
    earlier jit is still held (by a replay runner, a caller's variable), and compute with the
    old value. A `functools.partial` equals only itself. (Any other callable: as it is.)"""
    owner = getattr(method, "__self__", None)
    if owner is None or not hasattr(method, "__func__"):
        return method
    return functools.partial(method.__func__, owner)


def kept(env: Env, key: Any, make: Callable[[], Any]) -> Any:
    """`make()`, made once per env and `key` and kept with the env's kept traces (dropped with
    them when an attribute of the env is set): compiled functions of one env that several
    callers share, such as the native replay's task code (locomotion/replay.py), so that a
    second evaluation of the same env traces and compiles nothing again."""
    traces = env.__dict__.get(_TRACES)
    if traces is None or traces[0] != id(env):  # none yet, or a copy's (copy.copy of an env)
        traces = env.__dict__[_TRACES] = (id(env), {})
    if key not in traces[1]:
        traces[1][key] = make()
    return traces[1][key]


# XLA options for a graph that runs a few times per compilation, where compiling is most of
# its cost: an episode's reset in a native replay, a training run's first batch of states.
# LLVM at -O0 without its expensive passes, the options of `jax.jit` (per graph; the process's
# XLA_FLAGS stay as they are, and `locomotion.gpu.CPU_FAST_COMPILE` is the same setting for
# a whole process). quadruped_joystick on the 2-core CPU (benchmarks/NOTES.md, "Graphs that
# run briefly compile at -O0"): one env's reset compiles in 6.1 s instead of 10.0, the training
# wrapper's reset of 8 envs in 19 s instead of 27, and runs two to three times slower. Code
# generation only: the same computation, though not always bit for bit (a few float32
# operations round differently, e.g. without fused multiply-adds).
BRIEF_RUN = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def jit_brief(fn: Callable, **kwargs) -> Callable:
    """`jax.jit(fn, **kwargs)` compiled with `BRIEF_RUN`, for a graph called a few times, on
    a CPU backend (measured there; elsewhere, until measured, a plain `jax.jit`: a GPU session
    is too scarce to find out there that -O0 breaks a kernel). It cannot be nested in another
    jit (JAX takes compiler options at the top level only): inside a jitted caller, `fn`
    compiles with the caller's options."""
    options = BRIEF_RUN if jax.default_backend() == "cpu" else None
    return jax.jit(fn, compiler_options=options, **kwargs)


def episode_reset(env: Env) -> Callable[[jax.Array], State]:
    """`env.reset` for calls once per episode (one env, outside any batched graph: the native
    replay's resets), compiled with `BRIEF_RUN` and kept with the env's traces: it traces
    nothing more than `env.reset` did."""
    return kept(env, "episode reset", lambda: jit_brief(env.reset))


# Per-step count of envs restarted because their physics or observation went non-finite; PPO
# logs its sum per iteration (a count, where other step metrics are means).
NONFINITE_RESETS = "perf/nonfinite_resets"


def finite(state: State) -> jax.Array:
    """True where the state's physics (qpos, qvel), observation and reward are all finite."""
    leaves = [state.reward, *jax.tree.leaves(state.obs)]
    data = state.pipeline_state
    for name in ("qpos", "qvel"):
        if hasattr(data, name):
            leaves.append(getattr(data, name))
    return jp.all(jp.stack([jp.all(jp.isfinite(x)) for x in leaves]))


_WRAPPER_KEYS = (
    "reset_key",
    "steps",
    "truncation",
    "termination",
    "final_obs",
    "episode_return",
    "episode_length",
    "reset_pool",
    "reset_pool_used",
)
# Task info that describes the transition just taken (kept on the step that ends an episode,
# not replaced by the reset state's): the CaT constraint violations.
_TRANSITION_KEYS = ("violations",)


class TrainingWrapper:
    """Batches an env with vmap, adds the time limit and automatic resets.

    Every episode starts from a fresh initial state (new command, new randomization) that no
    episode used before, yet resets are cheap: each env keeps one fresh reset state in reserve
    (`info["reset_pool"]`), taken where its episode ends. The reserve of the whole batch is
    drawn anew, in one batched `env.reset`, only on a step where an env whose reserve is
    already spent ends (`info["reset_pool_used"]`): once per episode length when episodes run
    to their time limit, every step at worst (as costly as resetting every env every step,
    which this replaces). `metrics["reset/pool_renewed"]` is 1 on the steps that drew anew.
    """

    def __init__(self, env: Env, num_envs: int):
        self.env = env
        self.num_envs = num_envs
        env.prepare_batch(num_envs)

    @property
    def action_size(self) -> int:
        return self.env.action_size

    @property
    def observation_size(self) -> dict[str, int]:
        return self.env.observation_size

    def reset(self, key: jax.Array) -> State:
        keys = jax.random.split(key, self.num_envs)
        if getattr(self.env, "impl", "jax") == "warp":
            # warp's contact buffers hold `num_envs` worlds: two batches of them.
            state = jax.vmap(self._reset_one)(keys)
            pool, reset_key = jax.vmap(self._fresh)(state.info["reset_key"])
        else:
            # Every env's first state and the reserve after it (`_fresh`'s key chain, twice)
            # from one batched `env.reset` over both: one copy of the task's reset in the
            # compiled graph instead of two (it costs as much to compile as the step).
            split = jax.vmap(jax.random.split)
            first = split(keys)  # [envs, (next key, reset key), 2]
            second = split(first[:, 0])
            drawn = jax.vmap(self._draw)(jp.concatenate([first[:, 1], second[:, 1]]))
            n = self.num_envs
            state = jax.vmap(self._begin)(jax.tree.map(lambda x: x[:n], drawn), first[:, 0])
            pool, reset_key = jax.tree.map(lambda x: x[n:], drawn), second[:, 0]
        info = dict(state.info)
        info.update(
            reset_key=reset_key,
            reset_pool=pool,
            reset_pool_used=jp.zeros(self.num_envs, bool),
        )
        metrics = {**state.metrics, "reset/pool_renewed": jp.zeros(self.num_envs)}
        return strong_types(state.replace(info=info, metrics=metrics))

    def step(self, state: State, action: jax.Array) -> State:
        info = {k: v for k, v in state.info.items() if k not in ("reset_pool", "reset_pool_used")}
        nstate = jax.vmap(self._step_one)(state.replace(info=info), action)
        ended = nstate.done > 0
        used = state.info["reset_pool_used"]

        def renew(_):
            pool, key = jax.vmap(self._fresh)(nstate.info["reset_key"])
            return strong_types(pool), key, jp.zeros_like(used)

        def keep(_):
            return state.info["reset_pool"], nstate.info["reset_key"], used

        renewed = jp.any(ended & used)  # an env needs a fresh state and has none left
        pool, reset_key, used = jax.lax.cond(renewed, renew, keep, None)
        nstate = jax.vmap(self._restart)(nstate, pool)
        info = dict(nstate.info)
        info.update(reset_key=reset_key, reset_pool=pool, reset_pool_used=used | ended)
        metrics = dict(nstate.metrics)
        metrics["reset/pool_renewed"] = jp.broadcast_to(renewed, ended.shape).astype(jp.float32)
        return strong_types(nstate.replace(info=info, metrics=metrics))

    def _fresh(self, key: jax.Array) -> tuple[State, jax.Array]:
        """A fresh initial state (the part an episode starts from) and the env's next key."""
        key, key_reset = jax.random.split(key)
        return self._draw(key_reset), key

    def _draw(self, key_reset: jax.Array) -> State:
        state = self.env.reset(key_reset)
        info = {k: v for k, v in state.info.items() if k != "termination"}
        return state.replace(info=info)

    def _reset_one(self, key: jax.Array) -> State:
        state, key = self._fresh(key)
        return self._begin(state, key)

    def _begin(self, state: State, key: jax.Array) -> State:
        """The wrapper's part of an episode's first state (`key`: the env's next key)."""
        info = dict(state.info)
        info.update(
            reset_key=key,
            steps=jp.zeros((), jp.int32),
            truncation=jp.zeros(()),
            termination=jp.zeros(()),
            final_obs=state.obs,
            episode_return=jp.zeros(()),
            episode_length=jp.zeros(()),
        )
        metrics = dict(state.metrics)
        metrics.update({"episode/return": jp.zeros(()), "episode/length": jp.zeros(())})
        metrics[NONFINITE_RESETS] = jp.zeros(())
        return state.replace(info=info, metrics=metrics)

    def _step_one(self, state: State, action: jax.Array) -> State:
        """One env's step with the time limit; where the episode ended, `_restart` follows."""
        steps = state.info["steps"] + 1
        inner_info = {k: v for k, v in state.info.items() if k not in _WRAPPER_KEYS}
        nstate = self.env.step(state.replace(info=inner_info), action)
        task_info = dict(nstate.info)
        # A task may report a soft termination probability (CaT) in info["termination"].
        soft_termination = task_info.pop("termination", jp.zeros(()))

        # Physics that went non-finite (a solver blow-up, NaN in the state or observation):
        # the env restarts on this step as if its time were up, the step is recorded with
        # reward 0 and bootstrapped from the last finite observation, and nothing non-finite
        # of it reaches the learner (normalizer, GAE, gradients) or the logged means.
        broken = ~finite(nstate)
        reward = jp.where(broken, 0.0, nstate.reward)
        soft_termination = jp.where(broken, 0.0, soft_termination)
        terminated = jp.where(broken, 0.0, nstate.done)
        truncated = jp.where(terminated > 0, 0.0, (steps >= self.env.episode_length) | broken)
        truncated = truncated.astype(jp.float32)
        done = jp.maximum(terminated, truncated)
        ep_return = state.info["episode_return"] + reward
        ep_length = state.info["episode_length"] + 1.0
        task_info.update(
            reset_key=state.info["reset_key"],
            steps=jp.where(done > 0, 0, steps),
            truncation=truncated,
            termination=jp.maximum(soft_termination, terminated),
            final_obs=select(broken, state.obs, nstate.obs),
            episode_return=jp.where(done > 0, 0.0, ep_return),
            episode_length=jp.where(done > 0, 0.0, ep_length),
        )
        metrics = {k: jp.where(broken, 0.0, v) for k, v in nstate.metrics.items()}
        # Episode statistics are reported on the step that ends the episode (weight by `done`).
        metrics.update({"episode/return": ep_return, "episode/length": ep_length})
        metrics[NONFINITE_RESETS] = broken.astype(jp.float32)
        return nstate.replace(reward=reward, done=done, info=task_info, metrics=metrics)

    def _restart(self, state: State, fresh: State) -> State:
        """Where `state`'s episode ended, continue from `fresh`: its physics, observation and
        task info (a new command, new randomization); the transition's own signals stay."""
        pick = lambda new, old: jp.where(state.done > 0, new, old)  # noqa: E731
        fresh = self.env.restart(state, fresh)
        info = dict(state.info)
        for k in fresh.info:
            if k not in _TRANSITION_KEYS:
                info[k] = jax.tree.map(pick, fresh.info[k], info[k])
        return state.replace(
            pipeline_state=select(state.done > 0, fresh.pipeline_state, state.pipeline_state),
            obs=jax.tree.map(pick, fresh.obs, state.obs),
            info=info,
        )
