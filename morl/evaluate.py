"""Per-objective numbers of a policy, outside the CLI: evaluation episodes and training-time logging.

- :func:`evaluate_policy` is SB3's ``evaluate_policy`` for vector rewards: per-objective returns and
  safety-event rates (with bootstrap intervals, :func:`morl.metrics.episode_metrics`) over seeded
  episodes;
- :func:`run_episodes` plays one episode per seed with all envs of a VecEnv stepping together (one
  ``predict`` call for the whole batch): env ``i`` of a batch seeded with ``s`` starts its episode exactly
  as a single env seeded with ``s + i`` (SB3's seeding convention, which every VecEnv here follows), and
  only that first episode of each env is recorded. ``morl eval``, :func:`evaluate_policy` and the
  evaluation during training (:mod:`morl.periodic`) all go through it, so the same seeds in the same
  batches give the same episodes;
- :class:`ObjectiveLogger` logs ``rollout/return_<objective>`` during training; the agents add one by
  default (:func:`with_objective_logger`), so the per-objective returns reach the SB3 logger (and
  TensorBoard) also when they are trained from Python.

>>> from stable_baselines3 import DQN
>>> from morl.agent_env import agent_env
>>> from morl.registry import two_objective_cartpole
>>> model = DQN("MlpPolicy", agent_env(two_objective_cartpole(), "DQN", weights_needed=False), seed=0)
>>> result = evaluate_policy(model, two_objective_cartpole(), n_eval_episodes=2)
>>> sorted(result["mean_returns"]), len(result["episodes"]), "off_road_rate" in result["metrics"]
(['balance', 'centred'], 2, True)
"""

from __future__ import annotations

from collections import deque

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from morl.buffers import vector_reward_array_env
from morl.metrics import episode_metrics
from morl.wrappers import EVENT_KEYS, MOEpisodeStatistics

__all__ = ["EVAL_BATCH", "EVAL_SEED_BASE", "EvalEnvs", "ObjectiveLogger", "consecutive_batches", "evaluate_policy",
           "run_episodes", "with_objective_logger"]

#: Evaluation seeds default to EVAL_SEED_BASE + i, far from training seeds.
EVAL_SEED_BASE = 10_000


def evaluate_policy(model, env=None, n_eval_episodes: int = 10, deterministic: bool = True, seeds=None,
                    gamma: float = 0.99, reps: int = 2000) -> dict:
    """Run ``n_eval_episodes`` seeded episodes of ``model`` and return their per-objective numbers.

    :param model: anything with SB3's ``predict``.
    :param env: a vector-reward Gymnasium env, or a one-env VecEnv (default: the model's env, which must
        hold one env); a Gymnasium env is scalarised as the agents do (:func:`morl.agent_env.agent_env`).
    :param n_eval_episodes: episodes.
    :param deterministic: greedy actions.
    :param seeds: one reset seed per episode (default ``10000 + i``, disjoint from training seeds).
    :param gamma: discount of the ``discounted_returns``.
    :param reps: bootstrap resamples of the intervals.
    :return: ``{"objectives", "mean_returns": {objective: mean return}, "episodes": [record, ...],
        "metrics": {name: {"value", "lo", "hi"}}}``; a record holds ``seed``, ``returns`` and
        ``discounted_returns`` per objective, ``length``, ``events`` (steps on which each event the env
        reports was set, ``cost`` summed), and ``route_completion`` / ``distance_km`` when reported.
    """
    from morl.agent_env import agent_env

    if env is None:
        env = model.get_env()
    if not isinstance(env, VecEnv):
        env = DummyVecEnv([lambda e=agent_env(env, "evaluate_policy", weights_needed=False): e])
    if env.num_envs != 1:
        raise ValueError(f"evaluate_policy runs episodes on one env; got a VecEnv of {env.num_envs}: pass a "
                         "Gymnasium env or a one-env VecEnv")
    try:
        objectives = tuple(getattr(env, "objectives", None) or env.get_attr("objectives")[0])
    except AttributeError:
        raise ValueError("evaluate_policy needs a vector-reward env (with 'objectives'); for a scalar reward use "
                         "stable_baselines3.common.evaluation.evaluate_policy") from None
    seeds = list(seeds) if seeds is not None else [EVAL_SEED_BASE + i for i in range(n_eval_episodes)]
    if len(seeds) != n_eval_episodes:
        raise ValueError(f"seeds has {len(seeds)} entries for n_eval_episodes = {n_eval_episodes}")
    records = run_episodes(model, lambda n: env, seeds, deterministic, objectives, gamma, batch=1)
    means = {o: float(np.mean([r["returns"][o] for r in records])) for o in objectives}
    return {"objectives": list(objectives), "mean_returns": means, "episodes": records,
            "metrics": episode_metrics(records, objectives, reps=reps, seed=0)}


class ObjectiveLogger(BaseCallback):
    """Logs the mean per-objective episode return (last 100 episodes) as ``rollout/return_<objective>``.

    :param objectives: objective names.
    :param accumulate: sum ``info["vector_reward"]`` per env here (batched simulators without
        ``MOEpisodeStatistics``) instead of reading ``info["mo_episode"]``; None: read ``mo_episode`` when
        every env is wrapped in :class:`~morl.wrappers.MOEpisodeStatistics`, else sum.
    """

    def __init__(self, objectives, window: int = 100, accumulate: bool | None = False):
        super().__init__()
        self.objectives = tuple(objectives)
        self.returns: deque = deque(maxlen=window)
        self.accumulate = accumulate
        self._sums = None
        self._array_env = None

    def _on_training_start(self) -> None:
        self._array_env = vector_reward_array_env(self.training_env)
        if self.accumulate is None:
            wrapped = self._array_env is None and all(self.training_env.env_is_wrapped(MOEpisodeStatistics))
            self.accumulate = not wrapped

    def _on_step(self) -> bool:
        new = False
        infos = self.locals.get("infos", ())
        if self.accumulate:
            if self._array_env is not None:  # the batched simulator's own (n_envs, m) array
                vec = self._array_env.vector_rewards.astype(float)
            elif all("vector_reward" in info for info in infos):
                vec = np.stack([np.asarray(info["vector_reward"], dtype=float) for info in infos])
            else:
                return True  # a scalar-reward env: nothing to log
            self._sums = vec if self._sums is None else self._sums + vec
            for i in np.flatnonzero(self.locals["dones"]):
                self.returns.append(self._sums[i].copy())
                self._sums[i] = 0.0
                new = True
        for info in () if self.accumulate else infos:
            ep = info.get("mo_episode")
            if ep is not None:
                self.returns.append(np.asarray(ep["r"], dtype=float))
                new = True
        if new:
            mean = np.mean(self.returns, axis=0)
            for name, value in zip(self.objectives, mean):
                self.logger.record(f"rollout/return_{name}", float(value))
        return True


#: The most envs one evaluation batch steps together.
EVAL_BATCH = 64
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


def _loggers(callback) -> list:
    if callback is None:
        return []
    if isinstance(callback, CallbackList):
        return [c for cb in callback.callbacks for c in _loggers(cb)]
    if isinstance(callback, (list, tuple)):
        return [c for cb in callback for c in _loggers(cb)]
    return [callback] if isinstance(callback, ObjectiveLogger) else []


def with_objective_logger(callback, env):
    """``callback`` plus an :class:`ObjectiveLogger` when ``env`` (a VecEnv) has objectives and ``callback``
    holds none: what the agents' ``learn`` passes to SB3."""
    if env is None or _loggers(callback):
        return callback
    try:
        objectives = getattr(env, "objectives", None) or env.get_attr("objectives")[0]
    except (AttributeError, IndexError):
        return callback
    logger = ObjectiveLogger(objectives, accumulate=None)
    if callback is None:
        return logger
    return CallbackList([*(callback if isinstance(callback, (list, tuple)) else [callback]), logger])
