"""Coverage metrics: W2 between the time-averaged agent measure and the reference samples.

The agent measure after ``k`` steps puts mass ``1 / (N k)`` on every agent position at steps ``1..k``
(the time-averaged empirical measure of arXiv 2511.18579 eq. 3). W2 is the exact optimal transport
cost (POT ``ot.emd2`` on squared Euclidean distances, then the square root) or, for large problems,
POT's sliced Wasserstein distance (a lower bound of W2, cheap). Never call this inside a control loop:
an exact solve between a 1,500-point measure and 10,000 samples takes seconds.

:func:`greedy_transport_cost` is the cheap per-step reward of the environment: each new agent point
takes its mass from the nearest remaining reference mass (the exact transport of one point against
a capacity-limited target); summed over an episode it is the cost of a feasible transport plan,
hence an upper bound on ``W2^2``.
"""

from __future__ import annotations

import numba
import numpy as np
import ot

__all__ = ["coverage_w2", "greedy_transport_cost", "EXACT_LIMIT"]

#: Above this many (agent points x samples) pairs, ``method="auto"`` uses the sliced distance.
EXACT_LIMIT = 4_000_000


def coverage_w2(points, samples, weights=None, point_weights=None, method: str = "auto", n_projections: int = 256,
                seed: int = 0) -> float:
    """W2 between ``points`` (uniform mass unless ``point_weights``) and weighted ``samples``.

    :param points: ``(P, 2)`` agent points (e.g. all positions of all agents over time).
    :param samples: ``(M, 2)`` reference samples.
    :param weights: ``(M,)`` reference weights (default uniform); normalised.
    :param point_weights: ``(P,)`` masses of the points (default uniform); normalised.
    :param method: ``"exact"`` (``ot.emd2``), ``"sliced"`` (``ot.sliced_wasserstein_distance``) or ``"auto"``.
    :param n_projections: projections of the sliced distance.
    :param seed: seed of the sliced projections.
    """
    y = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    q = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    if len(y) == 0 or len(q) == 0:
        raise ValueError("coverage_w2 needs at least one point and one sample")
    a = np.full(len(y), 1.0 / len(y)) if point_weights is None else np.asarray(point_weights, float)
    b = np.full(len(q), 1.0 / len(q)) if weights is None else np.asarray(weights, float)
    if np.any(a < 0) or np.any(b < 0) or not (a.sum() > 0 and b.sum() > 0):
        raise ValueError("coverage_w2 weights must be non-negative with positive mass")
    a, b = a / a.sum(), b / b.sum()
    if method == "auto":
        method = "exact" if len(y) * len(q) <= EXACT_LIMIT else "sliced"
    if method == "exact":
        cost = ot.emd2(a, b, ot.dist(y, q), numItermax=10_000_000)
        return float(np.sqrt(max(cost, 0.0)))
    if method == "sliced":
        return float(ot.sliced_wasserstein_distance(y, q, a, b, n_projections=n_projections, seed=seed))
    raise ValueError(f"method must be 'exact', 'sliced' or 'auto', got {method!r}")


def greedy_transport_cost(points: np.ndarray, alpha: float, samples: np.ndarray, remaining: np.ndarray) -> float:
    """Each point (in order) takes mass ``alpha`` from the nearest remaining samples; returns the cost.

    Cost = sum of taken mass x squared distance.

    :param points: ``(P, 2)`` float64 agent points.
    :param alpha: mass each point takes.
    :param samples: ``(M, 2)`` float64 reference samples.
    :param remaining: ``(M,)`` float64 mass left at each sample, updated in place.
    """
    for name, arr, want in (("points", points, (None, 2)), ("samples", samples, (None, 2)),
                            ("remaining", remaining, (len(samples),))):
        if not isinstance(arr, np.ndarray) or arr.ndim != len(want) or any(
                w is not None and s != w for s, w in zip(arr.shape, want)):
            shape = "(P, 2)" if name == "points" else "(M, 2)" if name == "samples" else f"(M,) = ({len(samples)},)"
            raise ValueError(f"{name} must be a numpy array of shape {shape}, got {np.shape(arr)}")
        if arr.dtype != np.float64:
            raise ValueError(f"{name} must be float64, got {arr.dtype}")
    if not remaining.flags.writeable:
        raise ValueError("remaining must be writeable (it is updated in place)")
    return _greedy_transport_kernel(points, float(alpha), samples, remaining)


@numba.njit(cache=True)
def _greedy_transport_kernel(points, alpha, samples, remaining):
    """:func:`greedy_transport_cost` on checked arrays."""
    m = samples.shape[0]
    d2 = np.empty(m)
    total = 0.0
    for i in range(points.shape[0]):
        px, py = points[i, 0], points[i, 1]
        for j in range(m):
            dx, dy = samples[j, 0] - px, samples[j, 1] - py
            d2[j] = dx * dx + dy * dy if remaining[j] > 0.0 else np.inf
        need = alpha
        while need > 0.0:
            best, bj = np.inf, -1
            for j in range(m):
                if d2[j] < best:
                    best, bj = d2[j], j
            if bj < 0:
                break
            take = min(need, remaining[bj])
            remaining[bj] -= take
            need -= take
            total += take * best
            if remaining[bj] <= 0.0:
                d2[bj] = np.inf
    return total
