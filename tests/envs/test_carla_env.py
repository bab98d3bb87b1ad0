"""Tests of the CARLA adapter against a fake ``carla`` module (tests/envs/fake_carla.py).

The fake has a straight two-lane road along +x, a kinematic ego and switches on its server that make
the ego collide, leave the road, meet a red light or lose the connection at a given tick.
"""

import json
import math
import sys

import numpy as np
import pytest

from morl.envs.driving import objectives as obj
from morl.envs.driving.carla_env import OBS_DIM, CarlaEnv, load_route

FULL_THROTTLE = np.array([1.0, 0.0], dtype=np.float32)


def make(**kwargs):
    kwargs.setdefault("route", [[0.0, 0.0], [60.0, 0.0]])
    env = CarlaEnv(**kwargs)
    env.delays = []
    env._sleep = env.delays.append  # backoff waits are recorded, not slept
    return env


def run(env, action=FULL_THROTTLE, limit=400):
    infos, rewards = [], []
    for _ in range(limit):
        obs, r, term, trunc, info = env.step(action)
        infos.append(info)
        rewards.append(r)
        if term or trunc:
            return infos, rewards, term, trunc
    raise AssertionError("the episode did not end")


def test_reset_and_step_give_the_contract(fake_carla):
    env = make(dt=0.05)
    obs, info = env.reset(seed=0)
    assert obs.shape == (OBS_DIM,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    server = fake_carla.SERVER
    assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == 0.05
    assert server.tm_sync == {8000: True}
    ego = server.ego()
    assert ego is not None and ego.type_id == "vehicle.tesla.model3"
    assert {s.type_id for s in server.actors.values() if s.parent is ego} == {
        "sensor.other.collision", "sensor.other.lane_invasion"}
    assert env.objectives == obj.OBJECTIVES and str(env.preorder) == obj.DEFAULT_PREORDER
    obs, r, term, trunc, info = env.step(FULL_THROTTLE)
    assert r.dtype == np.float32 and r.shape == (4,) and env.reward_space.contains(r)
    assert not set(obj.INFO_KEYS) - set(info)
    assert ego.control.throttle == 1.0 and ego.control.brake == 0.0
    env.step(np.array([-0.5, 0.25], dtype=np.float32))
    # a left wheel angle of 0.25 * max_steer (0.2 rad) is CARLA's right-positive steer over its 70 deg
    assert ego.control.throttle == 0.0 and ego.control.brake == 0.5
    assert ego.control.steer == pytest.approx(-0.25 * 0.2 / math.radians(70.0))
    assert info["speed_limit"] == pytest.approx(30 / 3.6)


def test_route_completion_rises_to_100_percent_at_the_route_end(fake_carla):
    env = make(dt=0.1)
    env.reset(seed=0)
    assert env.route.length == pytest.approx(60.0)
    infos, rewards, term, trunc = run(env)
    rc = [i["route_completion"] for i in infos]
    assert all(b >= a for a, b in zip(rc, rc[1:])) and rc[5] > rc[0]
    assert term and not trunc and infos[-1]["success"] and rc[-1] == 1.0
    assert sum(i["carl_route_completion_delta"] for i in infos) == pytest.approx(100.0)
    assert fake_carla.SERVER.ego().x >= 59.0
    assert all(r[2] >= 0 for r in rewards) and sum(r[2] for r in rewards) > 0


def test_collision_terminates_and_penalises_safety(fake_carla):
    env = make()
    env.reset(seed=0)
    fake_carla.SERVER.collide_at_tick = fake_carla.SERVER.ticks + 3
    infos, rewards, term, trunc = run(env)
    assert len(infos) == 3 and term and not trunc
    info, r = infos[-1], rewards[-1]
    assert info["collision"] and r[0] == -1.0 and info["cost"] == 1.0
    assert info["carl_terminal_penalty"] == -1.0 and not info["success"]
    assert info["collided_with"] == ["static.prop.streetbarrier"]
    assert all(not i["collision"] for i in infos[:-1])


def test_leaving_the_road_is_detected_and_terminates(fake_carla):
    env = make()
    env.reset(seed=0)
    fake_carla.SERVER.off_road_at_tick = fake_carla.SERVER.ticks + 4
    infos, rewards, term, trunc = run(env)
    info = infos[-1]
    assert len(infos) == 4 and term and info["off_road"] and not info["collision"]
    assert rewards[-1][0] == -1.0 and info["carl_terminal_penalty"] == 0.0
    assert info["outside_route_lanes"] and info["lane_invasions"] == 1


def test_running_a_red_light_terminates_but_waiting_at_it_does_not(fake_carla):
    env = make()
    env.reset(seed=0)
    fake_carla.SERVER.red_light_from_tick = fake_carla.SERVER.ticks + 1
    for _ in range(3):  # standing still at the red light
        _, r, term, trunc, info = env.step(np.array([-1.0, 0.0], dtype=np.float32))
        assert not term and not info["red_light"] and r[1] == 0.0
    infos, rewards, term, trunc = run(env)
    assert term and infos[-1]["red_light"] and rewards[-1][1] == -1.0
    assert infos[-1]["carl_terminal_penalty"] == -1.0


def test_close_destroys_every_actor_and_restores_settings(fake_carla):
    server = fake_carla.SERVER
    env = make(n_traffic=3)
    env.reset(seed=1)
    first = set(server.actors)
    assert len(first) == 1 + 2 + 3
    assert sum(1 for a in server.actors.values() if getattr(a, "autopilot", False)) == 3
    env.reset(seed=2)  # a new episode: the old actors are gone, none leak
    assert first.isdisjoint(server.actors) and len(server.actors) == 6
    assert first <= set(server.destroyed)
    env.close()
    assert server.actors == {}
    assert server.settings == fake_carla.WorldSettings(synchronous_mode=False, fixed_delta_seconds=None)
    assert server.tm_sync == {8000: False}


def test_lost_server_truncates_then_reset_reconnects_and_training_goes_on(fake_carla):
    server = fake_carla.SERVER
    env = make(route=[[0.0, 0.0], [200.0, 0.0]])
    env.reset(seed=0)
    clients = server.clients
    server.drop_at_tick, server.down_for_calls = server.ticks + 3, 3
    infos, rewards, term, trunc = run(env)
    assert len(infos) == 3 and trunc and not term
    assert infos[-1]["server_lost"] and not rewards[-1].any()
    assert not set(obj.INFO_KEYS) - set(infos[-1])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(FULL_THROTTLE)
    obs, info = env.reset(seed=0)
    assert env.delays == [1.0, 2.0, 4.0]  # exponential backoff while the server was down
    assert fake_carla.SERVER.clients > clients and not info["server_lost"]
    assert server.settings.synchronous_mode and len(server.actors) == 3  # a fresh server, set up again
    infos = [env.step(FULL_THROTTLE)[-1] for _ in range(20)]
    assert not any(i["server_lost"] for i in infos) and infos[-1]["route_completion"] > 0.0


def test_reconnection_gives_up_with_a_clear_error(fake_carla):
    fake_carla.SERVER.drop(down_for_calls=100)
    env = make(reconnect_attempts=3, backoff_max=1.5)
    with pytest.raises(ConnectionError, match="localhost:2000 after 3 attempts"):
        env.reset()
    assert env.delays == [1.0, 1.5, 1.5]


def test_discrete_meta_actions_track_speed_and_change_lanes(fake_carla):
    env = make(action_type="discrete", route=[[0.0, 3.5], [300.0, 3.5]])  # along the right lane
    obs, _ = env.reset(seed=0)
    ego = fake_carla.SERVER.ego()
    assert obs[8] == 0.0  # target speed: the initial speed (at rest) rounded to a 5 m/s step
    env.step(3)  # FASTER, FASTER: target 10 m/s, the built-in simulator's step of 5 m/s
    obs, *_ = env.step(3)
    assert obs[8] == pytest.approx(10.0 / 40.0)
    for _ in range(80):
        _, r, term, trunc, info = env.step(1)
    assert 9.0 < info["speed"] < 11.0 and abs(ego.y - 3.5) < 0.3
    for _ in range(60):
        _, r, term, trunc, info = env.step(4 if _ == 0 else 1)  # SLOWER once: 5 m/s
    assert 4.0 < info["speed"] < 6.0
    env.step(2)  # LANE_RIGHT from the rightmost lane: no lane there, ignored
    for _ in range(40):
        obs, r, term, trunc, info = env.step(0 if _ == 0 else 1)  # LANE_LEFT: the lane at y = 0 (y points right)
    assert abs(ego.y) < 0.5 and not term
    assert obs[10] == 0.0 and obs[11] == 1.0  # now no lane to the left, one to the right


def test_route_files(fake_carla, tmp_path):
    spec = load_route("town01_route.json")
    assert spec["town"] == "Town01" and len(spec["waypoints"]) >= 2
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"town": "FakeTown01", "waypoints": [[0, 0], [30, 0.2], [70, 0]]}))
    env = make(route=str(path))
    env.reset(seed=0)
    assert env.town == "FakeTown01" and env.route.length == pytest.approx(70.0, abs=0.5)
    assert fake_carla.SERVER.loaded_maps == []  # the fake's map is already FakeTown01
    path.write_text(json.dumps({"waypoints": [[0, 0], ["a", 1]]}))
    with pytest.raises(ValueError, match="point 1"):
        CarlaEnv(route=str(path))
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        CarlaEnv(route="nowhere.json")


def test_random_route_and_bad_arguments(fake_carla):
    env = make(route=None, route_length=50.0)
    env.reset(seed=3)
    assert 48.0 <= env.route.length <= 52.0
    with pytest.raises(ValueError, match="action_type"):
        CarlaEnv(action_type="wheel")
    with pytest.raises(ValueError, match="dt"):
        CarlaEnv(dt=0)


def test_without_the_carla_package_reset_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "carla", None)  # "import carla" raises ImportError
    env = CarlaEnv()
    with pytest.raises(ImportError, match=r"pip install morl\[carla\]"):
        env.reset()


def test_a_network_glitch_leaves_no_actor_behind_and_close_restores_the_original_settings(fake_carla):
    server = fake_carla.SERVER
    server.restart_on_recovery = False  # the same server process comes back, with the old actors
    env = make(n_traffic=2)
    env.reset(seed=0)
    old = set(server.actors)
    server.drop_at_tick, server.down_for_calls = server.ticks + 2, 1
    infos, _, _, trunc = run(env)
    assert trunc and infos[-1]["server_lost"] and set(server.actors) == old  # still there
    env.reset(seed=1)
    assert old.isdisjoint(server.actors) and len(server.actors) == 5
    env.close()
    assert server.actors == {} and not server.settings.synchronous_mode
    assert server.settings.fixed_delta_seconds is None


def test_run_carla_script_drives_episodes_and_restores_the_server(fake_carla, capsys, load_script):
    script = load_script("run_carla")
    fake_carla.SERVER.collide_at_tick = 30
    assert script.main(["--route", "random", "--route-length", "80", "--episodes", "2", "--traffic", "2",
                        "--policy", "constant", "--accel", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("episode ") == 2 and "collision" in out and "ended by success" in out
    assert fake_carla.SERVER.actors == {} and not fake_carla.SERVER.settings.synchronous_mode


def test_anchor_on_the_neighbouring_lane_ends_the_walk_near_it(fake_carla):
    env = make(route=[[0.0, 0.0], [40.0, 3.5]])  # the second anchor is on the other lane
    env.reset(seed=0)
    assert env.route.length == pytest.approx(43.5)  # 40 m along the lane, then 3.5 m across to it
    np.testing.assert_allclose(env.route.points[-1], [40.0, 3.5])
