"""In-hand rotation: keep the cube turning about the vertical axis (counter-clockwise seen from
above) while it rests on the palm, without dropping it.

Observation ("state", 32 * history = 96): per frame, newest first, joint positions minus default
(16, noisy) and the last action (16). The actor sees no cube state: it turns the cube by feel.
Critic ("privileged_state", 83): clean joint positions and last action, joint velocities, cube
position (relative to the palm centre) and quaternion, cube linear and angular velocity (world),
fingertip positions, fingertip touch, and the episode's randomized physics (hand_common.py).
Action (16): joint position targets around the default grasp (hand_common.py), 20 Hz.
Termination: the cube drops (its centre below the palm's top face) or moves more than
`max_cube_distance` from where it started.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jp
from mujoco import mjx

from locomotion.envs import State
from locomotion.replay import EvalReport
from locomotion.tasks.hand_common import HandConfig, HandCubeEnv, yaw_turned


@dataclasses.dataclass(frozen=True, kw_only=True)
class RewardScales:
    """Weight of each reward term (0 switches a term off). The sum is multiplied by ctrl_dt."""

    # The yaw rate is the cube's turn about the vertical over the control step, measured from
    # its orientation: a first policy trained on the sampled angular velocity learned to make
    # the cube vibrate (positive at every sample) without turning it.
    yaw_rate: float = 1.0  # per rad/s the cube turned about world z in the step (capped)
    cube_drift: float = -10.0  # per m the cube is from where it started
    # Small on purpose: with -0.05 / W and -0.01 the first run (1M steps) learned to hold the
    # cube still, cutting energy and action rate, and never found a rotating gait.
    energy: float = -0.005  # per W of servo power
    action_rate: float = -0.002  # per squared change of the action
    termination: float = -50.0  # once, when the cube drops (-2.5 at 20 Hz)


@dataclasses.dataclass(frozen=True, kw_only=True)
class HandRotateZConfig(HandConfig):
    """Task settings: the shared hand settings (hand_common.HandConfig) plus these."""

    max_yaw_rate: float = 1.0  # [rad/s] the yaw-rate reward is capped at this (no flicking)
    rewards: RewardScales = RewardScales()

    def __post_init__(self):
        super().__post_init__()
        if self.max_yaw_rate <= 0:
            raise ValueError("max_yaw_rate must be positive")


class HandRotateZ(HandCubeEnv):
    """Rotate the cube about world z on the palm of the 16-DoF hand."""

    EVAL_REPORT = EvalReport(
        termination="drop",
        step_means=(("cube_yaw_rate", "cube/yaw_rate", "cube yaw rate [rad/s]"),),
    )

    def __init__(self, config: HandRotateZConfig = HandRotateZConfig()):
        super().__init__(config)

    @property
    def OBSERVATION_LAYOUT(self) -> tuple[tuple[str, int], ...]:  # the name export.py reads
        return self.proprio_layout()

    # ------------------------------------------------------------------------------ reset
    def reset(self, key: jax.Array) -> State:
        key_q, key_dr, key_obs, key = jax.random.split(key, 4)
        params = self.sample_params(key_dr)
        data = self.initial_data(key_q, params)
        # No goal in this task: the ghost cube goes under the floor, out of the videos.
        data = data.replace(mocap_pos=data.mocap_pos.at[:, 2].set(-1.0))
        info = self.initial_info(key, params, data)
        info["cube_quat"] = self.cube_pose(data)[1]  # last step's orientation, for the yaw rate
        metrics = {f"reward/{name}": jp.zeros(()) for name in self.reward_names}
        metrics.update({"cube/yaw_rate": jp.zeros(()), "cube/drift": jp.zeros(())})
        obs = self.observation(data, info, key_obs)
        return State(data, obs, jp.zeros(()), jp.zeros(()), metrics, info)

    # ------------------------------------------------------------------------------- step
    def after_physics(self, state: State, data: mjx.Data, action: jax.Array) -> State:
        action = jp.clip(action, -1.0, 1.0)
        info = dict(state.info)
        key, key_obs = jax.random.split(info["rng"])
        cube_quat = self.cube_pose(data)[1]
        yaw_rate = yaw_turned(info["cube_quat"], cube_quat) / self.config.ctrl_dt
        terms = self.reward_terms(data, action, info, yaw_rate)
        terms, reward, dropped = self.score(terms, data, info)
        info.update(rng=key, step=info["step"] + 1, last_action=action, cube_quat=cube_quat)
        metrics = {f"reward/{k}": v for k, v in terms.items()}
        metrics["cube/yaw_rate"] = yaw_rate
        metrics["cube/drift"] = terms["cube_drift"]
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
    def observation(self, data: mjx.Data, info: dict, key: jax.Array) -> dict[str, jax.Array]:
        """Actor and critic observations; the single definition used by training and replay."""
        state, clean = self.proprio(data, info, key)
        privileged = self.privileged_common(data, info, clean)
        return {"state": state, "privileged_state": jp.concatenate(privileged)}

    # ---------------------------------------------------------------------------- rewards
    reward_names = tuple(f.name for f in dataclasses.fields(RewardScales))

    def reward_terms(
        self, data: mjx.Data, action: jax.Array, info: dict, yaw_rate: jax.Array
    ) -> dict[str, jax.Array]:
        """Unscaled reward terms, one small expression each (termination added by the caller);
        `yaw_rate` [rad/s] is the cube's turn about world z over this control step."""
        c = self.config
        return {
            # Capped above only: a turn back always costs in full. With a symmetric clip a
            # policy turned the cube forward slowly and snapped it back in one step (+0.45
            # reward per step, net rotation 0).
            "yaw_rate": jp.minimum(yaw_rate, c.max_yaw_rate),
            "cube_drift": jp.linalg.norm(self.cube_pose(data)[0] - info["cube_start"]),
            "energy": self.energy(data),
            "action_rate": jp.sum((action - info["last_action"]) ** 2),
        }
