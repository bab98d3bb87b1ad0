"""Lloyd / centroidal Voronoi coverage baseline (Cortes, Martinez, Karatas, Bullo, IEEE T-RA 2004).

The reference samples are binned on a ``grid_size x grid_size`` grid; each step every cell goes to its
nearest agent, and each agent tracks the mass-weighted centroid of its Voronoi cell,
``c_{V_i} = sum_{q in V_i} q phi(q) / sum_{q in V_i} phi(q)``, with the same finite-horizon tracking
gains as D2OC. Lloyd converges to a static centroidal configuration: it covers the density with N
points, not with the time-averaged trajectory, which is what the W2 metric of D2OC measures.
"""

from __future__ import annotations

import numpy as np

from morl.agents.d2oc import kernels
from morl.agents.d2oc.base import CoverageController

__all__ = ["Lloyd"]


class Lloyd(CoverageController):
    """Centroidal Voronoi (Lloyd) coverage on a grid.

    :param grid_size: cells per axis of the density grid.
    :param gain: the target is ``p + gain (c_V - p)`` (1: the centroid itself).
    Other parameters as :class:`~morl.agents.d2oc.base.CoverageController`.
    """

    _params = CoverageController._params + ("grid_size", "gain")

    def __init__(self, env=None, task=None, grid_size: int = 64, gain: float = 1.0, horizon: int = 15,
                 tracking_weight: float | None = None, Q=None, R=None, u_max: float | None = None,
                 seed: int | None = None, verbose: int = 0, device: str = "auto"):
        if not isinstance(grid_size, (int, np.integer)) or grid_size < 1:
            raise ValueError(f"grid_size must be an integer >= 1, got {grid_size!r}")
        if not gain > 0:
            raise ValueError(f"gain must be positive, got {gain!r}")
        self.grid_size, self.gain = int(grid_size), float(gain)
        super().__init__(env=env, task=task, horizon=horizon, tracking_weight=tracking_weight, Q=Q, R=R, u_max=u_max,
                         seed=seed, verbose=verbose, device=device)

    def _reset_memory(self, k: int, states: np.ndarray) -> dict:
        dens, g = self.task.density, self.grid_size
        lo, hi = dens.domain
        centres = lo + (np.arange(g) + 0.5) * (hi - lo) / g
        cx, cy = np.meshgrid(centres, centres, indexing="ij")  # row = x bin, as ReferenceDensity.grid
        mass = dens.grid(g).ravel()
        keep = mass > 0
        cells = np.ascontiguousarray(np.stack([cx.ravel(), cy.ravel()], axis=1)[keep])
        n = self.task.n_agents
        return {"t": 0, "cells": cells, "mass": np.ascontiguousarray(mass[keep]), "targets": np.zeros((n, 2)),
                "cell_mass": np.zeros(n)}

    def _targets(self, mem: dict, states: np.ndarray) -> np.ndarray:
        pos = self.positions(states)
        kernels.voronoi_centroids(pos, mem["cells"], mem["mass"], mem["targets"], mem["cell_mass"])
        return pos + self.gain * (mem["targets"] - pos)
