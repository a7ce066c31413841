"""Run an exported policy in native MuJoCo (C mj_step) and, for comparison, in MJX.

The task code is the single source of truth: native replay calls the task's jitted
`before_physics` (action -> joint targets) and `after_physics` (observation, rewards,
termination, metrics) on the native state copied into MJX with `mjx.put_data`; only the physics
in between is C MuJoCo. Evaluation runs the nominal robot (no randomization, pushes or noise)
so that the MJX-vs-native gap is the simulators' alone.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from locomotion import registry
from locomotion.policy import Policy


def eval_env(policy: Policy, command: tuple[float, float, float] | None = None):
    """The policy's task with evaluation settings (nominal physics, clean observations)."""
    changes = {}
    cfg = policy.env_config()
    for name, value in (("randomize", False), ("obs_noise", 0.0)):
        if hasattr(cfg, name):
            changes[name] = value
    if command is not None:
        if not hasattr(cfg, "fixed_command"):
            raise ValueError(f"task {policy.task!r} takes no velocity command")
        changes["fixed_command"] = tuple(float(c) for c in command)
    return registry.entry(policy.task).env_class(policy.env_config(**changes))


class NativeRunner:
    """Steps one episode at a time in C MuJoCo, with the task's own JAX code around it."""

    def __init__(self, env):
        self.env = env
        self.model = env.mj_model
        self.data = mujoco.MjData(self.model)
        self._reset = jax.jit(env.reset)
        self._before = jax.jit(env.before_physics)
        self._after = jax.jit(env.after_physics)
        self._observe = jax.jit(env.observation)

    def to_mjx(self) -> mjx.Data:
        return mjx.put_data(self.model, self.data, impl=self.env.impl)

    def reset(self, key: jax.Array):
        state = self._reset(key)
        d = state.pipeline_state
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = np.asarray(d.qpos)
        self.data.qvel[:] = np.asarray(d.qvel)
        self.data.ctrl[:] = np.asarray(d.ctrl)
        mujoco.mj_forward(self.model, self.data)
        data = self.to_mjx()
        obs = self._observe(data, state.info, jax.random.PRNGKey(0))
        return state.replace(pipeline_state=data, obs=obs)

    def step(self, state, action: np.ndarray):
        action = jp.asarray(action)
        state, ctrl = self._before(state, action)
        self.data.qvel[:] = np.asarray(state.pipeline_state.qvel)  # pushes, if any
        self.data.ctrl[:] = np.asarray(ctrl)
        for _ in range(self.env.n_substeps):
            mujoco.mj_step(self.model, self.data)
        return self._after(state, self.to_mjx(), action)


def _summarize(task: str, episodes: int, returns, lengths, falls, metric_sums, steps) -> dict:
    total = max(float(np.sum(steps)), 1.0)
    mean = {k: float(v) / total for k, v in metric_sums.items()}
    return {
        "task": task,
        "episodes": episodes,
        "return_mean": float(np.mean(returns)),
        "episode_length_mean": float(np.mean(lengths)),
        "fall_rate": float(np.mean(falls)),
        "lin_vel_error": mean.get("tracking/lin_vel_error", float("nan")),
        "ang_vel_error": mean.get("tracking/ang_vel_error", float("nan")),
        "constraint_violation_rate": {
            k.split("/", 1)[1]: v for k, v in mean.items() if k.startswith("constraint/")
        },
        "metrics": mean,
    }


def evaluate_native(
    policy: Policy,
    episodes: int = 5,
    seconds: float = 10.0,
    seed: int = 0,
    command=None,
    on_frame: Callable | None = None,
    stop_on_fall: bool = True,
) -> dict:
    """Roll the ONNX policy in C MuJoCo; `on_frame(model, data)` is called after each step."""
    env = eval_env(policy, command)
    runner = NativeRunner(env)
    num_steps = int(round(seconds / env.dt))
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    returns, lengths, falls, sums = [], [], [], {}
    for key in keys:
        state = runner.reset(key)
        ret, length, fell = 0.0, 0, False
        if on_frame:
            on_frame(runner.model, runner.data)
        for _ in range(num_steps):
            state = runner.step(state, policy(np.asarray(state.obs["state"]))[0])
            ret += float(state.reward)
            length += 1
            # One device-to-host transfer per step for all metrics, not one per metric.
            for k, v in jax.device_get(state.metrics).items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if on_frame:
                on_frame(runner.model, runner.data)
            if float(state.done) > 0 and not fell:
                fell = True
                if stop_on_fall:
                    break
        returns.append(ret)
        lengths.append(length)
        falls.append(fell)
    return _summarize(policy.task, episodes, returns, lengths, falls, sums, lengths)


def evaluate_mjx(
    policy: Policy, episodes: int = 5, seconds: float = 10.0, seed: int = 0, command=None
) -> dict:
    """The same policy, commands and initial states, with MJX physics (episodes batched)."""
    env = eval_env(policy, command)
    num_steps = int(round(seconds / env.dt))
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    state = jax.jit(jax.vmap(env.reset))(keys)
    step = jax.jit(jax.vmap(env.step))
    alive = np.ones(episodes)
    returns, lengths, sums = np.zeros(episodes), np.zeros(episodes), {}
    for _ in range(num_steps):
        state = step(state, jp.asarray(policy(np.asarray(state.obs["state"]))))
        returns += alive * np.asarray(state.reward)
        lengths += alive
        for k, v in jax.device_get(state.metrics).items():
            sums[k] = sums.get(k, 0.0) + float(np.sum(alive * v))
        alive = alive * (1.0 - np.asarray(state.done))
        if not alive.any():
            break
    return _summarize(policy.task, episodes, returns, lengths, alive == 0, sums, lengths)
