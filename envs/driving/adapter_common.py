"""Simulator-agnostic pieces of the driving adapters (highway-env and CARLA).

:class:`RoutePolyline` projects a position on a route's centre line; :class:`ObjectiveTracker` turns one
step's measurements into the reward vector, events and CaRL quantities of :mod:`morl.envs.driving.objectives`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import gymnasium as gym
import numpy as np

from morl.envs.driving import objectives as obj

__all__ = ["RoutePolyline", "ObjectiveTracker", "TTC_NONE", "driving_reward_space"]

#: Time-to-collision reported when nothing is ahead or nothing is closing in (s).
TTC_NONE = 100.0


class RoutePolyline:
    """A route as a 2-D polyline with arc length, and the projection of a point onto it.

    :param points: ``(N, 2)`` route points in driving order, N >= 2 (repeated points are dropped).

    >>> route = RoutePolyline([[0, 0], [10, 0], [10, 10]])
    >>> route.length
    20.0
    >>> s, lateral = route.project([12.0, 4.0])
    >>> float(s), float(lateral)
    (14.0, -2.0)
    """

    def __init__(self, points):
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] < 2:
            raise ValueError(f"route points must have shape (N, 2), got {pts.shape}")
        pts = pts[:, :2]
        if not np.all(np.isfinite(pts)):
            raise ValueError("route points contain NaN or infinite values")
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = np.linalg.norm(np.diff(pts, axis=0), axis=1) > 1e-6
        pts = pts[keep]
        if len(pts) < 2:
            raise ValueError(f"a route needs at least 2 distinct points, got {len(pts)}")
        self.points = pts
        seg = np.diff(pts, axis=0)
        self._seg = seg
        self._seg_len = np.linalg.norm(seg, axis=1)
        self.cumulative = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        self.length = float(self.cumulative[-1])

    def project(self, xy, s_hint: float | None = None, window: float = 30.0):
        """Arc length ``s`` of the nearest route point to ``xy`` and the signed lateral distance
        (positive to the left of the driving direction).

        :param xy: the point.
        :param s_hint: the previous ``s``; when given, only segments within ``window`` metres of it are
            searched, so a route that passes near itself (a loop, a U-turn) cannot make progress jump.
        :param window: the search half-width around ``s_hint`` (m).
        """
        p = np.asarray(xy, dtype=np.float64)[:2]
        lo, hi = 0, len(self._seg)
        if s_hint is not None:
            lo = max(int(np.searchsorted(self.cumulative, s_hint - window, side="right")) - 1, 0)
            hi = min(int(np.searchsorted(self.cumulative, s_hint + window, side="left")) + 1, len(self._seg))
        a = self.points[lo:hi]
        d = self._seg[lo:hi]
        ln = self._seg_len[lo:hi]
        t = np.clip(np.einsum("ij,ij->i", p - a, d) / (ln * ln), 0.0, 1.0)
        foot = a + t[:, None] * d
        dist2 = np.sum((p - foot) ** 2, axis=1)
        k = int(np.argmin(dist2))
        s = self.cumulative[lo + k] + t[k] * ln[k]
        cross = d[k, 0] * (p[1] - a[k, 1]) - d[k, 1] * (p[0] - a[k, 0])
        lateral = math.copysign(math.sqrt(dist2[k]), cross) if cross != 0 else 0.0
        return float(s), float(lateral)

    def point_at(self, s: float) -> np.ndarray:
        """The route point at arc length ``s`` (clamped to the route)."""
        s = min(max(float(s), 0.0), self.length)
        k = min(int(np.searchsorted(self.cumulative, s, side="right")) - 1, len(self._seg) - 1)
        t = (s - self.cumulative[k]) / self._seg_len[k]
        return self.points[k] + t * self._seg[k]

    def heading_at(self, s: float) -> float:
        """Direction of the route (rad) at arc length ``s``."""
        s = min(max(float(s), 0.0), self.length)
        k = min(int(np.searchsorted(self.cumulative, s, side="right")) - 1, len(self._seg) - 1)
        return float(math.atan2(self._seg[k, 1], self._seg[k, 0]))

    def curvature_at(self, s: float, span: float = 5.0) -> float:
        """Curvature (1/m) at arc length ``s``: the heading change over ``[s - span, s + span]`` (clamped to the
        route) per metre, positive where the heading angle grows."""
        a, b = max(float(s) - span, 0.0), min(float(s) + span, self.length)
        if b - a < 1e-6:
            return 0.0
        return _wrap_angle(self.heading_at(b) - self.heading_at(a)) / (b - a)

    def truncated(self, length: float) -> RoutePolyline:
        """The first ``length`` metres of the route."""
        if length >= self.length:
            return self
        if length <= 0:
            raise ValueError(f"route length must be > 0, got {length}")
        k = int(np.searchsorted(self.cumulative, length, side="left"))
        return RoutePolyline(np.vstack([self.points[:k], self.point_at(length)]))


def _wrap_angle(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


class ObjectiveTracker:
    """One episode's bookkeeping: plain measurements in, reward vector and ``info`` out.

    It differentiates speed, yaw and steering over steps (jerk, yaw rate, steering rate, the six CaRL
    comfort metrics), keeps the route progress and the CaRL TTC-penalty hold, and calls the functions of
    :mod:`morl.envs.driving.objectives`, so every adapter gives the same numbers for the same situation.

    :param dt: seconds between two steps.
    :param carl_ttc_hold_s: how long (s) CaRL's TTC factor stays 0.5 after a TTC violation (CaRL: 500
        ticks at 10 Hz = 50 s), as in the built-in simulator.
    :param carl_comfort_hold_s: how long (s) a violated comfort metric keeps counting in CaRL's comfort
        factor (CaRL: the last 500 ticks), as in the built-in simulator.
    :param goal_tolerance: the route counts as completed within this many metres of its end.
    :param scales: kwargs of :func:`morl.envs.driving.objectives.make_scales`.
    """

    def __init__(self, dt: float, carl_ttc_hold_s: float = 50.0, carl_comfort_hold_s: float = 50.0,
                 goal_tolerance: float = 1.0, scales: Mapping[str, float] | None = None):
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt!r}")
        for name, value in (("carl_ttc_hold_s", carl_ttc_hold_s), ("carl_comfort_hold_s", carl_comfort_hold_s)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.dt = float(dt)
        # a violation at step k still counts at step j while j - k < hold (at least the step itself)
        self.ttc_hold = max(carl_ttc_hold_s / self.dt, 1.0)
        self.comfort_hold = max(carl_comfort_hold_s / self.dt, 1.0)
        self.goal_tolerance = float(goal_tolerance)
        self.scales = obj.make_scales(**(scales or {}))
        self.ttc_threshold = float(self.scales[obj.S_TTC_THRESHOLD])

    def reset(self, route_length: float, v_ref: float, speed: float, yaw: float, steer: float, s: float = 0.0):
        """Start an episode. ``v_ref * dt`` is the progress that counts as 1 (objectives.progress)."""
        if not route_length > 0:
            raise ValueError(f"route_length must be > 0, got {route_length!r}")
        if not v_ref > 0:
            raise ValueError(f"v_ref must be > 0, got {v_ref!r}")
        self.route_length = float(route_length)
        self.v_ref = float(v_ref)
        self.s = float(s)
        self.s_max = float(s)
        self.prev = dict(speed=float(speed), yaw=float(yaw), steer=float(steer), acc=0.0, lat_acc=0.0,
                         yaw_rate=0.0)
        self.steps = 0
        self.last_ttc_violation = -math.inf
        self.last_comfort_violation = np.full(6, -math.inf)

    def step(self, *, collision: bool, off_road: bool, red_light: bool, ttc: float, speed: float,
             speed_limit: float, outside_route_lanes: bool, s: float, yaw: float, steer: float,
             lane_offset: float, lane_width: float, in_junction: bool = False):
        """Account one step.

        :return: ``(reward, info, hard, success)``: the float32 reward vector, the ``info`` quantities
            (:data:`morl.envs.driving.objectives.INFO_KEYS` plus ``vector_reward``), whether a hard
            infraction ends the episode, and whether the route was completed.
        """
        dt, p = self.dt, self.prev
        success = s >= self.route_length - self.goal_tolerance
        if success:
            s = self.route_length
        delta_s = s - self.s
        self.s = s
        rc_before = self.s_max
        self.s_max = max(self.s_max, s)
        acc = (speed - p["speed"]) / dt
        jerk = (acc - p["acc"]) / dt
        yaw_rate = _wrap_angle(yaw - p["yaw"]) / dt
        yaw_acc = (yaw_rate - p["yaw_rate"]) / dt
        lat_acc = speed * yaw_rate
        steer_rate = (steer - p["steer"]) / dt
        self.prev = dict(speed=speed, yaw=yaw, steer=steer, acc=acc, lat_acc=lat_acc, yaw_rate=yaw_rate)
        collision, off_road, red_light = bool(collision), bool(off_road), bool(red_light)
        outside_route_lanes = bool(outside_route_lanes)
        ttc = float(min(ttc, TTC_NONE))
        lane_width = float(lane_width) if lane_width > 0 else 3.5

        vec = np.array(obj.reward_vector(collision, off_road, ttc, float(speed), float(speed_limit),
                                         outside_route_lanes, float(delta_s), self.v_ref * dt, float(jerk),
                                         float(steer_rate), float(lane_offset), lane_width, self.scales),
                       dtype=np.float32)
        if red_light:
            # objectives.rules_reward has no red-light term; running a red light is a rules infraction
            # that ends the episode, so it takes the worst rules value (reported to the lead).
            vec[1] = -1.0
        hard = collision or off_road or red_light

        ttc_violation = ttc < self.ttc_threshold
        self.steps += 1
        if ttc_violation:
            self.last_ttc_violation = self.steps
        held = self.steps - self.last_ttc_violation < self.ttc_hold
        # CaRL's comfort factor: each of the 6 metrics (objectives.COMFORT_BOUNDS) counts while it was
        # violated within the hold window; lon jerk is the jerk (longitudinal accelerations only here)
        b = obj.COMFORT_BOUNDS
        violated = (acc < b[0] or acc > b[1], abs(lat_acc) > b[2], abs(jerk) > b[3], abs(jerk) > b[4],
                    abs(yaw_rate) > b[5], abs(yaw_acc) > b[6])
        self.last_comfort_violation[np.array(violated)] = self.steps
        k = int(np.sum(self.steps - self.last_comfort_violation < self.comfort_hold))
        info = {
            "collision": collision,
            "off_road": off_road,
            "red_light": red_light,
            "speeding": bool(speed > speed_limit),
            "success": bool(success and not hard),
            "route_completion": float(min(self.s_max / self.route_length, 1.0)),
            "cost": 1.0 if hard else 0.0,
            "ttc": ttc,
            "ttc_violation": bool(ttc_violation),
            "outside_route_lanes": outside_route_lanes,
            "speed": float(speed),
            "speed_limit": float(speed_limit),
            "carl_route_completion_delta": float(100.0 * (self.s_max - rc_before) / self.route_length),
            "carl_speeding_factor": float(obj.speeding_factor(float(speed), float(speed_limit))),
            "carl_outside_lanes_factor": 0.0 if outside_route_lanes else 1.0,
            "carl_ttc_factor": 0.5 if held else 1.0,
            "carl_comfort_factor": float(obj.comfort_factor(k)),
            "carl_lane_center_factor": 1.0 if in_junction else float(
                obj.lane_center_factor(float(lane_offset), lane_width)),
            "carl_hard_infraction": 1.0 if hard else 0.0,
            # CaRL's T: -1 for collisions and red lights, 0 for every other ending (paper §3).
            "carl_terminal_penalty": -1.0 if (collision or red_light) else 0.0,
            "vector_reward": vec.copy(),
        }
        return vec, info, hard, bool(success and not hard)


def driving_reward_space() -> gym.spaces.Box:
    """The reward space of the four driving objectives: every component in [-1, 1] (objectives.py)."""
    return gym.spaces.Box(low=-1.0, high=1.0, shape=(len(obj.OBJECTIVES),), dtype=np.float32)
