"""Grid maps of the SubRL worlds: layouts, deterministic transitions, footprints, densities, items.

A map has ``N = rows * cols`` cells; cell ``n`` is ``(row, col) = (n // cols, n % cols)`` (the
authors' node numbering). Actions follow the authors' tabular code: 0 stay, 1 col+1, 2 row+1,
3 col-1, 4 row-1; a move off the grid or into a wall is a self-loop.

A visited cell *covers* a ``block x block`` square whose top-left corner is the cell (the authors'
2x2 "small disc"; ``block=3`` is their "large disc"), clipped at the border and with wall cells
removed. Footprints are stored as a padded ``(N, block**2)`` int array (``-1`` pads), so the numba
kernels touch O(block**2) entries per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morl.assets import asset_path

__all__ = [
    "ACTIONS",
    "GridMap",
    "make_map",
    "bimodal_density",
    "gorilla_like_density",
    "load_gorilla_density",
    "place_items",
    "gp_posterior_covariance",
    "ASSETS_DIR",
]

#: (d_row, d_col) of each action: stay, right, down, left, up (authors' order).
ACTIONS = np.array([[0, 0], [0, 1], [1, 0], [0, -1], [-1, 0]], dtype=np.int64)

ASSETS_DIR = asset_path("coverage")

LAYOUTS = ("open", "two_rooms")


@dataclass(frozen=True)
class GridMap:
    """A grid layout with its transition table and coverage footprints.

    :param rows: grid rows.
    :param cols: grid columns.
    :param walls: bool ``(N,)``, True where a cell is a wall.
    :param transitions: int64 ``(N, 5)``: next cell for each action.
    :param footprint: int64 ``(N, block**2)``: cells a visit covers, ``-1`` padded.
    """

    rows: int
    cols: int
    walls: np.ndarray
    transitions: np.ndarray
    footprint: np.ndarray

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols

    def cell(self, row: int, col: int) -> int:
        return int(row) * self.cols + int(col)

    def coords(self) -> np.ndarray:
        """``(N, 2)`` float (row, col) of every cell."""
        n = np.arange(self.n_cells)
        return np.stack([n // self.cols, n % self.cols], axis=1).astype(np.float64)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _two_rooms_walls(rows: int, cols: int) -> np.ndarray:
    # The authors' building map (7 x 14): rooms in cols 0-3 and 10-13, joined by a corridor in rows 2-3.
    # Scaled to other sizes: rooms take the outer ~2/7 of the columns, the corridor 2 rows at ~1/3 height.
    if rows < 3 or cols < 5:
        raise ValueError(f"layout 'two_rooms' needs a grid of at least 3 x 5, got {rows} x {cols}")
    room = max(1, round(cols * 4 / 14))
    c0, c1 = room, cols - room
    r0 = max(0, min(rows - 2, round(rows * 2 / 7)))
    walls = np.zeros((rows, cols), dtype=bool)
    walls[:, c0:c1] = True
    walls[r0:r0 + 2, c0:c1] = False
    return walls.ravel()


def make_map(rows: int = 30, cols: int = 30, layout: str = "open", block: int = 2) -> GridMap:
    """Build a :class:`GridMap`.

    :param rows: grid rows (>= 1).
    :param cols: grid columns (>= 1).
    :param layout: ``"open"`` or ``"two_rooms"``.
    :param block: side of the square a visit covers (>= 1).
    """
    rows = _check_positive_int("rows", rows)
    cols = _check_positive_int("cols", cols)
    block = _check_positive_int("block", block)
    if layout == "open":
        walls = np.zeros(rows * cols, dtype=bool)
    elif layout == "two_rooms":
        walls = _two_rooms_walls(rows, cols)
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    n = rows * cols
    r, c = np.divmod(np.arange(n), cols)
    transitions = np.empty((n, len(ACTIONS)), dtype=np.int64)
    for a, (dr, dc) in enumerate(ACTIONS):
        nr, nc = r + dr, c + dc
        inside = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
        nxt = np.where(inside, np.clip(nr, 0, rows - 1) * cols + np.clip(nc, 0, cols - 1), np.arange(n))
        nxt = np.where(walls[nxt] | walls, np.arange(n), nxt)  # walls are self-loops
        transitions[:, a] = nxt
    footprint = -np.ones((n, block * block), dtype=np.int64)
    for i in range(n):
        if walls[i]:
            continue
        cells = [
            (r[i] + dr) * cols + c[i] + dc
            for dr in range(block)
            for dc in range(block)
            if r[i] + dr < rows and c[i] + dc < cols and not walls[(r[i] + dr) * cols + c[i] + dc]
        ]
        footprint[i, : len(cells)] = cells
    return GridMap(rows, cols, walls, transitions, footprint)


def bimodal_density(rows: int, cols: int) -> np.ndarray:
    """The authors' "bimodal" weights ``w = 1 / (1 + exp(-x y))`` on ``x, y = linspace(-1, 1)``."""
    x = np.linspace(-1.0, 1.0, rows)[:, None]
    y = np.linspace(-1.0, 1.0, cols)[None, :]
    return (1.0 / (1.0 + np.exp(-x * y))).ravel()


def gorilla_like_density(rows: int = 30, cols: int = 30, seed: int = 7) -> np.ndarray:
    """A synthetic nest-intensity map in the spirit of the Kagwene gorilla data (our own construction).

    The original fitted intensity (spatstat ``gorillas``) has an unclear licence, so we ship a
    stand-in: nests cluster in a few elongated patches along a ridge, over a low background. Mixture
    of anisotropic Gaussian bumps, scaled to ``[0.05, 1]``.

    :param rows: grid rows.
    :param cols: grid columns.
    :param seed: random seed of the cluster layout.
    """
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    dens = np.zeros((rows, cols))
    # A diagonal "ridge" along which clusters sit, plus two isolated patches.
    for k in range(7):
        t = rng.uniform(-0.8, 0.8)
        cx, cy = t + rng.normal(0, 0.08), 0.6 * t - 0.1 + rng.normal(0, 0.08)
        ang = rng.uniform(0, np.pi)
        sx, sy = rng.uniform(0.06, 0.14), rng.uniform(0.12, 0.25)
        u = np.cos(ang) * (x - cx) + np.sin(ang) * (y - cy)
        v = -np.sin(ang) * (x - cx) + np.cos(ang) * (y - cy)
        dens += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    for cx, cy in ((-0.6, 0.65), (0.7, -0.6)):
        dens += 0.6 * np.exp(-0.5 * (((x - cx) / 0.1) ** 2 + ((y - cy) / 0.1) ** 2))
    dens = (dens - dens.min()) / (dens.max() - dens.min())
    return (0.05 + 0.95 * dens).ravel()


def load_gorilla_density(rows: int = 30, cols: int = 30) -> np.ndarray:
    """The shipped gorilla-nest-like density (``assets/coverage/gorilla_like_density.npy``).

    Other grid sizes are resampled bilinearly; a missing asset is regenerated (same generator).
    """
    path = ASSETS_DIR / "gorilla_like_density.npy"
    base = np.load(path) if path.exists() else gorilla_like_density().reshape(30, 30)
    if base.shape == (rows, cols):
        return base.ravel().astype(np.float64)
    from scipy.interpolate import RegularGridInterpolator

    f = RegularGridInterpolator((np.linspace(0, 1, base.shape[0]), np.linspace(0, 1, base.shape[1])), base)
    yy, xx = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    return f(np.stack([yy.ravel(), xx.ravel()], axis=1)).astype(np.float64)


def place_items(n_cells: int, counts, seed: int, walls: np.ndarray | None = None) -> np.ndarray:
    """Item type of every cell (``-1`` none): ``counts[k]`` distinct random free cells get type ``k``.

    Defaults in the envs follow the authors' "steiner covering" task (6 types, counts 18, 14, 13, 16,
    18, 14 on a 7 x 15 grid); cells are drawn without replacement so each cell holds at most one item.
    """
    counts = np.asarray(counts, dtype=np.int64)
    free = np.flatnonzero(~walls) if walls is not None else np.arange(n_cells)
    if counts.sum() > len(free):
        raise ValueError(f"item counts sum to {int(counts.sum())} but the grid has only {len(free)} free cells")
    rng = np.random.default_rng(seed)
    cells = rng.choice(free, size=int(counts.sum()), replace=False)
    types = -np.ones(n_cells, dtype=np.int64)
    types[cells] = np.repeat(np.arange(len(counts)), counts)
    return types


def _matern52(d: np.ndarray, lengthscale: float) -> np.ndarray:
    z = np.sqrt(5.0) * d / lengthscale
    return (1.0 + z + z * z / 3.0) * np.exp(-z)


def gp_posterior_covariance(coords: np.ndarray, lengthscale: float = 1.0, noise: float = 1e-3,
                            n_pseudo: int = 5, seed: int = 0) -> np.ndarray:
    """Matérn-5/2 GP covariance over the cells, conditioned on ``n_pseudo`` random pseudo-observations.

    Follows the authors' experiment-design task (Matérn-5/2, lengthscale 1, coordinates ``0.1 * (row,
    col)``, noise 1e-3, 5 pseudo-observations); conditioning makes the prior variance vary over the
    grid, so the modular baseline's per-state reward is not a constant.
    """
    x = 0.1 * coords
    k = _matern52(np.linalg.norm(x[:, None] - x[None], axis=-1), lengthscale)
    if n_pseudo > 0:
        rng = np.random.default_rng(seed)
        p = rng.uniform(x.min(0), x.max(0), size=(n_pseudo, x.shape[1]))
        kxp = _matern52(np.linalg.norm(x[:, None] - p[None], axis=-1), lengthscale)
        kpp = _matern52(np.linalg.norm(p[:, None] - p[None], axis=-1), lengthscale) + noise * np.eye(n_pseudo)
        k = k - kxp @ np.linalg.solve(kpp, kxp.T)
    return 0.5 * (k + k.T)
