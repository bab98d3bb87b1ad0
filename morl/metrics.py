"""Safety and multi-objective metrics, with bootstrap confidence intervals.

From per-episode records (what ``eval.json`` holds, see :func:`episode_arrays`):

- :func:`episode_metrics`: success, collision, off-road, red-light and speeding rates (share of
  episodes with at least one event), events per km when the distance is known, cost rate (cost per
  step), mean route completion and per-objective mean returns, each with a 95 % bootstrap interval;
- :func:`iqm` and :func:`stratified_bootstrap_ci`: the interquartile mean and the stratified bootstrap
  of Agarwal et al. 2021 ("Deep RL at the Edge of the Statistical Precipice", the ``rliable`` method);
- :func:`lexicographic_compare`: which of two methods wins under a preorder, objective by objective
  in precedence order, counting only differences whose interval excludes zero;
- :func:`pareto_mask` / :func:`pareto_filter`, :func:`hypervolume` (exact, any dimension, meant for
  2-4 objectives) and :func:`expected_utility` (Zintgraf et al. 2015).

All objectives are *maximised*: every environment signs its reward components so that larger is better.

Why the bootstrap is written here on NumPy rather than taken from ``rliable``: ``rliable`` pulls in
``arch`` and ``seaborn`` for one resampling loop; the stratified percentile bootstrap is a few
vectorised lines (resample run indices within each task, apply the statistic along the last axis,
take percentiles), and vectorising over replicates is fast enough for evaluation (timings in the
documentation's results page), so a numba kernel is not worth its compile time here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from morl.preorder import Preorder

__all__ = [
    "SAFETY_EVENTS",
    "episode_arrays",
    "episode_metrics",
    "iqm",
    "performance_profile",
    "probability_of_improvement",
    "stratified_bootstrap_ci",
    "aggregate_runs",
    "LexComparison",
    "lexicographic_compare",
    "pareto_mask",
    "pareto_filter",
    "hypervolume",
    "expected_utility",
]

#: Events reported as "share of episodes with at least one" (and per km when distance is known).
SAFETY_EVENTS = ("collision", "off_road", "red_light", "speeding")


# ---------------------------------------------------------------------------------------------------
# Robust statistics and the stratified bootstrap


def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50 % of scores along ``axis``.

    Trims ``floor(n / 4)`` scores from each end, as ``scipy.stats.trim_mean(x, 0.25)`` (which rliable uses).
    """
    x = np.sort(np.asarray(x, dtype=float), axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm of an empty array")
    cut = int(0.25 * n)
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


_STATISTICS: dict[str, Callable] = {"mean": np.mean, "iqm": iqm, "median": np.median}


def _statistic(stat) -> Callable:
    if isinstance(stat, str):
        if stat not in _STATISTICS:
            raise ValueError(f"statistic must be one of {sorted(_STATISTICS)} or a callable, got {stat!r}")
        return _STATISTICS[stat]
    if not callable(stat):
        raise ValueError(f"statistic must be a name or a callable, got {stat!r}")
    return stat


def stratified_bootstrap_ci(
    scores,
    statistic="mean",
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile interval of ``statistic`` by a stratified bootstrap.

    ``scores`` is ``(n_runs,)`` or ``(n_runs, n_tasks)``; each replicate resamples the runs with
    replacement *within each task* (the strata), then applies the statistic to all resampled scores
    pooled, as rliable's aggregate metrics do.

    :param scores: the scores, larger is better.
    :param statistic: ``"mean"``, ``"iqm"``, ``"median"`` or ``f(x, axis=-1)`` reducing the last axis.
    :param reps: bootstrap replicates.
    :param alpha: 1 - confidence level (0.05 gives a 95 % interval).
    :param seed: seed of the resampling.
    :return: ``(point, lower, upper)``.
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"scores must be (n_runs,) or (n_runs, n_tasks) and non-empty, got shape {np.shape(scores)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    f = _statistic(statistic)
    n, k = x.shape
    point = float(f(x.reshape(-1), axis=-1))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n, k))
    sample = x[idx, np.arange(k)].reshape(reps, n * k)  # column j resampled among task j's runs only
    stats = np.asarray(f(sample, axis=-1), dtype=float)
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return point, float(lo), float(hi)


def aggregate_runs(values, statistic="mean", reps: int = 2000, alpha: float = 0.05, seed: int | None = 0) -> dict:
    """Across-seed aggregate of per-run values as ``{"value", "lo", "hi", "n"}`` (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)] if v.ndim == 1 else v[~np.isnan(v).any(axis=1)]
    if len(v) == 0:
        return {"value": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    point, lo, hi = stratified_bootstrap_ci(v, statistic, reps=reps, alpha=alpha, seed=seed)
    return {"value": point, "lo": lo, "hi": hi, "n": int(len(v))}


def probability_of_improvement(x, y, reps: int = 2000, alpha: float = 0.05, seed: int | None = 0) -> dict:
    """``P(X > Y)``: the chance that a run of method X scores above a run of method Y (ties count half).

    The Mann-Whitney form rliable uses (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"):
    ``mean over pairs (i, j) of 1[x_i > y_j] + 0.5 1[x_i = y_j]``, larger scores better; the interval resamples
    the runs of each method with replacement.

    :return: ``{"value", "lo", "hi"}``.

    >>> probability_of_improvement([3, 4], [1, 3])["value"]     # pairs: 3>1, 3=3, 4>1, 4>3
    0.875
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(x) == 0 or len(y) == 0:
        raise ValueError("probability_of_improvement needs runs of both methods")

    def poi(a, b):
        d = a[..., :, None] - b[..., None, :]
        return ((d > 0) + 0.5 * (d == 0)).mean(axis=(-2, -1))

    rng = np.random.default_rng(seed)
    boot = poi(x[rng.integers(0, len(x), size=(reps, len(x)))], y[rng.integers(0, len(y), size=(reps, len(y)))])
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": float(poi(x, y)), "lo": float(lo), "hi": float(hi)}


def performance_profile(scores, taus) -> np.ndarray:
    """The fraction of runs whose score exceeds each threshold ``tau`` (rliable's run-score distribution).

    >>> performance_profile([0.2, 0.5, 0.9, 1.0], [0.0, 0.5, 0.95]).tolist()
    [1.0, 0.5, 0.25]
    """
    x = np.asarray(scores, dtype=float).ravel()
    return (x[None, :] > np.asarray(taus, dtype=float)[:, None]).mean(axis=1)


# ---------------------------------------------------------------------------------------------------
# Per-episode safety metrics


def episode_arrays(episodes: Sequence[Mapping], objectives: Sequence[str] | None = None) -> dict:
    """Arrays from per-episode records.

    A record holds ``returns`` (a mapping objective -> return, or a list in ``objectives`` order),
    ``length``, ``events`` (mapping event -> count of steps, ``cost`` summed) and optionally
    ``route_completion`` and ``distance_km``.

    :return: ``{"objectives", "returns" (n, m), "length" (n,), "events" {name: (n,)},
        "route_completion" (n,) or None, "distance_km" (n,) or None}``.
    """
    if not episodes:
        raise ValueError("no episodes")
    first = episodes[0]["returns"]
    if objectives is None:
        if not isinstance(first, Mapping):
            raise ValueError("returns given as lists need the objectives' names")
        objectives = tuple(first)
    objectives = tuple(objectives)
    rets = np.array([[float(ep["returns"][o]) for o in objectives] if isinstance(ep["returns"], Mapping)
                     else [float(r) for r in ep["returns"]] for ep in episodes], dtype=float)
    if rets.shape[1] != len(objectives):
        raise ValueError(f"episodes have {rets.shape[1]} returns for {len(objectives)} objectives")
    names = sorted({k for ep in episodes for k in ep.get("events", {})})
    events = {k: np.array([float(ep.get("events", {}).get(k, 0.0)) for ep in episodes]) for k in names}

    def optional(key):
        vals = [ep.get(key) for ep in episodes]
        return None if any(v is None for v in vals) else np.array(vals, dtype=float)

    return {"objectives": objectives, "returns": rets, "length": np.array([float(ep["length"]) for ep in episodes]),
            "events": events, "route_completion": optional("route_completion"), "distance_km": optional("distance_km")}


def _metric_table(arr: dict, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for each row of resampled episode indices ``idx`` (reps, n) at once."""
    out = {}
    ev = arr["events"]
    if "success" in ev:
        out["success_rate"] = (ev["success"][idx] > 0).mean(-1)
    for name in SAFETY_EVENTS:
        if name in ev:
            out[f"{name}_rate"] = (ev[name][idx] > 0).mean(-1)
    km = arr["distance_km"]
    if km is not None:
        dist = km[idx].sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            for name in SAFETY_EVENTS:
                if name in ev:
                    out[f"{name}_per_km"] = np.where(dist > 0, ev[name][idx].sum(-1) / dist, np.nan)
    if "cost" in ev:
        out["cost_rate"] = ev["cost"][idx].sum(-1) / arr["length"][idx].sum(-1)
    if arr["route_completion"] is not None:
        out["route_completion"] = arr["route_completion"][idx].mean(-1)
    for j, name in enumerate(arr["objectives"]):
        out[f"return/{name}"] = arr["returns"][idx, j].mean(-1)
    out["episode_length"] = arr["length"][idx].mean(-1)
    return out


def episode_metrics(
    episodes: Sequence[Mapping],
    objectives: Sequence[str] | None = None,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> dict[str, dict[str, float]]:
    """Safety metrics of one run's evaluation episodes, each ``{"value", "lo", "hi"}``.

    Rates are shares of episodes with at least one such event; ``*_per_km`` and ``cost_rate`` are
    ratios of sums (events / km, cost / steps). The interval resamples whole episodes, so numerator
    and denominator of a ratio stay paired.
    """
    arr = episode_arrays(episodes, objectives)
    n = len(arr["length"])
    point = {k: float(v[0]) for k, v in _metric_table(arr, np.arange(n)[None, :]).items()}
    rng = np.random.default_rng(seed)
    boot = _metric_table(arr, rng.integers(0, n, size=(reps, n)))
    out = {}
    for k, v in point.items():
        b = boot[k][~np.isnan(boot[k])]
        lo, hi = (np.percentile(b, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if len(b) else (np.nan, np.nan))
        out[k] = {"value": v, "lo": float(lo), "hi": float(hi)}
    return out


# ---------------------------------------------------------------------------------------------------
# Comparing two methods under a preorder


@dataclass
class LexComparison:
    """Result of :func:`lexicographic_compare`.

    ``winner`` is ``"a"``, ``"b"``, ``"tie"`` (no significant difference) or ``"incomparable"``;
    ``decided_by`` the objectives with a significant difference that no other such objective strictly
    outranks (:meth:`Preorder.maximal`; for a total preorder, the highest level with one); ``diffs`` the
    difference ``a - b`` of the statistic per objective as ``(point, lo, hi)``; ``signs`` +1 / -1 / 0.
    """

    winner: str
    decided_by: tuple[str, ...]
    diffs: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    signs: dict[str, int] = field(default_factory=dict)


def lexicographic_compare(
    a,
    b,
    preorder: Preorder | str,
    objectives: Sequence[str] | None = None,
    statistic="mean",
    reps: int = 2000,
    alpha: float = 0.05,
    tolerance: float | Sequence[float] = 0.0,
    seed: int | None = 0,
) -> LexComparison:
    """Compare methods ``a`` and ``b`` (scores ``(n_a, m)`` and ``(n_b, m)``, larger better) under a preorder.

    For each objective the difference of ``statistic`` is bootstrapped (the two samples resampled
    independently); it counts as +1 when its interval lies above ``tolerance``, -1 below ``-tolerance``,
    else 0. The signs are then compared with the preorder's rulebook relation: ``a`` wins when every
    objective on which ``b`` is significantly better is outranked by one on which ``a`` is.
    """
    pre = Preorder.parse(preorder)
    objectives = tuple(objectives) if objectives is not None else pre.objectives
    pre = pre.reindexed(objectives)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    m = len(objectives)
    for name, x in (("a", xa), ("b", xb)):
        if x.ndim != 2 or x.shape[1] != m or x.shape[0] == 0:
            raise ValueError(f"{name} must be (n, {m}) scores for {objectives}, got shape {x.shape}")
    tol = np.broadcast_to(np.asarray(tolerance, dtype=float), (m,))
    f = _statistic(statistic)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, len(xa), size=(reps, len(xa)))
    ib = rng.integers(0, len(xb), size=(reps, len(xb)))
    diffs, signs = {}, np.zeros(m, dtype=int)
    for k, name in enumerate(objectives):
        point = float(f(xa[:, k], axis=-1) - f(xb[:, k], axis=-1))
        boot = f(xa[ia, k], axis=-1) - f(xb[ib, k], axis=-1)
        lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        diffs[name] = (point, float(lo), float(hi))
        signs[k] = 1 if lo > tol[k] else (-1 if hi < -tol[k] else 0)
    a_wins, b_wins = (signs > 0).astype(float), (signs < 0).astype(float)
    a_pref, b_pref = pre.prefers(a_wins, b_wins), pre.prefers(b_wins, a_wins)
    winner = "tie" if a_pref and b_pref else "a" if a_pref else "b" if b_pref else "incomparable"
    # The significant objectives no other significant objective outranks: for a total preorder the highest
    # level with a difference; an objective incomparable to the others is never outranked by them.
    decided_by = tuple(objectives[i] for i in pre.maximal(np.flatnonzero(signs)))
    return LexComparison(winner, decided_by, diffs, {o: int(s) for o, s in zip(objectives, signs)})


# ---------------------------------------------------------------------------------------------------
# Multi-objective metrics (maximisation)


def pareto_mask(points) -> np.ndarray:
    """Boolean mask of the points no other point Pareto-dominates (duplicates are all kept)."""
    p = np.asarray(points, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"points must be (n, d), got shape {p.shape}")
    geq = (p[:, None, :] >= p[None, :, :]).all(-1)  # geq[i, j]: i >= j everywhere
    gt = (p[:, None, :] > p[None, :, :]).any(-1)
    dominated = (geq & gt).any(axis=0)  # some i dominates j
    return ~dominated


def pareto_filter(points) -> np.ndarray:
    """The non-dominated points, duplicates removed, in input order."""
    p = np.asarray(points, dtype=float)
    front = p[pareto_mask(p)]
    _, first = np.unique(front, axis=0, return_index=True)
    return front[np.sort(first)]


def _hv_recursive(p: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of points ``p`` (all strictly better than ``ref``) by slicing the last objective."""
    n, d = p.shape
    if n == 0:
        return 0.0
    if d == 1:
        return float(p[:, 0].max() - ref[0])
    if d == 2:
        order = np.argsort(-p[:, 0], kind="stable")
        area, ymax = 0.0, ref[1]
        for x, y in p[order]:  # sweep x downwards; each new higher y adds a rectangle
            if y > ymax:
                area += (x - ref[0]) * (y - ymax)
                ymax = y
        return float(area)
    # Slice along the last objective, highest first (the HSO scheme, While et al. 2006): between
    # consecutive values z_i > z_{i+1} the cross-section is the (d-1)-volume of the points with z >= z_i.
    order = np.argsort(-p[:, -1], kind="stable")
    p = p[order]
    z = np.append(p[:, -1], ref[-1])
    vol = 0.0
    for i in range(n):
        height = z[i] - z[i + 1]
        if height > 0:
            section = pareto_filter(p[: i + 1, :-1])
            vol += _hv_recursive(section, ref[:-1]) * height
    return float(vol)


def hypervolume(points, ref) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by ``ref`` (maximisation).

    Points that do not strictly beat ``ref`` on every objective add nothing. Exact for any dimension;
    the cost grows like ``n^(d-1)``, fine for the 2-4 objectives and fronts of tens to a few hundred
    points that evaluation produces.

    :param points: ``(n, d)`` objective vectors.
    :param ref: ``(d,)`` reference point, worse than the front on every objective.
    """
    p = np.asarray(points, dtype=float)
    r = np.asarray(ref, dtype=float).reshape(-1)
    if p.ndim != 2 or p.shape[1] != r.shape[0]:
        raise ValueError(f"points must be (n, {r.shape[0]}) for a {r.shape[0]}-d reference, got {p.shape}")
    if not np.all(np.isfinite(p)) or not np.all(np.isfinite(r)):
        raise ValueError("points and ref must be finite")
    p = p[(p > r).all(axis=1)]
    if len(p) == 0:
        return 0.0
    return _hv_recursive(pareto_filter(p), r)


def expected_utility(front, weights=None, n_weights: int = 100, utility: Callable | None = None,
                     seed: int | None = 0) -> float:
    """Expected utility ``E_w[max_p u(w, p)]`` of a front (Zintgraf et al. 2015).

    :param front: ``(n, d)`` objective vectors.
    :param weights: ``(k, d)`` weight vectors; default: ``n_weights`` equally spaced ones for
        ``d = 2``, else uniform samples from the simplex (Dirichlet(1)) drawn with ``seed``.
    :param utility: ``u(weights (k, d), points (n, d)) -> (k, n)``; default the linear ``w · p``.
    """
    p = np.asarray(front, dtype=float)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"front must be a non-empty (n, d) array, got shape {p.shape}")
    d = p.shape[1]
    if weights is None:
        if d == 2:
            t = np.linspace(0.0, 1.0, n_weights)
            weights = np.stack([t, 1.0 - t], axis=1)
        else:
            weights = np.random.default_rng(seed).dirichlet(np.ones(d), size=n_weights)
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[1] != d:
        raise ValueError(f"weights must be (k, {d}), got shape {w.shape}")
    u = w @ p.T if utility is None else np.asarray(utility(w, p), dtype=float)
    return float(u.max(axis=1).mean())
