"""A rule-based driver on the shared driving observation: discrete meta-actions, no learning.

It reads only the observation every driving backend gives (:mod:`morl.envs.driving.observation`), so it runs
on the built-in simulator, the highway-env adapter and the CARLA adapter alike, and it has SB3's ``predict``,
so :func:`morl.evaluate.evaluate_policy` and :func:`morl.evaluate.run_episodes` evaluate it like an agent. It is
the reference a learned policy is measured against: what a few hand-written rules reach on the same episodes.

The rules, applied to each row of the observation:

1. **Merge before the lane ends.** When the ego's lane ends within ``merge_distance`` and a lane to the right
   exists, change to it once the gap there is free: no vehicle in that lane within ``min_gap`` ahead, nor
   within ``min_gap`` plus ``headway`` seconds of its closing speed behind.
2. **Keep a time headway.** The nearest vehicle ahead in the ego's lane (or in the target lane during a lane
   change), and the end of the ego's lane when it cannot merge, must stay farther than
   ``min_gap + headway * v`` plus the braking distance of the closing speed at ``brake`` m/s^2; closer, the
   driver slows down (SLOWER) and stops asking for speed.
3. **Drive at the speed limit.** Otherwise it raises the target speed (FASTER) while the next step of
   ``speed_step`` stays within the lower of the limit here and 50 m ahead, and lowers it above that.

Car following with a safe time gap is the idea of the Intelligent Driver Model (Treiber, Hennecke, Helbing,
"Congested traffic states in empirical observations and microscopic simulations", Phys. Rev. E 62, 2000); the
lane-change check is a crude form of MOBIL's safety criterion (Kesting, Treiber, Helbing, "General lane-changing
model MOBIL for car-following models", Transp. Res. Rec. 1999, 2007), with no incentive term: the driver only
changes lane when its own lane ends.
"""

from __future__ import annotations

import numpy as np

from morl.envs.driving.observation import K_VEHICLES, N_EGO_OBS, N_ROUTE_OBS, N_VEH_OBS, V_MAX, WINDOW, obs_size
from morl.envs.driving.sim import FASTER, IDLE, LANE_RIGHT, SLOWER

__all__ = ["RuleDriver"]

_VEHICLE_LENGTH = 5.0  # m: the observation gives centre distances; gaps are bumper to bumper
_MERGE_ROOM = 20.0     # m of lane a lane change from standstill needs (the lateral controller steers at speed)


class RuleDriver:
    """Rule-based meta-action driver (module docstring) with SB3's ``predict``.

    :param k_vehicles: vehicles in the observation (the env's ``k_vehicles``).
    :param lane_width: lane width (m), to tell which observed vehicle is in which lane.
    :param speed_step: target-speed change of FASTER / SLOWER (m/s; the simulator's ``speed_step``).
    :param v_max: the observation's speed normaliser (m/s).
    :param headway: time gap (s) kept to the vehicle ahead.
    :param min_gap: bumper-to-bumper gap (m) kept at any speed, and required ahead and behind to change lane.
    :param brake: deceleration (m/s^2) assumed to cancel a closing speed.
    :param merge_distance: the driver changes to the right lane when its own lane ends within this (m); at most
        200 m, the distance the observation resolves.
    """

    def __init__(self, k_vehicles: int = K_VEHICLES, lane_width: float = 4.0, speed_step: float = 5.0,
                 v_max: float = V_MAX, headway: float = 1.5, min_gap: float = 8.0, brake: float = 3.0,
                 merge_distance: float = 150.0):
        for name, value in (("lane_width", lane_width), ("speed_step", speed_step), ("v_max", v_max),
                            ("headway", headway), ("min_gap", min_gap), ("brake", brake),
                            ("merge_distance", merge_distance)):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"RuleDriver: {name} must be a positive number, got {value!r}")
        if merge_distance > 200.0:
            raise ValueError(f"RuleDriver: merge_distance must be at most 200 m (the observation's range), "
                             f"got {merge_distance!r}")
        if isinstance(k_vehicles, bool) or not isinstance(k_vehicles, (int, np.integer)) or k_vehicles < 0:
            raise ValueError(f"RuleDriver: k_vehicles must be an int >= 0, got {k_vehicles!r}")
        self.k_vehicles = int(k_vehicles)
        self.lane_width, self.speed_step, self.v_max = float(lane_width), float(speed_step), float(v_max)
        self.headway, self.min_gap, self.brake = float(headway), float(min_gap), float(brake)
        self.merge_distance = float(merge_distance)

    def _safe_gap(self, v, closing):
        return self.min_gap + self.headway * v + np.maximum(closing, 0.0) ** 2 / (2.0 * self.brake)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Meta-actions ``(N,)`` int64 for observations ``(N, obs_size(k_vehicles))``."""
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim == 1:
            obs = obs[None]
        if obs.ndim != 2 or obs.shape[1] != obs_size(self.k_vehicles):
            raise ValueError(f"RuleDriver: expected observations of length {obs_size(self.k_vehicles)} "
                             f"(k_vehicles={self.k_vehicles}), got shape {obs.shape}")
        w = self.lane_width
        v = obs[:, 0] * self.v_max
        lane_offset = obs[:, 2] * 0.5 * w                 # ego's offset from its lane's centre
        limit = np.minimum(obs[:, 5], obs[:, N_EGO_OBS + 6]) * self.v_max
        target_speed = obs[:, 8] * self.v_max
        target_lane = obs[:, 9] * 2.0 * w + lane_offset   # target lane centre relative to the ego lane's centre
        right_exists = obs[:, N_EGO_OBS + 1] > 0.5
        lane_end = obs[:, N_EGO_OBS + 2] * 200.0
        veh = obs[:, N_EGO_OBS + N_ROUTE_OBS:].reshape(len(obs), self.k_vehicles, N_VEH_OBS)
        present = veh[:, :, 0] > 0.5
        ds = veh[:, :, 1] * WINDOW
        lat = veh[:, :, 2] * 10.0 + lane_offset[:, None]  # lateral position relative to the ego lane's centre
        dvs = veh[:, :, 3] * 20.0                         # their speed minus the ego's, along the road

        def nearest_ahead(centre):
            """Gap (m) and closing speed (m/s) to the nearest vehicle ahead in the lane at ``centre``."""
            inside = present & (np.abs(lat - centre[:, None]) < 0.75 * w) & (ds > 0)
            gap = np.where(inside, ds - _VEHICLE_LENGTH, np.inf)
            k = np.argmin(gap, axis=1)
            rows = np.arange(len(obs))
            return gap[rows, k], np.where(np.isfinite(gap[rows, k]), -dvs[rows, k], 0.0)

        changing = np.abs(target_lane) > 0.5 * w
        gap, closing = nearest_ahead(np.zeros(len(obs)))
        gap_t, closing_t = nearest_ahead(np.where(changing, target_lane, 0.0))
        danger = (gap < self._safe_gap(v, closing)) | (gap_t < self._safe_gap(v, closing_t))

        # rule 1: merge right before the lane ends, once the right lane's gap is free
        in_right = present & (np.abs(lat + w) < 0.75 * w)
        free_ahead = ~np.any(in_right & (ds > 0) & (ds - _VEHICLE_LENGTH < self.min_gap), axis=1)
        behind_gap = -ds - _VEHICLE_LENGTH
        need_behind = self.min_gap + self.headway * np.maximum(dvs, 0.0)
        free_behind = ~np.any(in_right & (ds <= 0) & (behind_gap < need_behind), axis=1)
        ends = (lane_end < self.merge_distance) & right_exists & ~changing
        merge = ends & free_ahead & free_behind
        # the lane's end, less the room a lane change from standstill takes, is a standing obstacle while the
        # driver cannot merge
        stuck = (lane_end < self.merge_distance) & ~merge & ~changing
        danger |= stuck & (lane_end - _MERGE_ROOM < self._safe_gap(v, v))

        actions = np.full(len(obs), IDLE, dtype=np.int64)
        actions[(target_speed > limit + 1e-6)] = SLOWER
        actions[(target_speed + self.speed_step <= limit + 1e-6)] = FASTER
        actions[danger & (target_speed > 0)] = SLOWER
        actions[danger & (target_speed <= 0)] = IDLE
        actions[merge] = LANE_RIGHT
        return actions

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """SB3's ``predict``: ``(actions, None)``; a single observation gives a single action."""
        obs = np.asarray(observation)
        actions = self.act(obs)
        return (actions[0] if obs.ndim == 1 else actions), None
