"""highway-env adapter: the driving objectives, preorder and events on any highway-env scenario.

:class:`HighwayEnvAdapter` wraps a highway-env environment (``highway-v0``, ``highway-fast-v0``,
``merge-v0``, ``roundabout-v0``, ``intersection-v0``, ...) so that it speaks the same contract as the
built-in simulator and the CARLA adapter (:mod:`envs.driving.objectives`): a float32 reward vector
``(safety, rules, progress, comfort)``, ``objectives``, ``reward_space``, a ``preorder``, and the event
and CaRL quantities in ``info``. Observations and actions are the wrapped env's own.

Every quantity is measured from the wrapped env's state, not from its scalar reward:

- collision: ``vehicle.crashed``; off-road: ``not vehicle.on_road`` (the ego's centre is outside the
  nearest lane); both are hard infractions and end the episode;
- the route: at reset, the lanes the ego will follow (its planned ``route`` when it has one, then the
  road network's ``next_lane``) are sampled into a centre-line polyline (:class:`RoutePolyline`);
  progress is the ego's projection on it; ``outside_route_lanes`` when the ego's lane is on none of
  the route's roads;
- speed limit: ``vehicle.lane.speed_limit``; lane-centre offset and lane width from
  ``vehicle.lane.local_coordinates``;
- time-to-collision: constant-velocity closing time to the vehicle (or obstacle) ahead in the ego's
  lane, from ``road.neighbour_vehicles``;
- jerk, yaw rate and steering rate: finite differences over policy steps.

>>> env = HighwayEnvAdapter("highway-fast-v0", config={"vehicles_count": 3, "duration": 3})
>>> obs, info = env.reset(seed=0)
>>> env.objectives, env.reward_space.shape, str(env.preorder)
(('safety', 'rules', 'progress', 'comfort'), (4,), 'safety > rules > progress > comfort')
>>> r, term, trunc, info = env.step(1)[1:]
>>> r.dtype, r.shape, 0.0 <= info["route_completion"] <= 1.0
(dtype('float32'), (4,), True)

The two simulator-agnostic helpers used by both adapters, :class:`RoutePolyline` and
:class:`ObjectiveTracker`, live here too (the CARLA adapter imports them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import gymnasium as gym
import numpy as np

from envs.driving import objectives as obj
from morl.preorder import Preorder

__all__ = ["HighwayEnvAdapter", "RoutePolyline", "ObjectiveTracker", "TTC_NONE", "driving_reward_space"]

#: Time-to-collision reported when nothing is ahead or nothing is closing in (s).
TTC_NONE = 100.0


# ============================================================================ shared helpers
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
    :mod:`envs.driving.objectives`, so every adapter gives the same numbers for the same situation.

    :param dt: seconds between two steps.
    :param carl_ttc_hold_s: how long (s) CaRL's TTC factor stays 0.5 after a TTC violation (CaRL: 500
        ticks at 10 Hz = 50 s), as in the built-in simulator.
    :param carl_comfort_hold_s: how long (s) a violated comfort metric keeps counting in CaRL's comfort
        factor (CaRL: the last 500 ticks), as in the built-in simulator.
    :param goal_tolerance: the route counts as completed within this many metres of its end.
    :param scales: kwargs of :func:`envs.driving.objectives.make_scales`.
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
            (:data:`envs.driving.objectives.INFO_KEYS` plus ``vector_reward``), whether a hard
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


# ============================================================================ highway-env
def _route_polyline(env, max_length: float, spacing: float = 2.0):
    """Sample the lanes the ego will follow, from its position on, into a polyline.

    :return: ``(RoutePolyline, roads, lane_starts)``: ``roads`` is the set of ``(from, to)`` road keys on
        the route, ``lane_starts`` the ``(lane_index, arc length where it starts)`` pairs in order.
    """
    ego, net = env.vehicle, env.road.network
    route = [tuple(r) for r in (getattr(ego, "route", None) or [])]  # a copy: next_lane pops from it
    planned = [r[:2] for r in route] if len(route) > 1 else []
    index = tuple(ego.lane_index)
    lane = net.get_lane(index)
    s0 = min(max(lane.local_coordinates(ego.position)[0], 0.0), lane.length)
    points, roads, starts, total = [], set(), [], 0.0
    for _ in range(64):  # a bound on lane segments; real routes have fewer than 10
        roads.add(index[:2])
        starts.append((index, total))
        end = min(lane.length, s0 + max_length - total)
        ss = np.append(np.arange(s0, end, spacing), end)
        points.extend(lane.position(float(x), 0.0) for x in ss)
        total += end - s0
        if total >= max_length - 1e-6:
            break
        if planned and index[:2] == planned[-1]:
            break  # the end of the ego's planned route (its destination)
        nxt = net.next_lane(index, route=route, position=lane.position(lane.length, 0.0))
        if nxt is None or tuple(nxt) == index:
            break
        index, lane, s0 = tuple(nxt), net.get_lane(nxt), 0.0
    return RoutePolyline(np.asarray(points)), roads, starts


def _finish_arc_length(env, route: RoutePolyline, lane_starts) -> float | None:
    """Arc length where a scenario's own arrival test ends the episode (None for open roads), so the
    route ends where the env says the ego has arrived."""
    name = type(env).__name__
    if name.startswith("Merge"):
        # MergeEnv._is_terminated: the ego passed x = 370 m.
        beyond = np.nonzero(route.points[:, 0] > 370.0)[0]
        return float(route.cumulative[beyond[0]]) if len(beyond) else None
    if name.startswith("Intersection"):
        # IntersectionEnv.has_arrived: 25 m into an exit lane ("il*" -> "o*").
        for index, start in lane_starts:
            if "il" in str(index[0]) and "o" in str(index[1]):
                return start + 25.0
    return None


class HighwayEnvAdapter(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The driving objectives on a highway-env scenario.

    :param env: a highway-env env, or its id (``"highway-fast-v0"``) to create with ``config``.
    :param config: highway-env configuration, used when ``env`` is an id.
    :param action: ``"continuous"`` sets highway-env's ``ContinuousAction`` (acceleration, steering in
        [-1, 1], the CARLA adapter's convention), ``"discrete"`` its ``DiscreteMetaAction``; None keeps
        the env's action type. Only with an id.
    :param preorder: precedence over the objectives (default ``"safety > rules > progress > comfort"``).
    :param route_length: metres of route to complete; None: the ego's planned route up to its end
        (at most ``v_ref * duration``, what driving at the limit for the whole episode reaches, so an
        open highway can be completed).
    :param v_ref: reference speed of the progress objective (m/s); None: the start lane's limit.
    :param terminate_off_road: end the episode when the ego leaves the road (CaRL: a hard infraction).
    :param carl_ttc_hold_s: see :class:`ObjectiveTracker`.
    :param carl_comfort_hold_s: see :class:`ObjectiveTracker`.
    :param scales: kwargs of :func:`envs.driving.objectives.make_scales`.
    """

    def __init__(self, env: gym.Env | str, config: Mapping | None = None, action: str | None = None,
                 preorder=obj.DEFAULT_PREORDER, route_length: float | None = None, v_ref: float | None = None,
                 terminate_off_road: bool = True, carl_ttc_hold_s: float = 50.0, carl_comfort_hold_s: float = 50.0,
                 scales: Mapping[str, float] | None = None):
        gym.utils.RecordConstructorArgs.__init__(
            self, env=env if isinstance(env, str) else None, config=config, action=action, preorder=str(preorder),
            route_length=route_length, v_ref=v_ref, terminate_off_road=terminate_off_road,
            carl_ttc_hold_s=carl_ttc_hold_s, carl_comfort_hold_s=carl_comfort_hold_s, scales=scales)
        if isinstance(env, str):
            import highway_env  # noqa: F401  (registers the highway-env ids with gymnasium)

            config = dict(config or {})
            if action is not None:
                kinds = {"continuous": "ContinuousAction", "discrete": "DiscreteMetaAction"}
                if action not in kinds:
                    raise ValueError(f"action must be 'continuous', 'discrete' or None, got {action!r}")
                config["action"] = {"type": kinds[action]}
            env = gym.make(env, config=config)
        elif config is not None or action is not None:
            raise ValueError("config and action apply only when env is an id; configure the env yourself")
        super().__init__(env)
        base = env.unwrapped
        if not hasattr(base, "road") or not hasattr(base, "config"):
            raise TypeError(f"env must be a highway-env environment, got {type(base).__name__}")
        if route_length is not None and not route_length > 0:
            raise ValueError(f"route_length must be > 0, got {route_length!r}")
        if v_ref is not None and not v_ref > 0:
            raise ValueError(f"v_ref must be > 0, got {v_ref!r}")
        self.objectives = obj.OBJECTIVES
        self.reward_space = driving_reward_space()
        self.preorder = Preorder.parse(preorder)
        if tuple(sorted(self.preorder.objectives)) != tuple(sorted(self.objectives)):
            raise ValueError(f"preorder objectives {self.preorder.objectives} differ from {self.objectives}")
        self.route_length = route_length
        self.v_ref = v_ref
        self.terminate_off_road = bool(terminate_off_road)
        self.tracker = ObjectiveTracker(1.0 / float(base.config["policy_frequency"]), carl_ttc_hold_s,
                                        carl_comfort_hold_s, scales=scales)
        self.route: RoutePolyline | None = None
        self._roads: set = set()

    # ------------------------------------------------------------------ measurements
    def _ego(self):
        return self.env.unwrapped.vehicle

    def _steer(self) -> float:
        action = getattr(self._ego(), "action", None) or {}
        return float(action.get("steering", 0.0))

    def _ttc(self) -> float:
        """Constant-velocity time until the ego reaches the vehicle or obstacle ahead in its lane."""
        base, ego = self.env.unwrapped, self._ego()
        lanes = {tuple(ego.lane_index)}
        target = getattr(ego, "target_lane_index", None)
        if target is not None:
            lanes.add(tuple(target))  # a lane change in progress: the target lane's leader matters too
        best = TTC_NONE
        for index in lanes:
            front, _ = base.road.neighbour_vehicles(ego, index)
            if front is None:
                continue
            lane = base.road.network.get_lane(index)
            s_ego = lane.local_coordinates(ego.position)[0]
            s_front = lane.local_coordinates(front.position)[0]
            gap = s_front - s_ego - 0.5 * (ego.LENGTH + front.LENGTH)
            heading = lane.heading_at(s_ego)
            direction = np.array([math.cos(heading), math.sin(heading)])
            closing = float(np.dot(ego.velocity, direction) - np.dot(front.velocity, direction))
            if gap <= 0.0:
                best = 0.0
            elif closing > 1e-6:
                best = min(best, gap / closing)
        return best

    def _measure(self):
        base, ego = self.env.unwrapped, self._ego()
        # search window: more than the farthest a vehicle drives in one step (highway-env caps 40 m/s)
        s, route_lat = self.route.project(ego.position, s_hint=self.tracker.s, window=max(30.0, 80.0 * self.tracker.dt))
        long, lat = ego.lane.local_coordinates(ego.position)
        limit = ego.lane.speed_limit
        index = tuple(ego.lane_index)
        in_junction = type(base).__name__.startswith("Intersection") and str(index[0]).startswith("ir")
        return dict(
            collision=bool(ego.crashed),
            off_road=not bool(ego.on_road),
            red_light=False,  # highway-env has no traffic lights
            ttc=self._ttc(),
            speed=float(ego.speed),
            speed_limit=float(limit) if limit is not None else math.inf,
            # Off the route's roads, and not merely on an overlapping lane of another road where
            # highway-env's nearest-lane test flips (roundabout entries, merges): off its centre line too.
            outside_route_lanes=not bool(ego.on_road) or (
                index[:2] not in self._roads and abs(route_lat) > 0.5 * ego.lane.width_at(long)),
            s=s,
            yaw=float(ego.heading),
            steer=self._steer(),
            lane_offset=float(lat),
            lane_width=float(ego.lane.width_at(long)),
            in_junction=in_junction,
        )

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        base, ego = self.env.unwrapped, self._ego()
        limit = ego.lane.speed_limit or 30.0
        v_ref = float(self.v_ref or limit)
        max_length = self.route_length
        if max_length is None:
            duration = base.config.get("duration")
            max_length = v_ref * float(duration) if duration else 2000.0
        route, self._roads, starts = _route_polyline(base, max_length)
        finish = _finish_arc_length(base, route, starts)
        if finish is not None and finish > 1.0:
            # the tracker counts the route done within goal_tolerance of its end: end it that much later
            route = route.truncated(finish + self.tracker.goal_tolerance)
        self.route = route
        s0, _ = route.project(ego.position)
        self.tracker.reset(route.length, v_ref, float(ego.speed), float(ego.heading), self._steer(), s=s0)
        info = dict(info)
        info.update(self._reset_info())
        return obs, info

    def _reset_info(self) -> dict:
        m = self._measure()
        return {"route_completion": 0.0, "route_length": self.route.length, "speed": m["speed"],
                "speed_limit": m["speed_limit"]}

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        m = self._measure()
        if not self.terminate_off_road:
            m["off_road"] = False  # measured but not a hard infraction; outside_route_lanes still sees it
        vec, ours, hard, success = self.tracker.step(**m)
        info = dict(info)
        info.update(ours)
        info["env_reward"] = float(env_reward)
        # Hard infractions and reaching the end of the route end the episode (CaRL, paper §3); the env's
        # own time limit stays a truncation.
        terminated = bool(terminated or hard or success)
        return obs, vec, terminated, bool(truncated) and not terminated, info
