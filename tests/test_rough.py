"""quadruped_rough: spawn on the terrain, the curriculum rule and its survival across automatic
resets, the height scan against C `mj_ray`, randomized steps, and the blind variant."""

import dataclasses
import types

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from locomotion import registry
from locomotion.envs import TrainingWrapper, jit_brief
from locomotion.tasks.quadruped_rough import QuadrupedRough, QuadrupedRoughConfig

SHORT = QuadrupedRoughConfig(
    episode_seconds=0.1, fixed_command=(0.5, 0.0, 0.0), max_init_level=6, clean_obs_share=0.5
)
"""Episodes of 5 steps that ask for 0.5 m/s: too short to walk half of it, so every episode end
moves an env one level down (never below 0); physics randomization, pushes and noise on, in
half of the episodes (drawn per episode) clean observations."""


@pytest.fixture(scope="module")
def env():
    return registry.make("quadruped_rough")


@pytest.fixture(scope="module")
def rollout():
    """8 envs of SHORT in the training wrapper: the reset state, then 60 steps of random
    actions (12 automatic resets per env), checking at every step that the levels follow the
    curriculum, that restarted envs stand on their new tile (same column), observed there,
    and that observations stay finite: quadruped_rough's randomized steps (the blind variant,
    its class at the registered settings, steps 1000 times in tests/test_tasks.py), noisy in
    the episodes drawn noisy and clean (the critic's inputs) in the others."""
    env = QuadrupedRough(SHORT)
    wrapped = TrainingWrapper(env, 8)
    first = jit_brief(wrapped.reset)(jax.random.PRNGKey(1))
    step = jit_brief(wrapped.step)  # 60 steps: compiled for a brief run
    state = first
    columns = np.asarray(state.info["terrain_column"])
    level = np.asarray(state.info["terrain_level"])
    assert level.max() > 3
    ends = 0
    clean_draws = []
    for k in jax.random.split(jax.random.PRNGKey(2), 60):
        state = step(state, jax.random.uniform(k, (8, 12), minval=-1, maxval=1))
        assert np.isfinite(state.obs["state"]).all()
        actor, critic = np.asarray(state.obs["state"]), np.asarray(state.obs["privileged_state"])
        clean = np.asarray(state.info["obs_noise"]) == 0
        proprio_gap = np.abs(actor[:, :45] - critic[:, :45]).max(axis=1)
        scan_gap = np.abs(actor[:, 45:] - critic[:, -actor.shape[1] + 45 :]).max(axis=1)
        assert (proprio_gap[clean] < 1e-5).all() and (scan_gap[clean] < 1e-5).all()
        assert (proprio_gap[~clean] > 0.01).all() and (scan_gap[~clean] > 0.005).all()
        clean_draws.append(clean)
        done = np.asarray(state.done) > 0
        ends += done.sum()
        level = np.where(done, np.maximum(level - 1, 0), level)
        assert np.array_equal(state.info["terrain_level"], level)
        assert np.array_equal(state.info["terrain_column"], columns)
        if done.any():
            centers = env.tile_centers[level, columns]
            moved = np.abs(state.pipeline_state.qpos[:, :2] - centers).max(axis=1)
            assert (moved[done] <= SHORT.spawn_spread + 1e-5).all()
            scan = jax.vmap(env.height_scan)(state.pipeline_state)
            privileged = state.obs["privileged_state"][:, -scan.shape[1] :]
            np.testing.assert_allclose(privileged, scan, atol=1e-5)
    # The clean episodes are drawn anew at every automatic reset, in about half of them.
    flips = (np.diff(np.asarray(clean_draws), axis=0) != 0).sum()
    assert flips > 10 and 0.3 < np.mean(clean_draws) < 0.7
    return env, first, state, level, ends


def test_spawn_is_on_a_platform_above_the_local_terrain(rollout):
    env, first = rollout[:2]
    data, info = first.pipeline_state, first.info
    c = env.config
    assert set(np.unique(info["terrain_level"])) <= set(range(c.max_init_level + 1))
    assert len(np.unique(info["terrain_column"])) > 3  # spread over the columns
    centers = env.tile_centers[info["terrain_level"], info["terrain_column"]]
    assert np.abs(data.qpos[:, :2] - centers).max() <= c.spawn_spread + 1e-6
    feet = np.array([env.id("geom", g) for g in env.robot.foot_geoms])
    foot = data.geom_xpos[:, feet]  # [envs, 4, 3]
    ground = env.terrain.height_at(np.asarray(foot[..., 0]), np.asarray(foot[..., 1]))
    clearance = np.asarray(foot[..., 2]) - env.foot_radius - ground
    lowest = clearance.min(axis=1)  # the other feet sit higher by the initial joint noise
    assert lowest.min() >= c.spawn_clearance - 1e-5 and lowest.max() < 0.01, lowest
    yaws = 2 * np.arctan2(data.qpos[:, 6], data.qpos[:, 3])
    assert np.ptp(yaws) > 3.0  # random headings


def test_the_level_survives_automatic_resets(rollout):
    env, first, last, level, ends = rollout
    assert first.obs["state"].shape[-1] == 45 + 17 * 11
    assert ends >= 8 * 12 and level.max() == 0  # every env walked down to level 0


def test_blind_variant_has_the_same_task_without_the_scan(env):
    """quadruped_rough_blind: the actor sees the joystick's 45 entries, the critic keeps the
    scan (its reset, step and training wrapper, traced and stepped: tests/test_tasks.py)."""
    blind = registry.make("quadruped_rough_blind")
    assert blind.observation_size == {"state": 45, "privileged_state": 56 + 187}
    assert env.observation_size == {"state": 45 + 187, "privileged_state": 56 + 187}
    assert sum(n for _, n in env.OBSERVATION_LAYOUT) == 45 + 187
    assert [n for n, _ in blind.OBSERVATION_LAYOUT] == [
        n for n, _ in env.OBSERVATION_LAYOUT if n != "height_scan"
    ]


def test_curriculum_rule(env):
    t = env.config.terrain
    info = lambda level: {  # noqa: E731
        "terrain_level": jp.asarray(level),
        "spawn_xy": jp.zeros(2),
        "commanded_distance": jp.asarray(3.0),  # the commands asked for 3 m
    }
    key = jax.random.PRNGKey(0)
    half = t.tile_size / 2
    assert env.next_level(info(2), jp.array([half + 0.1, 0.0]), key) == 3  # crossed half a tile
    assert env.next_level(info(2), jp.array([0.0, 1.4]), key) == 1  # under half of 3 m
    assert env.next_level(info(2), jp.array([1.5, 1.2]), key) == 2  # 1.92 m: neither
    assert env.next_level(info(0), jp.array([0.1, 0.0]), key) == 0  # no level below 0
    top = [
        int(env.next_level(info(t.num_levels - 1), jp.array([half + 0.5, 0.0]), k))
        for k in jax.random.split(key, 30)
    ]
    assert min(top) >= 0 and max(top) < t.num_levels and len(set(top)) > 3  # random level
    pinned = QuadrupedRough(dataclasses.replace(env.config, curriculum=False))
    assert pinned.next_level(info(2), jp.array([half + 0.1, 0.0]), key) == 2


def test_heading_commands_steer_toward_the_held_heading(env):
    """The yaw-rate command turns the base toward the heading drawn with the command (the
    error wrapped to [-pi, pi], gain, clip to yaw_range); the heading holds between resamples;
    a zero command stays zero; pinned commands and heading_command=False are left alone."""
    c = env.config
    assert c.heading_command and c.rewards.orientation == 0.0
    key = jax.random.PRNGKey(4)

    def base(yaw):
        q = jp.array([jp.cos(yaw / 2), 0.0, 0.0, jp.sin(yaw / 2)])
        return types.SimpleNamespace(qpos=jp.zeros(19).at[3:7].set(q))  # all steer reads

    info = env.steer({"command": jp.array([0.5, 0.1, 0.0])}, base(0.0), jp.array(True), key)
    heading = float(info["heading"])
    assert -np.pi <= heading <= np.pi
    for yaw in (heading - 0.4, heading + 0.4, heading + np.pi - 0.1, heading - 3.0):
        out = env.steer(info, base(yaw), jp.array(False), jax.random.PRNGKey(9))
        assert float(out["heading"]) == pytest.approx(heading)  # held, not redrawn
        error = np.angle(np.exp(1j * (heading - yaw)))
        expected = np.clip(c.heading_gain * error, *c.yaw_range)
        assert float(out["command"][2]) == pytest.approx(expected, abs=1e-5)
        assert np.array_equal(out["command"][:2], info["command"][:2])
    still = env.steer({**info, "command": jp.zeros(3)}, base(heading + 1.0), jp.array(False), key)
    assert np.array_equal(still["command"], np.zeros(3))
    for config in (
        dataclasses.replace(c, fixed_command=(0.5, 0.0, 0.2)),
        dataclasses.replace(c, heading_command=False),
    ):
        other = QuadrupedRough.__new__(QuadrupedRough)
        other.config = config
        untouched = {"command": jp.array([0.5, 0.0, 0.2])}
        assert env.steer.__func__(other, untouched, base(1.0), jp.array(True), key) is untouched


def test_feet_clearance_reads_foot_speed_and_height_above_the_terrain(env):
    """The swing-height term's inputs: foot velocities from `cvel` against finite differences
    of the feet's positions in C MuJoCo, foot heights against the height array, on a stairs
    tile with a random joint and base velocity."""
    m = env.mj_model
    d = mujoco.MjData(m)
    column = env.config.terrain.column_types().index("stairs_up")
    rng = np.random.default_rng(3)
    d.qpos[:] = np.asarray(env.place(jp.asarray(m.key_qpos[0]), 7, column, jp.array([0.6, 0.2])))
    d.qvel[:] = rng.normal(size=m.nv)
    # Kinematics and velocities only: C may find more foot-terrain contacts than the 8 MJX
    # keeps, which put_data refuses; mjx.forward collides on its own.
    mujoco.mj_kinematics(m, d)
    mujoco.mj_comPos(m, d)
    mujoco.mj_comVel(m, d)
    data = jit_brief(mjx.forward)(mjx.put_model(m), mjx.put_data(m, d))
    eps = 1e-6
    moved = mujoco.MjData(m)
    moved.qpos[:] = d.qpos
    mujoco.mj_integratePos(m, moved.qpos, d.qvel, eps)
    mujoco.mj_kinematics(m, moved)
    finite = (moved.geom_xpos[env.foot_geoms] - d.geom_xpos[env.foot_geoms]) / eps
    np.testing.assert_allclose(env.foot_velocities(data), finite, atol=1e-4)
    feet = d.geom_xpos[env.foot_geoms]
    ground = env.terrain.height_at(feet[:, 0], feet[:, 1])
    assert np.ptp(ground) > 0  # the feet stand over different stairs
    np.testing.assert_allclose(
        env.foot_heights(data), feet[:, 2] - env.foot_radius - ground, atol=1e-5
    )
    assert "feet_clearance" in env.reward_names
    assert "feet_clearance" not in registry.make("quadruped_cat_rough").reward_names


def test_height_scan_matches_mj_ray(env):
    """The scan from the height array against C mj_ray onto the heightfield (robot geoms,
    group 2, left out) at random positions, heights and yaws over the terrain."""
    m = env.mj_model
    d = mujoco.MjData(m)
    rng = np.random.default_rng(0)
    scan = jax.jit(env.height_scan)
    groups = np.array([1, 0, 0, 0, 0, 0], np.uint8)  # the terrain only
    geomid = np.zeros(1, np.int32)
    ex, ey = env.terrain.extent
    for _ in range(20):
        x, y = np.asarray(env.terrain.origin) + rng.uniform(0.05, 0.95, 2) * (ex, ey)
        yaw = rng.uniform(-np.pi, np.pi)
        z = env.terrain.height_at(x, y) + rng.uniform(0.15, 0.4)
        d.qpos[:7] = [x, y, z, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        mujoco.mj_forward(m, d)
        rot = d.xmat[env.base_body].reshape(3, 3)
        expected = []
        for gx, gy in np.asarray(env.scan_grid):
            px, py, _ = d.qpos[:3] + rot @ np.array([gx, gy, 0.0])
            dist = mujoco.mj_ray(
                m, d, np.array([px, py, 5.0]), np.array([0, 0, -1.0]), groups, 1, -1, geomid
            )
            expected.append(np.clip(z - (5.0 - dist) - env.config.scan_nominal, -1, 1))
        got = scan(_data(env, d))
        np.testing.assert_allclose(np.asarray(got), expected, atol=2e-4)


def _data(env, d):
    from mujoco import mjx

    return mjx.make_data(env.mjx_model).replace(qpos=jp.asarray(d.qpos))


def test_native_replay_steps_the_task_on_the_heightfield(env):
    """C MuJoCo may keep more heightfield contacts than MJX's buffers hold (every cell prism a
    foot touches); native replay then hands the task a contact-free forward pass of the state
    with the native sensors. Where both are possible, that copy agrees with the full one in
    everything the task reads."""
    from locomotion.replay import NativeRunner

    runner = NativeRunner(QuadrupedRough(dataclasses.replace(env.config, randomize=False)))
    env = runner.env
    state = runner.reset(jax.random.PRNGKey(0))
    for _ in range(25):  # standing on a tile for 0.5 s, nominal physics
        state = runner.step(state, np.zeros(12))
    assert np.isfinite(state.obs["state"]).all() and state.done == 0
    assert runner.data.ncon > 0
    # Success on a tile: moved past half a tile from the spawn point, counted once.
    assert state.metrics["terrain/crossed"] == 0
    runner.data.qpos[0] += env.config.terrain.tile_size / 2 + 0.1
    state = runner.step(state, np.zeros(12))
    assert state.metrics["terrain/crossed"] == 1 and state.info["crossed"]
    state = runner.step(state, np.zeros(12))
    assert state.metrics["terrain/crossed"] == 0 and state.info["crossed"]
    full, bare = runner.to_mjx(), runner.to_mjx_without_contacts()
    for name in ("qpos", "qvel", "sensordata", "xpos", "geom_xpos", "site_xmat", "actuator_force"):
        np.testing.assert_allclose(
            getattr(bare, name), getattr(full, name), atol=1e-5, err_msg=name
        )


def test_cat_runs_on_the_terrain(env):
    """quadruped_cat_rough: CaT's commands, tracking-only reward and 11 constraints on the
    terrain with its scan; the CaT training wrapper traces over it (shapes only)."""
    from locomotion.cat import CaTWrapper, wrap_for_training

    rough = env
    env = registry.make("quadruped_cat_rough")
    cat = registry.make("quadruped_cat")
    assert [c.name for c in env.constraints] == [c.name for c in cat.constraints]
    assert env.config.vx_range == cat.config.vx_range and env.config.rewards == cat.config.rewards
    assert env.config.terrain == rough.config.terrain and env.config.scene == "rough"
    assert env.observation_size == rough.observation_size
    wrapped = wrap_for_training(env, 4)
    assert isinstance(wrapped, CaTWrapper)
    state = jax.eval_shape(wrapped.reset, jax.ShapeDtypeStruct((2,), jp.uint32))
    after = jax.eval_shape(wrapped.step, state, jax.ShapeDtypeStruct((4, 12), jp.float32))
    assert jax.tree.structure(after) == jax.tree.structure(state)
    assert "terrain/level_mean" in after.metrics and "cat/delta_mean" in after.metrics
