"""A small fake of the parts of the ``carla`` 0.9.x client API that ``morl.envs.driving.carla_env`` uses.

It is injected as ``sys.modules["carla"]`` in tests. One :class:`FakeServer` (``SERVER``) outlives the
clients, like a real simulator process: a client that reconnects finds the same server. The map is a
straight two-lane road along +x (lane centres at y = 0 and y = 3.5, 3.5 m wide, x in [-50, 1000]) with
a 30 km/h speed limit; the ego is a kinematic bicycle driven by ``apply_control``; autopilot traffic
drives straight at 5 m/s. Test switches on the server:

- ``collide_at_tick``: at that tick the collision sensor of the ego reports a collision;
- ``off_road_at_tick``: at that tick the ego is pushed 10 m sideways, off the road;
- ``red_light_from_tick``: from that tick the ego is at a red traffic light;
- ``drop_at_tick`` / ``down_for_calls``: from that tick every call raises ``RuntimeError`` (what the
  real client raises on a time-out), and the server stays down for that many more calls. With
  ``restart_on_recovery`` (default) it comes back as a restarted process: actors gone, settings at their
  defaults; without, as the same process after a network glitch, actors and settings kept.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import types

ROAD_X = (-50.0, 1000.0)
LANE_CENTRES = (0.0, 3.5)
LANE_WIDTH = 3.5
SPEED_LIMIT_KMH = 30.0


# ----------------------------------------------------------------------------- value types
class Vector3D:
    def __init__(self, x=0.0, y=0.0, z=0.0):
        self.x, self.y, self.z = float(x), float(y), float(z)

    def __repr__(self):
        return f"{type(self).__name__}(x={self.x:.2f}, y={self.y:.2f}, z={self.z:.2f})"


class Location(Vector3D):
    def distance(self, other):
        return math.sqrt((self.x - other.x) ** 2 + (self.y - other.y) ** 2 + (self.z - other.z) ** 2)


class Rotation:
    def __init__(self, pitch=0.0, yaw=0.0, roll=0.0):
        self.pitch, self.yaw, self.roll = float(pitch), float(yaw), float(roll)


class Transform:
    def __init__(self, location=None, rotation=None):
        self.location = location if location is not None else Location()
        self.rotation = rotation if rotation is not None else Rotation()

    def get_forward_vector(self):
        yaw = math.radians(self.rotation.yaw)
        return Vector3D(math.cos(yaw), math.sin(yaw), 0.0)


class VehicleControl:
    def __init__(self, throttle=0.0, steer=0.0, brake=0.0, hand_brake=False, reverse=False,
                 manual_gear_shift=False, gear=0):
        self.throttle, self.steer, self.brake = float(throttle), float(steer), float(brake)
        self.hand_brake, self.reverse, self.manual_gear_shift, self.gear = hand_brake, reverse, manual_gear_shift, gear


class WorldSettings:
    def __init__(self, synchronous_mode=False, no_rendering_mode=False, fixed_delta_seconds=None):
        self.synchronous_mode = synchronous_mode
        self.no_rendering_mode = no_rendering_mode
        self.fixed_delta_seconds = fixed_delta_seconds

    def __eq__(self, other):
        return (self.synchronous_mode, self.no_rendering_mode, self.fixed_delta_seconds) == (
            other.synchronous_mode, other.no_rendering_mode, other.fixed_delta_seconds)


class LaneType:
    NONE, Driving, Sidewalk, Shoulder, Any = 1, 2, 4, 8, -2


class TrafficLightState:
    Red, Yellow, Green, Off, Unknown = 0, 1, 2, 3, 4


class LaneMarking:
    def __init__(self, type_="Broken"):
        self.type = type_


class DestroyActor:
    def __init__(self, actor):
        self.actor_id = actor if isinstance(actor, int) else actor.id


command = types.SimpleNamespace(DestroyActor=DestroyActor)


class CollisionEvent:
    def __init__(self, frame, actor, other_actor):
        self.frame, self.actor, self.other_actor = frame, actor, other_actor
        self.normal_impulse = Vector3D(1000.0, 0.0, 0.0)


class LaneInvasionEvent:
    def __init__(self, frame, actor, markings):
        self.frame, self.actor, self.crossed_lane_markings = frame, actor, markings


# ----------------------------------------------------------------------------- map
class Waypoint:
    def __init__(self, x, lane):
        self.lane_id = -(lane + 1)  # both lanes drive in +x, like right-hand lanes of one road
        self.road_id = 1
        self.section_id = 0
        self.s = x - ROAD_X[0]
        self.lane_width = LANE_WIDTH
        self.is_junction = False
        self.lane_type = LaneType.Driving
        self._lane = lane
        self.transform = Transform(Location(x, LANE_CENTRES[lane], 0.0), Rotation(yaw=0.0))

    def next(self, distance):
        x = self.transform.location.x + float(distance)
        return [Waypoint(x, self._lane)] if x <= ROAD_X[1] else []

    def previous(self, distance):
        x = self.transform.location.x - float(distance)
        return [Waypoint(x, self._lane)] if x >= ROAD_X[0] else []

    def get_left_lane(self):  # the lane at smaller y (CARLA's y points right); none left of lane 0
        return Waypoint(self.transform.location.x, self._lane - 1) if self._lane > 0 else None

    def get_right_lane(self):
        x = self.transform.location.x
        return Waypoint(x, self._lane + 1) if self._lane + 1 < len(LANE_CENTRES) else None


class Map:
    name = "Carla/Maps/FakeTown01"

    def get_spawn_points(self):
        return [Transform(Location(x, y, 0.5), Rotation(yaw=0.0)) for x in (0.0, 30.0, 60.0, 90.0, 120.0)
                for y in LANE_CENTRES]

    def get_waypoint(self, location, project_to_road=True, lane_type=LaneType.Driving):
        lane = min(range(len(LANE_CENTRES)), key=lambda i: abs(location.y - LANE_CENTRES[i]))
        on_road = (ROAD_X[0] <= location.x <= ROAD_X[1]
                   and LANE_CENTRES[0] - LANE_WIDTH / 2 <= location.y <= LANE_CENTRES[-1] + LANE_WIDTH / 2)
        if not on_road and not project_to_road:
            return None
        return Waypoint(min(max(location.x, ROAD_X[0]), ROAD_X[1]), lane)


# ----------------------------------------------------------------------------- actors
class Blueprint:
    def __init__(self, id_):
        self.id = id_
        self.attributes = {}

    def has_attribute(self, name):
        return name in ("role_name", "color")

    def set_attribute(self, name, value):
        self.attributes[name] = value


class BlueprintLibrary:
    def __init__(self, ids):
        self._bps = [Blueprint(i) for i in ids]

    def find(self, id_):
        for bp in self._bps:
            if bp.id == id_:
                return copy.deepcopy(bp)
        raise IndexError(f"blueprint {id_!r} not found")

    def filter(self, pattern):
        return [copy.deepcopy(bp) for bp in self._bps if fnmatch.fnmatch(bp.id, pattern)]


class Actor:
    def __init__(self, server, actor_id, blueprint, transform, parent=None):
        self._server = server
        self.id = actor_id
        self.type_id = blueprint.id
        self.attributes = dict(blueprint.attributes)
        self.parent = parent
        self.is_alive = True
        self.x, self.y = transform.location.x, transform.location.y
        self.yaw = math.radians(transform.rotation.yaw)
        self.speed = 0.0

    def get_location(self):
        self._server.call()
        if self.parent is not None:
            return self.parent.get_location()
        return Location(self.x, self.y, 0.0)

    def get_transform(self):
        self._server.call()
        return Transform(self.get_location(), Rotation(yaw=math.degrees(self.yaw)))

    def get_velocity(self):
        self._server.call()
        return Vector3D(self.speed * math.cos(self.yaw), self.speed * math.sin(self.yaw), 0.0)

    def get_acceleration(self):
        self._server.call()
        return Vector3D()

    def destroy(self):
        self._server.call()
        return self._server.destroy(self.id)


class Vehicle(Actor):
    WHEELBASE = 2.8
    MAX_STEER = math.radians(60.0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.control = VehicleControl()
        self.autopilot = False
        self.tm_port = None

    def apply_control(self, control):
        self._server.call()
        self.control = control

    def get_control(self):
        self._server.call()
        return self.control

    def set_autopilot(self, enabled=True, port=8000):
        self._server.call()
        self.autopilot, self.tm_port = bool(enabled), port
        if enabled:
            self.speed = 5.0

    def get_speed_limit(self):
        self._server.call()
        return SPEED_LIMIT_KMH

    def is_at_traffic_light(self):
        self._server.call()
        return self._server.red_light_active()

    def get_traffic_light_state(self):
        self._server.call()
        return TrafficLightState.Red if self._server.red_light_active() else TrafficLightState.Green

    def advance(self, dt):
        if self.autopilot:
            self.x += self.speed * math.cos(self.yaw) * dt
            self.y += self.speed * math.sin(self.yaw) * dt
            return
        c = self.control
        acc = 4.0 * c.throttle - 8.0 * c.brake - 0.05 * self.speed
        self.speed = max(0.0, self.speed + acc * dt)
        beta = c.steer * self.MAX_STEER
        self.x += self.speed * math.cos(self.yaw) * dt
        self.y += self.speed * math.sin(self.yaw) * dt
        self.yaw += self.speed / self.WHEELBASE * math.tan(beta) * dt


class Sensor(Actor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.callback = None

    @property
    def is_listening(self):
        return self.callback is not None

    def listen(self, callback):
        self._server.call()
        self.callback = callback

    def stop(self):
        self._server.call()
        self.callback = None


# ----------------------------------------------------------------------------- world and server
class World:
    def __init__(self, server):
        self._server = server

    def get_settings(self):
        self._server.call()
        return copy.copy(self._server.settings)

    def apply_settings(self, settings):
        self._server.call()
        self._server.settings = copy.copy(settings)
        self._server.settings_history.append(copy.copy(settings))
        return self._server.frame

    def get_map(self):
        self._server.call()
        return Map()

    def get_blueprint_library(self):
        self._server.call()
        return BlueprintLibrary(["vehicle.tesla.model3", "vehicle.audi.a2", "vehicle.bmw.grandtourer",
                                 "sensor.other.collision", "sensor.other.lane_invasion"])

    def spawn_actor(self, blueprint, transform, attach_to=None):
        actor = self.try_spawn_actor(blueprint, transform, attach_to)
        if actor is None:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        return actor

    def try_spawn_actor(self, blueprint, transform, attach_to=None):
        self._server.call()
        return self._server.spawn(blueprint, transform, attach_to)

    def tick(self, seconds=10.0):
        self._server.call()
        return self._server.tick()


class TrafficManager:
    def __init__(self, server, port):
        self._server, self.port = server, port

    def set_synchronous_mode(self, mode=True):
        self._server.call()
        self._server.tm_sync[self.port] = bool(mode)

    def set_random_device_seed(self, seed):
        self._server.call()

    def get_port(self):
        return self.port


def _timeout():
    # the message the real client raises when the server does not answer in time
    return RuntimeError("time-out of 10000ms while waiting for the simulator, make sure the simulator is "
                        "ready and connected to localhost:2000")


class FakeServer:
    """The simulator process behind every :class:`Client`; tests set its switches."""

    def __init__(self):
        self.restart()
        self.collide_at_tick = None
        self.off_road_at_tick = None
        self.red_light_from_tick = None
        self.drop_at_tick = None
        self.down_for_calls = 0
        self.restart_on_recovery = True
        self.loaded_maps = []
        self.clients = 0

    def restart(self):
        self.settings = WorldSettings(synchronous_mode=False, fixed_delta_seconds=None)
        self.settings_history = []
        self.actors = {}
        self.destroyed = []
        self.next_id = 100
        self.frame = 0
        self.ticks = 0
        self.tm_sync = {}
        self.down = False

    # connection --------------------------------------------------------------------------
    def call(self):
        if self.down:
            if self.down_for_calls > 0:
                self.down_for_calls -= 1
                raise _timeout()
            if self.restart_on_recovery:
                self.restart()  # the server came back as a fresh process
            self.down = False  # else: the network came back, the same process with its actors
        return None

    def drop(self, down_for_calls=2):
        self.down, self.down_for_calls = True, int(down_for_calls)

    # actors -------------------------------------------------------------------------------
    def spawn(self, blueprint, transform, attach_to):
        if attach_to is None and any(
                not isinstance(a, Sensor) and abs(a.x - transform.location.x) < 5.0
                and abs(a.y - transform.location.y) < 2.0 for a in self.actors.values()):
            return None  # a car is already there
        cls = Sensor if blueprint.id.startswith("sensor.") else Vehicle
        actor = cls(self, self.next_id, blueprint, transform, parent=attach_to)
        self.next_id += 1
        self.actors[actor.id] = actor
        return actor

    def destroy(self, actor_id):
        actor = self.actors.pop(actor_id, None)
        if actor is None:
            return False
        actor.is_alive = False
        self.destroyed.append(actor_id)
        return True

    def ego(self):
        for a in self.actors.values():
            if isinstance(a, Vehicle) and a.attributes.get("role_name") == "hero":
                return a
        return None

    def red_light_active(self):
        return self.red_light_from_tick is not None and self.ticks >= self.red_light_from_tick

    def sensors_of(self, actor, type_id):
        return [s for s in self.actors.values() if isinstance(s, Sensor) and s.parent is actor
                and s.type_id == type_id and s.callback is not None]

    def tick(self):
        if self.drop_at_tick is not None and self.ticks + 1 >= self.drop_at_tick:
            self.drop_at_tick = None
            self.drop(self.down_for_calls or 2)
            raise _timeout()  # the tick in flight is lost; down_for_calls more calls fail after it
        dt = self.settings.fixed_delta_seconds or 0.05
        self.ticks += 1
        self.frame += 1
        ego = self.ego()
        lane_before = None if ego is None else self._lane_of(ego.y)
        for a in list(self.actors.values()):
            if isinstance(a, Vehicle):
                a.advance(dt)
        if ego is None:
            return self.frame
        if self.off_road_at_tick is not None and self.ticks == self.off_road_at_tick:
            ego.y += 10.0
        others = [a for a in self.actors.values() if isinstance(a, Vehicle) and a is not ego]
        hit = next((o for o in others if abs(o.x - ego.x) < 4.5 and abs(o.y - ego.y) < 2.0), None)
        if self.collide_at_tick is not None and self.ticks == self.collide_at_tick and hit is None:
            hit = others[0] if others else Actor(self, 0, Blueprint("static.prop.streetbarrier"), Transform())
        if hit is not None:
            for s in self.sensors_of(ego, "sensor.other.collision"):
                s.callback(CollisionEvent(self.frame, ego, hit))
        lane_after = self._lane_of(ego.y)
        if lane_after != lane_before:
            for s in self.sensors_of(ego, "sensor.other.lane_invasion"):
                s.callback(LaneInvasionEvent(self.frame, ego, [LaneMarking()]))
        return self.frame

    @staticmethod
    def _lane_of(y):
        if not LANE_CENTRES[0] - LANE_WIDTH / 2 <= y <= LANE_CENTRES[-1] + LANE_WIDTH / 2:
            return None
        return min(range(len(LANE_CENTRES)), key=lambda i: abs(y - LANE_CENTRES[i]))


SERVER = FakeServer()


class Client:
    def __init__(self, host="localhost", port=2000, worker_threads=0):
        self.host, self.port = host, port
        self.timeout = None
        SERVER.clients += 1

    def set_timeout(self, seconds):
        self.timeout = float(seconds)

    def get_server_version(self):
        SERVER.call()
        return "0.9.15"

    def get_world(self):
        SERVER.call()
        return World(SERVER)

    def load_world(self, map_name):
        SERVER.call()
        SERVER.loaded_maps.append(map_name)
        for actor_id in list(SERVER.actors):
            SERVER.destroy(actor_id)
        return World(SERVER)

    def get_trafficmanager(self, client_connection=8000):
        SERVER.call()
        return TrafficManager(SERVER, client_connection)

    def apply_batch_sync(self, commands, do_tick=False):
        SERVER.call()
        responses = []
        for cmd in commands:
            ok = SERVER.destroy(cmd.actor_id)
            responses.append(types.SimpleNamespace(error="" if ok else f"actor {cmd.actor_id} not found",
                                                   has_error=lambda ok=ok: not ok, actor_id=cmd.actor_id))
        if do_tick:
            SERVER.tick()
        return responses


def reset_server() -> FakeServer:
    """A fresh :data:`SERVER` (a new simulator process), returned for the test to set its switches."""
    global SERVER
    SERVER = FakeServer()
    return SERVER
