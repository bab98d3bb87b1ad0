"""Evaluation episodes run side by side, and evaluation during training.

:func:`run_episodes` plays one episode per seed with all envs of a VecEnv stepping together (one
``predict`` call for the whole batch): env ``i`` of a batch seeded with ``s`` starts its episode exactly
as a single env seeded with ``s + i`` (SB3's seeding convention, which every VecEnv here follows), and
only that first episode of each env is recorded. ``morl eval`` (:func:`morl.experiment.evaluate`) and the
periodic evaluation of :class:`PeriodicEvaluation` both go through it, in batches of at most
:data:`EVAL_BATCH` envs, so the same seeds give the same episodes in both.

:class:`PeriodicEvaluation` is SB3's ``EvalCallback`` idea with the vector metrics: every
``interval`` env-steps it evaluates the current policy on ``episodes`` held-out seeds (fresh ones each
time: evaluation ``k`` of a run uses ``PERIODIC_SEED_BASE + k * episodes + i``, never a training seed
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
from morl.metrics import episode_metrics
from morl.wrappers import EVENT_KEYS

__all__ = ["EVAL_BATCH", "PERIODIC_SEED_BASE", "EvalEnvs", "PeriodicEvaluation", "consecutive_batches", "read_evaluations",
           "run_episodes", "summarise_evaluations"]

#: The most envs one evaluation batch steps together.
EVAL_BATCH = 64
#: Evaluation ``k`` during training uses seeds ``PERIODIC_SEED_BASE + k * episodes + i``.
PERIODIC_SEED_BASE = 1_000_000


def consecutive_batches(seeds: Sequence[int], size: int = EVAL_BATCH) -> list[list[int]]:
    """Split ``seeds`` into runs of consecutive integers of at most ``size`` each (order kept).

    A batch ``[s, s + 1, ..., s + n - 1]`` is one ``VecEnv.seed(s)`` call on ``n`` envs.

    >>> consecutive_batches([5, 6, 7, 9, 10, 3], size=2)
    [[5, 6], [7], [9, 10], [3]]
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size!r}")
    out: list[list[int]] = []
    for s in map(int, seeds):
        if out and len(out[-1]) < size and s == out[-1][-1] + 1:
            out[-1].append(s)
        else:
            out.append([s])
    return out


def _record(seed, ret, dret, length, events, seen, info, objectives) -> dict:
    ep = info.get("mo_episode")
    if ep is not None:  # the wrapper's record is authoritative where it exists
        ret, dret, length = np.asarray(ep["r"], float), np.asarray(ep["dr"], float), int(ep["l"])
        events = {k: float(ep.get(k, events[k])) for k in EVENT_KEYS}
    events = {k: v for k, v in events.items() if k in seen}  # only events the env reports: absent is not zero
    rec = {"seed": int(seed), "returns": dict(zip(objectives, map(float, ret))),
           "discounted_returns": dict(zip(objectives, map(float, dret))), "length": int(length), "events": events}
    if "route_completion" in info:
        rec["route_completion"] = float(info["route_completion"])
    if "distance" in info:
        rec["distance_km"] = float(info["distance"]) / 1000.0
    return rec


def run_episodes(model, make_venv, seeds: Sequence[int], deterministic: bool, objectives: Sequence[str],
                 gamma: float, batch: int = EVAL_BATCH, progress=None) -> list[dict]:
    """One evaluation episode per seed, envs of a batch stepping together; the records in ``seeds`` order.

    :param model: anything with SB3's ``predict(obs, state, episode_start, deterministic)``.
    :param make_venv: ``make_venv(n)`` gives a VecEnv of ``n`` envs whose infos hold ``"vector_reward"``
        (e.g. an :class:`EvalEnvs`; the caller closes them).
    :param seeds: episode seeds; consecutive runs share one batch.
    :param deterministic: passed to ``predict``.
    :param objectives: objective names, in the reward vector's order.
    :param gamma: discount of the ``discounted_returns``.
    :param batch: the most envs per batch.
    :param progress: called with the number of episodes finished after each batch (e.g. a tqdm ``update``).
    :return: per-episode records: ``seed``, ``returns`` and ``discounted_returns`` per objective, ``length``,
        ``events`` (steps on which each event of :data:`morl.wrappers.EVENT_KEYS` was set, ``cost`` summed;
        only events the env reports), ``route_completion`` (last value) and ``distance_km`` where reported.
    """
    objectives = tuple(objectives)
    m = len(objectives)
    records: list[dict] = []
    for group in consecutive_batches(seeds, batch):
        n = len(group)
        venv = make_venv(n)
        venv.seed(group[0])
        obs = venv.reset()
        ret, dret = np.zeros((n, m)), np.zeros((n, m))
        disc = np.ones(n)
        length = np.zeros(n, dtype=int)
        events = [dict.fromkeys(EVENT_KEYS, 0.0) for _ in range(n)]
        seen: list[set] = [set() for _ in range(n)]
        out: list[dict | None] = [None] * n
        state, start = None, np.ones(n, dtype=bool)
        while any(r is None for r in out):
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)
            obs, _, dones, infos = venv.step(action)
            start = dones
            for i in range(n):
                if out[i] is not None:
                    continue  # this env's recorded episode is over; it steps on unrecorded
                info = infos[i]
                vec = np.asarray(info["vector_reward"], dtype=float)
                ret[i] += vec
                dret[i] += disc[i] * vec
                disc[i] *= gamma
                length[i] += 1
                ev = events[i]
                for key in EVENT_KEYS:
                    value = info.get(key)
                    if value is not None:
                        seen[i].add(key)
                        ev[key] += float(value) if key == "cost" else float(bool(value))
                if dones[i]:
                    out[i] = _record(group[i], ret[i], dret[i], length[i], ev, seen[i], info, objectives)
        records += out
        if progress is not None:
            progress(n)
    return records


class EvalEnvs:
    """Evaluation VecEnvs by batch size, each built once by ``make(n)``; :meth:`close` closes them all."""

    def __init__(self, make):
        self._make = make
        self._venvs: dict[int, object] = {}

    def __call__(self, n: int):
        if n not in self._venvs:
            self._venvs[n] = self._make(n)
        return self._venvs[n]

    def close(self) -> None:
        for venv in self._venvs.values():
            venv.close()
        self._venvs.clear()


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
