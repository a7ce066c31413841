"""The terrain generator against its config, heights read from the array against C `mj_ray`,
and MJX against native MuJoCo on the heightfield."""

import dataclasses

import jax
import jax.numpy as jp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from locomotion import terrain as T
from locomotion.envs import jit_brief
from locomotion.robots import QUADRUPED, load_model

SMALL = T.TerrainConfig(
    num_levels=3,
    num_columns=len(T.TYPES),
    proportions=(1.0,) * len(T.TYPES),  # one column of each type
    tile_size=2.0,
    border=0.4,
)


@pytest.fixture(scope="module")
def small():
    return T.generate(SMALL, seed=3)


def tile_profile(terrain, level, kind, offsets):
    """Heights along +x from the centre of the tile of `kind` at `level`."""
    column = terrain.config.column_types().index(kind)
    cx, cy = terrain.tile_center(level, column)
    return terrain.height_at(cx + np.asarray(offsets), np.full(len(offsets), cy))


def test_columns_follow_the_proportions():
    assert SMALL.column_types() == T.TYPES
    cfg = T.TerrainConfig(num_columns=20, proportions=(0, 0, 0, 0.5, 0.5, 0))
    assert cfg.column_types() == ("stairs_up",) * 10 + ("stairs_down",) * 10


@pytest.mark.parametrize("kind, sign", [("stairs_up", 1.0), ("stairs_down", -1.0)])
def test_stairs_have_the_configured_rise_and_tread(small, kind, sign):
    c = small.config
    half = c.platform_size / 2
    for level in range(c.num_levels):
        rise = c.step_rise(level)
        # The middle of tread k (k = 1, 2, ...) lies k - 1/2 treads beyond the platform.
        k = np.arange(1, int((c.tile_size / 2 - half) / c.step_width))
        mids = half + (k - 0.5) * c.step_width
        platform = tile_profile(small, level, kind, [0.0, 0.3, half - 0.03])
        np.testing.assert_allclose(platform, platform[0])  # flat
        np.testing.assert_allclose(
            tile_profile(small, level, kind, mids) - platform[0], sign * k * rise, atol=1e-12
        )
    assert c.step_rise(0) == c.step_height[0] and c.step_rise(c.num_levels - 1) == c.step_height[1]
    # The default terrain: level 5 of 10 is the first with a rise of 6 cm or more.
    default = T.TerrainConfig()
    assert [default.describe(kind, 5) for kind in ("stairs_up", "slope", "flat")] == [
        "rise 6.4 cm",
        "grade 0.22",
        "flat",
    ]
    assert default.step_rise(4) < 0.06 <= default.step_rise(5)


def test_slopes_fall_away_from_the_platform_at_the_configured_gradient(small):
    c = small.config
    x = np.array([0.6, 0.8])  # beyond the 0.5 m half-platform
    for level in range(c.num_levels):
        h = tile_profile(small, level, "slope", x)
        gradient = (h[0] - h[1]) / (x[1] - x[0])
        assert gradient == pytest.approx(c.slope_max * c.difficulty(level), abs=1e-9)
        rough = tile_profile(small, level, "rough_slope", np.linspace(0.6, 0.9, 16))
        smooth = tile_profile(small, level, "slope", np.linspace(0.6, 0.9, 16))
        assert np.abs(rough - smooth).max() <= c.rough_noise + 1e-9
    assert np.abs(rough - smooth).max() > 0.2 * c.rough_noise  # the noise is there


def test_tiles_meet_at_height_zero(small):
    """Every tile's outer edge is at 0, so crossing a tile never ends at a cliff; inside, the
    stairs-up platform is a pit and the stairs-down and slope platforms are summits."""
    c = small.config
    n = int(round(c.tile_size / c.cell_size))
    for column, kind in enumerate(c.column_types()):
        for level in range(c.num_levels):
            r0 = int(round((c.border + column * c.tile_size) / c.cell_size))
            c0 = int(round((c.border + level * c.tile_size) / c.cell_size))
            tile = small.heights[r0 : r0 + n + 1, c0 : c0 + n + 1]
            edges = np.concatenate([tile[0], tile[-1], tile[:, 0], tile[:, -1]])
            if kind != "obstacles":  # blocks may lie across an edge
                np.testing.assert_allclose(edges, 0.0, atol=1e-12, err_msg=f"{kind} {level}")
            centre = tile[n // 2, n // 2]
            if level > 0 and kind == "stairs_up":
                assert centre < 0
            if level > 0 and kind in ("stairs_down", "slope", "rough_slope"):
                assert centre > 0


def test_obstacles_and_flat(small):
    c = small.config
    column = c.column_types().index("obstacles")
    level = c.num_levels - 1
    r0 = int(round((c.border + column * c.tile_size) / c.cell_size))
    c0 = int(round((c.border + level * c.tile_size) / c.cell_size))
    n = int(round(c.tile_size / c.cell_size))
    tile = small.heights[r0 : r0 + n + 1, c0 : c0 + n + 1]
    assert set(np.unique(np.round(tile, 9))) <= {-0.11, 0.0, 0.11}
    assert (tile != 0).mean() > 0.1
    flat = c.column_types().index("flat")
    r0 = int(round((c.border + flat * c.tile_size) / c.cell_size))
    assert not small.heights[r0 + 1 : r0 + n].any()  # its edge rows are shared with neighbours


def test_seeded_generation():
    a, b, other = T.generate(SMALL, 3), T.generate(SMALL, 3), T.generate(SMALL, 4)
    assert np.array_equal(a.heights, b.heights) and a.identity() == b.identity()
    assert not np.array_equal(a.heights, other.heights) and a.identity() != other.identity()
    changed = T.generate(dataclasses.replace(SMALL, step_width=0.2), 3)
    assert changed.identity()["config_sha256"] != a.identity()["config_sha256"]
    assert changed.identity()["heights_sha256"] != a.identity()["heights_sha256"]


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="proportions needs 6"):
        T.TerrainConfig(proportions=(1.0, 1.0))
    with pytest.raises(ValueError, match="platform_size must be in"):
        T.TerrainConfig(platform_size=5.0)
    with pytest.raises(ValueError, match="even number of cells"):
        T.TerrainConfig(tile_size=4.02)
    with pytest.raises(ValueError, match="step_height"):
        T.TerrainConfig(step_height=(0.1, 0.05))


@pytest.fixture(scope="module")
def rough_model(small):
    return load_model(QUADRUPED, "rough", lambda spec: T.add_to_spec(spec, small))


def test_height_from_the_array_is_what_mj_ray_meets(small, rough_model):
    """`height_at` (numpy and jax) against C mj_ray straight down onto the heightfield, at
    random points over every tile type and on step edges."""
    m = rough_model
    d = mujoco.MjData(m)
    d.qpos[:3] = [0.0, 0.0, -50.0]  # the robot out of the way
    mujoco.mj_forward(m, d)
    rng = np.random.default_rng(0)
    ex, ey = small.extent
    x = small.origin[0] + rng.uniform(0, ex, 400)
    y = small.origin[1] + rng.uniform(0, ey, 400)
    geomid = np.zeros(1, np.int32)
    ray = np.array(
        [
            5.0
            - mujoco.mj_ray(
                m, d, np.array([xi, yi, 5.0]), np.array([0, 0, -1.0]), None, 1, -1, geomid
            )
            for xi, yi in zip(x, y, strict=True)
        ]
    )
    np.testing.assert_allclose(small.height_at(x, y), ray, atol=1e-6)
    got = jax.jit(lambda x, y: small.height_at(x, y, xp=jp))(x, y)
    np.testing.assert_allclose(np.asarray(got), ray, atol=1e-4)  # float32 coordinates


_STEPPERS = {}


def stepper(m):
    """50 mjx.step calls, compiled once per model (for a brief run: a few calls)."""
    if id(m) not in _STEPPERS:
        mx = mjx.put_model(m)
        run = jit_brief(lambda dx: jax.lax.fori_loop(0, 50, lambda _, s: mjx.step(mx, s), dx))
        _STEPPERS[id(m)] = (mx, run)
    return _STEPPERS[id(m)]


def divergence(m, place, rng) -> tuple[float, float]:
    """Max |MJX - C| of joint angles [rad] and base position [m] after 50 physics steps from
    the same in-contact state and controls: the robot placed by `place(d)`, lowered to 5 mm
    above the ground under its feet, joints perturbed and settled for 100 C steps."""
    feet = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, g) for g in QUADRUPED.foot_geoms]
    d = mujoco.MjData(m)
    mujoco.mj_resetDataKeyframe(m, d, 0)
    ground = place(d)
    mujoco.mj_forward(m, d)
    xy = d.geom_xpos[feet]
    d.qpos[2] += np.max(ground(xy[:, 0], xy[:, 1]) - (xy[:, 2] - 0.0175)) + 0.005
    d.qpos[7:] += rng.uniform(-0.05, 0.05, 12)
    d.ctrl[:] = d.qpos[7:]
    for _ in range(100):  # settle into contact
        mujoco.mj_step(m, d)
    assert d.ncon >= 2, "the feet should touch the ground"
    d.ctrl[:] = d.qpos[7:] + rng.uniform(-0.1, 0.1, 12)
    mx, run = stepper(m)
    # The state, not the contact list: C MuJoCo keeps every heightfield prism a foot touches
    # (several per foot), MJX at most 4 per pair; both recompute contacts on the next step.
    dx = mjx.make_data(mx).replace(
        qpos=jp.array(d.qpos), qvel=jp.array(d.qvel), ctrl=jp.array(d.ctrl), time=d.time
    )
    dx = run(dx)
    for _ in range(50):
        mujoco.mj_step(m, d)
    joints = float(np.abs(np.asarray(dx.qpos[7:]) - d.qpos[7:]).max())
    base = float(np.abs(np.asarray(dx.qpos[:3]) - d.qpos[:3]).max())
    return joints, base


def test_mjx_matches_native_mujoco_on_the_heightfield(small, rough_model):
    """Stepped 50 steps from the same perturbed in-contact state, MJX and C MuJoCo stay
    together on the heightfield. With the solver converged (5 Newton iterations) they agree on
    the plane to about 1e-5 rad, and on the heightfield's flat tile nearly as well; on uneven
    cells C keeps every prism a foot touches and MJX at most 4 contacts per pair, so they drift
    there (measured: 2e-5, 2e-4, 5e-4, ~1e-3 and 0.039 rad over flat, rough slope, stairs up
    and down, obstacles; mean 0.008 rad and 1 mm), still less than the plane drifted at the
    former 3 iterations (0.08 rad, 6 mm)."""
    rng = np.random.default_rng(1)
    plane = load_model(QUADRUPED, "flat")
    ref_joints, ref_base = divergence(plane, lambda d: lambda x, y: 0.0 * x, rng)
    c = small.config
    errors = []
    for kind, level, dx in [
        ("flat", 0, 0.0),
        ("rough_slope", 2, 0.7),
        ("stairs_up", 1, 0.55),
        ("stairs_down", 2, 0.55),
        ("obstacles", 2, 0.7),
    ]:
        cx, cy = small.tile_center(level, c.column_types().index(kind))

        def place(d, cx=cx, cy=cy, dx=dx):
            d.qpos[:2] = cx + dx, cy
            return small.height_at

        errors.append(divergence(rough_model, place, rng))
    joints, base = np.mean(errors, axis=0)
    assert ref_joints < 1e-4 and ref_base < 1e-4, (ref_joints, ref_base)  # the plane
    assert errors[0][0] < 1e-3, errors  # the flat tile: the same contacts as the plane
    assert joints < 0.05 and base < 0.005, errors
    assert np.max(errors) < 0.3  # nothing fell through the terrain
