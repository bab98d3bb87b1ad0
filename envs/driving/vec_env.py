"""SB3 ``VecEnv`` over the batched driving simulator: all envs step in one kernel call.

SB3 gets a float32 scalar reward per env, ``dot(weights, vector)`` with the scalarisation weights
(default :data:`~morl.envs.driving.objectives.DEFAULT_SCALARIZATION`), and each ``info`` holds
``"vector_reward"``, the event keys and the CaRL quantities, plus ``"terminal_observation"`` and
``"TimeLimit.truncated"`` when an episode ends (auto-reset, as ``DummyVecEnv`` does).

Building hundreds of Python dicts per step would cost as much as the simulation, so the step's results
stay in arrays on the VecEnv (:attr:`DrivingVecEnv.vector_rewards` ``(E, 4)``, :attr:`DrivingVecEnv.events`
``{key: (E,) array}``) and each ``info`` is a small :class:`StepInfo` mapping that reads its row of those
arrays only when a key is looked up. Our buffers read the arrays directly.

>>> from morl.envs.driving import make_vec
>>> venv = make_vec("highway", 4, seed=0)
>>> obs = venv.reset()
>>> obs, rewards, dones, infos = venv.step([1, 1, 3, 4])
>>> rewards.shape, infos[0]["vector_reward"].shape, venv.vector_rewards.shape
((4,), (4,), (4, 4))
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from morl.envs.driving import objectives as ob
from morl.envs.driving.batch import BatchSim
from morl.envs.driving.env import _BOOL_KEYS, build_sim_config, check_actions, driving_spaces
from morl.preorder import Preorder
from morl.vec_arrays import ArrayStep, StepInfos

__all__ = ["DrivingVecEnv", "StepInfo", "make_vec"]

_COLUMN = {key: k for k, key in enumerate(ob.INFO_KEYS)}
_IS_BOOL = {key: key in _BOOL_KEYS for key in ob.INFO_KEYS}
_MISSING = object()


class StepInfo(MutableMapping):
    """One env's ``info`` of one step, read lazily from the VecEnv's per-step arrays.

    Behaves like a dict (``[]``, ``get``, ``in``, assignment, ``copy()`` gives a plain ``dict``).
    """

    __slots__ = ("_info", "_rew", "_i", "_extra")

    def __init__(self, info_rows: np.ndarray, rewards: np.ndarray, index: int, extra: dict | None = None):
        self._info = info_rows
        self._rew = rewards
        self._i = index
        self._extra = extra

    def get(self, key, default=None):
        # direct, not Mapping.get's try/except around __getitem__: SB3 asks every info of every step for
        # keys it mostly lacks ("episode", "is_success")
        if self._extra is not None and key in self._extra:
            return self._extra[key]
        if key == "vector_reward":
            return self._rew[self._i].copy()
        k = _COLUMN.get(key)
        if k is None:
            return default
        value = self._info[self._i, k]
        return bool(value) if _IS_BOOL[key] else float(value)

    def __getitem__(self, key):
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        if self._extra is None:
            self._extra = {}
        self._extra[key] = value

    def __delitem__(self, key):
        if self._extra is None or key not in self._extra:
            raise KeyError(f"{key!r} cannot be deleted from a StepInfo")
        del self._extra[key]

    def __contains__(self, key):
        return key in _COLUMN or key == "vector_reward" or (self._extra is not None and key in self._extra)

    def __iter__(self):
        yield from ob.INFO_KEYS
        yield "vector_reward"
        if self._extra is not None:
            yield from (k for k in self._extra if k not in _COLUMN and k != "vector_reward")

    def __len__(self):
        return sum(1 for _ in self)

    def copy(self) -> dict:
        # one row read, not a lookup per key: SB3's VecMonitor copies the info of every episode that ends
        row = self._info[self._i].tolist()
        out = {key: bool(v) if _IS_BOOL[key] else v for key, v in zip(ob.INFO_KEYS, row)}
        out["vector_reward"] = self._rew[self._i].copy()
        if self._extra is not None:
            out.update(self._extra)
        return out

    def __repr__(self):
        return f"StepInfo({self.copy()!r})"


class DrivingVecEnv(VecEnv):
    """``n_envs`` driving environments stepped together by one numba kernel call.

    :param scenario: ``"highway"`` or ``"route"``.
    :param n_envs: number of environments.
    :param action_type: ``"discrete"`` or ``"continuous"`` (see :class:`morl.envs.driving.env.DrivingEnv`).
    :param seed: env ``i`` is seeded with ``seed + i`` at the first reset (SB3's convention), so it runs
        exactly like ``DrivingEnv`` reset with ``seed + i``. ``None``: random seeds.
    :param scalarization: weights ``(4,)`` of the scalar reward handed to SB3; ``None`` means
        :data:`~morl.envs.driving.objectives.DEFAULT_SCALARIZATION` ``(10, 1, 1, 0.2)``.
    :param render_mode: ``None`` or ``"rgb_array"``.
    :param parallel: split the batch over ``n_threads`` threads (the kernel releases the GIL).
    :param n_threads: threads for ``parallel`` (default: the CPU count).
    :param reward_scales: keywords of :func:`morl.envs.driving.objectives.make_scales`.
    :param preorder: precedence over the objectives.
    :param kwargs: scenario parameters (see :func:`morl.envs.driving.env.build_sim_config`).
    """

    def __init__(self, scenario: str, n_envs: int, action_type: str = "discrete", seed: int | None = None,
                 scalarization=None, render_mode: str | None = None, parallel: bool = False,
                 n_threads: int | None = None, reward_scales: dict | None = None,
                 preorder: str = ob.DEFAULT_PREORDER, **kwargs):
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        weights = ob.DEFAULT_SCALARIZATION if scalarization is None else scalarization
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != (len(ob.OBJECTIVES),) or not np.all(np.isfinite(weights)):
            raise ValueError(f"scalarization must be {len(ob.OBJECTIVES)} finite weights, got {scalarization!r}")
        road, n_vehicles, scales, params = build_sim_config(scenario, action_type, reward_scales, **kwargs)
        self.sim = BatchSim(road, int(n_envs), n_vehicles, scales, params, parallel=parallel, n_threads=n_threads)
        self.road = road
        self.scenario = scenario
        self.action_type = action_type
        self.render_mode = render_mode
        self.weights = weights
        self.objectives = ob.OBJECTIVES
        self.preorder = Preorder.parse(preorder).reindexed(self.objectives)
        obs_space, act_space, self.reward_space = driving_spaces(self.sim.obs_dim, self.sim.continuous)
        super().__init__(int(n_envs), obs_space, act_space)
        if seed is not None:
            self.seed(seed)
        self._actions = None
        #: ``(E, 4)`` float32 reward vectors of the last step
        self.vector_rewards = np.zeros((self.num_envs, len(ob.OBJECTIVES)), np.float32)
        #: ``(E, len(INFO_KEYS))`` float32 info quantities of the last step (columns ``INFO_KEYS``)
        self.info_array = np.zeros((self.num_envs, len(ob.INFO_KEYS)), np.float32)
        #: ``{key: column of info_array}``
        self.info_columns = dict(_COLUMN)
        self._ever_seeded = False

    # ------------------------------------------------------------------ arrays of the last step
    @property
    def events(self) -> dict[str, np.ndarray]:
        """``{key: (E,) array}`` of the last step's info quantities (views of :attr:`info_array`)."""
        return {key: self.info_array[:, k] for k, key in enumerate(ob.INFO_KEYS)}

    # ------------------------------------------------------------------ VecEnv API
    def reset(self):
        if any(s is not None for s in self._seeds) or not self._ever_seeded:
            fresh = np.random.SeedSequence().generate_state(self.num_envs, dtype=np.uint32)
            seeds = [int(s) if s is not None else int(fresh[i]) for i, s in enumerate(self._seeds)]
            self.sim.seed(seeds)
            self._ever_seeded = True
        self._reset_seeds()
        self._reset_options()
        self.sim.reset()
        self.vector_rewards[:] = 0.0
        self.info_array[:] = 0.0
        return self.sim.obs.copy()

    def step_async(self, actions) -> None:
        self._actions = check_actions(actions, self.sim.continuous, self.num_envs)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait called without step_async")
        actions, self._actions = self._actions, None
        step = self._step(actions)
        return step.obs, step.rewards, step.dones, list(step.infos)

    def step_arrays(self, actions) -> ArrayStep:
        """``step_async(actions)`` and ``step_wait()`` in one call, the results as arrays
        (:class:`morl.vec_arrays.ArrayStep`); only the ended envs' infos are built at the step."""
        return self._step(check_actions(actions, self.sim.continuous, self.num_envs))

    def _step(self, actions) -> ArrayStep:
        sim = self.sim
        sim.step(actions, auto_reset=True)
        # fresh arrays each step: infos handed out earlier keep their own step's values
        self.vector_rewards = sim.rew.copy()
        self.info_array = sim.info.copy()
        info_array, vector_rewards = self.info_array, self.vector_rewards
        rewards = (vector_rewards @ self.weights).astype(np.float32, copy=False)
        dones = sim.terminated | sim.truncated
        truncated = sim.truncated & ~sim.terminated
        ended = {int(i): StepInfo(info_array, vector_rewards, int(i),
                                  {"terminal_observation": sim.terminal_obs[i].copy(),
                                   "TimeLimit.truncated": bool(truncated[i])})
                 for i in np.flatnonzero(dones)}
        infos = StepInfos(self.num_envs, lambda i: StepInfo(info_array, vector_rewards, i), ended)
        return ArrayStep(sim.obs.copy(), rewards, dones, truncated, sim.terminal_obs, infos)

    def step_kernel(self, actions) -> None:
        """The raw batched step, no infos, no check of the action values (their shape is checked): results stay
        in ``self.sim`` arrays (for benchmarks and buffers that read arrays)."""
        self.sim.step(actions, auto_reset=True)

    def close(self) -> None:
        self.sim.close()

    def _indices(self, indices):
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, (int, np.integer)):
            return [int(indices)]
        return list(indices)

    def get_attr(self, attr_name: str, indices=None):
        value = getattr(self, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs):
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False for _ in self._indices(indices)]

    def get_images(self):
        from morl.envs.driving.render import render_frame
        return [render_frame(self.road, self.sim.ego[i], self.sim.traf[i], self.sim.P) for i in range(self.num_envs)]


def make_vec(scenario: str, n_envs: int, action_type: str = "discrete", seed: int | None = None,
             scalarization=None, **kwargs) -> DrivingVecEnv:
    """A :class:`DrivingVecEnv` of ``n_envs`` envs of ``scenario`` (see its parameters)."""
    return DrivingVecEnv(scenario, n_envs, action_type=action_type, seed=seed, scalarization=scalarization, **kwargs)
