"""Run an exported policy in native MuJoCo (C mj_step) and, for comparison, in MJX.

The task code is the single source of truth: native replay calls the task's jitted
`before_physics` (action -> joint targets) and `after_physics` (observation, rewards,
termination, metrics) on the native state copied into MJX with `mjx.put_data`; only the physics
in between is C MuJoCo. Evaluation runs the nominal robot (no randomization, pushes or noise)
so that the MJX-vs-native gap is the simulators' alone; with the task's `randomize` on, each
native episode steps a copy of the MjModel carrying that episode's randomized physics (the
fields the task's `randomized_model` changes), and `NativePerturbation` adds what only the
deployed policy meets: actions that arrive late, PD gains the policy does not know.

What an evaluation reports beyond return and episode length is the task's `EVAL_REPORT` (an
`EvalReport`): the name of its termination (reported as `<name>_rate`), step metrics to average
and per-step events to count per episode. Tasks that declare none get `LOCOMOTION_REPORT`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from mujoco import mjx

from locomotion import registry
from locomotion.envs import State, episode_reset, kept, own_function
from locomotion.evaluation import nominal_config
from locomotion.policy import Policy


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalReport:
    """The task-specific part of an evaluation summary; a task class sets it as `EVAL_REPORT`.

    Step metrics are the task's `State.metrics` entries; the labels head the rows of
    `locomotion eval`'s table.
    """

    termination: str = "fall"
    """What a termination is called: `<termination>_rate` is the share of episodes it ended."""
    step_means: tuple[tuple[str, str, str], ...] = ()
    """(key, step metric, label): the metric averaged over every step of every episode."""
    episode_counts: tuple[tuple[str, str, str], ...] = ()
    """(key, step metric, label): the metric summed over each episode (a count of per-step
    events); reported as `<key>_median` and `<key>_mean` over the episodes."""
    episode_shares: tuple[str, ...] = ()
    """Keys of `episode_counts` that are 0 or 1 per episode (whether it happened): their mean
    is a share of episodes, reported with a 95 % interval (`<key>_ci95`) as the termination
    rate is."""


# What the legged tasks report (they declare no EVAL_REPORT of their own).
LOCOMOTION_REPORT = EvalReport(
    termination="fall",
    step_means=(
        ("lin_vel_error", "tracking/lin_vel_error", "lin. velocity error [m/s]"),
        ("ang_vel_error", "tracking/ang_vel_error", "yaw-rate error [rad/s]"),
    ),
)


def eval_report(task: str) -> EvalReport:
    """The registered task's `EVAL_REPORT` (read from its class, nothing is built)."""
    return getattr(registry.entry(task).env_class, "EVAL_REPORT", LOCOMOTION_REPORT)


def eval_config(policy: Policy, command: tuple[float, float, float] | None = None):
    """The policy's task config with evaluation settings: nominal physics, clean observations,
    MJX's jax implementation (native replay hands C MuJoCo's state to the task code through it;
    a policy trained with warp is evaluated the same way) and, when given, a fixed velocity
    command."""
    cfg = nominal_config(policy.env_config())
    if hasattr(cfg, "impl"):
        cfg = dataclasses.replace(cfg, impl="jax")
    if command is not None:
        if not hasattr(cfg, "fixed_command"):
            raise ValueError(f"task {policy.task!r} takes no velocity command")
        cfg = dataclasses.replace(cfg, fixed_command=tuple(float(c) for c in command))
    return cfg


def training_conditions_config(policy: Policy, **changes):
    """The policy's task config with its training's randomized physics, pushes and observation
    noise (the robustness bar's setting), then `changes`."""
    trained = policy.env_config()
    cfg = dataclasses.replace(eval_config(policy), randomize=True, obs_noise=trained.obs_noise)
    return dataclasses.replace(cfg, **changes)


def eval_env(policy: Policy, command: tuple[float, float, float] | None = None, config=None):
    """The policy's task built with `config` (default: `eval_config(policy, command)`). The
    last few built are kept (by task and config): evaluations of one task's settings in one
    process, of another policy (a baseline) or with other native perturbations (a sweep),
    reuse one env and so its traced and compiled task code (`NativeRunner`)."""
    if config is None:
        config = eval_config(policy, command)
    return _built_env(policy.task, config)


@functools.lru_cache(maxsize=8)
def _built_env(task: str, config):
    return registry.entry(task).env_class(config)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NativePerturbation:
    """Perturbations of the native simulation that the task code does not model."""

    latency_steps: int = 0
    """The joint targets of control step t come from the action of step t - latency_steps
    (the default pose before the first); the observation's last_action stays the policy's
    own latest output, as on a robot whose commands arrive late."""
    gain_error: float = 0.0
    """Each actuator's kp and kd are scaled by a factor drawn per episode in [1 - x, 1 + x],
    unknown to the policy (and to the task's model)."""

    def __post_init__(self):
        if self.latency_steps < 0 or not 0 <= self.gain_error < 1:
            raise ValueError("latency_steps must be >= 0 and gain_error in [0, 1)")


def randomized_fields(nominal: mjx.Model, varied: mjx.Model) -> dict[str, np.ndarray]:
    """The array fields of `varied` that differ from `nominal` (a task's randomized model)."""
    out = {}
    for field in dataclasses.fields(mjx.Model):
        a, b = getattr(nominal, field.name, None), getattr(varied, field.name, None)
        if isinstance(b, (jax.Array, np.ndarray)) and np.shape(a) == np.shape(b):
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                out[field.name] = np.asarray(b)
    return out


class NativeRunner:
    """Steps one episode at a time in C MuJoCo, with the task's own JAX code around it.

    Between control steps the native state reaches the task code as an `mjx.Data` built
    cheaply: the episode's first state goes through `mjx.put_data` (contacts, constraint
    rows, mass matrix), later states replace only what C MuJoCo recomputed that the task can
    read (state, kinematics, velocities, sensors, forces: `_NATIVE_FIELDS`) and keep the
    first state's contact and constraint arrays, which no task reads. `to_mjx` is the full
    conversion.
    """

    def __init__(self, env, perturb: NativePerturbation = NativePerturbation()):
        if getattr(env, "impl", "jax") != "jax":
            raise ValueError(
                f"native replay runs the task code on MJX's jax implementation, not "
                f"impl={env.impl!r}: build the task with impl='jax' (eval_config does)"
            )
        self.env = env
        self.nominal = env.mj_model
        self.model = copy.copy(env.mj_model)  # this episode's physics
        self.data = mujoco.MjData(self.model)
        self.perturb = perturb
        # The task code, jitted once per env (`kept`): every runner of this env shares it.
        self._reset = episode_reset(env)  # once per episode: compiled for a brief run
        self._before, self._after, self._observe, self._randomized = kept(
            env, "native replay", lambda: _task_code(env, jax.jit)
        )
        self._delay = _Delay(perturb.latency_steps)
        self._template: mjx.Data | None = None

    def episode_physics(self, state, key: jax.Array) -> dict[str, np.ndarray]:
        """Set the native model to this episode's physics: the nominal model with the fields
        the task randomized for `state` and, with a gain error, scaled PD gains. Returns the
        fields that differ from the nominal model."""
        changed = {}
        randomize = getattr(self.env.config, "randomize", False)  # off: the MJCF as it is
        if randomize and self._randomized is not None and "params" in state.info:
            changed = randomized_fields(self.env.mjx_model, self._randomized(state.info["params"]))
        # Every field an earlier episode changed goes back to nominal unless changed again.
        touched = self.__dict__.setdefault("_touched", set())
        touched |= {"actuator_gainprm", "actuator_biasprm", *changed}
        for name in touched:
            getattr(self.model, name)[:] = changed.get(name, getattr(self.nominal, name))
        if self.perturb.gain_error > 0:
            x = self.perturb.gain_error
            seed = np.asarray(jax.random.key_data(jax.random.fold_in(key, 17))).ravel()
            scale = np.random.default_rng(seed).uniform(1 - x, 1 + x, self.model.nu)
            self.model.actuator_gainprm[:, 0] *= scale
            self.model.actuator_biasprm[:, 1:3] *= scale[:, None]
            for name in ("actuator_gainprm", "actuator_biasprm"):
                changed[name] = getattr(self.model, name).copy()
        return changed

    def to_mjx(self) -> mjx.Data:
        try:
            return mjx.put_data(self.model, self.data, impl=self.env.impl)
        except ValueError as err:
            if "too high" not in str(err):
                raise
        return self.to_mjx_without_contacts()

    def to_mjx_without_contacts(self) -> mjx.Data:
        """The native state for the task code when C MuJoCo found more contacts than MJX's
        fixed buffers hold (on a heightfield it keeps every cell prism a foot touches; MJX at
        most 4 per pair, 8 in all in the quadruped's terrain scene). The task reads the state,
        kinematics and sensors, not the contact list: this is a contact-free forward pass of
        the state the last mj_step started from (whose kinematics mj_step leaves in MjData,
        as mjx.step does), with the current positions, velocities, accelerations and native
        sensor readings (touch included)."""
        if not hasattr(self, "_scratch"):
            self._no_contact = copy.copy(self.model)
            self._no_contact.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
            self._scratch = mujoco.MjData(self._no_contact)
        d = self._scratch
        start = self._last_start
        d.time = start["time"]
        for name, value in start.items():
            if name != "time":
                getattr(d, name)[:] = value
        mujoco.mj_forward(self._no_contact, d)
        d.time = self.data.time
        for name in ("qpos", "qvel", "qacc", "act", "sensordata"):
            getattr(d, name)[:] = getattr(self.data, name)
        return mjx.put_data(self.model, d, impl=self.env.impl)

    def reset(self, key: jax.Array):
        state = self._reset(key)
        data = self.start_episode(state, key)
        obs = self._observe(data, state.info, jax.random.PRNGKey(0))
        return state.replace(pipeline_state=data, obs=obs)

    def step(self, state, action: np.ndarray):
        action = jp.asarray(action)
        state, ctrl = self._before(state, self._delay(action))
        d = state.pipeline_state
        self.advance(d.qvel, ctrl, d.mocap_pos, d.mocap_quat)
        return self._after(state, self.native_data(), action)

    def start_episode(self, state, key: jax.Array) -> mjx.Data:
        """Native side of a reset: this episode's physics, the MjData set to `state`'s initial
        state; returns it as an `mjx.Data` (the full conversion, kept as the template)."""
        self.episode_physics(state, key)
        self._delay = _Delay(self.perturb.latency_steps)
        self.__dict__.pop("_scratch", None)  # the contact-free copy follows the new physics
        d = state.pipeline_state
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = np.asarray(d.qpos)
        self.data.qvel[:] = np.asarray(d.qvel)
        self.data.ctrl[:] = np.asarray(d.ctrl)
        self._copy_mocap(np.asarray(d.mocap_pos), np.asarray(d.mocap_quat))
        mujoco.mj_forward(self.model, self.data)
        self._last_start = self._copy_state()
        self._template = self.to_mjx()
        return self._template

    def advance(self, qvel, ctrl, mocap_pos, mocap_quat) -> None:
        """One control period of C MuJoCo holding `ctrl`, from the task's `qvel` (pushes, if
        any) and mocap poses (a goal marker the task moves)."""
        self.data.qvel[:] = np.asarray(qvel)
        self.data.ctrl[:] = np.asarray(ctrl)
        self._copy_mocap(np.asarray(mocap_pos), np.asarray(mocap_quat))
        for k in range(self.env.n_substeps):
            if k == self.env.n_substeps - 1:  # mj_step's kinematics are of the state before it
                self._last_start = self._copy_state()
            mujoco.mj_step(self.model, self.data)

    def native_fields(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The public and implementation fields of `_NATIVE_FIELDS`, as MJX shapes them."""
        public, impl = _native_fields([self.data])
        one = lambda fields: {k: v[0] for k, v in fields.items()}  # noqa: E731
        return one(public), one(impl)

    def native_data(self) -> mjx.Data:
        """The native state as the task code's `mjx.Data`: the episode's template with the
        fields C MuJoCo recomputed (the full `to_mjx` when no episode was started)."""
        if self._template is None:
            return self.to_mjx()
        return _with_fields(self._template, *self.native_fields())

    def _copy_state(self) -> dict[str, np.ndarray]:
        names = ("qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat")
        return {"time": self.data.time, **{n: getattr(self.data, n).copy() for n in names}}

    def _copy_mocap(self, pos: np.ndarray, quat: np.ndarray) -> None:
        """Mocap bodies the task moves (e.g. a goal marker) follow the task's MJX state."""
        if self.model.nmocap:
            self.data.mocap_pos[:] = pos
            self.data.mocap_quat[:] = quat


class NativeBatch:
    """Several native episodes stepped together: one MjModel and MjData per lane (each with
    its episode's physics), the task code vmapped over the lanes, so that one call of the
    compiled task code serves every lane at each step. Lane i of `reset(keys)` is the episode
    that `NativeRunner.reset(keys[i])` starts: the resets (once per episode) run lane by lane
    through the env's own reset, the same compiled graph at any batch size."""

    def __init__(self, env, size: int, perturb: NativePerturbation = NativePerturbation()):
        self.env = env
        self.lanes = [NativeRunner(env, perturb) for _ in range(size)]
        self._before, self._after, self._observe, _ = kept(
            env, ("native replay", size), lambda: _task_code(env, _batched)
        )
        self._delay = _Delay(perturb.latency_steps)
        self._template: mjx.Data | None = None

    def reset(self, keys: jax.Array):
        states, lane_states = _reset_lanes(self.env, keys)
        lane_keys = list(jax.device_get(keys))
        datas = [
            lane.start_episode(s, k)
            for lane, s, k in zip(self.lanes, lane_states, lane_keys, strict=True)
        ]
        self._template = jax.tree.map(lambda *x: np.stack([np.asarray(v) for v in x]), *datas)
        self._delay = _Delay(self.lanes[0].perturb.latency_steps)
        keys0 = jp.broadcast_to(jax.random.PRNGKey(0), (len(self.lanes), 2))
        data = jax.tree.map(jp.asarray, self._template)
        obs = self._observe(data, states.info, keys0)
        return states.replace(pipeline_state=data, obs=obs)

    def step(self, states, actions: np.ndarray, active: np.ndarray | None = None):
        """One control step of every lane; lanes where `active` is False are not simulated
        (their native state stays; the task code still runs on it)."""
        actions = jp.asarray(actions)
        states, ctrl = self._before(states, self._delay(actions))
        d = states.pipeline_state
        qvel, ctrl = np.asarray(d.qvel), np.asarray(ctrl)
        mocap_pos, mocap_quat = np.asarray(d.mocap_pos), np.asarray(d.mocap_quat)
        for i, lane in enumerate(self.lanes):
            if active is None or active[i]:
                lane.advance(qvel[i], ctrl[i], mocap_pos[i], mocap_quat[i])
        public, impl = _native_fields([lane.data for lane in self.lanes])
        data = _with_fields(self._template, public, impl)
        return self._after(states, data, actions)


# What C MuJoCo recomputes each step that task code may read: (public, implementation) fields
# of mjx.Data. Contacts, constraint rows and the mass matrix are left out (no task reads them).
_NATIVE_FIELDS = (
    """time qpos qvel act ctrl qfrc_applied xfrc_applied mocap_pos mocap_quat qacc act_dot
    sensordata xpos xquat xmat xipos ximat xanchor xaxis ten_length geom_xpos geom_xmat
    site_xpos site_xmat cam_xpos cam_xmat subtree_com cvel cdof cdof_dot qfrc_bias qfrc_passive
    qfrc_actuator actuator_force actuator_length qfrc_smooth qacc_smooth qfrc_constraint""".split(),
    """cinert actuator_velocity ten_velocity cacc cfrc_int cfrc_ext subtree_linvel
    subtree_angmom""".split(),
)
_MATRIX_FIELDS = ("xmat", "ximat", "geom_xmat", "site_xmat", "cam_xmat")


def _native_fields(datas: list[mujoco.MjData]) -> tuple[dict, dict]:
    """The public and implementation fields of `_NATIVE_FIELDS` of these MjData, each stacked
    straight out of them (one copy: a copy per MjData and field before stacking cost a fifth
    of a batched evaluation's time), as MJX shapes them."""

    def stacked(name: str) -> np.ndarray:
        return np.stack([getattr(d, name) for d in datas])

    public = {name: stacked(name) for name in _NATIVE_FIELDS[0]}
    for name in _MATRIX_FIELDS:
        public[name] = public[name].reshape(len(datas), -1, 3, 3)
    return public, {name: stacked(name) for name in _NATIVE_FIELDS[1]}


def _task_code(env, jit: Callable) -> tuple:
    """The task code native replay calls around C MuJoCo, through `jit`: before_physics,
    after_physics, observation, randomized_model (None for a task without one)."""
    randomized = getattr(env, "randomized_model", None)
    return (
        jit(own_function(env.before_physics)),
        jit(own_function(env.after_physics)),
        jit(own_function(env.observation)),
        None if randomized is None else jit(own_function(randomized)),
    )


def _reset_lanes(env, keys: jax.Array) -> tuple[State, list[State]]:
    """The batch of initial states of `keys` and each lane's (as numpy arrays), reset one key
    at a time: the states `NativeRunner.reset` starts from, and a reset graph of one env,
    compiled once for every evaluation of this env whatever its batch size."""
    reset = episode_reset(env)
    lanes = [jax.device_get(reset(k)) for k in keys]
    return jax.tree.map(lambda *x: jp.asarray(np.stack(x)), *lanes), lanes


def _batched(fn: Callable) -> Callable:
    return jax.jit(jax.vmap(fn))


def _with_fields(template: mjx.Data, public: dict, impl: dict) -> mjx.Data:
    """`template` with these fields replaced, cast to the template's dtypes (float32)."""

    def cast(tree, fields):
        return {k: np.asarray(v, getattr(tree, k).dtype) for k, v in fields.items()}

    return template.replace(
        **cast(template, public), _impl=template._impl.replace(**cast(template._impl, impl))
    )


class _Delay:
    """Actuation latency: the action of step t is applied at step t + k (zeros, the default
    pose, before the first arrives); k = 0 applies it at once."""

    def __init__(self, steps: int):
        self.steps = steps
        self.pending: list[jax.Array] = []

    def __call__(self, action: jax.Array) -> jax.Array:
        if not self.steps:
            return action
        if not self.pending:
            self.pending = [jp.zeros_like(action)] * self.steps
        self.pending.append(action)
        return self.pending.pop(0)


def share_ci95(flags) -> list[float]:
    """95 % interval of the share of episodes in which something happened (`flags`, one 0 or 1
    per episode): Wilson's score interval, which stays inside [0, 1] and is not empty at 0 of n
    or n of n (20 episodes at 0.80: 0.58-0.92). NaN where the flags are."""
    from scipy import stats

    flags = np.asarray(flags, float)
    if flags.size == 0 or not np.isfinite(flags).all():
        return [float("nan"), float("nan")]
    hits = int(np.round(flags.sum()))
    ci = stats.binomtest(hits, flags.size).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def _summarize(task: str, returns, lengths, ended, sums: dict[str, np.ndarray]) -> dict:
    """Evaluation summary from per-episode returns, lengths, endings and metric sums."""
    report = eval_report(task)
    total = max(float(np.sum(lengths)), 1.0)
    mean = {k: float(np.sum(v)) / total for k, v in sums.items()}
    out = {
        "task": task,
        "episodes": len(returns),
        "return_mean": float(np.mean(returns)),
        "episode_length_mean": float(np.mean(lengths)),
        f"{report.termination}_rate": float(np.mean(ended)),
        f"{report.termination}_rate_ci95": share_ci95(ended),
    }
    for key, metric, _ in report.step_means:
        out[key] = mean.get(metric, float("nan"))
    for key, metric, _ in report.episode_counts:
        per_episode = np.asarray(sums.get(metric, np.full(len(returns), np.nan)), float)
        out[f"{key}_median"] = float(np.median(per_episode))
        out[f"{key}_mean"] = float(np.mean(per_episode))
        if key in report.episode_shares:
            out[f"{key}_ci95"] = share_ci95(per_episode)
    out["constraint_violation_rate"] = {
        k.split("/", 1)[1]: v for k, v in mean.items() if k.startswith("constraint/")
    }
    out["metrics"] = mean
    return out


def evaluate_native(
    policy: Policy,
    episodes: int = 5,
    seconds: float = 10.0,
    seed: int = 0,
    command=None,
    on_frame: Callable | None = None,
    stop_on_fall: bool = True,
    config=None,
    perturb: NativePerturbation = NativePerturbation(),
    batch: int = 50,
) -> dict:
    """Roll the ONNX policy in C MuJoCo; `on_frame(model, data)` is called after each step
    (one episode at a time). `config` replaces the evaluation config of the task
    (`eval_config`); `perturb` adds actuation latency and PD gain errors. Without `on_frame`,
    up to `batch` episodes are stepped together (`NativeBatch`): the same episodes as one at
    a time, with one call of the task code per step for all of them."""
    env = eval_env(policy, command, config)
    num_steps = int(round(seconds / env.dt))
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    returns, lengths, falls = np.zeros(episodes), np.zeros(episodes), np.zeros(episodes, bool)
    sums: dict[str, np.ndarray] = {}
    if on_frame is None:
        size = min(batch, episodes)
        runner = NativeBatch(env, size, perturb)
        for start in range(0, episodes, size):
            part = keys[start : start + size]
            if len(part) < size:  # the last chunk: pad with repeats, then drop them
                part = jp.concatenate([part, keys[: size - len(part)]])
            lanes = slice(start, min(start + size, episodes))
            n = lanes.stop - lanes.start
            state = runner.reset(part)
            alive = np.ones(size, bool)
            alive[n:] = False
            for _ in range(num_steps):
                active = alive if stop_on_fall else None
                state = runner.step(state, policy(np.asarray(state.obs["state"])), active)
                returns[lanes] += np.where(alive, np.asarray(state.reward), 0.0)[:n]
                lengths[lanes] += alive[:n]
                for k, v in jax.device_get(state.metrics).items():
                    row = sums.setdefault(k, np.zeros(episodes))
                    row[lanes] += np.where(alive, np.asarray(v), 0.0)[:n]
                ended = np.asarray(state.done) > 0
                falls[lanes] |= (ended & alive)[:n]
                if stop_on_fall:
                    alive &= ~ended
                    if not alive.any():
                        break
        return _summarize(policy.task, returns, lengths, falls, sums)
    runner = NativeRunner(env, perturb)
    for episode, key in enumerate(keys):
        state = runner.reset(key)
        on_frame(runner.model, runner.data)
        for _ in range(num_steps):
            state = runner.step(state, policy(np.asarray(state.obs["state"]))[0])
            returns[episode] += float(state.reward)
            lengths[episode] += 1
            # One device-to-host transfer per step for all metrics, not one per metric.
            for k, v in jax.device_get(state.metrics).items():
                sums.setdefault(k, np.zeros(episodes))[episode] += float(v)
            on_frame(runner.model, runner.data)
            if float(state.done) > 0 and not falls[episode]:
                falls[episode] = True
                if stop_on_fall:
                    break
    return _summarize(policy.task, returns, lengths, falls, sums)


def evaluate_mjx(
    policy: Policy,
    episodes: int = 5,
    seconds: float = 10.0,
    seed: int = 0,
    command=None,
    config=None,
) -> dict:
    """The same policy, commands and initial states, with MJX physics (episodes batched)."""
    env = eval_env(policy, command, config)
    num_steps = int(round(seconds / env.dt))
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    state, _ = _reset_lanes(env, keys)
    step = kept(env, ("mjx evaluation", episodes), lambda: _batched(env.step))
    alive = np.ones(episodes)
    returns, lengths, sums = np.zeros(episodes), np.zeros(episodes), {}
    for _ in range(num_steps):
        state = step(state, jp.asarray(policy(np.asarray(state.obs["state"]))))
        returns += alive * np.asarray(state.reward)
        lengths += alive
        for k, v in jax.device_get(state.metrics).items():
            sums[k] = sums.get(k, 0.0) + alive * np.asarray(v)
        alive = alive * (1.0 - np.asarray(state.done))
        if not alive.any():
            break
    return _summarize(policy.task, returns, lengths, alive == 0, sums)
