"""One observation and action contract across the built-in simulator and highway-env.

The same hand-placed scene (an ego and two vehicles) gives the same observation vector on both; the meta-actions
and continuous actions move the ego as documented on both; a model saved from the built-in simulator steps on
the highway-env adapter without any wrapper.
"""

import math
import warnings

import numpy as np
import pytest

pytest.importorskip("highway_env")

from envs.driving.env import DrivingEnv  # noqa: E402
from envs.driving.highway_adapter import HighwayEnvAdapter  # noqa: E402
from envs.driving.sim import (E_ACC, E_D, E_PSI, E_RC, E_S, E_STEER, E_TLANE, E_TSPEED, E_V,  # noqa: E402
                              FASTER, IDLE, LANE_LEFT, LANE_RIGHT, SLOWER)
from envs.driving.traffic import T_D, T_S, T_V, T_VD  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

LANE_W = 4.0
# the scene, in the built-in simulator's frame (lane 0 rightmost, d to the left): ego in the middle of 3 lanes,
# 0.5 m left of its lane centre, heading 0.05 rad to the left, target the left lane; a slower car ahead in the
# left lane and a faster one behind on the right, drifting left
EGO = dict(s=100.0, d=LANE_W + 0.5, psi=0.05, v=24.0, target_speed=25.0, target_lane=2)
CARS = [dict(s=120.0, d=2 * LANE_W, vs=20.0, vd=0.0), dict(s=85.0, d=0.3, vs=28.0, vd=0.5)]


def builtin_scene_obs():
    env = DrivingEnv("highway", lanes=3, n_vehicles=2)
    env.reset(seed=0)
    ego, traf = env.sim.ego[0], env.sim.traf[0]
    ego[:] = 0.0
    ego[[E_S, E_D, E_PSI, E_V, E_TSPEED, E_TLANE]] = (EGO["s"], EGO["d"], EGO["psi"], EGO["v"],
                                                       EGO["target_speed"], EGO["target_lane"])
    ego[E_STEER] = ego[E_ACC] = ego[E_RC] = 0.0
    for i, car in enumerate(CARS):
        traf[[T_S, T_D, T_V, T_VD], i] = car["s"], car["d"], car["vs"], car["vd"]
    return env.observe()


def highway_scene_obs():
    from highway_env.vehicle.kinematics import Vehicle

    env = HighwayEnvAdapter("highway-fast-v0", config={"lanes_count": 3, "vehicles_count": 0}, action="discrete")
    env.reset(seed=0)
    base = env.unwrapped
    net = base.road.network
    # highway-env: lane ids from the left, y to the driver's right; sim lane l is id 2 - l at y = (2 - l) * 4
    y_of = lambda d: 2 * LANE_W - d  # noqa: E731
    ego = base.vehicle
    ego.position = np.array([EGO["s"], y_of(EGO["d"])])
    ego.heading = -EGO["psi"]
    ego.speed = EGO["v"]
    ego.on_state_update()
    ego.target_speed = EGO["target_speed"]
    ego.target_lane_index = ("0", "1", 2 - EGO["target_lane"])
    for car in CARS:
        v = Vehicle(base.road, np.array([car["s"], y_of(car["d"])]), heading=math.atan2(-car["vd"], car["vs"]),
                    speed=math.hypot(car["vs"], car["vd"]))
        base.road.vehicles.append(v)
    assert tuple(ego.lane_index) == ("0", "1", 1) and net is base.road.network
    return env.observe()


def test_the_same_scene_gives_the_same_observation_on_the_builtin_simulator_and_highway_env():
    a, b = builtin_scene_obs(), highway_scene_obs()
    assert a.shape == b.shape == (48,)
    # written from the layout's definition: ego 0.5 m left of its lane centre, 0.5 m left of the road's centre
    # line (3 lanes: half width 6 m), the target lane's centre 3.5 m to the left, the nearest car first: the one
    # behind (15 m back, 4.2 m right), then the one ahead (20 m, 3.5 m left)
    expected_head = [24 / 40, 0.05 / (math.pi / 2), 0.5 / 2, 0.5 / 6, -6 / 10, 30 / 40, 0, 0, 25 / 40, 3.5 / 8,
                     1, 1, 1, 0, 0, 0, 30 / 40, 1]
    vs_e, vd_e = 24 * math.cos(0.05), 24 * math.sin(0.05)
    expected_cars = [1, -15 / 60, -4.2 / 10, (28 - vs_e) / 20, (0.5 - vd_e) / 20,
                     1, 20 / 60, 3.5 / 10, (20 - vs_e) / 20, (0 - vd_e) / 20]
    expected = np.array(expected_head + expected_cars + [0.0] * 20, np.float32)
    np.testing.assert_allclose(a, expected, atol=1e-6)
    np.testing.assert_allclose(b, expected, atol=1e-5)
