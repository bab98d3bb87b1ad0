"""``morl benchmark SUITE.yaml``: agents x tasks x seeds, resumable, reported as the safe-RL field reports.

A suite file::

    name: driving
    seeds: [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]     # or a count: 0 .. n-1
    episodes: 100                                     # held-out evaluation episodes per evaluation
    tasks:
      route:
        QDIQN: {config: configs/driving_qdiqn.yaml}
        IQN: {config: configs/driving_iqn.yaml, set: ["train.total_timesteps=200000"]}
    compare: [[QDIQN, IQN]]        # preordered agent vs its scalarised counterpart: probability of improvement
    metrics: [success_rate, collision_rate, off_road_rate, route_completion]

Each (task, agent, seed) trains through :func:`morl.experiment.train` into ``OUT/runs/<task>/<agent>/seed<s>``
with evaluation during training (``eval.interval``, from the agent's config) and is **scored** by the mean of
its last ``eval.last_k`` evaluations (:mod:`morl.periodic`), or by its final evaluation when it has none.
A run directory holding ``eval.json`` is finished and never redone; an unfinished one (a killed benchmark)
starts again from scratch, so that a resumed benchmark gives exactly the results of an uninterrupted one (a
run continued from a checkpoint sees other episodes after it). ``OUT/results.json`` holds every
run's scores; ``OUT/results.md`` one table per task: for each metric the mean ± std over seeds and the 95 %
stratified-bootstrap interval of the mean and of the interquartile mean (rliable's statistics), then the
probability of improvement of each ``compare`` pair on each metric (a lower collision rate counts as
better); figures in ``OUT/plots/``: per-metric bars with intervals, performance profiles of each metric,
the probability-of-improvement chart, and learning curves against steps and against training wall-clock.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from morl.config import ConfigError, load_config
from morl.metrics import aggregate_runs, performance_profile, probability_of_improvement
from morl.sweep import is_finished, needs_training, run_pool

__all__ = ["LOWER_IS_BETTER", "load_suite", "run_benchmark", "report", "run_scores"]

#: Metrics where a smaller value is better (their sign is flipped for probabilities of improvement).
LOWER_IS_BETTER = ("collision_rate", "off_road_rate", "red_light_rate", "speeding_rate", "cost_rate")
DEFAULT_METRICS = ("success_rate", "collision_rate", "off_road_rate", "route_completion")


def load_suite(path) -> dict:
    """The suite file, checked: ``{"name", "seeds" [list], "episodes", "tasks" {task: {agent: {config, set}}},
    "compare" [[a, b]], "metrics"}``; config paths resolve against the suite file's folder, then the current one."""
    path = Path(path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(source, "<file>", f"cannot read: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(source, "<root>", f"the file must hold a mapping, got {type(data).__name__}")
    unknown = set(data) - {"name", "seeds", "episodes", "tasks", "compare", "metrics"}
    if unknown:
        raise ConfigError(source, sorted(unknown)[0], "unknown key (expected name, seeds, episodes, tasks, compare, "
                                                      "metrics)")
    seeds = data.get("seeds", 10)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        seeds = list(range(seeds))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds) and len(set(seeds)) == len(seeds)):
        raise ConfigError(source, "seeds", f"must be a count >= 1 or a list of distinct integers, got {seeds!r}")
    tasks = data.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(source, "tasks", "must map task names to {agent: {config: PATH}}")
    out_tasks = {}
    for task, agents in tasks.items():
        if not isinstance(agents, dict) or not agents:
            raise ConfigError(source, f"tasks.{task}", "must map agent labels to {config: PATH, set: [...]}")
        out_tasks[task] = {}
        for label, spec in agents.items():
            where = f"tasks.{task}.{label}"
            if not isinstance(spec, dict) or "config" not in spec or set(spec) - {"config", "set"}:
                raise ConfigError(source, where, "must be {config: PATH, set: [KEY=VALUE, ...]}")
            cfg = Path(spec["config"])
            for base in (path.parent, Path.cwd()):
                if (base / cfg).exists():
                    cfg = base / cfg
                    break
            else:
                raise ConfigError(source, f"{where}.config", f"{spec['config']}: no such file")
            sets = spec.get("set", [])
            if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
                raise ConfigError(source, f"{where}.set", "must be a list of KEY=VALUE strings")
            out_tasks[task][label] = {"config": str(cfg.resolve()), "set": list(sets)}
    compare = data.get("compare", [])
    labels = {label for agents in out_tasks.values() for label in agents}
    for i, pair in enumerate(compare):
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in labels for p in pair)):
            raise ConfigError(source, f"compare.{i}", f"must be two agent labels of the tasks ({', '.join(sorted(labels))})")
    episodes = data.get("episodes", 100)
    if not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(source, "episodes", f"must be an integer >= 1, got {episodes!r}")
    return {"name": str(data.get("name", path.stem)), "seeds": seeds, "episodes": episodes, "tasks": out_tasks,
            "compare": [list(p) for p in compare], "metrics": list(data.get("metrics", DEFAULT_METRICS)),
            "source": source}


def _runs(suite: dict, out: Path, overrides=()) -> list[dict]:
    specs = []
    for task, agents in suite["tasks"].items():
        for label, spec in agents.items():
            for seed in suite["seeds"]:
                sets = [*spec["set"], f"train.seed={seed}", f"eval.interval_episodes={suite['episodes']}",
                        f"eval.episodes={suite['episodes']}", *overrides]
                cfg = load_config(spec["config"], sets)  # every run's config is checked before any training
                specs.append({"task": task, "agent": label, "seed": seed, "config_path": spec["config"],
                              "set": sets, "total": cfg.train.total_timesteps,
                              "run_dir": str(out / "runs" / task / label / f"seed{seed}")})
    return specs


def run_scores(run_dir) -> dict:
    """One run's scores: the last-k mean of its evaluations during training, else its final evaluation's
    metrics; ``{"scored_by", "metrics", "curve"}``."""
    from morl.periodic import read_evaluations

    run_dir = Path(run_dir)
    periodic = run_dir / "evaluations.json"
    rows = read_evaluations(run_dir)
    curve = [{k: r.get(k) for k in ("step", "train_seconds", "success_rate", "collision_rate", "route_completion",
                                    "off_road_rate", "cost_rate") if k in r} for r in rows]
    if periodic.exists():
        summary = json.loads(periodic.read_text())
        return {"scored_by": f"mean of the last {summary['last_k']} evaluations during training",
                "metrics": summary["last_k_mean"], "curve": curve}
    ev = json.loads((run_dir / "eval.json").read_text())
    return {"scored_by": "final evaluation", "metrics": {k: v["value"] for k, v in ev["metrics"].items()},
            "curve": curve}


def _train_one(spec: dict) -> None:
    """Train one run; a finished run (``eval.json``) is left alone, an unfinished one starts again."""
    from morl import experiment

    run_dir = Path(spec["run_dir"])
    if not needs_training(run_dir):
        return
    cfg = load_config(spec["config_path"], spec["set"])
    experiment.train(cfg, run_dir=run_dir, source=spec["config_path"])


def run_benchmark(suite_path, out=None, max_workers: int = 1, overrides=(), progress: bool = True) -> Path:
    """Run (or continue) every run of the suite, then write the report; returns ``out``.

    :param out: the benchmark folder (default ``runs/benchmarks/<name>``); a second call continues it.
    :param max_workers: runs trained at once (local processes).
    :param overrides: ``KEY=VALUE`` strings applied to every run after the suite's own.
    """
    suite = load_suite(suite_path)
    out = Path(out) if out is not None else Path("runs") / "benchmarks" / suite["name"]
    out.mkdir(parents=True, exist_ok=True)
    specs = _runs(suite, out, overrides)
    todo = [s for s in specs if not is_finished(s["run_dir"])]
    t0 = time.time()
    if progress:
        print(f"benchmark {suite['name']}: {len(specs) - len(todo)}/{len(specs)} runs done earlier, "
              f"{len(todo)} to run", file=sys.stderr, flush=True)
    if max_workers > 1 and len(todo) > 1:
        run_pool(_train_one, todo, max_workers, on_done=_progress(todo, specs, t0) if progress else None)
    else:
        tick = _progress(todo, specs, t0) if progress else None
        for spec in todo:
            _train_one(spec)
            if tick:
                tick()
    report(suite, specs, out)
    return out


def _progress(todo, specs, t0):
    done = [len(specs) - len(todo)]

    def tick():
        done[0] += 1
        elapsed = time.time() - t0
        ran = done[0] - (len(specs) - len(todo))
        left = elapsed / ran * (len(specs) - done[0]) if ran else float("nan")
        print(f"benchmark: {done[0]}/{len(specs)} runs done, {elapsed / 60:.1f} min elapsed, about "
              f"{left / 60:.1f} min left", file=sys.stderr, flush=True)
    return tick


def _better(metric: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return -v if metric in LOWER_IS_BETTER else v


def report(suite: dict, specs: list[dict], out: Path) -> dict:
    """Write ``results.json``, ``results.md`` and ``plots/`` from the finished runs; returns the results."""
    runs = []
    for spec in specs:
        if is_finished(spec["run_dir"]):
            runs.append({k: spec[k] for k in ("task", "agent", "seed", "run_dir")} | run_scores(spec["run_dir"]))
    metrics = suite["metrics"]
    tables, pois = {}, []
    for task in suite["tasks"]:
        tables[task] = {}
        for agent in suite["tasks"][task]:
            rs = [r for r in runs if r["task"] == task and r["agent"] == agent]
            row = {"seeds": len(rs)}
            for m in metrics:
                vals = [r["metrics"][m] for r in rs if m in r["metrics"]]
                if not vals:
                    continue
                agg = aggregate_runs(vals)
                agg_iqm = aggregate_runs(vals, statistic="iqm")
                row[m] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "lo": agg["lo"], "hi": agg["hi"],
                          "iqm": agg_iqm["value"], "iqm_lo": agg_iqm["lo"], "iqm_hi": agg_iqm["hi"]}
            tables[task][agent] = row
        for a, b in suite["compare"]:
            if a not in suite["tasks"][task] or b not in suite["tasks"][task]:
                continue
            for m in metrics:
                xa = [r["metrics"][m] for r in runs if r["task"] == task and r["agent"] == a and m in r["metrics"]]
                xb = [r["metrics"][m] for r in runs if r["task"] == task and r["agent"] == b and m in r["metrics"]]
                if xa and xb:
                    pois.append({"task": task, "a": a, "b": b, "metric": m,
                                 **probability_of_improvement(_better(m, xa), _better(m, xb))})
    results = {"suite": suite["name"], "source": suite["source"], "date": time.strftime("%Y-%m-%d"),
               "commit": _commit(), "machine": _machine(), "seeds": suite["seeds"], "metrics": metrics,
               "tables": tables, "probability_of_improvement": pois, "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(results_markdown(results))
    _figures(results, out / "plots")
    return results


def results_markdown(results: dict) -> str:
    """The OmniSafe-style tables of :func:`report`'s results."""
    lines = [f"# Benchmark `{results['suite']}`", "",
             f"{results['date']}, commit {results['commit']}, {results['machine']}. Seeds {results['seeds']}. "
             "Each run is scored by the mean of its last evaluations during training (held-out episodes). "
             "Cells: mean ± std over seeds [95 % stratified-bootstrap interval of the mean]; IQM [interval].", ""]
    for task, table in results["tables"].items():
        lines += [f"## {task}", "", "| agent | seeds | " + " | ".join(results["metrics"]) + " |",
                  "|---|---|" + "---|" * len(results["metrics"])]
        for agent, row in table.items():
            cells = []
            for m in results["metrics"]:
                c = row.get(m)
                cells.append("-" if c is None else f"{c['mean']:.3f} ± {c['std']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]; "
                                                   f"IQM {c['iqm']:.3f} [{c['iqm_lo']:.3f}, {c['iqm_hi']:.3f}]")
            lines.append(f"| {agent} | {row['seeds']} | " + " | ".join(cells) + " |")
        pois = [p for p in results["probability_of_improvement"] if p["task"] == task]
        if pois:
            lines += ["", "Probability of improvement P(a better than b) [95 % interval] (lower is better for rates "
                      "of bad events):", "", "| a | b | metric | P(a > b) |", "|---|---|---|---|"]
            lines += [f"| {p['a']} | {p['b']} | {p['metric']} | {p['value']:.2f} [{p['lo']:.2f}, {p['hi']:.2f}] |"
                      for p in pois]
        lines.append("")
    return "\n".join(lines)


def _figures(results: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    from morl.plots import _COLORS, _save, evaluation_curves, metric_label, safety_bars

    out.mkdir(parents=True, exist_ok=True)
    for task, table in results["tables"].items():
        bars = {agent: {m: {"value": c["mean"], "lo": c["lo"], "hi": c["hi"]} for m, c in row.items() if m != "seeds"}
                for agent, row in table.items()}
        safety_bars(bars, out / f"{task}_metrics.png", title=f"{task}: mean over seeds (95 % bootstrap interval)")
        taus = np.linspace(0, 1, 101)
        fig, axes = plt.subplots(1, len(results["metrics"]), figsize=(3.4 * len(results["metrics"]), 3.0),
                                 squeeze=False)
        for ax, m in zip(axes[0], results["metrics"]):
            for i, agent in enumerate(table):
                vals = [r["metrics"][m] for r in results["runs"] if r["task"] == task and r["agent"] == agent
                        and m in r["metrics"]]
                if vals:
                    ax.plot(taus, performance_profile(vals, taus), color=_COLORS[i % 10], label=agent)
            ax.set_xlabel(f"threshold τ on {metric_label(m)}", fontsize=8)
            ax.set_ylabel("fraction of runs > τ", fontsize=8)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{task}: performance profiles (run-score distributions)", fontsize=10)
        _save(fig, out / f"{task}_profiles.png")
        curves = {}
        for r in results["runs"]:
            if r["task"] == task and r["curve"]:
                curves.setdefault(r["agent"], []).append(r["curve"])
        if curves:
            evaluation_curves(curves, out / f"{task}_curves_steps.png", title=f"{task}: evaluations against steps")
            evaluation_curves(curves, out / f"{task}_curves_wallclock.png", x="train_seconds",
                              title=f"{task}: evaluations against training wall-clock")
    pois = results["probability_of_improvement"]
    if pois:
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(pois) + 1.2))
        for i, p in enumerate(pois):
            ax.errorbar(p["value"], i, xerr=[[p["value"] - p["lo"]], [p["hi"] - p["value"]]], fmt="o", color="k")
        ax.set_yticks(range(len(pois)), [f"{p['task']}: {p['a']} > {p['b']} ({p['metric']})" for p in pois], fontsize=7)
        ax.axvline(0.5, color="grey", ls="--")
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability of improvement")
        _save(fig, out / "probability_of_improvement.png")


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
