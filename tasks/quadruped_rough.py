"""Joystick locomotion on procedural terrain (`locomotion.terrain`): slopes, rough slopes,
stairs up and down and obstacles, in a grid of tiles whose rows are difficulty levels.

Each environment lives on one tile (level, column): it spawns on the tile's flat platform at a
random yaw, and when its episode ends the curriculum moves it (legged_gym's rule): one level up
if it walked farther than half a tile, one down if it walked less than half the distance its
commands asked for, and past the top level to a random level. The level survives automatic
resets (`restart`), so the curriculum works with the training wrapper's reset pool.

Observation ("state", 45 + 187): the joystick's, plus a height scan: 17 x 11 points on a grid
of 5 cm around the base (x +-0.4 m, y +-0.25 m; legged_gym's +-0.8 x +-0.5 m scaled to the
robot), aligned with the base's yaw, each `clip(base_z - h - scan_nominal, -1, 1)` [m] where h is
the terrain height under the point, read from the height array as MuJoCo's collider sees it
(`mjx.ray` does not see heightfields). The actor's scan has noise: a per-episode vertical
offset, per-point noise and dropouts (a dropped point reads as the deepest value, 1).
`height_scan=False` is the blind variant (the CaT paper's Solo-12 runs blind).
Critic ("privileged_state"): the joystick's, plus the clean scan.

Only the feet collide with the terrain; knees and base touching it are read from the height
array (no contact pairs), and end the episode as on flat ground.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jp
import numpy as np
from mujoco import mjx

from locomotion import terrain as terrain_lib
from locomotion.envs import State
from locomotion.replay import LOCOMOTION_REPORT
from locomotion.tasks.quadruped_joystick import (
    QuadrupedJoystick,
    QuadrupedJoystickConfig,
    RewardScales,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RoughRewardScales(RewardScales):
    """The joystick's reward terms plus a swing-height term for the terrain."""

    orientation: float = 0.0
    """Off on terrain (legged_gym's rough setting; its flat one, like our joystick, is -5): a
    robot on a stair flight pitches by the flight's grade, about 20 degrees on 6 cm rises and
    16 cm treads, which -5 charged 0.6 per step, a third of the best tracking reward."""
    feet_clearance: float = -0.5
    """Per foot, |height above the terrain under it - swing_height| x sqrt(horizontal speed):
    a foot that moves is rewarded for moving at the swing height (MuJoCo Playground's Go1
    `feet_clearance`, weight -2 there). At -2 here, with the joystick's other penalties, a
    policy trained from scratch had a shaped reward near 0 (clipped at 0) and learned to stand
    (tracking error 0.49 m/s at 0.5 m/s after 350 iterations)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuadrupedRoughConfig(QuadrupedJoystickConfig):
    scene: str = "rough"
    action_scale: float = 0.5
    """[rad] per unit action. The joystick's 0.3 lets a foot rise at most 5.5 cm above its
    standing height (both joints at the end of their +-0.3 rad, body at its home height): not
    enough for the terrain's 6-10 cm stairs, on which policies trained with it stalled. 0.5
    allows 10.9 cm."""
    rewards: RoughRewardScales = RoughRewardScales()
    swing_height: float = 0.08
    """[m] the feet_clearance term's target foot height above the terrain under the foot
    (the top stair rise of the default terrain is 10 cm)."""
    vx_range: tuple[float, float] = (0.0, 1.0)
    vy_range: tuple[float, float] = (-0.3, 0.3)
    """Forward-biased commands (the joystick's: vx -0.6 to 1, vy +-0.5): on 2 CPU cores a run
    sees about 10 M steps (legged_gym trains ANYmal's rough policy on about 150 M), spent on
    walking forward across terrain rather than backing up stairs. At 100 iterations of the
    joystick's ranges the stairs-up envs sank to level 0.3 while the same policy, commanded
    forward, crossed every level-0 stairs-up tile in native MuJoCo."""
    resample_seconds: float = 10.0
    heading_command: bool = True
    """Commands hold a heading (legged_gym's heading commands): each resample draws a heading
    in [-pi, pi] besides vx and vy, and every step the yaw-rate command steers toward it,
    clip(heading_gain x heading error, yaw_range). The robot then walks straight, across its
    tile, as the curriculum's promotion (half a tile from the spawn point) needs: with the
    joystick's random yaw rates, held 5 s, the paths curled and even flat tiles were rarely
    crossed. A zero command stays zero. The policy still sees (vx, vy, yaw rate)."""
    heading_gain: float = 0.5
    """[1/s] yaw-rate command per radian of heading error."""
    terrain: terrain_lib.TerrainConfig = terrain_lib.TerrainConfig()
    terrain_seed: int = 0
    """The terrain is generated from this seed (replay rebuilds it from policy.json)."""
    height_scan: bool = True
    """Give the actor the height scan; False: the blind variant (the critic keeps it)."""
    scan_points: tuple[int, int] = (17, 11)
    """Scan grid points along the base's x and y."""
    scan_spacing: float = 0.05
    """Spacing of the scan grid [m]."""
    scan_nominal: float = 0.25
    """Base height above flat ground the scan is relative to [m]."""
    scan_noise: float = 0.01
    """Per-point Gaussian noise of the actor's scan [m] (times obs_noise)."""
    scan_offset_noise: float = 0.02
    """Half range of the per-episode vertical offset of the actor's scan [m] (times obs_noise)."""
    scan_dropout: float = 0.02
    """Probability that a point of the actor's scan reads 1 (no return) (times obs_noise)."""
    curriculum: bool = True
    """Move environments between levels at episode ends; False: levels stay where spawned."""
    max_init_level: int = 3
    """Environments start on a level drawn uniformly in [0, max_init_level]."""
    level: int | None = None
    """Pin every episode to this level (evaluation); None: the curriculum's levels."""
    terrain_type: str | None = None
    """Pin every episode to a column of this type (evaluation); None: any column."""
    spawn_spread: float = 0.1
    """Half range of the spawn position around the tile centre [m] (inside the platform)."""
    spawn_clearance: float = 0.003
    """Lowest foot's height above the terrain at spawn, at least [m]."""

    def __post_init__(self):
        super().__post_init__()
        t = self.terrain
        if not 0 <= self.max_init_level < t.num_levels:
            raise ValueError(f"max_init_level must be in [0, {t.num_levels - 1}]")
        if self.level is not None and not 0 <= self.level < t.num_levels:
            raise ValueError(f"level must be in [0, {t.num_levels - 1}]")
        if self.terrain_type is not None and self.terrain_type not in t.column_types():
            raise ValueError(
                f"terrain_type {self.terrain_type!r} is not in this terrain's columns "
                f"{sorted(set(t.column_types()))}"
            )
        if min(self.scan_points) < 1 or self.scan_spacing <= 0:
            raise ValueError("scan_points must be >= 1 and scan_spacing positive")
        if not 0 <= self.scan_dropout < 1:
            raise ValueError("scan_dropout must be in [0, 1)")
        if not 0 <= self.spawn_spread < t.platform_size / 2:
            raise ValueError("spawn_spread must be in [0, platform_size / 2)")


class QuadrupedRough(QuadrupedJoystick):
    """Velocity-command tracking on terrain, with a terrain curriculum and a height scan."""

    # Evaluations add the share of episodes that crossed their tile (`crossed_mean`): pinned
    # to one type and level (`--env.terrain-type stairs_up --env.level 5`), the success rate.
    EVAL_REPORT = dataclasses.replace(
        LOCOMOTION_REPORT,
        episode_counts=(
            ("crossed", "terrain/crossed", "tile crossed (share of episodes)"),
            ("fell_on_tile", "terrain/fell_on_tile", "fell before crossing (share)"),
        ),
        episode_shares=("crossed", "fell_on_tile"),
    )

    def __init__(self, config: QuadrupedRoughConfig = QuadrupedRoughConfig()):
        self.terrain = terrain_lib.generate(config.terrain, config.terrain_seed)
        super().__init__(config)
        t = self.terrain
        self.heights = jp.asarray(t.heights, jp.float32)
        self.tile_centers = jp.asarray(t.tile_centers(), jp.float32)  # [levels, columns, 2]
        types = config.terrain.column_types()
        self.column_type = np.array([terrain_lib.TYPES.index(k) for k in types])
        allowed = [
            j
            for j, k in enumerate(types)
            if config.terrain_type is None or k == config.terrain_type
        ]
        self.allowed_columns = jp.asarray(allowed, jp.int32)
        nx, ny = config.scan_points
        gx = (np.arange(nx) - (nx - 1) / 2) * config.scan_spacing
        gy = (np.arange(ny) - (ny - 1) / 2) * config.scan_spacing
        self.scan_grid = jp.asarray(np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2))
        # Metrics and scales follow the config's reward terms (CaT's tracking-only ones too).
        self.reward_names = tuple(f.name for f in dataclasses.fields(config.rewards))

    def scene_edit(self, config):
        return lambda spec: terrain_lib.add_to_spec(spec, self.terrain)

    @property
    def num_scan_points(self) -> int:
        return int(np.prod(self.config.scan_points))

    # --------------------------------------------------------------------------------- terrain
    def ground(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """Terrain height [m] under world (x, y)."""
        t = self.terrain
        return terrain_lib.height_at(self.heights, t.origin, t.cell, x, y, xp=jp)

    def spawn(self, qpos: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        c = self.config
        key_level, key_col, key_xy, key_yaw, key_off = jax.random.split(key, 5)
        if c.level is not None:
            level = jp.asarray(c.level, jp.int32)
        else:
            level = jax.random.randint(key_level, (), 0, c.max_init_level + 1)
        column = jax.random.choice(key_col, self.allowed_columns)
        offset = jax.random.uniform(key_xy, (2,), minval=-c.spawn_spread, maxval=c.spawn_spread)
        yaw = jax.random.uniform(key_yaw, minval=-jp.pi, maxval=jp.pi)
        qpos = self.lift_to_clearance(self.place(qpos, level, column, offset, yaw))
        info = {
            "terrain_level": level,
            "terrain_column": column,
            "spawn_xy": qpos[:2],
            "commanded_distance": jp.zeros(()),
            "crossed": jp.zeros((), bool),
            "scan_offset": jax.random.uniform(key_off, minval=-1.0, maxval=1.0)
            * c.scan_offset_noise,
        }
        return qpos, info

    def place(self, qpos, level, column, offset, yaw=None) -> jax.Array:
        """`qpos` moved to tile (level, column) + offset, raised by the ground height there
        (the keyframe stands on z = 0; every platform is at 0, so the feet stay just above)."""
        xy = self.tile_centers[level, column] + offset
        qpos = qpos.at[:2].set(xy).at[2].add(self.ground(xy[0], xy[1]))
        if yaw is not None:
            qpos = qpos.at[3:7].set(jp.array([jp.cos(yaw / 2), 0.0, 0.0, jp.sin(yaw / 2)]))
        return qpos

    def lift_to_clearance(self, qpos: jax.Array) -> jax.Array:
        """`qpos` raised where the initial joint noise put a foot below `spawn_clearance` above
        the terrain (the feet from the kinematics alone: the reset's one forward pass follows,
        and no randomized field moves a foot)."""
        data = mjx.kinematics(self.mjx_model, self.make_data().replace(qpos=qpos))
        lowest = jp.min(self.foot_heights(data))
        return qpos.at[2].add(jp.maximum(0.0, self.config.spawn_clearance - lowest))

    def next_level(self, info: dict, xy: jax.Array, key: jax.Array) -> jax.Array:
        """The curriculum's level for the next episode of an env whose episode ended at `xy`."""
        c, t = self.config, self.config.terrain
        level = info["terrain_level"]
        if not c.curriculum or c.level is not None:
            return level
        walked = jp.linalg.norm(xy - info["spawn_xy"])
        up = walked > t.tile_size / 2
        down = (walked < 0.5 * info["commanded_distance"]) & ~up
        level = level + up.astype(jp.int32) - down.astype(jp.int32)
        past_top = level >= t.num_levels
        random_level = jax.random.randint(key, (), 0, t.num_levels)
        return jp.where(past_top, random_level, jp.maximum(level, 0))

    def restart(self, ended: State, fresh: State) -> State:
        """The next episode keeps the ended one's column and takes the curriculum's level: the
        fresh state moves to that tile. Its observation is recomputed there (the scan)."""
        info = dict(fresh.info)
        key_level, key_obs = jax.random.split(jax.random.fold_in(info["rng"], 3))
        data = ended.pipeline_state
        level = self.next_level(ended.info, data.qpos[:2], key_level)
        column = ended.info["terrain_column"]
        old_center = self.tile_centers[info["terrain_level"], info["terrain_column"]]
        offset = fresh.pipeline_state.qpos[:2] - old_center
        qpos = fresh.pipeline_state.qpos.at[2].add(-self.ground(*fresh.pipeline_state.qpos[:2]))
        qpos = self.place(qpos, level, column, offset)
        new = fresh.pipeline_state.replace(qpos=qpos)
        info.update(terrain_level=level, terrain_column=column, spawn_xy=qpos[:2])
        obs = self.observation(new, info, key_obs)
        return fresh.replace(pipeline_state=new, obs=obs, info=info)

    # ----------------------------------------------------------------------------------- step
    def steer(self, info: dict, data: mjx.Data, resampled: jax.Array, key: jax.Array) -> dict:
        """Heading commands (`heading_command`): the yaw-rate command turns toward the held
        heading, redrawn with each command."""
        c = self.config
        if not c.heading_command or c.fixed_command is not None:
            return info
        drawn = jax.random.uniform(jax.random.fold_in(key, 5), minval=-jp.pi, maxval=jp.pi)
        heading = jp.where(resampled, drawn, info.get("heading", drawn))
        turn = heading - base_yaw(data.qpos[3:7])
        error = jp.arctan2(jp.sin(turn), jp.cos(turn))
        rate = jp.clip(c.heading_gain * error, *c.yaw_range)
        moving = jp.any(info["command"][:2] != 0.0)
        command = info["command"].at[2].set(jp.where(moving, rate, 0.0))
        return {**info, "command": command, "heading": heading}

    def after_physics(self, state: State, data: mjx.Data, action: jax.Array) -> State:
        nstate = super().after_physics(state, data, action)
        c = self.config
        info = dict(nstate.info)
        cmd = state.info["command"]
        info["commanded_distance"] = (
            state.info["commanded_distance"] + jp.linalg.norm(cmd[:2]) * c.ctrl_dt
        )
        # Success on a tile: the robot got farther than half a tile from its spawn point (it
        # left the tile's terrain behind), counted once per episode.
        far = jp.linalg.norm(data.qpos[:2] - info["spawn_xy"]) > c.terrain.tile_size / 2
        crossed_now = far & ~state.info["crossed"]
        info["crossed"] = state.info["crossed"] | far
        metrics = dict(nstate.metrics)
        metrics.update(self.terrain_metrics(info))
        metrics["terrain/crossed"] = crossed_now * 1.0
        # A fall on the tile, before the robot crossed it (a fall after crossing is on a
        # neighbouring tile, whose edge can be a cliff: not this tile's failure).
        metrics["terrain/fell_on_tile"] = nstate.done * (1.0 - state.info["crossed"])
        return nstate.replace(info=info, metrics=metrics)

    def terrain_metrics(self, info: dict) -> dict[str, jax.Array]:
        """terrain/level_mean and, per terrain type, the mean level of the envs on it (each
        env reports level / share of columns of its type; the batch mean is the type's mean
        when envs are spread over columns uniformly, as spawns are)."""
        level = info["terrain_level"].astype(jp.float32)
        out = {"terrain/level_mean": level}
        kind = jp.asarray(self.column_type)[info["terrain_column"]]
        shares = np.bincount(self.column_type, minlength=len(terrain_lib.TYPES)) / len(
            self.column_type
        )
        for k, name in enumerate(terrain_lib.TYPES):
            if shares[k] > 0:
                out[f"terrain/level_{name}"] = level * (kind == k) / shares[k]
        return out

    def reset(self, key: jax.Array) -> State:
        """The joystick's reset on a tile (`spawn`), with the terrain metrics."""
        state = super().reset(key)
        metrics = {**state.metrics, **self.terrain_metrics(state.info)}
        metrics["terrain/crossed"] = jp.zeros(())
        metrics["terrain/fell_on_tile"] = jp.zeros(())
        return state.replace(metrics=metrics)

    # ---------------------------------------------------------------------------- observation
    def height_scan(self, data: mjx.Data) -> jax.Array:
        """clip(base_z - h - scan_nominal, -1, 1) on the yaw-aligned grid [num_scan_points]."""
        base = data.qpos[:3]
        yaw = base_yaw(data.qpos[3:7])
        cos, sin = jp.cos(yaw), jp.sin(yaw)
        gx, gy = self.scan_grid[:, 0], self.scan_grid[:, 1]
        x = base[0] + cos * gx - sin * gy
        y = base[1] + sin * gx + cos * gy
        return jp.clip(base[2] - self.ground(x, y) - self.config.scan_nominal, -1.0, 1.0)

    def observation(self, data: mjx.Data, info: dict, key: jax.Array) -> dict[str, jax.Array]:
        obs = super().observation(data, info, key)
        c = self.config
        scan = self.height_scan(data)
        out = {"privileged_state": jp.concatenate([obs["privileged_state"], scan])}
        if not c.height_scan:
            return {**out, "state": obs["state"]}
        key_noise, key_drop = jax.random.split(jax.random.fold_in(key, 11))
        scale = self.noise_scale(info)
        noisy = scan + scale * (
            info["scan_offset"] + c.scan_noise * jax.random.normal(key_noise, scan.shape)
        )
        dropped = jax.random.uniform(key_drop, scan.shape) < c.scan_dropout * scale
        noisy = jp.clip(jp.where(dropped, 1.0, noisy), -1.0, 1.0)
        return {**out, "state": jp.concatenate([obs["state"], noisy])}

    @property
    def OBSERVATION_LAYOUT(self):  # noqa: N802  (the joystick's, then the scan)
        layout = super().OBSERVATION_LAYOUT
        if self.config.height_scan:
            layout = (*layout, ("height_scan", self.num_scan_points))
        return layout

    # -------------------------------------------------------------------------------- rewards
    def reward_terms(self, data, action, info, first_contact) -> dict[str, jax.Array]:
        terms = super().reward_terms(data, action, info, first_contact)
        if "feet_clearance" in self.reward_names:
            speed = jp.linalg.norm(self.foot_velocities(data)[:, :2], axis=-1)
            height = self.foot_heights(data)
            terms["feet_clearance"] = jp.sum(
                jp.abs(height - self.config.swing_height) * jp.sqrt(speed)
            )
        return terms

    def foot_heights(self, data: mjx.Data) -> jax.Array:
        """Foot spheres' lowest points above the terrain under their centres [m, 4]."""
        p = data.geom_xpos[self.foot_geoms]
        return p[:, 2] - self.foot_radius - self.ground(p[:, 0], p[:, 1])

    def observation_definitions(self) -> dict[str, dict]:
        c = self.config
        nx, ny = c.scan_points
        return {
            **super().observation_definitions(),
            "height_scan": {
                "kind": "height_scan",
                "points": [nx, ny],
                "spacing": c.scan_spacing,
                "nominal": c.scan_nominal,
                "clip": [-1.0, 1.0],
                "terrain_geom_groups": [0],  # the robot's geoms are in group 2
                "units": "m",
                "frame": "base position (free joint qpos[0:3]), rotated by the base's yaw only",
                "order": "x-major: point i_x * ny + i_y sits at x = (i_x - (nx - 1) / 2) * "
                "spacing forward, y = (i_y - (ny - 1) / 2) * spacing left",
                "definition": "clip(base_z - h - nominal, -1, 1), h the terrain height under "
                "the point (a vertical ray from above, e.g. mj_ray onto the terrain geoms)",
                "training_noise": {
                    "offset_per_episode": c.scan_offset_noise * c.obs_noise,
                    "per_point_std": c.scan_noise * c.obs_noise,
                    "dropout_to_1": c.scan_dropout * c.obs_noise,
                    "clean_episode_share": c.clean_obs_share,
                },
            },
        }

    # ------------------------------------------------------------------------------- contacts
    def knee_heights(self, data: mjx.Data) -> jax.Array:
        """Knee spheres' lowest points above the terrain under them [m]."""
        p = data.geom_xpos[self.knee_geoms]
        return p[:, 2] - self.knee_radius - self.ground(p[:, 0], p[:, 1])

    def fallen(self, data: mjx.Data) -> jax.Array:
        """A corner of the base box or a knee touches the terrain, or the robot is upside
        down (corners over the terrain under them: the base has no contact pair)."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        local = signs * self.base_half_size  # [8, 3]
        corners = data.geom_xpos[self.base_geom] + local @ data.geom_xmat[self.base_geom].T
        base_low = jp.min(corners[:, 2] - self.ground(corners[:, 0], corners[:, 1])) < 0.005
        knee_low = jp.any(self.knee_heights(data) < 0.002)
        upside_down = self.projected_gravity(data)[2] > 0.0
        return base_low | knee_low | upside_down


def base_yaw(q: jax.Array) -> jax.Array:
    """Yaw [rad] of a (w, x, y, z) unit quaternion: the heading of its x axis."""
    return jp.arctan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2))
