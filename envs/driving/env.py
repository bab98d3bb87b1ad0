"""Gymnasium environments of the built-in driving simulator (``morl/Highway-v0``, ``morl/Route-v0``).

The reward is a float32 vector over :data:`~morl.envs.driving.objectives.OBJECTIVES` (MO-Gymnasium convention
plus names); ``info`` carries the event keys and the CaRL quantities of :mod:`morl.envs.driving.objectives`.
One env is a batch of one of :class:`~morl.envs.driving.batch.BatchSim`, so it runs the same kernels as the
batched :class:`~morl.envs.driving.vec_env.DrivingVecEnv` and, seeded alike, gives the same trajectories.

>>> import gymnasium as gym, morl.envs.driving
>>> env = gym.make("morl/Route-v0", action_type="continuous")
>>> obs, info = env.reset(seed=0)
>>> obs2, reward, terminated, truncated, info = env.step(env.action_space.sample())
>>> reward.shape, env.unwrapped.objectives
((4,), ('safety', 'rules', 'progress', 'comfort'))
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from morl.envs.driving import objectives as ob
from morl.envs.driving.batch import BatchSim, default_params
from morl.envs.driving.road import build_road
from morl.envs.driving.sim import E_RC, N_META_ACTIONS, batch_observe
from morl.preorder import Preorder

__all__ = ["DrivingEnv", "HighwayEnv", "RouteEnv", "SCENARIOS", "build_sim_config", "check_actions"]

#: Scenario defaults: road keywords (see :mod:`morl.envs.driving.road`) and simulator keywords
#: (see :func:`morl.envs.driving.batch.default_params`); every one can be overridden by a constructor kwarg.
SCENARIOS: dict[str, dict] = {
    # straight 4-lane highway, limit 30 m/s, dense traffic at 65-90 % of the limit: about 170 steps at the
    # initial speed to the end of the 800 m route
    "highway": {
        "road": {"lanes": 4, "length": 800.0, "speed_limit": 30.0, "lane_width": 4.0},
        "sim": {"n_vehicles": 20, "dt": 0.2, "max_steps": 250, "traffic_speed": (0.65, 0.9)},
    },
    # 1 km of curves (radius 150 m), limits 25 -> 16.7 -> 22 m/s, slower traffic (55-85 % of the limit)
    # and the left lane of 3 ending at 55 % of the route: about 270 steps at the limits
    "route": {
        "road": {"lanes": 3, "length": 1000.0, "speed_limits": (25.0, 16.7, 22.0), "curvature": 1.0 / 150.0,
                 "lane_width": 4.0, "lane_drop": True},
        "sim": {"n_vehicles": 16, "dt": 0.2, "max_steps": 500, "traffic_speed": (0.55, 0.85)},
    },
}

_ROAD_KEYS = {"highway": ("lanes", "length", "speed_limit", "lane_width", "grid_step"),
              "route": ("lanes", "length", "speed_limits", "curvature", "lane_width", "lane_drop", "grid_step")}


def build_sim_config(scenario: str, action_type: str = "discrete", reward_scales: dict | None = None, **kwargs):
    """``(road, n_vehicles, scales, params)`` of a scenario with keyword overrides.

    :param scenario: ``"highway"`` or ``"route"``.
    :param action_type: ``"discrete"`` (meta-actions) or ``"continuous"`` (``(accel, steer)`` in ``[-1, 1]``).
    :param reward_scales: keywords of :func:`morl.envs.driving.objectives.make_scales`.
    :param kwargs: road keywords (``lanes``, ``length``, ``speed_limit`` / ``speed_limits``, ``lane_width``,
        ``curvature``, ``lane_drop``), ``n_vehicles``, and any keyword of :func:`morl.envs.driving.batch.default_params`.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {sorted(SCENARIOS)}")
    if action_type not in ("discrete", "continuous"):
        raise ValueError(f"action_type must be 'discrete' or 'continuous', got {action_type!r}")
    road_kw = dict(SCENARIOS[scenario]["road"])
    sim_kw = dict(SCENARIOS[scenario]["sim"])
    for key, value in kwargs.items():
        if key in _ROAD_KEYS[scenario]:
            road_kw[key] = value
        else:
            sim_kw[key] = value
    road = build_road(scenario, **road_kw)
    n_vehicles = sim_kw.pop("n_vehicles")
    if isinstance(n_vehicles, bool) or not isinstance(n_vehicles, (int, np.integer)) or n_vehicles < 0:
        raise ValueError(f"n_vehicles must be an int >= 0, got {n_vehicles!r}")
    try:
        params = default_params(road, continuous=action_type == "continuous", **sim_kw)
    except TypeError as err:  # an unknown keyword: say which
        raise TypeError(f"unknown driving-env argument: {err}") from None
    scales = ob.make_scales(**(reward_scales or {}))
    return road, int(n_vehicles), scales, params


def check_actions(actions, continuous: bool, n_envs: int | None = None) -> np.ndarray:
    """Validate actions; returns ``(E,)`` int64 or ``(E, 2)`` float64. Raises ``ValueError`` naming
    ``action`` for NaN, wrong shape or values out of the action space."""
    if continuous:
        a = np.asarray(actions, dtype=np.float64)
        want = (2,) if n_envs is None else (n_envs, 2)
        if a.shape != want:
            a = a.reshape(want) if a.size == int(np.prod(want)) else a
        if a.shape != want:
            raise ValueError(f"action must have shape {want}, got {np.shape(actions)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {actions!r}")
        if np.any(np.abs(a) > 1.0 + 1e-6):
            raise ValueError(f"action out of the action space [-1, 1]^2: {actions!r}")
        return np.ascontiguousarray(np.clip(a, -1.0, 1.0)).reshape(-1, 2)
    a = np.asarray(actions)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {actions!r}")
        if np.any(a != np.round(a)):
            raise ValueError(f"action must be an integer meta-action, got {actions!r}")
    elif a.dtype.kind not in "iub":
        raise ValueError(f"action must be an integer meta-action, got {actions!r}")
    want = () if n_envs is None else (n_envs,)
    if a.shape != want and a.size == max(int(np.prod(want)), 1):
        a = a.reshape(want)
    if a.shape != want:
        raise ValueError(f"action must have shape {want}, got {a.shape}")
    if np.any(a < 0) or np.any(a >= N_META_ACTIONS):
        raise ValueError(f"action out of the action space Discrete({N_META_ACTIONS}): {actions!r}")
    return np.ascontiguousarray(a.astype(np.int64)).reshape(-1)


def info_dict(row: np.ndarray, reward: np.ndarray) -> dict:
    """The ``info`` of one env from its row of the info array and its reward vector."""
    info = {key: float(row[k]) for k, key in enumerate(ob.INFO_KEYS)}
    for key in _BOOL_KEYS:
        info[key] = bool(info[key])
    info["vector_reward"] = np.array(reward, dtype=np.float32)
    return info


_BOOL_KEYS = ("collision", "off_road", "red_light", "speeding", "success", "ttc_violation", "outside_route_lanes")


def driving_spaces(obs_dim: int, continuous: bool):
    """``(observation_space, action_space, reward_space)``."""
    obs_space = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous else spaces.Discrete(N_META_ACTIONS)
    rew_space = spaces.Box(-1.0, 1.0, (len(ob.OBJECTIVES),), np.float32)
    return obs_space, act_space, rew_space


class DrivingEnv(gym.Env):
    """One driving environment with a vector reward.

    :param scenario: ``"highway"`` or ``"route"`` (:data:`SCENARIOS` gives their defaults).
    :param action_type: ``"discrete"``: meta-actions ``0 LANE_LEFT, 1 IDLE, 2 LANE_RIGHT, 3 FASTER, 4 SLOWER``
        (highway-env's order) through a lane and speed controller; ``"continuous"``: ``(accel, steer)`` in
        ``[-1, 1]``, scaled by ``acc_max`` (m/s^2) and ``max_steer`` (rad).
    :param render_mode: ``None`` or ``"rgb_array"`` (top-down frames drawn with numpy).
    :param reward_scales: keywords of :func:`morl.envs.driving.objectives.make_scales`.
    :param preorder: precedence over the objectives (default ``"safety > rules > progress > comfort"``).
    :param kwargs: scenario parameters: ``lanes``, ``length``, ``speed_limit`` (highway) or ``speed_limits``
        (route), ``curvature``, ``lane_drop``, ``n_vehicles``, ``dt``, ``max_steps``, ... (see
        :func:`build_sim_config`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(self, scenario: str = "highway", action_type: str = "discrete", render_mode: str | None = None,
                 reward_scales: dict | None = None, preorder: str = ob.DEFAULT_PREORDER, **kwargs):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.scenario = scenario
        self.action_type = action_type
        self.render_mode = render_mode
        road, n_vehicles, scales, params = build_sim_config(scenario, action_type, reward_scales, **kwargs)
        self.sim = BatchSim(road, 1, n_vehicles, scales, params)
        self.road = road
        self.objectives = ob.OBJECTIVES
        self.preorder = Preorder.parse(preorder).reindexed(self.objectives)
        self.observation_space, self.action_space, self.reward_space = driving_spaces(
            self.sim.obs_dim, self.sim.continuous)
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.sim.seed([seed])
            self._seeded = True
        elif not self._seeded:
            self.sim.seed([int(self.np_random.integers(0, 2**62))])
            self._seeded = True
        self.sim.reset()
        info = info_dict(np.zeros(len(ob.INFO_KEYS), np.float32), np.zeros(4, np.float32))
        info["route_completion"] = float(self.sim.ego[0, E_RC])
        info["ttc"] = 100.0
        return self.sim.obs[0].copy(), info

    def step(self, action):
        a = check_actions(action, self.sim.continuous)
        self.sim.step(a, auto_reset=False)
        sim = self.sim
        return (sim.obs[0].copy(), sim.rew[0].copy(), bool(sim.terminated[0]), bool(sim.truncated[0]),
                info_dict(sim.info[0], sim.rew[0]))

    def observe(self) -> np.ndarray:
        """The observation of the current state, recomputed (for a state set by hand in ``sim.ego`` /
        ``sim.traf``)."""
        sim = self.sim
        batch_observe(sim.ego, sim.traf, sim.order, sim.P, *sim._road_args, sim.obs)
        return sim.obs[0].copy()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from morl.envs.driving.render import render_frame
        return render_frame(self.road, self.sim.ego[0], self.sim.traf[0], self.sim.P)


class HighwayEnv(DrivingEnv):
    """:class:`DrivingEnv` with ``scenario="highway"`` by default (``morl/Highway-v0``)."""

    def __init__(self, scenario: str = "highway", **kwargs):
        super().__init__(scenario=scenario, **kwargs)


class RouteEnv(DrivingEnv):
    """:class:`DrivingEnv` with ``scenario="route"`` by default (``morl/Route-v0``)."""

    def __init__(self, scenario: str = "route", **kwargs):
        super().__init__(scenario=scenario, **kwargs)
