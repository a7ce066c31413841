"""Procedural terrain for the legged tasks: a grid of tiles (rows = difficulty levels, columns =
terrain types) generated with numpy from a seed, built into the scene as one MuJoCo heightfield.

The layout follows legged_gym (Rudin et al., CoRL 2021) scaled to a Solo-12-class robot, about
0.45x ANYmal's size: 4 m tiles (legged_gym 8 m), 4 cm cells (10 cm), stair treads 0.16 m on
rises of 2-10 cm (0.31 m treads, 5-23 cm rises), obstacles of 2-11 cm (5-25 cm), rough-slope
noise +-2 cm (+-5 cm); slopes are angles and keep legged_gym's 0.4 x difficulty gradient.
Every tile has a flat spawn platform at its centre; the stairs and slopes are square pyramids
around it, so a robot that leaves the platform in any direction meets the tile's terrain.

Heights are in metres in an array `heights[row, col]`, rows along y and columns along x (as
MuJoCo's `hfield_data`); `height_at` interpolates them exactly as MuJoCo's heightfield collider
triangulates each cell (the diagonal from the cell's lower-left to upper-right corner), so a
height read from the array is the height a foot or `mj_ray` meets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import mujoco
import numpy as np

TYPES = ("flat", "slope", "rough_slope", "stairs_up", "stairs_down", "obstacles")
"""Terrain types. stairs_up: the platform is the bottom and the steps rise away from it;
stairs_down: the platform is the top. slope, rough_slope: the platform is the top of a square
pyramid (downhill away from it). Every tile's outer edge is at height 0."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TerrainConfig:
    """A grid of `num_levels` rows (difficulty 0 to 1) by `num_columns` columns of square
    tiles; each column's type is drawn by `proportions`. Lengths in metres."""

    tile_size: float = 4.0
    """Side of a square tile [m]."""
    cell_size: float = 0.04
    """Heightfield grid spacing [m]: the resolution of step edges (a step's riser is one cell
    wide). Finer cells let a 1.75 cm foot sphere touch several cell triangles at once, which
    made standing on flat ground jitter in C MuJoCo at 2 cm (3 solver iterations)."""
    num_levels: int = 10
    """Rows of the grid; row i has difficulty i / (num_levels - 1)."""
    num_columns: int = 10
    """Columns of the grid; their types follow `proportions` in TYPES order."""
    proportions: tuple[float, ...] = (0.1, 0.1, 0.1, 0.3, 0.25, 0.15)
    """Share of columns of each type, in TYPES order (flat, slope, rough_slope, stairs_up,
    stairs_down, obstacles); normalized."""
    platform_size: float = 1.0
    """Side of the flat spawn platform at each tile's centre [m]."""
    slope_max: float = 0.4
    """Gradient (rise / run) of the slopes at difficulty 1; difficulty d gives d x this."""
    step_height: tuple[float, float] = (0.02, 0.10)
    """Stair rise at difficulty 0 and 1 [m] (linear in between)."""
    step_width: float = 0.16
    """Stair tread [m] (a whole number of cells keeps every tread equal)."""
    obstacle_height: tuple[float, float] = (0.02, 0.11)
    """Obstacle height at difficulty 0 and 1 [m]: blocks rise or sink by up to this."""
    obstacle_size: tuple[float, float] = (0.2, 0.45)
    """Side range of the rectangular obstacles [m]."""
    obstacles_per_tile: int = 20
    rough_noise: float = 0.02
    """Half range of the uniform height noise of rough slopes [m]."""
    rough_scale: float = 0.08
    """Spacing of the rough noise's control points [m] (bilinear in between)."""
    border: float = 10.0
    """Flat margin around the grid [m], at height 0. Past it the heightfield ends and a robot
    falls off the world: a heading is held 10 s at up to 1 m/s, so a robot leaving an edge
    tile's platform outward needs about 10 m (with 1 m, 2-3 of 20 ten-second episodes at 0.5 m/s
    on an all-flat grid ended in such a fall; legged_gym's border is 25 m for its 8 m tiles)."""

    def __post_init__(self):
        checks = {
            "tile_size must be positive": self.tile_size > 0,
            "cell_size must be positive and below tile_size / 10": 0
            < self.cell_size
            <= self.tile_size / 10,
            "num_levels and num_columns must be >= 1": self.num_levels >= 1
            and self.num_columns >= 1,
            f"proportions needs {len(TYPES)} non-negative values ({', '.join(TYPES)}) "
            "with a positive sum": len(self.proportions) == len(TYPES)
            and min(self.proportions) >= 0
            and sum(self.proportions) > 0,
            "platform_size must be in (0, tile_size)": 0 < self.platform_size < self.tile_size,
            "step_width must be positive": self.step_width > 0,
            "step_height, obstacle_height and obstacle_size need 0 <= low <= high": all(
                len(r) == 2 and 0 <= r[0] <= r[1]
                for r in (self.step_height, self.obstacle_height, self.obstacle_size)
            ),
            "slope_max, rough_noise and border must be >= 0": min(
                self.slope_max, self.rough_noise, self.border
            )
            >= 0,
            "rough_scale must be >= cell_size": self.rough_scale >= self.cell_size,
            "tile_size must be an even number of cells and border a whole number": _whole(
                self.tile_size / (2 * self.cell_size)
            )
            and _whole(self.border / self.cell_size),
        }
        bad = [msg for msg, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid TerrainConfig: " + "; ".join(bad))

    def column_types(self) -> tuple[str, ...]:
        """The type of each column: column j takes the first type whose cumulative proportion
        exceeds (j + 0.5) / num_columns."""
        cum = np.cumsum(self.proportions) / np.sum(self.proportions)
        picks = [
            int(np.searchsorted(cum, (j + 0.5) / self.num_columns, side="right"))
            for j in range(self.num_columns)
        ]
        return tuple(TYPES[min(k, len(TYPES) - 1)] for k in picks)

    def difficulty(self, level: int) -> float:
        return level / max(self.num_levels - 1, 1)

    def step_rise(self, level: int) -> float:
        lo, hi = self.step_height
        return lo + (hi - lo) * self.difficulty(level)

    def describe(self, kind: str, level: int) -> str:
        """What a tile of this type and level holds, in a few words ("rise 6.4 cm")."""
        d = self.difficulty(level)
        if kind.startswith("stairs"):
            return f"rise {100 * self.step_rise(level):.1f} cm"
        if kind in ("slope", "rough_slope"):
            return f"grade {self.slope_max * d:.2f}"
        if kind == "obstacles":
            lo, hi = self.obstacle_height
            return f"blocks {100 * (lo + (hi - lo) * d):.1f} cm"
        return "flat"

    def sha256(self) -> str:
        """Hash of this config (every field)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-6


@dataclasses.dataclass(frozen=True)
class Terrain:
    """Generated heights and the grid's geometry. World x runs along columns, y along rows;
    tile (level, column) is centred at `tile_center(level, column)`; levels grow along x."""

    config: TerrainConfig
    seed: int
    heights: np.ndarray  # [rows (y), cols (x)] [m]
    origin: tuple[float, float]  # world (x, y) of heights[0, 0]

    @property
    def cell(self) -> float:
        return self.config.cell_size

    @property
    def extent(self) -> tuple[float, float]:
        """Size of the heightfield along x and y [m]."""
        rows, cols = self.heights.shape
        return (cols - 1) * self.cell, (rows - 1) * self.cell

    def tile_center(self, level, column):
        """World (x, y) of a tile's centre (arrays broadcast)."""
        c = self.config
        x = c.border + (np.asarray(level) + 0.5) * c.tile_size + self.origin[0]
        y = c.border + (np.asarray(column) + 0.5) * c.tile_size + self.origin[1]
        return x, y

    def tile_centers(self) -> np.ndarray:
        """[num_levels, num_columns, 2] world (x, y) of every tile's centre."""
        lv, col = np.meshgrid(
            np.arange(self.config.num_levels), np.arange(self.config.num_columns), indexing="ij"
        )
        return np.stack(self.tile_center(lv, col), axis=-1)

    def height_at(self, x, y, xp: Any = np):
        """Terrain height [m] at world (x, y), interpolated on MuJoCo's triangle split of
        each cell; outside the grid, the edge height. `xp`: numpy or jax.numpy."""
        return height_at(xp.asarray(self.heights), self.origin, self.cell, x, y, xp)

    def identity(self) -> dict:
        """What policy.json records so that replay can rebuild and check the terrain: the
        seed, the config's hash and the generated heights' hash (which also changes if the
        generator's code does)."""
        return {
            "seed": self.seed,
            "config_sha256": self.config.sha256(),
            "heights_sha256": hashlib.sha256(
                np.ascontiguousarray(self.heights).tobytes()
            ).hexdigest(),
        }


def height_at(heights, origin, cell: float, x, y, xp: Any = np):
    """`Terrain.height_at` on a bare array (for jitted code: `xp=jax.numpy`)."""
    rows, cols = heights.shape
    u = (x - origin[0]) / cell
    v = (y - origin[1]) / cell
    u = xp.clip(u, 0.0, cols - 1.0)
    v = xp.clip(v, 0.0, rows - 1.0)
    c0 = xp.clip(xp.floor(u).astype(np.int32), 0, cols - 2)
    r0 = xp.clip(xp.floor(v).astype(np.int32), 0, rows - 2)
    fu, fv = u - c0, v - r0
    h00 = heights[r0, c0]
    h10 = heights[r0, c0 + 1]  # +x
    h01 = heights[r0 + 1, c0]  # +y
    h11 = heights[r0 + 1, c0 + 1]
    lower = h00 + fu * (h10 - h00) + fv * (h11 - h10)  # fu >= fv: corners 00, 10, 11
    upper = h00 + fv * (h01 - h00) + fu * (h11 - h01)  # fu < fv: corners 00, 01, 11
    return xp.where(fu >= fv, lower, upper)


def generate(config: TerrainConfig, seed: int) -> Terrain:
    """The terrain of `config` and `seed` (numpy only, deterministic)."""
    c = config
    rng = np.random.default_rng(seed)
    n_tile = int(round(c.tile_size / c.cell_size))
    n_border = int(round(c.border / c.cell_size))
    rows = c.num_columns * n_tile + 2 * n_border + 1  # y
    cols = c.num_levels * n_tile + 2 * n_border + 1  # x
    heights = np.zeros((rows, cols))
    types = c.column_types()
    for level in range(c.num_levels):
        for column in range(c.num_columns):
            tile = _tile(c, types[column], level, rng, n_tile)
            r0 = n_border + column * n_tile
            c0 = n_border + level * n_tile
            heights[r0 : r0 + n_tile + 1, c0 : c0 + n_tile + 1] = tile
    # The grid's centre sits at the world origin.
    origin = (-(cols - 1) * c.cell_size / 2, -(rows - 1) * c.cell_size / 2)
    return Terrain(config=c, seed=seed, heights=heights, origin=origin)


def _tile(c: TerrainConfig, kind: str, level: int, rng, n: int) -> np.ndarray:
    """Heights of one tile, (n + 1) x (n + 1) points, its outer edge at height 0 (as in
    legged_gym): tiles meet without a step, so a robot that crosses its tile walks on instead
    of off a cliff. The platform sits where the type puts it: a stairs-up platform is a pit,
    a stairs-down or slope platform a summit."""
    d = c.difficulty(level)
    coords = (np.arange(n + 1) - n / 2) * c.cell_size  # tile-local, centre at 0
    xx, yy = np.meshgrid(coords, coords)  # [row=y, col=x]
    # Distance outside the platform along the square "rings" (Chebyshev distance).
    ring = np.maximum(np.maximum(np.abs(xx), np.abs(yy)) - c.platform_size / 2, 0.0)
    edge = ring.max()
    if kind == "flat":
        return np.zeros_like(xx)
    if kind in ("slope", "rough_slope"):
        h = c.slope_max * d * (edge - ring)
        if kind == "rough_slope":
            h = h + _smooth_noise(c, rng, n) * ((ring > 0) & (ring < edge - 1e-9))
        return h
    if kind in ("stairs_up", "stairs_down"):
        rise = c.step_rise(level)
        steps = np.ceil(ring / c.step_width - 1e-9)  # 0 on the platform, 1 on the first tread
        top = np.ceil(edge / c.step_width - 1e-9)  # the tread at the edge
        return (steps - top) * rise * (1.0 if kind == "stairs_up" else -1.0)
    if kind == "obstacles":
        h = np.zeros_like(xx)
        lo, hi = c.obstacle_height
        height = lo + (hi - lo) * d
        half = c.tile_size / 2
        for _ in range(c.obstacles_per_tile):
            sx, sy = rng.uniform(*c.obstacle_size, size=2)
            cx, cy = rng.uniform(-half, half - sx), rng.uniform(-half, half - sy)
            inside = (xx >= cx) & (xx < cx + sx) & (yy >= cy) & (yy < cy + sy)
            h[inside] = rng.choice([-height, height])
        h[ring <= 0] = 0.0  # keep the platform clear
        return h
    raise ValueError(f"unknown terrain type {kind!r}; known: {', '.join(TYPES)}")


def _smooth_noise(c: TerrainConfig, rng, n: int) -> np.ndarray:
    """Uniform noise in [-rough_noise, rough_noise] on control points every rough_scale,
    bilinear in between; (n + 1) x (n + 1) points."""
    k = max(int(round(c.rough_scale / c.cell_size)), 1)
    m = n // k + 2
    coarse = rng.uniform(-c.rough_noise, c.rough_noise, size=(m, m))
    t = np.arange(n + 1) / k
    i0 = np.floor(t).astype(int)
    f = t - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def add_to_spec(spec: mujoco.MjSpec, terrain: Terrain, name: str = "terrain") -> None:
    """Give the scene's heightfield asset `name` the terrain's grid and heights. The scene
    declares the asset and the geom using it (robots/quadruped/scene_rough.xml); MuJoCo
    stores heights normalized to [0, 1] times size[2], so the geom sits at the lowest height."""
    rows, cols = terrain.heights.shape
    low, high = float(terrain.heights.min()), float(terrain.heights.max())
    span = max(high - low, 1e-6)
    hfield = spec.hfield(name)
    if hfield is None:
        raise ValueError(f"the scene declares no heightfield {name!r}")
    ex, ey = terrain.extent
    hfield.nrow, hfield.ncol = rows, cols
    # size: x and y half-extents, elevation range, depth of the solid base below the lowest point.
    hfield.size = [ex / 2, ey / 2, span, 0.1]
    hfield.userdata = ((terrain.heights - low) / span).ravel().tolist()
    geoms = [
        g for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_HFIELD and g.hfieldname == name
    ]
    if not geoms:
        raise ValueError(f"the scene has no geom using heightfield {name!r}")
    for geom in geoms:
        geom.pos = [terrain.origin[0] + ex / 2, terrain.origin[1] + ey / 2, low]
