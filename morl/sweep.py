"""Many runs: seeds x grid points, on a local process pool (default) or Ray Tune.

``morl sweep CONFIG --seeds N --grid agent.name=QDIQN,IQN`` writes::

    <output.root>/<name>/sweep-<timestamp>/
        sweep.json              the runs of the sweep (group, seed, config), to continue it
        runs/<group>/seed<k>/   one ordinary run directory per (grid point, seed)
        summary.csv             one row per run: group, seed, grid values, metric point estimates
        summary_groups.csv      per group: each metric's mean over seeds and 95 % bootstrap interval
        comparison.json         lexicographic comparison of every pair of groups (when a preorder is set)
        plots/                  safety comparison, learning curves, return distributions, Pareto scatter

Both backends run the same :func:`run_one` on the same run specifications, one process per run with
one torch thread, so the same seeds give the same summary whichever backend ran them. The summary is
built from the run directories afterwards, not from values the workers send back.

A sweep is resumable: ``--out`` naming the folder of a killed sweep, with the same config, seeds, grid and
``--set``, keeps its finished runs (those with ``eval.json``) and trains the others from scratch
(:func:`needs_training`); a folder that holds other runs is refused.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from morl.config import ConfigError, ExperimentConfig, apply_overrides, config_from_dict, parse_value
from morl.metrics import aggregate_runs, lexicographic_compare

__all__ = ["expand", "run_one", "run_sweep", "summarize", "parse_grid"]


def parse_grid(items) -> dict[str, list]:
    """``["agent.name=QDIQN,IQN", "agent.learning_rate=1e-4,3e-4"]`` -> ``{key: [values]}``."""
    grid = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--grid {item!r} must look like key.path=v1,v2")
        key, values = item.split("=", 1)
        grid[key.strip()] = [parse_value(v) for v in values.split(",")]
    return grid


def _short(value) -> str:
    # A whole section swept at once (grid: {agent: [{name: QDIQN, ...}, {name: IQN, ...}]}) is named by its name.
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return str(value)


def _label(params: dict) -> str:
    if not params:
        return ""
    if len(params) == 1:
        return _short(next(iter(params.values())))
    return ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in params.items())


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text) or "run"


def _override_path(item) -> str:
    return (item.split("=", 1)[0] if isinstance(item, str) else item[0]).strip()


def _check_overrides_against_grid(grid: dict, overrides, source: str) -> None:
    """An override and a grid axis that set the same key (or the override a section holding the axis's
    key) cannot both hold: the error names both."""
    for item in overrides:
        path = _override_path(item)
        for key in grid:
            if key == path or key.startswith(path + "."):
                raise ConfigError(source, path, f"is set by --set {path} and swept by the grid axis {key}: "
                                                f"drop one of them")


def expand(cfg: ExperimentConfig, seeds=None, grid=None, source: str = "<config>", overrides=()) -> list[dict]:
    """Run specifications for every (grid point, seed), each validated.

    :param cfg: the base config; its ``sweep`` section gives defaults for ``seeds`` and ``grid``.
    :param seeds: a count (seeds ``train.seed .. train.seed + n - 1``) or a list of seeds.
    :param grid: ``{key.path: [values]}``, merged over the config's grid.
    :param overrides: ``"key.path=value"`` strings (the CLI's ``--set``) applied again on top of each grid
        point, so an override inside a swept section (``agent.learning_starts`` under a grid of whole
        ``agent`` sections) holds in every run; one that sets a swept key itself is an error.
    :return: dicts with ``group``, ``seed``, ``params`` and ``config`` (a plain mapping).
    """
    sweep = cfg.sweep
    seeds = seeds if seeds is not None else (sweep.seeds if sweep is not None else 1)
    seed_list = list(range(cfg.train.seed, cfg.train.seed + seeds)) if isinstance(seeds, int) else list(seeds)
    full_grid = dict(sweep.grid) if sweep is not None else {}
    full_grid.update(grid or {})
    base = cfg.model_dump(mode="json")
    base["sweep"] = None
    _check_overrides_against_grid(full_grid, overrides, source)
    overrides = [o for o in overrides if _override_path(o).split(".")[0] != "sweep"]  # the runs hold no sweep
    keys = list(full_grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(full_grid[k] for k in keys))]
    labels = [_label(params) or cfg.agent.name for params in points]
    # Grid points with the same label (two variants of one agent, named by its name) get -1, -2, ...:
    # each group needs its own run directories and its own row in the summary.
    counts, seen = Counter(labels), {}
    for i, label in enumerate(labels):
        if counts[label] > 1:
            seen[label] = seen.get(label, 0) + 1
            labels[i] = f"{label}-{seen[label]}"
    specs = []
    for params, group in zip(points, labels):
        for seed in seed_list:
            try:
                data = apply_overrides(base, [*params.items(), *overrides, ("train.seed", seed)], source)
                run_cfg = config_from_dict(data, source)
            except ConfigError as exc:
                where = ", ".join(f"{k}={v}" for k, v in params.items())
                raise ConfigError(source, exc.path, f"{exc.problem} (grid point {where})") from None
            specs.append({"group": group, "seed": seed, "params": params, "config": run_cfg.model_dump(mode="json")})
    return specs


def is_finished(run_dir) -> bool:
    """Whether the run in ``run_dir`` finished: its ``eval.json``, written last, exists."""
    return (Path(run_dir) / "eval.json").exists()


def needs_training(run_dir) -> bool:
    """Whether the run in ``run_dir`` still has to be trained. A finished run (its ``eval.json`` written) is
    kept; the folder of an unfinished one (a killed sweep or benchmark) is removed, so the run starts again from
    scratch and a resumed sweep gives exactly the runs of an uninterrupted one (a run continued from a
    checkpoint would see other episodes after it)."""
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        return False
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return True


def run_one(spec: dict) -> str:
    """Train and evaluate one run in this process, unless it finished earlier; returns its run directory.

    With ``spec["steps_file"]`` the run reports its timesteps there (:class:`~morl.checkpoints.StepsFile`),
    and ``"done": true`` once evaluated.
    """
    from morl.checkpoints import StepsFile
    from morl.experiment import train

    if not needs_training(spec["run_dir"]):
        return spec["run_dir"]
    cfg = config_from_dict(spec["config"])
    cfg.train.progress_bar = False
    steps = StepsFile(spec["steps_file"], cfg.train.total_timesteps) if spec.get("steps_file") else None
    run_dir = str(train(cfg, run_dir=spec["run_dir"], callbacks=[steps] if steps else ()))
    if steps is not None:
        steps.write(done=True)
    return run_dir


#: Seconds between progress lines when stderr is not a terminal (on a terminal one line is rewritten each second).
PROGRESS_EVERY_S = 20.0


class _Progress:
    """Prints ``sweep: 1/4 runs done, 52000/200000 steps (26 %), 1:05 elapsed, about 3:05 left`` to stderr,
    from the runs' steps files: at the start, every :data:`PROGRESS_EVERY_S` seconds (every second,
    rewriting the line, on a terminal), whenever a run finishes, and at the end."""

    def __init__(self, specs: list[dict], stream=None):
        import sys
        import threading

        self.specs, self.stream = specs, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total = sum(s["config"]["train"]["total_timesteps"] for s in specs)
        self.start, self._stop, self._done = time.monotonic(), threading.Event(), -1
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._print()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            self._print(final=True)

    def _read(self) -> tuple[int, int]:
        done = steps = 0
        for spec in self.specs:
            try:
                state = json.loads(Path(spec["steps_file"]).read_text())
            except (OSError, ValueError):
                continue
            done += bool(state.get("done"))
            steps += min(int(state["steps"]), int(state["total"]))
        return done, steps

    def line(self) -> str:
        done, steps = self._read()
        elapsed = time.monotonic() - self.start
        left = f", about {_clock(elapsed * (self.total - steps) / steps)} left" if 0 < steps < self.total else ""
        return (f"sweep: {done}/{len(self.specs)} runs done, {steps}/{self.total} steps "
                f"({100 * steps / max(self.total, 1):.0f} %), {_clock(elapsed)} elapsed{left}")

    def _print(self, final: bool = False) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(1.0):
            done = self._read()[0]
            if self.tty or done != self._done or time.monotonic() - last >= PROGRESS_EVERY_S:
                self._done, last = done, time.monotonic()
                self._print()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def _run_local(specs: list[dict], max_workers: int | None) -> None:
    run_pool(run_one, specs, max_workers)


def run_pool(fn, specs: list[dict], max_workers: int | None, on_done=None) -> None:
    """``fn(spec)`` for every spec in local worker processes; ``on_done()`` after each one finishes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = max_workers or min(len(specs), os.cpu_count() or 1)
    # Not fork: a forked torch process can deadlock on thread pools the parent already started. A
    # forkserver that has imported torch and SB3 (but run nothing) forks clean workers without paying
    # the ~3 s import per run that spawn would.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "stable_baselines3", "morl.experiment"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, s) for s in specs]
        for fut in as_completed(futures):
            fut.result()
            if on_done is not None:
                on_done()


def _tune_trainable(config: dict) -> None:
    from ray import tune

    tune.report({"run_dir": run_one(config["spec"]), "done": 1})


def _run_ray(specs: list[dict], sweep_dir: Path, address: str | None, max_workers: int | None) -> None:
    import ray
    from ray import tune

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # A local instance; workers must find this package even when it is not installed, and the
            # user's modules in the current folder (as the CLI does).
            root = str(Path(__file__).resolve().parents[1])
            path = os.pathsep.join([os.getcwd(), root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            ray.init(num_cpus=max_workers or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        started = True
    try:
        tuner = tune.Tuner(
            tune.with_resources(_tune_trainable, {"cpu": 1}),
            param_space={"spec": tune.grid_search(specs)},
            tune_config=tune.TuneConfig(max_concurrent_trials=max_workers),
            run_config=tune.RunConfig(name="tune", storage_path=str((sweep_dir / "ray").resolve()), verbose=0),
        )
        results = tuner.fit()
        errors = [r.error for r in results if r.error is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} Ray trial(s) failed; first: {errors[0]}")
    finally:
        if started:
            ray.shutdown()


def run_sweep(cfg: ExperimentConfig, seeds=None, grid=None, backend: str | None = None, address: str | None = None,
              max_workers: int | None = None, sweep_dir=None, source: str = "<config>", progress: bool | None = None,
              overrides=()) -> Path:
    """Run every (grid point, seed), then write the summary and comparison plots; returns the sweep folder.

    :param progress: print progress lines to stderr (runs done, steps, time left), also when it is not a
        terminal (default); False: none.

    :param overrides: the ``--set`` strings ``cfg`` was loaded with, applied again on top of each grid
        point (see :func:`expand`).
    """
    from morl.experiment import check_config

    sweep = cfg.sweep
    backend = backend or (sweep.backend if sweep is not None else "local")
    address = address or (sweep.address if sweep is not None else None)
    max_workers = max_workers or (sweep.max_workers if sweep is not None else None)
    if backend not in ("local", "ray"):
        raise ConfigError(source, "sweep.backend", f"must be local or ray, got {backend!r}")
    specs = expand(cfg, seeds, grid, source, overrides)
    checked = set()
    for spec in specs:  # every grid point must fit its env before anything is written
        key = json.dumps(spec["params"], sort_keys=True, default=str)
        if key not in checked:
            check_config(config_from_dict(spec["config"], source), source)
            checked.add(key)
    if sweep_dir is None:
        sweep_dir = Path(cfg.output.root) / cfg.name / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep_dir = Path(sweep_dir).resolve()
    from morl.checkpoints import atomic_write

    _claim_sweep_dir(sweep_dir, specs)
    steps_dir = sweep_dir / "steps"  # each run's timesteps so far, for the progress line
    steps_dir.mkdir(exist_ok=True)
    finished = 0
    for i, spec in enumerate(specs):
        spec["run_dir"] = str(sweep_dir / "runs" / _slug(spec["group"]) / f"seed{spec['seed']}")
        spec["steps_file"] = str(steps_dir / f"{i}.json")
        if is_finished(spec["run_dir"]):
            total = spec["config"]["train"]["total_timesteps"]
            atomic_write(Path(spec["steps_file"]), json.dumps({"steps": total, "total": total, "done": True}).encode())
            finished += 1
    if finished and progress is not False:
        print(f"sweep {sweep_dir}: {finished}/{len(specs)} runs finished earlier, kept", file=sys.stderr, flush=True)
    with _Progress(specs) if progress is not False else contextlib.nullcontext():
        if backend == "local":
            _run_local(specs, max_workers)
        else:
            _run_ray(specs, sweep_dir, address, max_workers)
    shutil.rmtree(steps_dir, ignore_errors=True)
    summarize(sweep_dir, specs, preorder=cfg.env.preorder)
    return sweep_dir


def _claim_sweep_dir(sweep_dir: Path, specs: list[dict]) -> None:
    """Create ``sweep_dir`` and record its runs in ``sweep.json``; an existing folder is continued only when it
    holds the same runs (same groups, seeds and configs), so a resumed sweep never mixes two sweeps."""
    from morl.checkpoints import atomic_write

    record = sweep_dir / "sweep.json"
    runs = [{"group": s["group"], "seed": s["seed"], "config": s["config"]} for s in specs]
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        try:
            earlier = json.loads(record.read_text())["runs"]
        except (OSError, ValueError, KeyError):
            raise FileExistsError(f"{sweep_dir} exists and is not a sweep folder (no readable sweep.json); "
                                  "pass a new --out or an earlier sweep's folder") from None
        if earlier != runs:
            before = {(r["group"], r["seed"]) for r in earlier}
            now = {(s["group"], s["seed"]) for s in specs}
            what = (f"runs {sorted(now ^ before)[:4]} differ" if now != before
                    else "the same runs with other configs (a changed --set, grid or config file)")
            raise FileExistsError(f"{sweep_dir} holds another sweep ({what}); pass a new --out to start this one")
        return
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(record, json.dumps({"runs": runs}, indent=1).encode())


def summarize(sweep_dir, specs: list[dict], preorder=None, reps: int = 2000) -> Path:
    """Write ``summary.csv``, ``summary_groups.csv``, ``comparison.json`` and ``plots/`` from the run directories."""
    from morl.plots import compare_runs

    sweep_dir = Path(sweep_dir)
    rows, groups, evals = [], {}, {}
    param_keys = list(dict.fromkeys(k for s in specs for k in s["params"]))
    for spec in specs:
        run_dir = Path(spec["run_dir"])
        ev = json.loads((run_dir / "eval.json").read_text())
        groups.setdefault(spec["group"], []).append(run_dir)
        evals.setdefault(spec["group"], []).append(ev)
        row = {"run": str(run_dir.relative_to(sweep_dir)), "group": spec["group"], "seed": spec["seed"],
               **{k: spec["params"].get(k, "") for k in param_keys}, "num_timesteps": ev["num_timesteps"]}
        row.update({k: v["value"] for k, v in ev["metrics"].items()})
        rows.append(row)
    _write_csv(sweep_dir / "summary.csv", rows)
    group_rows = []
    for g, es in evals.items():
        names = [k for k in es[0]["metrics"] if all(k in e["metrics"] for e in es)]
        row = {"group": g, "runs": len(es)}
        for k in names:
            agg = aggregate_runs([e["metrics"][k]["value"] for e in es], reps=reps)
            row.update({k: agg["value"], f"{k} lo": agg["lo"], f"{k} hi": agg["hi"]})
        group_rows.append(row)
    _write_csv(sweep_dir / "summary_groups.csv", group_rows)
    _summarize_periodic(sweep_dir, specs, reps)
    if preorder is not None and len(evals) > 1:
        comparisons = []
        for ga, gb in itertools.combinations(evals, 2):
            objectives = evals[ga][0]["objectives"]
            a = np.array([[ep["returns"][o] for o in objectives] for e in evals[ga] for ep in e["episodes"]])
            b = np.array([[ep["returns"][o] for o in objectives] for e in evals[gb] for ep in e["episodes"]])
            res = lexicographic_compare(a, b, preorder, objectives=objectives, reps=reps)
            winner = {"a": ga, "b": gb}.get(res.winner, res.winner)
            comparisons.append({"a": ga, "b": gb, "winner": winner, "decided_by": list(res.decided_by),
                                "diffs": {k: list(v) for k, v in res.diffs.items()}})
        (sweep_dir / "comparison.json").write_text(json.dumps(comparisons, indent=1))
    compare_runs(groups, sweep_dir / "plots", reps=reps)
    return sweep_dir / "summary.csv"


def stability(rows: list[dict], metric: str = "collision_rate", tail: float = 1 / 3) -> dict:
    """How much one run's evaluated ``metric`` moves late in training: over the evaluations in the last ``tail``
    of its steps, ``{"mean", "std", "range" (max - min), "max_deviation" (largest distance from the mean), "n"}``."""
    if not rows:
        return {"mean": float("nan"), "std": float("nan"), "range": float("nan"), "max_deviation": float("nan"),
                "n": 0}
    last = max(r["step"] for r in rows)
    vals = np.array([r[metric] for r in rows if r["step"] >= last - tail * last and metric in r], dtype=float)
    mean = float(vals.mean())
    return {"mean": mean, "std": float(vals.std()), "range": float(vals.max() - vals.min()),
            "max_deviation": float(np.abs(vals - mean).max()), "n": int(len(vals))}


def _summarize_periodic(sweep_dir: Path, specs: list[dict], reps: int) -> None:
    """For runs evaluated during training: ``summary_last_k.csv`` (per group, the mean over seeds of each run's
    last-k mean, 95 % bootstrap interval over seeds: the figure to report), ``stability.csv`` (per group, the
    spread over seeds of the last-k collision and success rates and the within-run movement of the evaluated
    collision rate over the last third of training) and ``plots/evaluations.png`` (every seed's curve)."""
    from morl.periodic import read_evaluations, summarise_evaluations
    from morl.plots import evaluation_curves

    runs: dict[str, list[list[dict]]] = {}
    for spec in specs:
        rows = read_evaluations(spec["run_dir"])
        if rows:
            runs.setdefault(spec["group"], []).append(rows)
    if not runs:
        return
    summary, stable = [], []
    for group, group_runs in runs.items():
        k = next(int(s["config"]["eval"]["last_k"]) for s in specs if s["group"] == group)
        means = [summarise_evaluations(r, (), k)["last_k_mean"] for r in group_runs]
        row = {"group": group, "runs": len(means), "last_k": k}
        for name in [n for n in means[0] if all(n in m for m in means)]:
            agg = aggregate_runs([m[name] for m in means], reps=reps)
            row.update({name: agg["value"], f"{name} lo": agg["lo"], f"{name} hi": agg["hi"]})
        summary.append(row)
        srow = {"group": group, "runs": len(means)}
        for name in ("collision_rate", "success_rate"):
            if all(name in m for m in means):
                srow[f"{name} std over seeds"] = float(np.std([m[name] for m in means]))
        if all("collision_rate" in r[-1] for r in group_runs):
            moves = [stability(r) for r in group_runs]
            srow["collision_rate max deviation in the last third (median over seeds)"] = float(
                np.median([m["max_deviation"] for m in moves]))
            srow["collision_rate max deviation in the last third (worst seed)"] = float(
                max(m["max_deviation"] for m in moves))
        stable.append(srow)
    _write_csv(sweep_dir / "summary_last_k.csv", summary)
    _write_csv(sweep_dir / "stability.csv", stable)
    evaluation_curves(runs, sweep_dir / "plots" / "evaluations.png",
                      title="Evaluations during training, every seed")


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in r.items()})
