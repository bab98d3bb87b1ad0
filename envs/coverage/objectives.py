"""Submodular objectives F over sets of visited cells, with plain set-based reference evaluations.

Four families (all monotone submodular; the tests check both properties on random sets):

- ``coverage`` / ``weighted_coverage``: ``F(S) = sum_{n in U_{s in S} cover(s)} w(n)``, w >= 0;
- ``item_collection``: ``F(S) = sum_k min(|S cap items_k|, D_k)``;
- ``experiment_design``: ``F(S) = 1/2 logdet(I + K_SS / noise)`` (GP information gain, D-optimal design).

An :class:`Objective` holds the arrays the numba kernels need, :meth:`Objective.value` is the plain
reference (F recomputed from the set, as the authors' code does every step) and
:meth:`Objective.modular` is ``F({s})`` for every cell, the additive surrogate of the ModPO baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from morl.envs.coverage.maps import (
    GridMap,
    bimodal_density,
    gp_posterior_covariance,
    load_gorilla_density,
    place_items,
)

__all__ = ["OBJECTIVES", "Objective", "make_objective"]

OBJECTIVES = ("coverage", "weighted_coverage", "item_collection", "experiment_design")

#: The authors' item-collection instance: counts per type and demands (max F = 21).
ITEM_COUNTS = (18, 14, 13, 16, 18, 14)
ITEM_DEMANDS = (3, 2, 3, 4, 6, 3)


@dataclass
class Objective:
    """One submodular objective on a :class:`GridMap` (see module docstring).

    :param kind: ``"coverage"``, ``"items"`` or ``"design"`` (which kernel runs).
    :param name: objective name, also the env's ``objectives[0]``.
    :param grid: the map.
    """

    kind: str
    name: str
    grid: GridMap
    weights: np.ndarray | None = None
    item_type: np.ndarray | None = None
    demand: np.ndarray | None = None
    cov: np.ndarray | None = None
    noise: float = 1e-3
    cell_modular: np.ndarray = field(init=False)

    def __post_init__(self):
        n = self.grid.n_cells
        if self.kind == "coverage":
            fp = self.grid.footprint
            w = np.concatenate([self.weights, [0.0]])
            self.cell_modular = w[np.where(fp < 0, n, fp)].sum(axis=1)
        elif self.kind == "items":
            self.cell_modular = (self.item_type >= 0).astype(np.float64)
        elif self.kind == "design":
            self.cell_modular = 0.5 * np.log1p(np.diag(self.cov) / self.noise)
        else:
            raise ValueError(f"unknown objective kind {self.kind!r}")

    def value(self, cells) -> float:
        """Plain reference ``F(S)`` of the set of visited cells (duplicates ignored)."""
        s = np.unique(np.asarray(list(cells), dtype=np.int64))
        if s.size == 0:
            return 0.0
        if self.kind == "coverage":
            fp = self.grid.footprint[s].ravel()
            return float(self.weights[np.unique(fp[fp >= 0])].sum())
        if self.kind == "items":
            k = self.item_type[s]
            counts = np.bincount(k[k >= 0], minlength=len(self.demand))
            return float(np.minimum(counts, self.demand).sum())
        a = np.eye(s.size) + self.cov[np.ix_(s, s)] / self.noise
        return float(0.5 * np.linalg.slogdet(a)[1])

    def upper_bound(self, horizon: int) -> float:
        """A simple bound on ``F`` over ``horizon + 1`` visited cells, used only for reward scaling."""
        return float(np.sort(self.cell_modular)[::-1][: horizon + 1].sum())


def _density(density, grid: GridMap) -> np.ndarray:
    n = grid.n_cells
    if density is None or (isinstance(density, str) and density == "uniform"):
        w = np.ones(n)
    elif isinstance(density, str):
        if density == "bimodal":
            w = bimodal_density(grid.rows, grid.cols)
        elif density == "gorilla":
            w = load_gorilla_density(grid.rows, grid.cols)
        else:
            raise ValueError(f"unknown density {density!r}; expected 'uniform', 'bimodal', 'gorilla' or an array")
    else:
        w = np.asarray(density, dtype=np.float64)
        if w.shape not in ((n,), (grid.rows, grid.cols)):
            raise ValueError(f"density has shape {w.shape} but the grid is {grid.rows} x {grid.cols} "
                             f"(expected ({grid.rows}, {grid.cols}) or ({n},))")
        w = w.ravel().copy()
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("density must be finite and >= 0 (F must be monotone)")
    w = w.copy()
    w[grid.walls] = 0.0
    return w


def make_objective(name: str, grid: GridMap, density=None, instance: int = 0, item_counts=ITEM_COUNTS,
                   item_demands=ITEM_DEMANDS, lengthscale: float = 1.0, noise: float = 1e-3,
                   n_pseudo: int = 5) -> Objective:
    """Build an objective by name.

    :param name: one of :data:`OBJECTIVES`.
    :param grid: the map.
    :param density: weights of ``weighted_coverage``: ``"bimodal"``, ``"gorilla"``, ``"uniform"`` or an
        array of shape ``(rows, cols)`` / ``(N,)``.
    :param instance: seed of the random parts (item placement, GP pseudo-observations).
    :param item_counts: items per type (``item_collection``).
    :param item_demands: demand D_k per type (``item_collection``).
    :param lengthscale: Matérn-5/2 lengthscale (``experiment_design``).
    :param noise: observation noise variance (``experiment_design``).
    :param n_pseudo: pseudo-observations the GP prior is conditioned on (``experiment_design``).
    """
    if name == "coverage":
        if density is not None:
            raise ValueError("objective 'coverage' has unit weights; use objective='weighted_coverage' with a density")
        return Objective("coverage", name, grid, weights=_density(None, grid))
    if name == "weighted_coverage":
        return Objective("coverage", name, grid, weights=_density("bimodal" if density is None else density, grid))
    if name == "item_collection":
        counts, demands = np.asarray(item_counts, np.int64), np.asarray(item_demands, np.int64)
        if counts.shape != demands.shape or counts.ndim != 1 or counts.size == 0:
            raise ValueError(f"item_counts {tuple(counts)} and item_demands {tuple(demands)} must be equal-length lists")
        types = place_items(grid.n_cells, counts, instance, grid.walls)
        return Objective("items", name, grid, item_type=types, demand=demands)
    if name == "experiment_design":
        if noise <= 0:
            raise ValueError(f"noise must be > 0, got {noise}")
        cov = gp_posterior_covariance(grid.coords(), lengthscale, noise, n_pseudo, seed=instance)
        cov = np.ascontiguousarray(cov)
        return Objective("design", name, grid, cov=cov, noise=float(noise))
    raise ValueError(f"unknown objective {name!r}; expected one of {OBJECTIVES}")
