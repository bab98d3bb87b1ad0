"""highway-env adapter: the driving objectives, preorder and events on any highway-env scenario.

:class:`HighwayEnvAdapter` wraps a highway-env environment (``highway-v0``, ``highway-fast-v0``,
``merge-v0``, ``roundabout-v0``, ``intersection-v0``, ...) so that it speaks the same contract as the
built-in simulator and the CARLA adapter (:mod:`morl.envs.driving.objectives`): a float32 reward vector
``(safety, rules, progress, comfort)``, ``objectives``, ``reward_space``, a ``preorder``, and the event
and CaRL quantities in ``info``. By default it also gives the built-in simulator's observation and action
meaning (``observation="driving"``, ``action="discrete"`` or ``"continuous"``), so a policy trained in the
built-in simulator steps on highway-env as it is; ``observation="native"`` keeps highway-env's own.

Observation (:mod:`morl.envs.driving.observation`), measured in the ego's lane frame (highway-env's ``y`` points
to the driver's right, so lateral quantities change sign): lane offset and heading error from
``lane.local_coordinates`` and ``lane.heading_at``; the road's edges from the lanes of the ego's road;
left / right lane from the lane index (highway-env numbers lanes from the left); the speed limits of the
ego's lane and of the lane 50 m ahead on the route; curvature from the route polyline; the ego's steering
from ``vehicle.action``, its acceleration from the speed change over the step; target speed and target lane
from the ``MDPVehicle``; every other vehicle of ``road.vehicles`` at its position and velocity in the ego
lane's frame.

Actions, the built-in simulator's meaning:

- ``"discrete"``: highway-env's ``DiscreteMetaAction`` (0 lane left, 1 idle, 2 lane right, 3 faster,
  4 slower; the same order) with target speeds every ``speed_step`` m/s from 0 to ``v_max``, so FASTER and
  SLOWER move the target speed by one step as in the built-in simulator (highway-env steps from the
  current speed's nearest target, the built-in simulator from the current target), and a lane change to a
  lane that does not exist is ignored on both;
- ``"continuous"``: ``ContinuousAction`` with ``acceleration_range = (-acc_max, acc_max)`` and
  ``steering_range = (-max_steer, max_steer)``, the steering sign flipped (positive steers left, as in the
  built-in simulator).

``policy_frequency`` (Hz) sets how often the policy acts; the built-in simulator acts every ``dt = 0.2 s``,
highway-env's highway scenarios every 1 s by default.

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

The simulator-agnostic helpers both adapters use, :class:`RoutePolyline` and :class:`ObjectiveTracker`,
are in :mod:`morl.envs.driving.adapter_common` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import gymnasium as gym
import numpy as np

from morl.envs.driving import objectives as obj
from morl.envs.driving import observation as ob
from morl.envs.driving.adapter_common import TTC_NONE, ObjectiveTracker, RoutePolyline, _wrap_angle, driving_reward_space
from morl.preorder import Preorder

__all__ = ["HighwayEnvAdapter", "RoutePolyline", "ObjectiveTracker", "TTC_NONE", "driving_reward_space"]

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
    :param action: ``"continuous"`` sets highway-env's ``ContinuousAction`` and ``"discrete"`` its
        ``DiscreteMetaAction``, both with the built-in simulator's meaning (module docstring); None keeps
        the env's action type and meaning. Only with an id.
    :param observation: ``"driving"``: the built-in simulator's observation (:mod:`morl.envs.driving.observation`);
        ``"native"``: the wrapped env's own.
    :param k_vehicles: vehicles in the ``"driving"`` observation.
    :param policy_frequency: policy steps per second (highway-env's ``policy_frequency``); None keeps the
        env's. Only with an id.
    :param v_max: top of the target speeds and the speed normaliser (m/s); ``acc_max`` (m/s^2) and
        ``max_steer`` (rad): the continuous action's range and the normalisers; ``speed_step`` (m/s): the
        target-speed step of FASTER / SLOWER. The defaults are the built-in simulator's.
    :param preorder: precedence over the objectives (default ``"safety > rules > progress > comfort"``).
    :param route_length: metres of route to complete; None: the ego's planned route up to its end
        (at most ``v_ref * duration``, what driving at the limit for the whole episode reaches, so an
        open highway can be completed).
    :param v_ref: reference speed of the progress objective (m/s); None: the start lane's limit.
    :param terminate_off_road: end the episode when the ego leaves the road (CaRL: a hard infraction).
    :param carl_ttc_hold_s: see :class:`ObjectiveTracker`.
    :param carl_comfort_hold_s: see :class:`ObjectiveTracker`.
    :param scales: kwargs of :func:`morl.envs.driving.objectives.make_scales`.
    """

    def __init__(self, env: gym.Env | str, config: Mapping | None = None, action: str | None = None,
                 preorder=obj.DEFAULT_PREORDER, route_length: float | None = None, v_ref: float | None = None,
                 terminate_off_road: bool = True, carl_ttc_hold_s: float = 50.0, carl_comfort_hold_s: float = 50.0,
                 scales: Mapping[str, float] | None = None, observation: str = "driving",
                 k_vehicles: int = ob.K_VEHICLES, policy_frequency: float | None = None, v_max: float = ob.V_MAX,
                 acc_max: float = ob.ACC_MAX, max_steer: float = ob.MAX_STEER, speed_step: float = 5.0):
        gym.utils.RecordConstructorArgs.__init__(
            self, env=env if isinstance(env, str) else None, config=config, action=action, preorder=str(preorder),
            route_length=route_length, v_ref=v_ref, terminate_off_road=terminate_off_road,
            carl_ttc_hold_s=carl_ttc_hold_s, carl_comfort_hold_s=carl_comfort_hold_s, scales=scales,
            observation=observation, k_vehicles=k_vehicles, policy_frequency=policy_frequency, v_max=v_max,
            acc_max=acc_max, max_steer=max_steer, speed_step=speed_step)
        if observation not in ("driving", "native"):
            raise ValueError(f"observation must be 'driving' or 'native', got {observation!r}")
        for name, value in (("v_max", v_max), ("acc_max", acc_max), ("max_steer", max_steer),
                            ("speed_step", speed_step)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if isinstance(k_vehicles, bool) or not isinstance(k_vehicles, (int, np.integer)) or k_vehicles < 0:
            raise ValueError(f"k_vehicles must be an int >= 0, got {k_vehicles!r}")
        if isinstance(env, str):
            import highway_env  # noqa: F401  (registers the highway-env ids with gymnasium)

            config = dict(config or {})
            if action is not None:
                if action == "discrete":
                    speeds = np.arange(0.0, v_max + 1e-9, speed_step)
                    config["action"] = {"type": "DiscreteMetaAction", "target_speeds": speeds.tolist()}
                elif action == "continuous":
                    config["action"] = {"type": "ContinuousAction", "acceleration_range": [-acc_max, acc_max],
                                        "steering_range": [-max_steer, max_steer]}
                else:
                    raise ValueError(f"action must be 'continuous', 'discrete' or None, got {action!r}")
            if policy_frequency is not None:
                if not (isinstance(policy_frequency, (int, float)) and policy_frequency > 0):
                    raise ValueError(f"policy_frequency must be a number > 0, got {policy_frequency!r}")
                config["policy_frequency"] = policy_frequency
            env = gym.make(env, config=config)
        elif config is not None or action is not None or policy_frequency is not None:
            raise ValueError("config, action and policy_frequency apply only when env is an id; configure the env "
                             "yourself")
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
        self.observation = observation
        self.k_vehicles = int(k_vehicles)
        self.v_max, self.acc_max, self.max_steer = float(v_max), float(acc_max), float(max_steer)
        self._flip_steer = action == "continuous"
        self.continuous = type(base.action_type).__name__ == "ContinuousAction"
        if observation == "driving":
            self.observation_space = ob.observation_space(self.k_vehicles)

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

    def scene(self):
        """``(EgoScene, neighbours)`` of the current state (module docstring), in the driver's left-positive
        road frame."""
        base, ego = self.env.unwrapped, self._ego()
        net = base.road.network
        index = tuple(ego.lane_index)
        lane = net.get_lane(index)
        long, lat = lane.local_coordinates(ego.position)
        width = float(lane.width_at(long))
        lanes = net.graph[index[0]][index[1]]
        # centre of each lane of the road relative to the ego, left-positive: the ego's lateral coordinate in it
        centres = [(float(other.local_coordinates(ego.position)[1]), float(other.width_at(long))) for other in lanes]
        lo = min(c - 0.5 * w for c, w in centres)
        hi = max(c + 0.5 * w for c, w in centres)
        s = self.tracker.s
        curv = [-self.route.curvature_at(s + a) for a in ob.ROUTE_AHEAD]  # y to the right: left turns are < 0
        ahead = net.get_lane(net.get_closest_lane_index(self.route.point_at(s + 50.0)))
        limit = lane.speed_limit if lane.speed_limit is not None else math.inf
        target = getattr(ego, "target_lane_index", None)
        target_offset = 0.0 if target is None else float(net.get_lane(target).local_coordinates(ego.position)[1])
        ends = index[1] not in net.graph  # no road continues from the end of this lane
        scene = ob.EgoScene(
            speed=float(ego.speed), heading=-_wrap_angle(float(ego.heading) - lane.heading_at(long)),
            lane_offset=-float(lat), lane_width=width, road_offset=-0.5 * (lo + hi), road_half_width=0.5 * (hi - lo),
            speed_limit=float(limit), steer=-self._steer(), accel=float(self.tracker.prev["acc"]),
            target_speed=float(getattr(ego, "target_speed", ego.speed)), target_lane_offset=target_offset,
            left_lane=index[2] - 1 >= 0, right_lane=index[2] + 1 < len(lanes),
            lane_end_distance=float(lane.length - long) if ends else math.inf, curvature=tuple(curv),
            speed_limit_ahead=float(ahead.speed_limit) if ahead.speed_limit is not None else float(limit),
            route_left=1.0 - min(self.tracker.s_max / self.route.length, 1.0))
        rows = []
        for other in base.road.vehicles:
            if other is ego:
                continue
            ls, ll = lane.local_coordinates(other.position)
            h = lane.heading_at(ls)
            vx, vy = float(other.velocity[0]), float(other.velocity[1])
            rows.append((ls - long, -(ll - lat), vx * math.cos(h) + vy * math.sin(h),
                         -(-vx * math.sin(h) + vy * math.cos(h))))
        return scene, np.asarray(rows, dtype=np.float64).reshape(-1, 4)

    def observe(self) -> np.ndarray:
        """The built-in simulator's observation of the current state (:mod:`morl.envs.driving.observation`)."""
        scene, neighbours = self.scene()
        return ob.build_observation(scene, neighbours, self.k_vehicles, self.continuous, self.v_max, self.max_steer,
                                    self.acc_max)

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
        return (self.observe() if self.observation == "driving" else obs), info

    def _reset_info(self) -> dict:
        m = self._measure()
        return {"route_completion": 0.0, "route_length": self.route.length, "speed": m["speed"],
                "speed_limit": m["speed_limit"]}

    def step(self, action):
        if self._flip_steer:  # the built-in simulator steers left with a positive action, highway-env right
            action = np.asarray(action, dtype=np.float32).reshape(2) * np.array([1.0, -1.0], np.float32)
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
        if self.observation == "driving":
            obs = self.observe()
        return obs, vec, terminated, bool(truncated) and not terminated, info
