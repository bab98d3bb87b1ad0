"""Figures of safety and multi-objective metrics (matplotlib, Agg backend, PNG).

Figure functions take plain data and a path and return the path:

- :func:`safety_bars`: one panel per metric, one bar per method, 95 % interval whiskers;
- :func:`learning_curves`: mean over seeds against environment steps, with a bootstrap band;
- :func:`evaluation_curves`: the evaluations during training, one line per seed, against steps or wall-clock;
- :func:`return_quantiles`: per-objective return distributions as quantile functions;
- :func:`pareto_scatter`: per-run mean returns on two objectives, the Pareto front joined.

:func:`plot_run` draws one run directory's figures into ``plots/``, :func:`compare_runs` compares
groups of runs (the sweep summary and ``morl plot RUN_DIR...``). Other parts of the project add domain
figures (coverage maps, trajectories) with :func:`register_domain_figure`; ``plot_run`` calls each one
whose env pattern matches the run's env.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from morl.metrics import aggregate_runs, pareto_mask  # noqa: E402

__all__ = ["safety_bars", "learning_curves", "evaluation_curves", "return_quantiles", "pareto_scatter", "register_domain_figure",
           "domain_figures", "plot_run", "compare_runs", "read_progress", "metric_label"]

_COLORS = plt.get_cmap("tab10").colors


def metric_label(name: str) -> str:
    """Axis label with units for a metric name of :func:`morl.metrics.episode_metrics`."""
    if name.endswith("_rate") and name != "cost_rate":
        return f"{name[:-5].replace('_', ' ')} (share of episodes)"
    if name.endswith("_per_km"):
        return f"{name[:-7].replace('_', ' ')} (events / km)"
    if name == "cost_rate":
        return "cost rate (cost / step)"
    if name.startswith("return/"):
        return f"return: {name[7:]}"
    if name == "route_completion":
        return "route completion (fraction)"
    if name == "episode_length":
        return "episode length (steps)"
    return name


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _grid(n: int, width: float = 3.4, height: float = 3.0):
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def safety_bars(table: Mapping[str, Mapping[str, Mapping[str, float]]], path, metrics: Sequence[str] | None = None,
                title: str | None = None) -> Path:
    """Bar chart with 95 % interval whiskers: ``table[method][metric] = {"value", "lo", "hi"}``."""
    methods = list(table)
    if not methods:
        raise ValueError("safety_bars needs at least one method")
    if metrics is None:
        metrics = [k for k in table[methods[0]] if all(k in table[m] for m in methods) and k != "episode_length"]
    if not metrics:
        raise ValueError("no metric is shared by all methods")
    fig, axes = _grid(len(metrics))
    x = np.arange(len(methods))
    for ax, name in zip(axes, metrics):
        vals = np.array([table[m][name]["value"] for m in methods], dtype=float)
        lo = np.array([table[m][name].get("lo", np.nan) for m in methods], dtype=float)
        hi = np.array([table[m][name].get("hi", np.nan) for m in methods], dtype=float)
        err = np.nan_to_num(np.stack([vals - lo, hi - vals]).clip(min=0))
        ax.bar(x, vals, color=[_COLORS[i % 10] for i in range(len(methods))], yerr=err, capsize=4, width=0.6)
        ticks = [f"{m}\n{v:.3g}" for m, v in zip(methods, vals)]  # the value under the name: zero bars stay legible
        ax.set_xticks(x, ticks, rotation=20 if len(methods) > 3 else 0, ha="right" if len(methods) > 3 else "center")
        ax.set_ylabel(metric_label(name))
        if name.endswith("_rate") and name != "cost_rate":
            ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "Safety metrics (bars: point estimate, whiskers: 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _band(values: np.ndarray, reps: int = 1000, seed: int = 0):
    """Mean over seeds (axis 0) and its percentile bootstrap 95 % band, per x."""
    mean = values.mean(axis=0)
    if len(values) < 2:
        return mean, mean, mean
    idx = np.random.default_rng(seed).integers(0, len(values), size=(reps, len(values)))
    boot = values[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return mean, lo, hi


def learning_curves(curves: Mapping[str, Sequence[tuple]], path, ylabel: str = "episode return",
                    title: str | None = None, n_points: int = 100) -> Path:
    """Mean learning curve per method with a 95 % bootstrap band across seeds.

    :param curves: ``{method: [(steps, values), ...]}``, one pair of arrays per seed. Seeds are
        interpolated onto a shared step grid covering the range all of them reached.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for i, (method, runs) in enumerate(curves.items()):
        runs = [(np.asarray(s, float), np.asarray(v, float)) for s, v in runs if len(s) > 0]
        if not runs:
            continue
        lo_x = max(s.min() for s, _ in runs)
        hi_x = min(s.max() for s, _ in runs)
        grid = np.linspace(lo_x, hi_x, n_points) if hi_x > lo_x else np.array([lo_x])
        ys = np.stack([np.interp(grid, s, v) for s, v in runs])
        mean, lo, hi = _band(ys)
        color = _COLORS[i % 10]
        ax.plot(grid, mean, color=color, label=f"{method} (n={len(runs)})", marker="o" if len(grid) == 1 else None)
        if len(runs) > 1:
            ax.fill_between(grid, lo, hi, color=color, alpha=0.25, linewidth=0)
        drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError("learning_curves got no data")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Learning curves (mean over seeds, band: 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def return_quantiles(returns: Mapping[str, np.ndarray], objectives: Sequence[str], path,
                     title: str | None = None) -> Path:
    """Per-objective quantile functions of episode returns: ``returns[method]`` is ``(episodes, m)``."""
    fig, axes = _grid(len(objectives))
    for j, (ax, name) in enumerate(zip(axes, objectives)):
        for i, (method, r) in enumerate(returns.items()):
            r = np.sort(np.asarray(r, float)[:, j])
            # Empirical quantile function: Q(τ) = r_(k) for τ in (k/n, (k+1)/n].
            ax.stairs(r, np.linspace(0.0, 1.0, len(r) + 1), color=_COLORS[i % 10], label=method,
                      baseline=None, linewidth=1.6)
        ax.set_xlabel("quantile level τ")
        ax.set_ylabel(f"episode return: {name}")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "Return distributions per objective (quantile functions)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def pareto_scatter(points: Mapping[str, np.ndarray], objectives: Sequence[str], path, title: str | None = None) -> Path:
    """Scatter of ``points[method]`` (``(n, m)``, larger better) with the Pareto front ringed.

    Two objectives give one panel with the front's attainment staircase; more give one panel per pair
    of objectives, ringing the points non-dominated in *all* ``m`` objectives.
    """
    m = len(objectives)
    if m < 2:
        raise ValueError(f"pareto_scatter needs at least two objectives, got {m}")
    pts = {k: np.asarray(v, float).reshape(-1, m) for k, v in points.items()}
    allp = np.concatenate(list(pts.values()))
    front = allp[pareto_mask(allp)]
    pairs = [(a, b) for a in range(m) for b in range(a + 1, m)]
    fig, axes = _grid(len(pairs), width=4.2, height=3.6) if m > 2 else plt.subplots(figsize=(5, 4))
    axes = axes if m > 2 else [axes]
    for ax, (a, b) in zip(axes, pairs):
        for i, (method, p) in enumerate(pts.items()):
            ax.scatter(p[:, a], p[:, b], color=_COLORS[i % 10], label=method, alpha=0.8, edgecolor="k", linewidth=0.4)
        if m == 2:
            # The attainment staircase: no run reaches above it, every point on it is reached by a front point.
            f = front[np.argsort(front[:, 0])]
            ax.step(f[:, 0], f[:, 1], "k--", where="pre", linewidth=1)
        ax.scatter(front[:, a], front[:, b], s=110, facecolors="none", edgecolors="k", linewidth=1.2,
                   label="Pareto front (all runs)")
        ax.set_xlabel(f"return: {objectives[a]}")
        ax.set_ylabel(f"return: {objectives[b]}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    text = title or "Mean returns per run (larger is better)"
    if m == 2:
        axes[0].set_title(text, fontsize=10)
    else:
        fig.suptitle(text + f"; ringed: non-dominated in all {m} objectives", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------------
# Domain figure hook

_DOMAIN: dict[str, tuple[Callable, str]] = {}


def register_domain_figure(name: str, fn: Callable | None = None, env_pattern: str = "*", replay: bool = False):
    """Register ``fn(run_dir: Path, eval_data: dict, out_dir: Path) -> Path | list[Path] | None``.

    ``plot_run`` calls it for runs whose env (id, scenario or factory) matches ``env_pattern``
    (``fnmatch``, e.g. ``"morl/Highway-*"``). Usable as a decorator: ``@register_domain_figure("map")``.
    With ``replay=True`` the figure is called as ``fn(run_dir, eval_data, out_dir, replay)``, where
    ``replay(seed)`` plays one episode of the run's saved model and returns its record (see
    :func:`morl.experiment.replay_episode`); the caller of :func:`plot_run` provides it (the experiment layer
    does), so an environment's figure never loads agents itself.
    """
    def add(f):
        _DOMAIN[name] = (f, env_pattern, replay)
        return f

    return add if fn is None else add(fn)


def domain_figures() -> dict[str, tuple[Callable, str]]:
    return {name: (fn, pattern) for name, (fn, pattern, _) in _DOMAIN.items()}


# ---------------------------------------------------------------------------------------------------
# Run directories


def read_progress(run_dir, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one ``progress.csv`` column, rows without a value skipped."""
    path = Path(run_dir) / "progress.csv"
    steps, vals = [], []
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                s, v = row.get("time/total_timesteps"), row.get(column)
                if s and v:
                    steps.append(float(s))
                    vals.append(float(v))
    order = np.argsort(steps, kind="stable")
    return np.asarray(steps)[order], np.asarray(vals)[order]


def _returns(ev: dict) -> np.ndarray:
    return np.array([[ep["returns"][o] for o in ev["objectives"]] for ep in ev["episodes"]], dtype=float)


#: The metrics :func:`evaluation_curves` draws by default, where the rows have them.
EVAL_CURVE_METRICS = ("success_rate", "collision_rate", "off_road_rate", "route_completion", "cost_rate")


def evaluation_curves(curves: Mapping[str, Sequence[Sequence[Mapping]]], path, x: str = "step",
                      metrics: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Evaluations during training: one panel per metric, one line per run (seed), a colour per method.

    :param curves: ``{method: [rows of one run, ...]}``, rows as in ``evaluations.csv``
        (:func:`morl.periodic.read_evaluations`).
    :param x: ``"step"`` (environment steps) or ``"train_seconds"`` (training wall-clock, evaluation excluded).
    :param metrics: the metrics to draw (default: those of :data:`EVAL_CURVE_METRICS` the rows have, else
        the per-objective returns).
    """
    rows = [r for runs in curves.values() for run in runs for r in run]
    if not rows:
        raise ValueError("evaluation_curves got no evaluations")
    if metrics is None:
        metrics = [k for k in EVAL_CURVE_METRICS if any(k in r for r in rows)]
        metrics = metrics or sorted({k for r in rows for k in r if k.startswith("return/")})
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.4), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        for i, (method, runs) in enumerate(curves.items()):
            for j, run in enumerate(runs):
                pts = [(r[x], r[name]) for r in run if name in r]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, color=_COLORS[i % 10], alpha=0.8, lw=1.2, marker="." if len(pts) < 30 else None,
                            label=method if j == 0 else None)
        if name.endswith("_rate") and name != "cost_rate" or name == "route_completion":
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(metric_label(name), fontsize=9)
        ax.set_xlabel("environment steps" if x == "step" else "training wall-clock (s, evaluation excluded)",
                      fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "Evaluations during training (one line per seed)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _curve_columns(run_dir, objectives) -> list[tuple[str, str]]:
    cols = [("rollout/ep_rew_mean", "episode return (scalarised)")]
    return cols + [(f"rollout/return_{o}", f"episode return: {o}") for o in objectives]


def plot_run(run_dir, out=None, replay: Callable | None = None) -> list[Path]:
    """Figures of one run directory (needs ``eval.json``) into ``out`` (default ``run_dir/plots``).

    :param replay: ``replay(seed)`` for the domain figures that replay an episode (without it they are skipped).
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "plots"
    ev = json.loads((run_dir / "eval.json").read_text())
    label = ev["agent"]
    made = [safety_bars({label: ev["metrics"]}, out / "safety.png",
                        title=f"{label}: evaluation metrics over {len(ev['episodes'])} episodes (95% bootstrap CI)"),
            return_quantiles({label: _returns(ev)}, ev["objectives"], out / "returns.png")]
    for col, ylabel in _curve_columns(run_dir, ev["objectives"]):
        s, v = read_progress(run_dir, col)
        if len(s):
            name = "learning_curve.png" if col == "rollout/ep_rew_mean" else f"learning_curve_{col.split('_', 1)[1]}.png"
            made.append(learning_curves({label: [(s, v)]}, out / name, ylabel=ylabel,
                                        title=f"{label}: learning curve ({ylabel})"))
    from morl.periodic import read_evaluations

    rows = read_evaluations(run_dir)
    if rows:
        made.append(evaluation_curves({label: [rows]}, out / "evaluations.png",
                                      title=f"{label}: deterministic evaluations during training"))
    env_name = str(ev.get("env"))
    for name, (fn, pattern, needs_replay) in _DOMAIN.items():
        if fnmatch.fnmatch(env_name, pattern):
            if needs_replay and replay is None:
                warnings.warn(f"domain figure {name!r} skipped: it replays an episode and plot_run got no replay",
                              stacklevel=2)
                continue
            try:
                res = fn(run_dir, ev, out, replay) if needs_replay else fn(run_dir, ev, out)
            except Exception as exc:  # a broken domain figure must not hide the standard ones
                warnings.warn(f"domain figure {name!r} failed: {exc!r}", stacklevel=2)
                continue
            made += [Path(p) for p in (res if isinstance(res, (list, tuple)) else [res]) if p is not None]
    return made


def compare_runs(groups: Mapping[str, Sequence], out, reps: int = 2000) -> list[Path]:
    """Comparison figures for groups of run directories (one group per method, one run per seed).

    Safety bars aggregate the per-run metric values across a group's runs (mean, 95 % bootstrap CI
    over runs); a group of one run shows that run's episode-level interval instead.
    """
    out = Path(out)
    evals = {g: [json.loads((Path(r) / "eval.json").read_text()) for r in runs] for g, runs in groups.items()}
    evals = {g: e for g, e in evals.items() if e}
    if not evals:
        raise ValueError("compare_runs got no runs")
    objectives = evals[next(iter(evals))][0]["objectives"]
    table = {}
    for g, es in evals.items():
        names = [k for k in es[0]["metrics"] if all(k in e["metrics"] for e in es)]
        if len(es) == 1:
            table[g] = es[0]["metrics"]
        else:
            table[g] = {k: aggregate_runs([e["metrics"][k]["value"] for e in es], reps=reps) for k in names}
    over = "episodes of one run" if all(len(es) == 1 for es in evals.values()) else "seeds (mean of per-run values)"
    made = [safety_bars(table, out / "safety_comparison.png",
                        title=f"Safety metrics per method (whiskers: 95% bootstrap CI over {over})")]
    made.append(return_quantiles({g: np.concatenate([_returns(e) for e in es]) for g, es in evals.items()},
                                 objectives, out / "returns_comparison.png"))
    for col, ylabel in _curve_columns(None, objectives):
        curves = {g: [read_progress(r, col) for r in groups[g]] for g in evals}
        curves = {g: [c for c in cs if len(c[0])] for g, cs in curves.items()}
        if any(curves.values()):
            name = "learning_curves.png" if col == "rollout/ep_rew_mean" else f"learning_curves_{col.split('_', 1)[1]}.png"
            made.append(learning_curves({g: c for g, c in curves.items() if c}, out / name, ylabel=ylabel))
    if len(objectives) >= 2:
        pts = {g: np.array([_returns(e).mean(axis=0) for e in es]) for g, es in evals.items()}
        made.append(pareto_scatter(pts, objectives, out / "pareto.png"))
    return made
