"""Evaluation during training.

:class:`PeriodicEvaluation` is SB3's ``EvalCallback`` idea with the vector metrics: every
``interval`` env-steps it evaluates the current policy on ``episodes`` held-out seeds (fresh ones each
time, episodes side by side through :func:`morl.evaluate.run_episodes`: evaluation ``k`` of a run uses ``PERIODIC_SEED_BASE + k * episodes + i``, never a training seed
nor the final evaluation's ``EVAL_SEED_BASE + i``), logs ``eval/<metric>`` to the SB3 logger
(``progress.csv`` and TensorBoard), and appends a row to ``evaluations.csv`` in the run directory:
the step, the training wall-clock up to it with evaluation time excluded (``train_seconds``), the
evaluation's own time, and every metric of :func:`morl.metrics.episode_metrics`. ``evaluations.json``
keeps the summary: the mean of the last ``last_k`` evaluations (the figure a run reports) and the best
evaluation (lexicographic over success, collision and route completion where the env reports them,
else over the per-objective mean returns in the preorder's order).
A resumed run keeps the rows up to its checkpoint and continues the numbering, so the record has no
gaps or repeats.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from morl.checkpoints import atomic_write
from morl.evaluate import EVAL_BATCH, EvalEnvs, run_episodes
from morl.metrics import episode_metrics

__all__ = ["PERIODIC_SEED_BASE", "PeriodicEvaluation", "read_evaluations", "summarise_evaluations"]

#: Evaluation ``k`` during training uses seeds ``PERIODIC_SEED_BASE + k * episodes + i``.
PERIODIC_SEED_BASE = 1_000_000

# ---------------------------------------------------------------------------------------------------
# Evaluation during training

_FIXED = ("index", "step", "train_seconds", "eval_seconds", "episodes", "first_seed")


def read_evaluations(run_dir) -> list[dict]:
    """The rows of ``run_dir/evaluations.csv`` (numbers as floats, ``index`` and ``step`` as ints); [] if none."""
    path = Path(run_dir) / "evaluations.csv"
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rec = {k: (float(v) if v not in ("", None) else float("nan")) for k, v in row.items()}
            for k in ("index", "step", "episodes", "first_seed"):
                rec[k] = int(rec[k])
            rows.append(rec)
    return rows


def _write_rows(path: Path, rows: list[dict]) -> None:
    keys = list(_FIXED) + sorted({k for r in rows for k in r} - set(_FIXED))
    lines = [",".join(keys)] + [",".join("" if r.get(k) is None else repr(r[k]) if isinstance(r.get(k), float)
                                         else str(r[k]) for k in keys) for r in rows]
    atomic_write(path, ("\n".join(lines) + "\n").encode())


def _sort_key(row: dict, objectives: Sequence[str]) -> tuple:
    """Larger is better: success, then fewer collisions, then route completion; else the returns in order."""
    key = []
    for name, sign in (("success_rate", 1.0), ("collision_rate", -1.0), ("route_completion", 1.0)):
        if name in row and np.isfinite(row[name]):
            key.append(sign * row[name])
    if not key:
        key = [row.get(f"return/{o}", float("-inf")) for o in objectives]
    return tuple(key)


def summarise_evaluations(rows: list[dict], objectives: Sequence[str], last_k: int = 5) -> dict:
    """``{"evaluations", "last_k", "last_k_mean" {metric: mean}, "best" (its row)}`` of evaluation rows.

    :param objectives: in the preorder's order (highest precedence first) for the fallback ranking.
    """
    if not rows:
        return {"evaluations": 0, "last_k": last_k, "last_k_mean": {}, "best": None}
    tail = rows[-last_k:]
    metrics = [k for k in rows[-1] if k not in _FIXED]
    mean = {k: float(np.nanmean([r.get(k, np.nan) for r in tail])) for k in metrics}
    best = max(rows, key=lambda r: _sort_key(r, objectives))
    return {"evaluations": len(rows), "last_k": len(tail), "last_k_steps": [r["step"] for r in tail],
            "last_k_mean": mean, "best": best}


class PeriodicEvaluation(BaseCallback):
    """Every ``interval`` env-steps, evaluate the policy deterministically on held-out seeds (see the module).

    :param run_dir: where ``evaluations.csv`` / ``evaluations.json`` go.
    :param make_venv: ``make_venv(n)`` gives an evaluation VecEnv of ``n`` envs.
    :param objectives: objective names (reward-vector order).
    :param interval: env-steps between evaluations (> 0).
    :param episodes: episodes per evaluation.
    :param gamma: discount of the recorded discounted returns.
    :param deterministic: deterministic actions.
    :param last_k: how many of the last evaluations the summary averages.
    :param ranking: objective names in precedence order, for the fallback ranking of the best evaluation.
    :param reps: bootstrap resamples of each evaluation's intervals (kept small: only the values are logged).
    :param batch: the most envs one evaluation batch steps together.
    """

    def __init__(self, run_dir, make_venv, objectives, interval: int, episodes: int = 50, gamma: float = 0.99,
                 deterministic: bool = True, last_k: int = 5, ranking: Sequence[str] | None = None, reps: int = 200,
                 batch: int = EVAL_BATCH):
        super().__init__()
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1 env-step, got {interval!r}")
        if int(episodes) < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes!r}")
        self.run_dir = Path(run_dir)
        self.objectives = tuple(objectives)
        self.ranking = tuple(ranking) if ranking is not None else self.objectives
        self.interval, self.episodes, self.gamma = int(interval), int(episodes), float(gamma)
        self.deterministic, self.last_k, self.reps, self.batch = bool(deterministic), int(last_k), int(reps), int(batch)
        self.rows: list[dict] = []
        self._envs = EvalEnvs(make_venv)

    @property
    def csv_path(self) -> Path:
        return self.run_dir / "evaluations.csv"

    def _on_training_start(self) -> None:
        done = int(self.model.num_timesteps)
        # a resumed run: keep the record up to the checkpoint it continues from, drop what came after
        self.rows = [r for r in read_evaluations(self.run_dir) if r["step"] <= done]
        self._train_before = self.rows[-1]["train_seconds"] if self.rows else 0.0
        self._next = (done // self.interval + 1) * self.interval
        self._eval_seconds = 0.0
        self._t0 = time.perf_counter()
        if self.rows or self.csv_path.exists():
            _write_rows(self.csv_path, self.rows)

    def train_seconds(self) -> float:
        """Training wall-clock so far, evaluation time excluded (resumed runs include earlier segments)."""
        return self._train_before + time.perf_counter() - self._t0 - self._eval_seconds

    def _on_rollout_start(self) -> None:
        # At a rollout's start every update on the collected steps is done: the policy evaluated is the
        # one a checkpoint taken now holds (AtomicCheckpoint saves here too).
        self._maybe_evaluate()

    def _on_step(self) -> bool:
        return True

    def _maybe_evaluate(self) -> bool:
        if self.model.num_timesteps < self._next:
            return False
        self.evaluate_now()
        self._next = (self.model.num_timesteps // self.interval + 1) * self.interval
        return True

    def evaluate_now(self) -> dict:
        """Evaluate now, log and record the row; returns it."""
        train_s = self.train_seconds()
        t = time.perf_counter()
        k = len(self.rows)
        first = PERIODIC_SEED_BASE + k * self.episodes
        seeds = range(first, first + self.episodes)
        records = run_episodes(self.model, self._envs, seeds, self.deterministic, self.objectives,
                               self.gamma, batch=self.batch)
        metrics = episode_metrics(records, self.objectives, reps=self.reps, seed=0)
        eval_s = time.perf_counter() - t
        self._eval_seconds += eval_s
        row = {"index": k, "step": int(self.model.num_timesteps), "train_seconds": float(train_s),
               "eval_seconds": float(eval_s), "episodes": self.episodes, "first_seed": first,
               **{name: float(v["value"]) for name, v in metrics.items()}}
        self.rows.append(row)
        for name, value in row.items():
            if name not in ("index", "step", "episodes", "first_seed"):
                self.logger.record(f"eval/{name}", value)
        _write_rows(self.csv_path, self.rows)
        summary = summarise_evaluations(self.rows, self.ranking, self.last_k)
        atomic_write(self.run_dir / "evaluations.json", json.dumps(summary, indent=1).encode())
        return row

    def _on_training_end(self) -> None:
        if self._maybe_evaluate():  # the final policy, after the last update
            self.logger.dump(self.model.num_timesteps)  # SB3 dumps no more rows after its loop
        self._envs.close()
