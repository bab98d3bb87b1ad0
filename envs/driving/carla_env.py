"""CARLA adapter: the driving objectives, preorder and events on a CARLA 0.9.x server (extra ``[carla]``).

:class:`CarlaEnv` is a Gymnasium env that drives one ego vehicle along a route in a running CARLA
server through the ``carla`` Python client, and gives the same contract as the built-in simulator and
the highway-env adapter (:mod:`morl.envs.driving.objectives`): a float32 reward vector
``(safety, rules, progress, comfort)``, ``objectives``, ``reward_space``, a ``preorder``, and the event
and CaRL quantities in ``info``. The ``carla`` module is imported only when the env connects, so
``import morl.envs.driving`` works without it.

How each quantity is measured:

- collision: a ``sensor.other.collision`` on the ego; off-road: the ego's centre has no driving lane
  under it (``map.get_waypoint(loc, project_to_road=False, lane_type=LaneType.Driving) is None``; CaRL
  uses 95 % of the box off the drivable area); red light: the ego moves faster than ``red_light_speed``
  while ``is_at_traffic_light()`` and the light is red (an approximation of the leaderboard's stop-line
  test). The three are hard infractions and end the episode;
- the route: anchor locations from a JSON file in ``assets/routes`` (densified along the lanes with
  ``waypoint.next``), or a random drive from a spawn point; progress is the ego's projection on it;
  ``outside_route_lanes`` when the ego's (road, driving direction) is not one of the route's;
- speed limit ``vehicle.get_speed_limit()`` (km/h); lane-centre offset from the projected waypoint;
  time-to-collision to the nearest traffic vehicle in the ego's path; a ``sensor.other.lane_invasion``
  counts crossed markings (``info["lane_invasions"]``).

The server runs in synchronous mode with a fixed ``dt`` (restored on :meth:`CarlaEnv.close`), with the
Traffic Manager synchronous too. When the client loses the server (the ``RuntimeError`` it raises on a
time-out), the step ends the episode as truncated with ``info["server_lost"] = True`` and the next
:meth:`CarlaEnv.reset` reconnects with exponential backoff, so a training run goes on.

Observation: the built-in simulator's (:mod:`morl.envs.driving.observation`, :data:`OBS_DIM` with the default
``k_vehicles``), measured from CARLA's state. CARLA's frame is left-handed (``y`` to the driver's right), so
lateral quantities change sign: heading error and lane offset against the lane's waypoint
(``map.get_waypoint``); the road's width from the driving lanes in the ego's direction beside it
(``get_left_lane`` / ``get_right_lane``, assumed as wide as the ego's); curvature from the route polyline;
the speed limit of ``get_speed_limit`` (also as the limit 50 m ahead: CARLA reports only the current one);
lanes are taken not to end (junctions continue them); the other vehicles at their position and velocity in
the lane's frame.

Actions, the built-in simulator's meaning: ``"continuous"`` (acceleration, steering) in [-1, 1]: a positive
acceleration is throttle, a negative one brake (full throttle is taken as about ``acc_max``), and the
steering is a front-wheel angle of ``steer * max_steer`` to the left, sent as CARLA's ``steer`` (positive to
the right, 1 at ``max_steer_angle``); ``"discrete"`` meta-actions in highway-env's order (0 lane left,
1 idle, 2 lane right, 3 faster, 4 slower): the target speed moves by ``speed_step`` within ``[0, v_max]``
(from the initial speed rounded to a step) and is tracked by the built-in simulator's proportional speed
controller; a lane change targets the neighbouring driving lane when it exists, tracked by pure pursuit on
the route shifted by the target offset.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import gymnasium as gym
import numpy as np

from morl.envs.driving import objectives as obj
from morl.envs.driving import observation as ob
from morl.envs.driving.adapter_common import TTC_NONE, ObjectiveTracker, RoutePolyline, _wrap_angle, driving_reward_space
from morl.preorder import Preorder

__all__ = ["CarlaEnv", "SpawnError", "load_route", "import_carla", "OBS_DIM", "ROUTES_DIR"]

logger = logging.getLogger(__name__)

#: Route files shipped with the package.
ROUTES_DIR = Path(__file__).resolve().parents[2] / "assets" / "routes"
OBS_DIM = ob.obs_size(ob.K_VEHICLES)
_VEHICLE_LENGTH = 4.5  # m, for TTC gaps (a typical CARLA car's bounding box is 4.5-5 m long)
_KP_SPEED = 1.0  # speed controller gain (1/s), the built-in simulator's


def import_carla():
    """The ``carla`` client module, or an ImportError that says how to install it."""
    try:
        import carla
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError("CarlaEnv needs the CARLA 0.9.x Python client: pip install morl[carla] "
                          "(wheels for CPython 3.10-3.12), and a running CARLA server") from e
    return carla


def load_route(path) -> dict:
    """Read a route file: ``{"town": "Town01", "waypoints": [[x, y, z], ...]}`` (z optional).

    A path that does not exist is looked up by its file name in :data:`ROUTES_DIR`.
    """
    p = Path(path)
    if not p.exists() and (ROUTES_DIR / p.name).exists():
        p = ROUTES_DIR / p.name
    if not p.exists():
        raise FileNotFoundError(f"route file {str(path)!r} not found (also looked in {ROUTES_DIR})")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"route file {p}: invalid JSON: {e}") from None
    points = data.get("waypoints") if isinstance(data, dict) else None
    return {"town": data.get("town") if isinstance(data, dict) else None,
            "waypoints": _check_anchors(points, f"route file {p}: 'waypoints'")}


def _check_anchors(points, where: str) -> list[list[float]]:
    if not isinstance(points, (list, tuple)) or len(points) < 2:
        raise ValueError(f"{where} must be a list of at least 2 [x, y(, z)] points, got {points!r:.80}")
    out = []
    for i, pt in enumerate(points):
        if not (isinstance(pt, (list, tuple)) and len(pt) in (2, 3)
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in pt)):
            raise ValueError(f"{where}: point {i} ({pt!r}) must be [x, y] or [x, y, z] finite numbers")
        out.append([float(v) for v in pt] + [0.0] * (3 - len(pt)))
    return out


class SpawnError(Exception):
    """The ego could not be spawned (its start is taken); not a lost server."""


class CarlaEnv(gym.Env):
    """One ego vehicle on a route in a CARLA 0.9.x server, with the driving objectives.

    :param host: CARLA server host.
    :param port: CARLA RPC port (the server also uses ``port + 1`` and ``port + 2``).
    :param tm_port: Traffic Manager port.
    :param town: map to load (``"Town01"``); None keeps the loaded map (or the route file's town).
    :param route: a route file (see :func:`load_route`), a list of ``[x, y(, z)]`` anchors, or None for a
        random route of ``route_length`` metres from a random spawn point.
    :param route_length: length of random routes (m).
    :param dt: fixed simulation step (s), one env step per tick (CaRL: 0.1).
    :param n_traffic: autopilot vehicles spawned by the Traffic Manager.
    :param max_steps: steps before the episode is truncated.
    :param action_type: ``"continuous"`` or ``"discrete"`` (see the module docstring).
    :param ego_blueprint: blueprint id of the ego.
    :param timeout: client time-out (s); a call that takes longer counts as a lost server.
    :param no_rendering: run the server without rendering.
    :param preorder: precedence over the objectives.
    :param reconnect_attempts: tries per reconnection; the wait doubles from ``backoff_base`` up to
        ``backoff_max`` seconds.
    :param red_light_speed: speed (m/s) above which being at a red light counts as running it.
    :param default_speed_limit: speed limit (m/s) while CARLA reports none (right after spawning).
    :param max_steer_angle: front-wheel angle (deg) of CARLA's full ``steer`` (the ego's physics).
    :param max_steer: front-wheel angle (rad) of a full continuous steering action (the built-in simulator's by
        default; sharp town corners need up to about 0.3).
    :param k_vehicles: vehicles in the observation.
    :param v_max: top target speed and speed normaliser (m/s); ``acc_max``: acceleration normaliser and the
        speed controller's bound (m/s^2); ``speed_step``: target-speed step of FASTER / SLOWER (m/s).
    :param carl_ttc_hold_s: see :class:`morl.envs.driving.highway_adapter.ObjectiveTracker`.
    :param carl_comfort_hold_s: see :class:`morl.envs.driving.highway_adapter.ObjectiveTracker`.
    :param scales: kwargs of :func:`morl.envs.driving.objectives.make_scales`.
    """

    metadata = {"render_modes": []}

    def __init__(self, host: str = "localhost", port: int = 2000, tm_port: int = 8000, town: str | None = None,
                 route=None, route_length: float = 200.0, dt: float = 0.1, n_traffic: int = 0,
                 max_steps: int = 1000, action_type: str = "continuous",
                 ego_blueprint: str = "vehicle.tesla.model3", timeout: float = 10.0, no_rendering: bool = True,
                 preorder=obj.DEFAULT_PREORDER, reconnect_attempts: int = 6, backoff_base: float = 1.0,
                 backoff_max: float = 30.0, red_light_speed: float = 1.0, default_speed_limit: float = 30 / 3.6,
                 max_steer_angle: float = 70.0, carl_ttc_hold_s: float = 50.0, carl_comfort_hold_s: float = 50.0,
                 scales: Mapping[str, float] | None = None, max_steer: float = ob.MAX_STEER,
                 k_vehicles: int = ob.K_VEHICLES, v_max: float = ob.V_MAX, acc_max: float = ob.ACC_MAX,
                 speed_step: float = 5.0):
        for name, value in (("dt", dt), ("route_length", route_length), ("timeout", timeout),
                            ("backoff_base", backoff_base), ("default_speed_limit", default_speed_limit),
                            ("max_steer_angle", max_steer_angle), ("max_steer", max_steer), ("v_max", v_max),
                            ("acc_max", acc_max), ("speed_step", speed_step)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        for name, value in (("n_traffic", n_traffic), ("max_steps", max_steps),
                            ("reconnect_attempts", reconnect_attempts)):
            if not (isinstance(value, int) and value >= (0 if name == "n_traffic" else 1)):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'n_traffic' else 1}, got {value!r}")
        if action_type not in ("continuous", "discrete"):
            raise ValueError(f"action_type must be 'continuous' or 'discrete', got {action_type!r}")
        self.host, self.port, self.tm_port, self.timeout = host, int(port), int(tm_port), float(timeout)
        if isinstance(route, (str, Path)):
            spec = load_route(route)
            self._anchors, town = spec["waypoints"], town or spec["town"]
        elif route is not None:
            self._anchors = _check_anchors(route, "route")
        else:
            self._anchors = None
        self.town, self.route_length, self.dt = town, float(route_length), float(dt)
        self.n_traffic, self.max_steps, self.action_type = n_traffic, max_steps, action_type
        self.ego_blueprint, self.no_rendering = ego_blueprint, bool(no_rendering)
        self.reconnect_attempts, self.backoff_base, self.backoff_max = reconnect_attempts, backoff_base, backoff_max
        self.red_light_speed, self.default_speed_limit = float(red_light_speed), float(default_speed_limit)
        self.max_steer_angle = math.radians(max_steer_angle)
        self.max_steer, self.k_vehicles = float(max_steer), int(k_vehicles)
        self.v_max, self.acc_max, self.speed_step = float(v_max), float(acc_max), float(speed_step)

        self.objectives = obj.OBJECTIVES
        self.reward_space = driving_reward_space()
        self.preorder = Preorder.parse(preorder)
        if tuple(sorted(self.preorder.objectives)) != tuple(sorted(self.objectives)):
            raise ValueError(f"preorder objectives {self.preorder.objectives} differ from {self.objectives}")
        self.observation_space = ob.observation_space(self.k_vehicles)
        self.action_space = (gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if action_type == "continuous"
                             else gym.spaces.Discrete(5))
        self.tracker = ObjectiveTracker(self.dt, carl_ttc_hold_s, carl_comfort_hold_s, scales=scales)

        self._sleep = time.sleep  # patched by tests; the reconnection backoff waits through it
        self._carla = None
        self._client = self._world = self._map = self._tm = None
        self._original_settings = None
        self._ego, self._sensors, self._traffic = None, [], []
        self._stale_ids: list[int] = []
        self._events_lock = threading.Lock()
        self._collisions, self._invasions = [], 0
        self.route: RoutePolyline | None = None
        self._route_lanes: set = set()
        self._last_obs = np.zeros(self.observation_space.shape, np.float32)
        self._last_action = (0.0, 0.0)  # the last (acceleration, steering) in [-1, 1], contract signs
        self._steps = 0
        self._target = [0.0, 0.0]  # discrete control: target speed (m/s) and lateral offset from the route (m)
        self._needs_reset = True

    # ------------------------------------------------------------------ connection
    def _connect(self):
        """Connect (or reconnect) with exponential backoff; apply synchronous settings."""
        if self._carla is None:
            self._carla = import_carla()
        carla, error = self._carla, None
        for attempt in range(self.reconnect_attempts):
            try:
                client = carla.Client(self.host, self.port)
                client.set_timeout(self.timeout)
                world = client.get_world()
                if self.town and world.get_map().name.split("/")[-1] != self.town:
                    world = client.load_world(self.town)
                settings = world.get_settings()
                ours = settings.synchronous_mode and settings.fixed_delta_seconds == self.dt
                if self._original_settings is None or not ours:
                    # a server that kept our settings through a lost connection still has the user's
                    # original ones to restore: only a fresh server's settings replace them
                    self._original_settings = world.get_settings()
                settings.synchronous_mode = True
                settings.fixed_delta_seconds = self.dt
                settings.no_rendering_mode = self.no_rendering
                world.apply_settings(settings)
                tm = client.get_trafficmanager(self.tm_port)
                tm.set_synchronous_mode(True)
                self._client, self._world, self._map, self._tm = client, world, world.get_map(), tm
                if self._stale_ids:
                    # actors of the episode the lost connection cut short, if this server still has them
                    client.apply_batch_sync([carla.command.DestroyActor(i) for i in self._stale_ids], False)
                    self._stale_ids = []
                return
            except RuntimeError as e:
                error = e
                delay = min(self.backoff_base * 2.0 ** attempt, self.backoff_max)
                logger.warning("CARLA server at %s:%d not reachable (%s); retrying in %.1f s",
                               self.host, self.port, e, delay)
                self._sleep(delay)
        raise ConnectionError(f"could not reach the CARLA server at {self.host}:{self.port} after "
                              f"{self.reconnect_attempts} attempts: {error}") from error

    def _forget_server(self):
        """Drop every handle to a lost server; remember the ids of this env's actors so that a
        reconnection to the same server process can destroy them."""
        actors = self._sensors + ([self._ego] if self._ego is not None else []) + self._traffic
        self._stale_ids += [a.id for a in actors]
        self._client = self._world = self._map = self._tm = None
        self._ego, self._sensors, self._traffic = None, [], []

    # ------------------------------------------------------------------ episode set-up and teardown
    def _destroy_actors(self):
        for sensor in self._sensors:
            if sensor.is_listening:
                sensor.stop()
        actors = self._sensors + ([self._ego] if self._ego is not None else []) + self._traffic
        if actors:
            self._client.apply_batch_sync([self._carla.command.DestroyActor(a) for a in actors], False)
        self._ego, self._sensors, self._traffic = None, [], []

    def _build_route(self):
        """Waypoints along the lanes: through the anchors, or a random drive of route_length metres."""
        carla, spacing = self._carla, 2.0
        if self._anchors is not None:
            wps = [self._map.get_waypoint(carla.Location(*a)) for a in self._anchors]
            route = [wps[0]]
            for goal in wps[1:]:
                g = goal.transform.location
                best, best_at = route[-1].transform.location.distance(g), len(route)
                for _ in range(5000):  # walk the lanes towards the next anchor (greedy at forks)
                    nxt = route[-1].next(spacing)
                    if not nxt or best <= spacing:
                        break
                    route.append(min(nxt, key=lambda w: w.transform.location.distance(g)))
                    d = route[-1].transform.location.distance(g)
                    if d < best:
                        best, best_at = d, len(route)
                    elif d > best + 50.0:
                        break  # walked past the anchor (e.g. it lies on a neighbouring lane)
                del route[best_at:]
                route.append(goal)
            return route
        spawns = self._map.get_spawn_points()
        start = spawns[int(self.np_random.integers(len(spawns)))]
        route, length = [self._map.get_waypoint(start.location)], 0.0
        while length < self.route_length:
            nxt = route[-1].next(spacing)
            if not nxt:
                break
            route.append(nxt[int(self.np_random.integers(len(nxt)))])
            length += spacing
        return route

    def _on_collision(self, event):
        with self._events_lock:
            self._collisions.append(getattr(event.other_actor, "type_id", "unknown"))

    def _on_invasion(self, event):
        with self._events_lock:
            self._invasions += len(event.crossed_lane_markings)

    def _setup_episode(self, seed):
        carla = self._carla
        if self._ego is not None or self._sensors or self._traffic:
            self._destroy_actors()
        route = self._build_route()
        self.route = RoutePolyline([[w.transform.location.x, w.transform.location.y] for w in route])
        self._route_lanes = {(w.road_id, w.lane_id > 0) for w in route}
        library = self._world.get_blueprint_library()
        bp = library.find(self.ego_blueprint)
        bp.set_attribute("role_name", "hero")
        start = route[0].transform
        spawn = carla.Transform(carla.Location(start.location.x, start.location.y, start.location.z + 0.5),
                                start.rotation)
        self._ego = self._world.try_spawn_actor(bp, spawn)
        if self._ego is None:
            raise SpawnError(f"could not spawn the ego at the route start {start.location}: the place is taken")
        for type_id, callback in (("sensor.other.collision", self._on_collision),
                                  ("sensor.other.lane_invasion", self._on_invasion)):
            sensor = self._world.spawn_actor(library.find(type_id), carla.Transform(), attach_to=self._ego)
            sensor.listen(callback)
            self._sensors.append(sensor)
        if seed is not None:
            self._tm.set_random_device_seed(int(seed))
        vehicles = library.filter("vehicle.*")
        spawns = [t for t in self._map.get_spawn_points() if t.location.distance(spawn.location) > 10.0]
        for i in self.np_random.permutation(len(spawns))[: self.n_traffic]:
            bp = vehicles[int(self.np_random.integers(len(vehicles)))]
            if bp.has_attribute("role_name"):
                bp.set_attribute("role_name", "autopilot")
            actor = self._world.try_spawn_actor(bp, spawns[int(i)])
            if actor is not None:
                actor.set_autopilot(True, self._tm.get_port())
                self._traffic.append(actor)
        with self._events_lock:
            self._collisions, self._invasions = [], 0
        self._world.tick()
        with self._events_lock:  # spawning can touch the ground or a marking: not the agent's doing
            self._collisions, self._invasions = [], 0

    # ------------------------------------------------------------------ measurement
    def _ego_state(self):
        tf, vel = self._ego.get_transform(), self._ego.get_velocity()
        yaw = math.radians(tf.rotation.yaw)
        fwd = np.array([math.cos(yaw), math.sin(yaw)])
        speed = float(np.dot([vel.x, vel.y], fwd))
        return tf.location, yaw, fwd, speed

    def _ttc_and_neighbours(self, loc, yaw, speed, lane_yaw):
        """Time to collision with the traffic in the ego's path, and the traffic's ``(ds, dd, vs, vd)`` rows in
        the lane's frame, left-positive (:func:`morl.envs.driving.observation.build_observation`)."""
        c, s = math.cos(yaw), math.sin(yaw)
        cl, sl = math.cos(lane_yaw), math.sin(lane_yaw)
        best, rows = TTC_NONE, []
        for actor in self._traffic:
            o, v = actor.get_location(), actor.get_velocity()
            dx, dy = o.x - loc.x, o.y - loc.y
            rows.append((cl * dx + sl * dy, sl * dx - cl * dy, cl * v.x + sl * v.y, sl * v.x - cl * v.y))
            lx, ly = c * dx + s * dy, -s * dx + c * dy
            if lx > 0 and abs(ly) < 1.75:  # in the ego's path, ahead
                gap = lx - _VEHICLE_LENGTH
                closing = speed - (c * v.x + s * v.y)
                if gap <= 0:
                    best = 0.0
                elif closing > 1e-6:
                    best = min(best, gap / closing)
        return best, np.asarray(rows, dtype=np.float64).reshape(-1, 4)

    def _side_lanes(self, wp, side: str) -> int:
        """Driving lanes in the ego's direction beside ``wp`` on ``side`` (``"left"`` or ``"right"``)."""
        n, cur = 0, wp
        for _ in range(8):
            get = getattr(cur, f"get_{side}_lane", None)
            cur = get() if get is not None else None
            if cur is None or cur.lane_type != self._carla.LaneType.Driving or cur.lane_id * wp.lane_id <= 0:
                break
            n += 1
        return n

    def _measure(self):
        carla = self._carla
        loc, yaw, fwd, speed = self._ego_state()
        s, route_lat = self.route.project([loc.x, loc.y], s_hint=self.tracker.s if self._steps else None,
                                          window=max(30.0, 60.0 * self.dt))
        on_lane = self._map.get_waypoint(loc, project_to_road=False, lane_type=carla.LaneType.Driving)
        nearest = self._map.get_waypoint(loc)
        limit_kmh = self._ego.get_speed_limit()
        limit = limit_kmh / 3.6 if limit_kmh and limit_kmh > 0 else self.default_speed_limit
        red = bool(self._ego.is_at_traffic_light()
                   and self._ego.get_traffic_light_state() == carla.TrafficLightState.Red)
        lane_yaw = math.radians(nearest.transform.rotation.yaw)
        ttc, neighbours = self._ttc_and_neighbours(loc, yaw, speed, lane_yaw)
        with self._events_lock:
            collisions, invasions = self._collisions, self._invasions
            self._collisions, self._invasions = [], 0
        centre = nearest.transform.location
        m = dict(
            collision=bool(collisions), off_road=on_lane is None, red_light=red and speed > self.red_light_speed,
            ttc=ttc, speed=speed, speed_limit=limit,
            outside_route_lanes=on_lane is None or (on_lane.road_id, on_lane.lane_id > 0) not in self._route_lanes,
            s=s, yaw=yaw, steer=self._last_action[1] * self.max_steer,
            lane_offset=math.hypot(loc.x - centre.x, loc.y - centre.y), lane_width=float(nearest.lane_width),
            in_junction=bool(nearest.is_junction),
        )
        extra = dict(at_red_light=red, route_lat=route_lat, neighbours=neighbours, loc=loc, fwd=fwd,
                     collided_with=collisions, lane_invasions=invasions, waypoint=nearest, lane_yaw=lane_yaw)
        return m, extra

    def scene(self, m, extra):
        """``(EgoScene, neighbours)`` of a measured state (module docstring), left-positive."""
        loc, wp, h = extra["loc"], extra["waypoint"], extra["lane_yaw"]
        centre = wp.transform.location
        width = float(wp.lane_width)
        # CARLA's y points right: the left-positive offset from the lane centre is minus the right-positive one
        offset = math.sin(h) * (loc.x - centre.x) - math.cos(h) * (loc.y - centre.y)
        n_left, n_right = self._side_lanes(wp, "left"), self._side_lanes(wp, "right")
        discrete = self.action_type == "discrete"
        scene = ob.EgoScene(
            speed=m["speed"], heading=-_wrap_angle(m["yaw"] - h), lane_offset=offset, lane_width=width,
            road_offset=offset - 0.5 * (n_left - n_right) * width, road_half_width=0.5 * (n_left + n_right + 1) * width,
            speed_limit=m["speed_limit"], steer=self._last_action[1] * self.max_steer,
            accel=float(self.tracker.prev["acc"]), target_speed=self._target[0] if discrete else 0.0,
            target_lane_offset=extra["route_lat"] - self._target[1] if discrete else 0.0,
            left_lane=n_left > 0, right_lane=n_right > 0,
            curvature=tuple(-self.route.curvature_at(self.tracker.s + a) for a in ob.ROUTE_AHEAD),
            route_left=1.0 - min(self.tracker.s_max / self.route.length, 1.0))
        return scene, extra["neighbours"]

    def _observation(self, m, extra) -> np.ndarray:
        scene, neighbours = self.scene(m, extra)
        return ob.build_observation(scene, neighbours, self.k_vehicles, self.action_type == "continuous", self.v_max,
                                    self.max_steer, self.acc_max)

    # ------------------------------------------------------------------ control
    def _control(self, action):
        carla = self._carla
        if self.action_type == "continuous":
            a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
            accel, steer = float(a[0]), float(a[1])
        else:
            accel, steer = self._meta_control(int(action))
        self._last_action = (accel, steer)
        # steer: a left wheel angle of steer * max_steer; CARLA's steer is right-positive, 1 at max_steer_angle
        carla_steer = float(np.clip(-steer * self.max_steer / self.max_steer_angle, -1.0, 1.0))
        return carla.VehicleControl(throttle=max(accel, 0.0), steer=carla_steer, brake=max(-accel, 0.0))

    def _meta_control(self, action: int):
        """Discrete meta-action -> (accel, steer) in [-1, 1], contract signs: pure pursuit on the route shifted by
        the target lateral offset, and the built-in simulator's proportional speed controller. The route's
        lateral coordinate (:meth:`RoutePolyline.project`) is positive to the driver's right in CARLA's
        left-handed frame, so a lane to the left is a negative offset."""
        if not 0 <= action < 5:
            raise ValueError(f"discrete action must be in 0..4, got {action}")
        loc, yaw, fwd, speed = self._ego_state()
        wp = self._map.get_waypoint(loc)
        width = float(wp.lane_width) if wp is not None else 3.5
        if action == 0 and wp is not None and self._side_lanes(wp, "left"):
            self._target[1] -= width
        elif action == 2 and wp is not None and self._side_lanes(wp, "right"):
            self._target[1] += width
        elif action == 3:
            self._target[0] = min(self._target[0] + self.speed_step, self.v_max)
        elif action == 4:
            self._target[0] = max(self._target[0] - self.speed_step, 0.0)
        lookahead = max(5.0, 0.8 * speed)
        s_ahead = self.tracker.s + lookahead
        p, h = self.route.point_at(s_ahead), self.route.heading_at(s_ahead)
        # (-sin h, cos h) is the normal on the positive-lateral side (the driver's right in CARLA)
        tx, ty = p[0] - math.sin(h) * self._target[1], p[1] + math.cos(h) * self._target[1]
        alpha = _wrap_angle(math.atan2(ty - loc.y, tx - loc.x) - yaw)
        wheel = -math.atan2(2.0 * 2.8 * math.sin(alpha), lookahead)  # left-positive wheel angle (rad)
        accel = _KP_SPEED * (self._target[0] - speed) / self.acc_max
        return float(np.clip(accel, -1.0, 1.0)), float(np.clip(wheel / self.max_steer, -1.0, 1.0))

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        for attempt in range(2):
            try:
                if self._client is None:
                    self._connect()
                self._steps, self._last_action = 0, (0.0, 0.0)
                self._setup_episode(seed)
                m, extra = self._measure()
                self._target = [self.speed_step * math.floor(m["speed"] / self.speed_step + 0.5), 0.0]
                # progress counts 1 per step at the speed limit where the ego starts (objectives.progress)
                self.tracker.reset(self.route.length, m["speed_limit"], m["speed"], m["yaw"], 0.0, s=m["s"])
                break
            except RuntimeError as e:
                if self._client is None or attempt == 1:
                    raise
                logger.warning("lost the CARLA server during reset (%s); reconnecting", e)
                self._forget_server()
        self._needs_reset = False
        self._last_obs = self._observation(m, extra)
        info = {"route_completion": 0.0, "route_length": self.route.length, "speed": m["speed"],
                "speed_limit": m["speed_limit"], "server_lost": False}
        return self._last_obs.copy(), info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("CarlaEnv.step called before reset() or after the episode ended")
        try:
            self._ego.apply_control(self._control(action))
            self._world.tick()
            m, extra = self._measure()
        except RuntimeError as e:
            logger.warning("lost the CARLA server during a step (%s); the episode is truncated", e)
            self._forget_server()
            self._needs_reset = True
            info = {k: False for k in obj.EVENT_KEYS}
            info.update({k: 1.0 for k in obj.CARL_KEYS}, carl_route_completion_delta=0.0, carl_hard_infraction=0.0,
                        carl_terminal_penalty=0.0, cost=0.0, ttc=TTC_NONE, speed=0.0, speed_limit=0.0,
                        route_completion=float(self.tracker.s_max / self.route.length), server_lost=True,
                        vector_reward=np.zeros(4, np.float32))
            return self._last_obs.copy(), np.zeros(4, np.float32), False, True, info
        self._steps += 1
        vec, info, hard, success = self.tracker.step(**m)
        info.update(server_lost=False, lane_invasions=extra["lane_invasions"], collided_with=extra["collided_with"])
        self._last_obs = self._observation(m, extra)
        terminated = hard or success
        truncated = not terminated and self._steps >= self.max_steps
        self._needs_reset = terminated or truncated
        return self._last_obs.copy(), vec, terminated, truncated, info

    def close(self):
        """Destroy this env's actors, restore the world's settings and the Traffic Manager's mode."""
        if self._client is not None:
            try:
                self._destroy_actors()
                if self._original_settings is not None:
                    self._world.apply_settings(self._original_settings)
                self._tm.set_synchronous_mode(False)
            except RuntimeError as e:
                logger.warning("CARLA server lost while closing (%s); nothing left to clean up", e)
        self._forget_server()
        self._stale_ids, self._original_settings = [], None
        self._needs_reset = True
