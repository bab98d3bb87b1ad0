"""Batched SubRL grid worlds: an SB3 ``VecEnv`` and a single Gymnasium env on top of it.

The reward of a step is the marginal gain ``F(s_{t+1} | tau_{0:t}) = F(tau_{0:t+1}) - F(tau_{0:t})``,
so an episode's return is ``F(tau) - F({s_0})`` (telescoping). An episode has ``horizon`` actions
(``horizon + 1`` visited states; the authors' ``H`` counts states, i.e. their ``H = 40`` is our
``horizon = 39``). Observations are a dict: ``cell`` (current cell index), ``t`` (time step) and
``visited`` (bitmap of visited cells), enough for time-augmented Markov and history policies.

``incremental=False`` switches to the reference style of the authors' code: F is recomputed from the
visited set of every env at every step, and the gain is the difference. Same results, used by
``scripts/bench_coverage.py`` as the baseline.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from morl.envs.coverage import kernels
from morl.envs.coverage.maps import make_map
from morl.envs.coverage.objectives import Objective, make_objective

__all__ = ["CoverageVecEnv", "CoverageEnv", "make_vec"]

#: Default settings per scenario (the authors' configs, horizons converted to action counts).
SCENARIOS = {
    "coverage": dict(objective="coverage", rows=30, cols=30, horizon=79),
    "bimodal": dict(objective="weighted_coverage", density="bimodal", rows=30, cols=30, horizon=39),
    "gorilla": dict(objective="weighted_coverage", density="gorilla", rows=30, cols=30, horizon=39),
    "experiment_design": dict(objective="experiment_design", rows=30, cols=30, horizon=39),
    "item_collection": dict(objective="item_collection", rows=7, cols=15, horizon=39),
    "two_rooms": dict(objective="coverage", layout="two_rooms", rows=7, cols=14, horizon=39),
}


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class CoverageVecEnv(VecEnv):
    """``num_envs`` grid worlds stepped together by a numba kernel.

    :param num_envs: batch size.
    :param objective: ``"coverage"``, ``"weighted_coverage"``, ``"item_collection"`` or ``"experiment_design"``.
    :param rows: grid rows (>= 1).
    :param cols: grid columns (>= 1).
    :param horizon: actions per episode (>= 1).
    :param layout: ``"open"`` or ``"two_rooms"``.
    :param block: side of the square a visit covers (2: the authors' small disc).
    :param density: weights for ``weighted_coverage`` (``"bimodal"``, ``"gorilla"``, ``"uniform"``, array).
    :param start: start cell: ``None`` (the authors' node 34, or the first free cell), a cell index,
        ``(row, col)``, or ``"random"`` (uniform over free cells, drawn from the seed).
    :param incremental: True: incremental marginal gains (numba); False: recompute F from the visited set.
    :param scalarization: accepted for the experiment layer's ``make_vec`` protocol; one objective, so
        only ``None`` or a single positive weight is meaningful (the reward is scaled by it).
    :param objective_kwargs: passed to :func:`~morl.envs.coverage.objectives.make_objective` (``instance``,
        ``item_counts``, ``item_demands``, ``lengthscale``, ``noise``, ``n_pseudo``).
    """

    render_mode = None  # no rendering; set before VecEnv.__init__ looks it up
    metadata = {"render_modes": []}

    def __init__(self, num_envs: int = 1, objective: str = "coverage", rows: int = 30, cols: int = 30,
                 horizon: int = 79, layout: str = "open", block: int = 2, density=None, start=None,
                 incremental: bool = True, scalarization=None, seed: int | None = None, **objective_kwargs):
        num_envs = _check_int("num_envs", num_envs, 1)
        self.horizon = _check_int("horizon", horizon, 1)
        self.grid = make_map(rows, cols, layout, block)
        self.obj: Objective = make_objective(objective, self.grid, density=density, **objective_kwargs)
        self.objectives = (self.obj.name,)
        self.reward_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.scale = self._scale(scalarization)
        self.incremental = bool(incremental)
        n = self.grid.n_cells
        obs_space = spaces.Dict({
            "cell": spaces.Discrete(n),
            "t": spaces.Discrete(self.horizon + 1),
            "visited": spaces.MultiBinary(n),
        })
        super().__init__(num_envs, obs_space, spaces.Discrete(5))
        self._start_spec = start
        self._rng = np.random.default_rng(seed)
        self._free = np.flatnonzero(~self.grid.walls)
        self._start = self._resolve_start(start)
        b = num_envs
        self.pos = np.zeros(b, np.int64)
        self.t = np.zeros(b, np.int64)
        self.visited = np.zeros((b, n), np.int8)
        self.covered = np.zeros((b, n), np.int8)
        self.value = np.zeros(b, np.float64)  # F(tau_{0:t}) per env
        self.gains = np.zeros(b, np.float64)  # last marginal gains
        self.modular = np.zeros(b, np.float64)  # last modular rewards F({s_{t+1}})
        self.counts = np.zeros((b, 0 if self.obj.demand is None else len(self.obj.demand)), np.int64)
        m = self.horizon + 1 if self.obj.kind == "design" else 0
        self.chol = np.zeros((b, m, m), np.float64)
        self.selected = np.zeros((b, m), np.int64)
        self.n_selected = np.zeros(b, np.int64)
        self.trajectory = np.zeros((b, self.horizon + 1), np.int64)  # for the recompute mode and plots
        self._actions = np.zeros(b, np.int64)
        self._reset_envs(np.arange(b))

    # -- construction helpers -------------------------------------------------------------------
    def _scale(self, scalarization) -> float:
        if scalarization is None:
            return 1.0
        if isinstance(scalarization, dict):
            unknown = set(scalarization) - set(self.objectives)
            if unknown:
                raise ValueError(f"scalarization names unknown objectives {sorted(unknown)} (objectives: {self.objectives})")
            return float(scalarization.get(self.objectives[0], 1.0))
        w = np.ravel(np.asarray(scalarization, dtype=np.float64))
        if w.size != 1:
            raise ValueError(f"scalarization has {w.size} weights for 1 objective {self.objectives}")
        return float(w[0])

    def _resolve_start(self, start) -> np.ndarray | None:
        n = self.grid.n_cells
        if start is None:
            cell = 34 if n > 34 and not self.grid.walls[34] else int(self._free[0])
        elif isinstance(start, str):
            if start != "random":
                raise ValueError(f"start must be None, a cell, (row, col) or 'random', got {start!r}")
            return None
        elif np.ndim(start) == 1 and len(start) == 2:
            r, c = int(start[0]), int(start[1])
            if not (0 <= r < self.grid.rows and 0 <= c < self.grid.cols):
                raise ValueError(f"start {tuple(start)} is outside the {self.grid.rows} x {self.grid.cols} grid")
            cell = self.grid.cell(r, c)
        else:
            cell = int(start)
            if not 0 <= cell < n:
                raise ValueError(f"start cell {cell} is outside [0, {n})")
        if self.grid.walls[cell]:
            raise ValueError(f"start cell {cell} is a wall")
        return np.int64(cell)

    def _reset_envs(self, idx: np.ndarray) -> None:
        starts = self._rng.choice(self._free, size=len(idx)) if self._start is None else np.full(len(idx), self._start)
        self.pos[idx] = starts
        self.t[idx] = 0
        self.visited[idx] = 0
        self.covered[idx] = 0
        self.counts[idx] = 0
        self.n_selected[idx] = 0
        self.trajectory[idx, 0] = starts
        for b, s in zip(idx, starts):
            self.value[b] = self._visit_first(int(b), int(s))

    def _visit_first(self, b: int, s: int) -> float:
        kind = self.obj.kind
        if kind == "coverage":
            g = kernels.visit_cover(b, s, self.grid.footprint, self.obj.weights, self.covered)
        elif kind == "items":
            g = kernels.visit_item(b, s, self.obj.item_type, self.obj.demand, self.visited, self.counts)
        else:
            g = kernels.visit_design(b, s, self.obj.cov, self.obj.noise, self.visited, self.chol, self.selected,
                                     self.n_selected)
        self.visited[b, s] = 1
        return g

    # -- fast path --------------------------------------------------------------------------------
    def step_arrays(self, actions) -> tuple[np.ndarray, np.ndarray]:
        """Step every env without building infos or auto-resetting.

        :return: ``(gains, modular)``: marginal gains and modular rewards of this step (views, valid
            until the next call). Call :meth:`reset` once ``t == horizon``.
        """
        a = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        if np.any((a < 0) | (a > 4)):
            raise ValueError(f"actions must be in 0..4, got {a[(a < 0) | (a > 4)][:5]}")
        if np.any(self.t >= self.horizon):
            raise RuntimeError("episode over: call reset() (the horizon was reached)")
        o = self.obj
        if self.incremental:
            if o.kind == "coverage":
                kernels.step_cover(self.grid.transitions, self.grid.footprint, o.weights, o.cell_modular, self.pos,
                                   self.t, a, self.visited, self.covered, self.value, self.gains, self.modular)
            elif o.kind == "items":
                kernels.step_items(self.grid.transitions, o.item_type, o.demand, self.pos, self.t, a, self.visited,
                                   self.counts, self.value, self.gains, self.modular)
            else:
                kernels.step_design(self.grid.transitions, o.cov, o.noise, o.cell_modular, self.pos, self.t, a,
                                    self.visited, self.chol, self.selected, self.n_selected, self.value, self.gains,
                                    self.modular)
        else:
            self._step_recompute(a)
        self.trajectory[np.arange(self.num_envs), self.t] = self.pos
        return self.gains, self.modular

    def _step_recompute(self, a: np.ndarray) -> None:
        # The reference style: move, then F(tau) from the set of visited cells of each env, gain = difference.
        self.pos[:] = self.grid.transitions[self.pos, a]
        self.t += 1
        rows = np.arange(self.num_envs)
        self.visited[rows, self.pos] = 1
        for b in range(self.num_envs):
            new = self.obj.value(np.flatnonzero(self.visited[b]))
            self.gains[b] = new - self.value[b]
            self.value[b] = new
        self.modular[:] = self.obj.cell_modular[self.pos]

    def observe(self) -> dict[str, np.ndarray]:
        """The current observation of every env (copies)."""
        return {"cell": self.pos.copy(), "t": self.t.copy(), "visited": self.visited.copy()}

    # -- SB3 VecEnv API ---------------------------------------------------------------------------
    def reset(self):
        if self._seeds and self._seeds[0] is not None:
            self._rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        self._reset_envs(np.arange(self.num_envs))
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self):
        gains, modular = self.step_arrays(self._actions)
        rewards = (self.scale * gains).astype(np.float32)
        dones = self.t >= self.horizon
        obs = self.observe()
        infos = [{"F": float(self.value[b]), "modular_reward": float(modular[b]),
                  "vector_reward": np.array([gains[b]], np.float32)} for b in range(self.num_envs)]
        if dones.any():
            idx = np.flatnonzero(dones)
            for b in idx:
                infos[b]["terminal_observation"] = {k: v[b].copy() for k, v in obs.items()}
                infos[b]["TimeLimit.truncated"] = True
            self._reset_envs(idx)
            new = self.observe()
            for k in obs:
                obs[k][idx] = new[k][idx]
        return obs, rewards, dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        return [getattr(self, method_name)(*method_args, **method_kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._get_indices(indices))

    def coverage_map(self, b: int = 0) -> np.ndarray:
        """``(rows, cols)`` map of env ``b``: 1 where covered (coverage), visited otherwise."""
        arr = self.covered[b] if self.obj.kind == "coverage" else self.visited[b]
        return arr.reshape(self.grid.rows, self.grid.cols).astype(bool)


class CoverageEnv(gym.Env):
    """One SubRL grid world (Gymnasium API). Reward: the marginal gain as a vector of shape ``(1,)``
    (the project's vector-reward convention; ``objectives`` names it); ``info["F"]`` is ``F(tau)``.

    Takes the keyword arguments of :class:`CoverageVecEnv` (except ``num_envs``).

    >>> env = CoverageEnv(rows=5, cols=5, horizon=3)
    >>> obs, info = env.reset(seed=0)
    >>> total = 0.0
    >>> for a in (1, 1, 2):
    ...     obs, r, terminated, truncated, info = env.step(a)
    ...     total += float(r[0])
    >>> total == info["F"] - info["F0"], truncated
    (True, True)
    """

    metadata = {"render_modes": []}

    def __init__(self, **kwargs):
        self.venv = CoverageVecEnv(num_envs=1, **kwargs)
        self.observation_space = self.venv.observation_space
        self.action_space = self.venv.action_space
        self.objectives = self.venv.objectives
        self.reward_space = self.venv.reward_space
        self.horizon = self.venv.horizon
        self._f0 = 0.0

    def _obs(self):
        v = self.venv
        return {"cell": int(v.pos[0]), "t": int(v.t[0]), "visited": v.visited[0].copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.venv.seed(seed)
        self.venv.reset()
        self._f0 = float(self.venv.value[0])
        return self._obs(), {"F": self._f0, "F0": self._f0}

    def step(self, action):
        gains, modular = self.venv.step_arrays(np.array([int(action)]))
        info = {"F": float(self.venv.value[0]), "F0": self._f0, "modular_reward": float(modular[0])}
        truncated = bool(self.venv.t[0] >= self.horizon)
        return self._obs(), np.array([gains[0]], np.float32), False, truncated, info


def make_vec(scenario: str, n_envs: int = 1, seed: int | None = None, scalarization=None, **kwargs) -> CoverageVecEnv:
    """The experiment layer's batched-env factory: a :class:`CoverageVecEnv` for a named scenario.

    :param scenario: one of ``coverage``, ``bimodal``, ``gorilla``, ``experiment_design``,
        ``item_collection``, ``two_rooms``.
    :param n_envs: batch size.
    :param seed: seed of random starts.
    :param scalarization: see :class:`CoverageVecEnv`.
    :param kwargs: override the scenario's defaults.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {tuple(SCENARIOS)}")
    return CoverageVecEnv(num_envs=n_envs, seed=seed, scalarization=scalarization, **{**SCENARIOS[scenario], **kwargs})
