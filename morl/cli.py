"""The ``morl`` command line: ``train``, ``eval``, ``plot`` and ``sweep``.

::

    morl train CONFIG [--set key.path=value ...] [--run-dir DIR]
    morl train --resume RUN_DIR [--set train.total_timesteps=N ...]
    morl eval RUN_DIR [--episodes N] [--stochastic]
    morl plot RUN_DIR... [--out DIR]
    morl sweep CONFIG [--seeds N] [--grid key=v1,v2 ...] [--backend local|ray] [--address ADDR] [--set ...]

A bad config prints one line ``error: <file>: <field.path>: <problem>`` and exits with status 2,
without a traceback and without creating a run directory. A run that fails at run time (a NaN/inf
observation or reward, a malformed action, a diverged loss or parameter, a simulator server that
cannot be reached again) prints one line
``error: <Kind>: <what, where>`` and exits with status 1, keeping its checkpoints if it wrote any.
Modules named in a config (``factory: "my_envs:make_env"``, ``imports``, wrappers) are imported with
the current folder first on the path, as ``python -m`` does, for ``train``, ``--resume``, ``eval`` and ``sweep``.
Ctrl-C prints one line ``interrupted: ...`` naming the last checkpoint and the command that resumes
it, and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from morl.config import ConfigError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="morl", description="Multi-objective and preordered RL experiments.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent from a YAML config, or resume a run")
    t.add_argument("config", nargs="?", help="YAML experiment config")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. agent.learning_rate=1e-4 (repeatable)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    t.add_argument("--run-dir", help="write the run here instead of <output.root>/<name>/<timestamp>")
    t.add_argument("--no-eval", action="store_true", help="skip evaluation and plots after training")

    e = sub.add_parser("eval", help="evaluate a trained run; writes eval.json and plots/")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, help="number of episodes (default: the config's eval.episodes)")
    e.add_argument("--stochastic", action="store_true", help="sample actions instead of acting greedily")

    pl = sub.add_parser("plot", help="plot one run, or compare several (grouped by agent name)")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", help="output folder (default: RUN_DIR/plots for one run, ./plots for several)")

    s = sub.add_parser("sweep", help="run seeds x grid points locally or on Ray")
    s.add_argument("config")
    s.add_argument("--seeds", type=int, help="number of seeds (default: the config's sweep.seeds)")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="grid axis (repeatable)")
    s.add_argument("--backend", choices=("local", "ray"))
    s.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    s.add_argument("--max-workers", type=int)
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--out", help="sweep folder (default: <output.root>/<name>/sweep-<timestamp>); the folder of an "
                   "earlier run of the same sweep is continued (its finished runs kept)")

    b = sub.add_parser("benchmark", help="agents x tasks x seeds of a suite file, resumable; results.md and plots")
    b.add_argument("suite", help="suite YAML (e.g. configs/benchmarks/driving.yaml)")
    b.add_argument("--out", help="benchmark folder (default: runs/benchmarks/<name>); an existing one is continued")
    b.add_argument("--max-workers", type=int, default=1, help="runs trained at once")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of every run's config (repeatable)")
    return p


def _train(args) -> int:
    from morl import experiment
    from morl.config import load_config

    if args.resume:
        if args.config:
            raise ConfigError(args.config, "<command line>", "give either CONFIG or --resume RUN_DIR, not both")
        run_dir = experiment.resume(args.resume, args.overrides, evaluate_after=not args.no_eval)
    else:
        if not args.config:
            raise ConfigError("<command line>", "config", "missing: give a YAML config or --resume RUN_DIR")
        cfg = load_config(args.config, args.overrides)
        run_dir = experiment.train(cfg, run_dir=args.run_dir, source=args.config, evaluate_after=not args.no_eval)
    print(run_dir)
    return 0


def _eval(args) -> int:
    from morl import experiment

    result = experiment.evaluate(args.run_dir, episodes=args.episodes, deterministic=False if args.stochastic else None)
    width = max(len(k) for k in result["metrics"])
    for name, m in result["metrics"].items():
        print(f"{name:<{width}}  {m['value']:.4g}  [{m['lo']:.4g}, {m['hi']:.4g}]")
    return 0


def _plot(args) -> int:
    from morl import plots

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        if not (d / "eval.json").exists():
            raise ConfigError(str(d), "eval.json", "not found: run `morl eval` on it first")
    if len(dirs) == 1:
        from functools import partial

        from morl.experiment import replay_episode

        made = plots.plot_run(dirs[0], args.out, replay=partial(replay_episode, dirs[0]))
    else:
        groups: dict[str, list[Path]] = {}
        for d in dirs:
            groups.setdefault(json.loads((d / "eval.json").read_text())["agent"], []).append(d)
        made = plots.compare_runs(groups, args.out or "plots")
    for path in made:
        print(path)
    return 0


def _sweep(args) -> int:
    from morl.config import load_config
    from morl.sweep import parse_grid, run_sweep

    cfg = load_config(args.config, args.overrides)
    try:
        grid = parse_grid(args.grid)
    except ValueError as exc:
        raise ConfigError(args.config, "--grid", str(exc)) from None
    out = run_sweep(cfg, seeds=args.seeds, grid=grid, backend=args.backend, address=args.address,
                    max_workers=args.max_workers, sweep_dir=args.out, source=args.config,
                    overrides=args.overrides)
    print(out)
    return 0


def _benchmark(args) -> int:
    from morl.benchmark import run_benchmark

    out = run_benchmark(args.suite, out=args.out, max_workers=args.max_workers, overrides=args.overrides)
    print(out / "results.md")
    return 0


def _import_from_cwd() -> None:
    """Put the current folder first on ``sys.path``, as ``python -m`` does, so that a config's
    ``factory: "my_envs:make_env"`` (or ``imports``, wrappers, agents given as ``module:Class``) finds the
    user's own modules; sweep workers inherit it."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _import_from_cwd()
    handler = {"train": _train, "eval": _eval, "plot": _plot, "sweep": _sweep, "benchmark": _benchmark}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: one line (training says where its checkpoint is), no traceback
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    except (FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not _is_run_time_fault(exc):
            raise
        # A run that went wrong at run time: one line, no traceback; checkpoints (if any) are kept.
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _is_run_time_fault(exc: Exception) -> bool:
    """Faults with a message that says it all: a NaN/inf in the data, a bad action, divergence, a lost server."""
    if isinstance(exc, ConnectionError):
        return True
    if "morl.experiment" not in sys.modules:  # nothing trained, so none of ours (and no torch import here)
        return False
    from morl.experiment import DivergenceError
    from morl.wrappers import ActionError, NonFiniteError

    return isinstance(exc, (NonFiniteError, ActionError, DivergenceError))


if __name__ == "__main__":
    sys.exit(main())
