"""Tests of the highway-env adapter against the installed highway-env package.

Situations are constructed (a stopped car placed ahead, a hard steer off the road, a speed above the
limit) and the events and reward vector are checked against the formulas of
``morl.envs.driving.objectives`` recomputed here from the simulator state.
"""

import doctest
import math
import warnings

import highway_env  # noqa: F401  (a hard dependency: failing to import it is a failure)
import numpy as np
import pytest

from morl.envs.driving import highway_adapter
from morl.envs.driving import objectives as obj  # noqa: E402
from morl.envs.driving.highway_adapter import TTC_NONE, HighwayEnvAdapter, RoutePolyline  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

FAST = {"vehicles_count": 0, "duration": 6, "lanes_count": 3, "initial_lane_id": 1}
IDLE = 1  # DiscreteMetaAction index


def make(config=None, **kwargs):
    cfg = dict(FAST)
    cfg.update(config or {})
    return HighwayEnvAdapter("highway-fast-v0", config=cfg, **kwargs)


def test_contract_spaces_and_info_keys():
    env = make({"vehicles_count": 4})
    assert env.objectives == obj.OBJECTIVES
    assert env.reward_space.shape == (4,) and env.reward_space.dtype == np.float32
    assert str(env.preorder) == "safety > rules > progress > comfort"
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    for _ in range(2):
        obs, r, term, trunc, info = env.step(IDLE)
        assert isinstance(r, np.ndarray) and r.dtype == np.float32 and r.shape == (4,)
        assert env.reward_space.contains(r)
        missing = set(obj.INFO_KEYS) - set(info)
        assert not missing, missing
        np.testing.assert_array_equal(info["vector_reward"], r)
        if term or trunc:
            break


def test_progress_and_route_completion_follow_the_ego():
    env = make(route_length=1000.0)
    env.reset(seed=0)
    ego = env.unwrapped.vehicle
    x0, done_before = ego.position[0], 0.0
    _, r, term, trunc, info = env.step(IDLE)
    dx = ego.position[0] - x0  # straight road along +x: the distance gained along the route
    assert dx > 10.0
    v_ref = 30.0  # highway lanes' speed limit is the default reference speed
    assert r[2] == pytest.approx(min(dx / (v_ref * 1.0), 1.0), rel=1e-3)
    assert info["route_completion"] == pytest.approx(dx / 1000.0, rel=1e-3)
    assert info["carl_route_completion_delta"] == pytest.approx(100 * (dx / 1000.0 - done_before), rel=1e-3)
    assert not (term or trunc) and not info["success"]
    # nothing nearby, centred, not speeding: safety and rules are clean
    assert r[0] == 0.0 and r[1] == 0.0 and info["ttc"] == TTC_NONE


def test_short_route_is_completed_and_ends_the_episode():
    env = make(route_length=60.0)
    env.reset(seed=0)
    deltas, steps = [], 0
    while True:
        _, r, term, trunc, info = env.step(IDLE)
        deltas.append(info["carl_route_completion_delta"])
        steps += 1
        if term or trunc:
            break
    assert term and not trunc and steps <= 4
    assert info["success"] and info["route_completion"] == 1.0
    assert sum(deltas) == pytest.approx(100.0)
    assert info["carl_terminal_penalty"] == 0.0 and info["cost"] == 0.0


def test_collision_with_a_stopped_car_terminates_with_safety_minus_one():
    from highway_env.vehicle.kinematics import Vehicle

    env = make()
    env.reset(seed=0)
    base = env.unwrapped
    ego = base.vehicle
    blocker = Vehicle(base.road, ego.position + np.array([12.0, 0.0]), heading=ego.heading, speed=0.0)
    base.road.vehicles.append(blocker)
    _, r, term, trunc, info = env.step(IDLE)
    assert info["collision"] and term and not trunc
    assert r[0] == -1.0
    assert info["cost"] == 1.0 and info["carl_hard_infraction"] == 1.0
    assert info["carl_terminal_penalty"] == -1.0 and not info["success"]
    # the ego stopped on the blocker: the rest of the route was not driven
    assert 0.0 < info["route_completion"] < 0.5


def test_time_to_collision_matches_constant_velocity_gap():
    from highway_env.vehicle.kinematics import Vehicle

    env = make()
    env.reset(seed=0)
    base = env.unwrapped
    ego = base.vehicle
    lead = Vehicle(base.road, ego.position + np.array([45.0, 0.0]), heading=ego.heading, speed=12.0)
    lead.check_collisions = False
    base.road.vehicles.append(lead)
    _, r, term, trunc, info = env.step(4)  # SLOWER: the ego keeps closing in on the slow lead
    gap = lead.position[0] - ego.position[0] - 0.5 * (ego.LENGTH + lead.LENGTH)
    closing = ego.speed * math.cos(ego.heading) - lead.speed * math.cos(lead.heading)
    assert closing > 0 and gap > 0
    assert info["ttc"] == pytest.approx(gap / closing, rel=1e-6)
    threshold = 2.0
    expected = -0.2 * min(max(1.0 - info["ttc"] / threshold, 0.0), 1.0)
    assert r[0] == pytest.approx(expected, abs=1e-6)
    assert info["ttc_violation"] == (info["ttc"] < threshold)


def test_driving_off_the_road_terminates_without_terminal_penalty():
    env = make({"initial_lane_id": 0}, action="continuous")
    env.reset(seed=0)
    steps = 0
    while True:
        _, r, term, trunc, info = env.step(np.array([0.0, -1.0], dtype=np.float32))  # full steer right
        steps += 1
        if term or trunc:
            break
    assert info["off_road"] and term and steps <= 3
    assert not env.unwrapped.vehicle.on_road
    assert r[0] == -1.0 and not info["collision"]
    assert info["outside_route_lanes"] and info["carl_outside_lanes_factor"] == 0.0
    assert info["carl_terminal_penalty"] == 0.0 and info["carl_hard_infraction"] == 1.0


def test_off_road_can_be_measured_without_ending_the_episode():
    env = make({"initial_lane_id": 0}, action="continuous", terminate_off_road=False)
    env.reset(seed=0)
    for _ in range(3):
        _, r, term, trunc, info = env.step(np.array([0.0, -1.0], dtype=np.float32))
    assert not term and not info["off_road"] and info["outside_route_lanes"]
    assert r[1] <= -0.5  # driving outside the route lanes is a rules violation


def test_speeding_is_penalised_by_the_objectives_formula():
    env = make(action="continuous")
    env.reset(seed=0)
    env.unwrapped.vehicle.speed = 34.0  # limit 30 m/s
    _, r, term, trunc, info = env.step(np.array([0.0, 0.0], dtype=np.float32))
    v = env.unwrapped.vehicle.speed
    assert info["speeding"] and info["speed"] == pytest.approx(v)
    assert r[1] == pytest.approx(-0.5 * min((v - 30.0) / 2.23, 1.0), abs=1e-6)
    assert info["carl_speeding_factor"] == pytest.approx(max(0.0, 1.0 - (v - 30.0) / 2.23), abs=1e-6)


def test_lane_centre_offset_gives_comfort_and_carl_factor():
    env = make(action="continuous")
    env.reset(seed=0)
    ego = env.unwrapped.vehicle
    ego.position = ego.position + np.array([0.0, 1.0])  # 1 m off the lane centre, heading unchanged
    _, r, term, trunc, info = env.step(np.array([0.0, 0.0], dtype=np.float32))
    lat = ego.lane.local_coordinates(ego.position)[1]
    assert abs(lat) > 0.5
    assert info["carl_lane_center_factor"] == pytest.approx(1.0 - abs(lat) / 2.0, abs=1e-6)
    assert r[3] < -0.3 * abs(lat) / 2.0 + 1e-6


@pytest.mark.parametrize("env_id, config", [
    ("merge-v0", {}),
    ("roundabout-v0", {}),
    ("intersection-v0", {"initial_vehicle_count": 0, "spawn_probability": 0.0}),
])
def test_other_scenarios_give_a_route_and_events(env_id, config):
    env = HighwayEnvAdapter(env_id, config=config)
    obs, info = env.reset(seed=1)
    ego = env.unwrapped.vehicle
    assert env.route.length > 20.0
    assert np.linalg.norm(env.route.points[0] - ego.position) < 3.0
    deltas = []
    for _ in range(20):
        _, r, term, trunc, info = env.step(IDLE)
        deltas.append(info["carl_route_completion_delta"])
        assert env.reward_space.contains(r)
        if term or trunc:
            break
    assert info["route_completion"] > 0.2
    assert sum(deltas) == pytest.approx(100.0 * info["route_completion"])
    if env_id.startswith("intersection"):
        # empty junction, IDLE at the lane's speed: the ego arrives, as the env's own test says
        assert info["success"] and term and info["route_completion"] == 1.0
        assert env.unwrapped.has_arrived(ego)


def test_route_polyline_projection():
    route = RoutePolyline([[0, 0], [10, 0], [10, 10], [0, 10]])
    assert route.length == 30.0
    assert route.project([5, 1]) == pytest.approx((5.0, 1.0))
    assert route.project([11, 5]) == pytest.approx((15.0, -1.0))  # right of the +y leg
    # near the start and the end at once: the hint keeps progress from jumping across the loop
    assert route.project([0.5, 5.0], s_hint=28.0, window=5.0)[0] > 25.0
    assert route.project([0.5, 5.0], s_hint=0.0, window=5.0)[0] < 5.0
    np.testing.assert_allclose(route.point_at(15.0), [10.0, 5.0])
    assert route.truncated(12.0).length == pytest.approx(12.0)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        RoutePolyline([[1, 1], [1, 1]])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="action"):
        HighwayEnvAdapter("highway-fast-v0", action="joystick")
    with pytest.raises(ValueError, match="route_length"):
        make(route_length=-5.0)
    import gymnasium as gym

    with pytest.raises(TypeError, match="highway-env"):
        HighwayEnvAdapter(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="preorder"):
        make(preorder="safety > speed")


def test_module_doctests():
    result = doctest.testmod(highway_adapter)
    assert result.attempted > 0 and result.failed == 0


def test_objective_tracker_matches_objectives_and_holds_carl_penalties():
    from morl.envs.driving.highway_adapter import ObjectiveTracker

    tr = ObjectiveTracker(dt=0.1, carl_ttc_hold_s=0.5, carl_comfort_hold_s=0.3)
    tr.reset(route_length=50.0, v_ref=10.0, speed=10.0, yaw=0.0, steer=0.0)
    base = dict(collision=False, off_road=False, red_light=False, speed_limit=12.0, outside_route_lanes=False,
                yaw=0.0, steer=0.0, lane_offset=0.5, lane_width=3.5)
    # step 1: hard braking (-6 m/s^2, out of CaRL's comfort bounds) with a TTC violation
    vec, info, hard, success = tr.step(ttc=1.0, speed=9.4, s=0.94, **base)
    expected = obj.reward_vector(False, False, 1.0, 9.4, 12.0, False, 0.94, 1.0, -60.0, 0.0, 0.5, 3.5,
                                 obj.make_scales())
    np.testing.assert_allclose(vec, expected, rtol=1e-5, atol=1e-6)
    assert info["ttc_violation"] and info["carl_ttc_factor"] == 0.5
    assert info["carl_comfort_factor"] < 1.0 and not hard and not success
    factors = []
    s = 0.94
    for _ in range(6):  # steady driving: the TTC hold lasts 5 steps (1..5), the comfort hold 3
        s += 0.94
        vec, info, hard, success = tr.step(ttc=TTC_NONE, speed=9.4, s=s, **base)
        factors.append((info["carl_ttc_factor"], info["carl_comfort_factor"]))
    assert [f[0] for f in factors] == [0.5, 0.5, 0.5, 0.5, 1.0, 1.0]
    # the end of the braking at step 2 is a jerk of +60 m/s^3: counted at steps 2, 3, 4
    assert [f[1] < 1.0 for f in factors] == [True, True, True, False, False, False]
    # reaching the end of the route: success, completion 1, CaRL deltas sum to 100
    vec, info, hard, success = tr.step(ttc=TTC_NONE, speed=9.4, s=49.5, **base)
    assert success and info["route_completion"] == 1.0 and vec[2] == 1.0
    # a red light: a hard infraction with CaRL's terminal penalty and the worst rules value
    vec, info, hard, success = tr.step(ttc=TTC_NONE, speed=9.4, s=49.9, **{**base, "red_light": True})
    assert hard and vec[1] == -1.0 and info["carl_terminal_penalty"] == -1.0 and info["cost"] == 1.0
