"""In-hand reorientation: turn the cube to a random goal orientation; when the orientation error
falls below `success_threshold` a new goal is drawn, for as long as the episode lasts. The goal
is shown by the ghost cube (a mocap body of the scene) in videos.

Observation ("state", 32 * history + 15 = 111): per frame, newest first, joint positions minus
default (16, noisy) and the last action (16); then the cube position relative to the palm centre
(3, noisy), its quaternion (4, noisy), the goal quaternion (4) and the rotation from the (noisy)
cube to the goal (4). Quaternions are (w, x, y, z) with w >= 0.
Critic ("privileged_state", 92): the hand tasks' common critic view (hand_common.py, 83), the
goal (4), the true rotation to the goal (4) and the orientation error (1).
Action (16): joint position targets around the default grasp (hand_common.py), 20 Hz.
Termination: the cube drops (its centre below the palm's top face) or moves more than
`max_cube_distance` from where it started.

The goal logic (success, resampling, success count, error progress) is the pure function
`goal_transition`, tested on hand-made trajectories without physics.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jp
from mujoco import mjx

from locomotion.envs import State
from locomotion.replay import EvalReport
from locomotion.tasks.hand_common import (
    NUM_JOINTS,
    HandConfig,
    HandCubeEnv,
    axis_angle_quat,
    canonical,
    orientation_error,
    quat_conj,
    quat_mul,
    quat_rotate,
    random_quat,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardScales:
    """Weight of each reward term (0 switches a term off). The sum is multiplied by ctrl_dt."""

    orientation_progress: float = 5.0  # per rad the orientation error shrank (term in rad/s)
    success: float = 200.0  # once per reached goal (10 at 20 Hz)
    action_rate: float = -0.01  # per squared change of the action
    joint_velocity: float = -1e-3  # per (rad/s)^2, summed over the joints
    termination: float = -100.0  # once, when the cube drops (-5 at 20 Hz)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HandReorientConfig(HandConfig):
    """Task settings: the shared hand settings (hand_common.HandConfig) plus these."""

    success_threshold: float = 0.4  # [rad] orientation error that counts as reaching the goal
    upright_goals: float = 0.0
    """Share of goals drawn upright: the cube laid flat on the face now pointing up, then turned
    about the vertical by a random angle of success_threshold..pi either way (so no goal is
    reached when drawn). The others are uniformly random orientations (OpenAI's and DeXtreme's
    benchmark), which usually need the cube rolled onto another face. 1.0 is the 1-axis
    reorientation of the LEAP hand's Isaac Lab task."""
    roll_goals: float = 0.0
    """Share of goals one roll away: the cube laid flat, then rolled a quarter turn onto one of
    the four neighbouring faces (about one of its horizontal edges' directions), yaw kept. The
    skill that upright goals never ask for and uniform goals mostly need."""
    rewards: RewardScales = RewardScales()
    max_cube_distance: float = 0.08  # [m] dropped: cube centre this far from its start

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.success_threshold < math.pi:
            raise ValueError("success_threshold must be in (0, pi) rad")
        shares = (self.upright_goals, self.roll_goals)
        if min(shares) < 0 or sum(shares) > 1:
            raise ValueError(
                f"upright_goals and roll_goals are shares of the goals: each >= 0, sum <= 1, "
                f"got {shares}"
            )


def lay_flat(quat: jax.Array) -> jax.Array:
    """`quat` turned by the smallest rotation that makes its most vertical axis exactly
    vertical (the face now on top stays on top)."""
    axes = jax.vmap(lambda v: quat_rotate(quat, v))(jp.eye(3))  # cube axes in the world [3, 3]
    top = jp.argmax(jp.abs(axes[:, 2]))
    up = axes[top] * jp.sign(axes[top, 2])  # the cube axis pointing up
    tilt = jp.cross(up, jp.array([0.0, 0.0, 1.0]))  # axis * sin(angle) of up -> vertical
    sin = jp.linalg.norm(tilt)
    return quat_mul(axis_angle_quat(tilt / jp.maximum(sin, 1e-9) * jp.arctan2(sin, up[2])), quat)


def upright_goal(quat: jax.Array, key: jax.Array, min_angle: float) -> jax.Array:
    """`quat` laid flat, then turned about the world vertical by a random angle of magnitude
    min_angle..pi."""
    key_angle, key_sign = jax.random.split(key)
    angle = jax.random.uniform(key_angle, minval=min_angle, maxval=math.pi)
    angle = jp.where(jax.random.bernoulli(key_sign), angle, -angle)
    return quat_mul(axis_angle_quat(jp.array([0.0, 0.0, 1.0]) * angle), lay_flat(quat))


def roll_goal(quat: jax.Array, key: jax.Array) -> jax.Array:
    """`quat` laid flat, then rolled a quarter turn about one of its two horizontal axes (either
    way, chosen at random): one of the four neighbouring faces comes on top."""
    flat = lay_flat(quat)
    axes = jax.vmap(lambda v: quat_rotate(flat, v))(jp.eye(3))
    horizontal = jp.argsort(jp.abs(axes[:, 2]))[:2]  # the two cube axes lying flat
    key_axis, key_sign = jax.random.split(key)
    axis = axes[horizontal[jax.random.randint(key_axis, (), 0, 2)]]
    axis = jp.where(jax.random.bernoulli(key_sign), axis, -axis)
    return quat_mul(axis_angle_quat(axis * (math.pi / 2)), flat)


def goal_transition(
    cube_quat: jax.Array,
    goal: jax.Array,
    prev_error: jax.Array,
    successes: jax.Array,
    candidate: jax.Array,
    threshold: float,
) -> dict[str, jax.Array]:
    """One step of the goal logic, pure (no physics).

    The error is measured against the goal of this step: `progress` = prev_error - error [rad]
    and `success` = error < threshold. On a success the goal becomes `candidate`, the success
    count grows by one, and the next step's progress is measured from the error to the new goal
    (so drawing a new goal is never a penalty).
    """
    error = orientation_error(cube_quat, goal)
    success = error < threshold
    new_goal = jp.where(success, candidate, goal)
    return {
        "error": error,
        "progress": prev_error - error,
        "success": success,
        "successes": successes + success,
        "goal": new_goal,
        "prev_error": jp.where(success, orientation_error(cube_quat, new_goal), error),
    }


class HandReorient(HandCubeEnv):
    """Reorient the cube to a stream of random goals on the palm of the 16-DoF hand."""

    EVAL_REPORT = EvalReport(
        termination="drop",
        step_means=(
            ("orientation_error", "reorient/orientation_error", "orientation error [rad]"),
        ),
        episode_counts=(("consecutive_successes", "reorient/success", "successes per episode"),),
    )

    def __init__(self, config: HandReorientConfig = HandReorientConfig()):
        super().__init__(config)

    @property
    def OBSERVATION_LAYOUT(self) -> tuple[tuple[str, int], ...]:  # the name export.py reads
        return (
            *self.proprio_layout(),
            ("cube_pos", 3),
            ("cube_quat", 4),
            ("goal_quat", 4),
            ("goal_relative", 4),
        )

    def observation_definitions(self) -> dict[str, dict]:
        return {
            **super().observation_definitions(),
            **self.cube_definitions(),
            "goal_quat": {
                "kind": "goal_quat",
                "units": "1 (w, x, y, z)",
                "frame": "world",
                "definition": "the cube orientation to reach, the sign chosen so that w >= 0",
            },
            "goal_relative": {
                "kind": "goal_relative",
                "units": "1 (w, x, y, z)",
                "frame": "world",
                "definition": "goal_quat * conj(cube_quat) (Hamilton product, the observed "
                "cube_quat), the sign chosen so that w >= 0",
            },
        }

    # ------------------------------------------------------------------------------ reset
    def reset(self, key: jax.Array) -> State:
        key_q, key_dr, key_goal, key_obs, key = jax.random.split(key, 5)
        params = self.sample_params(key_dr)
        data = self.initial_data(key_q, params)
        goal = self.sample_goal(self.cube_pose(data)[1], key_goal)
        data = data.replace(mocap_quat=data.mocap_quat.at[self.goal_mocap].set(goal))
        info = self.initial_info(key, params, data)
        info.update(
            goal=goal,
            prev_error=orientation_error(self.cube_pose(data)[1], goal),
            successes=jp.zeros(()),
        )
        metrics = {f"reward/{name}": jp.zeros(()) for name in self.reward_names}
        metrics.update(
            {"reorient/success": jp.zeros(()), "reorient/orientation_error": jp.zeros(())}
        )
        obs = self.observation(data, info, key_obs)
        return State(data, obs, jp.zeros(()), jp.zeros(()), metrics, info)

    def sample_goal(self, cube_quat: jax.Array, key: jax.Array) -> jax.Array:
        """The next goal: upright with probability `upright_goals`, one roll away with
        probability `roll_goals`, else any orientation."""
        c = self.config
        key_kind, key_upright, key_any = jax.random.split(key, 3)
        key_roll = jax.random.fold_in(key_any, 1)  # the other kinds' draws stay as they were
        u = jax.random.uniform(key_kind)
        goal = random_quat(key_any)
        # The shares are static: a kind with none is not computed in the jitted step.
        if c.roll_goals > 0:
            roll = roll_goal(cube_quat, key_roll)
            goal = jp.where(u < c.upright_goals + c.roll_goals, roll, goal)
        if c.upright_goals > 0:
            upright = upright_goal(cube_quat, key_upright, c.success_threshold)
            goal = jp.where(u < c.upright_goals, upright, goal)
        return goal

    # ------------------------------------------------------------------------------- step
    def after_physics(self, state: State, data: mjx.Data, action: jax.Array) -> State:
        c = self.config
        action = jp.clip(action, -1.0, 1.0)
        info = dict(state.info)
        key, key_goal, key_obs = jax.random.split(info["rng"], 3)
        goal = goal_transition(
            self.cube_pose(data)[1],
            info["goal"],
            info["prev_error"],
            info["successes"],
            self.sample_goal(self.cube_pose(data)[1], key_goal),
            c.success_threshold,
        )
        success = goal["success"].astype(jp.float32)
        terms = {
            "orientation_progress": goal["progress"] / c.ctrl_dt,
            "success": success,
            "action_rate": jp.sum((action - info["last_action"]) ** 2),
            "joint_velocity": jp.sum(data.qvel[:NUM_JOINTS] ** 2),
        }
        terms, reward, dropped = self.score(terms, data, info)

        data = data.replace(mocap_quat=data.mocap_quat.at[self.goal_mocap].set(goal["goal"]))
        info.update(
            rng=key,
            step=info["step"] + 1,
            last_action=action,
            goal=goal["goal"],
            prev_error=goal["prev_error"],
            successes=goal["successes"],
        )
        metrics = {f"reward/{k}": v for k, v in terms.items()}
        metrics["reorient/success"] = success
        metrics["reorient/orientation_error"] = goal["error"]
        obs = self.observation(data, info, key_obs)
        return state.replace(
            pipeline_state=data,
            obs=obs,
            reward=reward,
            done=dropped,
            metrics=metrics,
            info=info,
        )

    # ------------------------------------------------------------------------ observation
    reward_names = tuple(f.name for f in dataclasses.fields(RewardScales))

    def observation(self, data: mjx.Data, info: dict, key: jax.Array) -> dict[str, jax.Array]:
        """Actor and critic observations; the single definition used by training and replay."""
        key_proprio, key_cube = jax.random.split(key)
        state, clean = self.proprio(data, info, key_proprio)
        cube_pos, cube_quat = self.noisy_cube_pose(data, key_cube)
        goal = canonical(info["goal"])
        to_goal = canonical(quat_mul(info["goal"], quat_conj(cube_quat)))
        true_quat = self.cube_pose(data)[1]
        privileged = [
            *self.privileged_common(data, info, clean),
            goal,
            canonical(quat_mul(info["goal"], quat_conj(true_quat))),
            orientation_error(true_quat, info["goal"])[None],
        ]
        return {
            "state": jp.concatenate([state, cube_pos, cube_quat, goal, to_goal]),
            "privileged_state": jp.concatenate(privileged),
        }
