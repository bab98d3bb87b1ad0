"""One observation and action contract across the built-in simulator and highway-env.

The same hand-placed scene (an ego and two vehicles) gives the same observation vector on both; the meta-actions
and continuous actions move the ego as documented on both; a model saved from the built-in simulator steps on
the highway-env adapter without any wrapper.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highway_env")

from morl.envs.driving.env import DrivingEnv  # noqa: E402
from morl.envs.driving.highway_adapter import HighwayEnvAdapter  # noqa: E402
from morl.envs.driving.sim import (E_ACC, E_D, E_PSI, E_RC, E_S, E_STEER, E_TLANE, E_TSPEED, E_V,  # noqa: E402
                              FASTER, IDLE, LANE_LEFT, LANE_RIGHT, SLOWER)
from morl.envs.driving.traffic import T_D, T_S, T_V, T_VD  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = Path(__file__).resolve().parents[2]
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


# ----------------------------------------------------------------------------- actions
def _builtin(action_type="discrete"):
    env = DrivingEnv("highway", lanes=3, n_vehicles=0, action_type=action_type)
    env.reset(seed=0)
    ego = env.sim.ego[0]
    ego[E_D], ego[E_TLANE], ego[E_V], ego[E_TSPEED] = LANE_W, 1, 25.0, 25.0  # middle lane, 25 m/s
    return env, ego


def _highway(action_type="discrete"):
    env = HighwayEnvAdapter("highway-fast-v0", config={"lanes_count": 3, "vehicles_count": 0, "initial_lane_id": 1,
                                                       "duration": 20}, action=action_type)
    env.reset(seed=0)
    return env, env.unwrapped.vehicle


def test_meta_actions_change_lanes_and_target_speed_alike_on_both_backends():
    env, ego = _builtin()
    for _ in range(20):  # 4 s: a lane change is done (the controller settles in about 3 s)
        env.step(LANE_LEFT)
    assert ego[E_TLANE] == 2 and abs(ego[E_D] - 2 * LANE_W) < 0.3  # one lane to the driver's left
    env.step(FASTER)
    assert ego[E_TSPEED] == 30.0
    for _ in range(10):
        env.step(IDLE)
    assert ego[E_V] > 28.0
    env.step(SLOWER)
    env.step(SLOWER)
    assert ego[E_TSPEED] == 20.0
    for _ in range(15):
        env.step(LANE_RIGHT)
    assert ego[E_TLANE] == 0 and abs(ego[E_D]) < 0.3 and ego[E_V] < 22.0

    env, ego = _highway()  # 1 policy step per second
    y0 = ego.position[1]
    for _ in range(4):
        env.step(LANE_LEFT)
    assert ego.lane_index[2] == 0 and abs(ego.position[1] - (y0 - LANE_W)) < 0.3  # y points to the right
    assert ego.target_speed == 25.0
    env.step(FASTER)
    assert ego.target_speed == 30.0
    env.step(IDLE)
    env.step(IDLE)
    assert ego.speed > 28.0
    env.step(SLOWER)
    env.step(SLOWER)
    assert ego.target_speed == 20.0
    for _ in range(3):
        obs, *_ = env.step(IDLE)
    assert ego.speed < 22.0 and obs[8] == pytest.approx(20.0 / 40.0)  # the observed target speed
    env.step(SLOWER)  # below highway-env's default target speeds (20, 25, 30): the contract's 5 m/s steps
    assert ego.target_speed == 15.0
    env.step(LANE_LEFT)  # no lane left of the leftmost: ignored on both backends
    env.step(IDLE)
    assert ego.lane_index[2] == 0


def test_continuous_actions_accelerate_and_steer_left_alike_on_both_backends():
    env, ego = _builtin("continuous")
    v0, d0 = ego[E_V], ego[E_D]
    for _ in range(5):  # 1 s at +0.5: 2.5 m/s^2
        env.step(np.array([0.5, 0.0]))
    assert ego[E_V] == pytest.approx(v0 + 2.5, abs=0.05)
    env.step(np.array([0.0, 0.3]))
    env.step(np.array([0.0, 0.0]))
    assert ego[E_D] > d0 + 0.1 and ego[E_PSI] > 0.0  # left

    env, ego = _highway("continuous")  # 1 s steps
    v0, y0 = ego.speed, ego.position[1]
    env.step(np.array([0.5, 0.0]))
    assert ego.speed == pytest.approx(v0 + 2.5, abs=0.1)
    obs, *_ = env.step(np.array([0.0, 0.3]))
    assert ego.position[1] < y0 - 0.1 and ego.heading < 0.0  # left: towards smaller y
    assert obs[6] == pytest.approx(0.3) and obs[1] > 0.0  # observed steer and heading: left-positive


# ----------------------------------------------------------------------------- a trained model, unchanged
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory of IQN trained 64 steps in the built-in highway scenario."""
    from morl import experiment
    from morl.config import load_config

    config = Path(__file__).resolve().parents[2] / "configs" / "driving_iqn.yaml"
    cfg = load_config(config, ["env.scenario=highway", "train.total_timesteps=64", "train.n_envs=2",
                               "agent.learning_starts=32", "train.checkpoint_every=null"])
    return experiment.train(cfg, run_dir=tmp_path_factory.mktemp("tiny") / "run", evaluate_after=False)


def test_a_model_saved_from_the_builtin_simulator_steps_on_highway_env_without_a_wrapper(tiny_run):
    from morl.agents import IQN

    model = IQN.load(tiny_run / "model.zip", device="cpu")
    env = HighwayEnvAdapter("highway-fast-v0", config={"vehicles_count": 5, "duration": 3}, action="discrete",
                            policy_frequency=5)
    assert env.observation_space == model.observation_space and env.action_space == model.action_space
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action, _ = model.predict(obs, deterministic=True)
        obs, r, term, trunc, info = env.step(action)
        assert env.observation_space.contains(obs) and r.shape == (4,)
        if term or trunc:
            break
    # the same scene is the same input: the model acts alike on both backends
    a, b = builtin_scene_obs(), highway_scene_obs()
    q = model.predict(np.stack([a, b]), deterministic=True)[0]
    assert q[0] == q[1]


def test_transfer_script_quick_run_writes_the_table_and_figures(tmp_path, load_script, capsys):
    script = load_script("transfer_driving")
    assert script.main(["--quick", "--out", str(tmp_path), "--finetune-steps", "40"]) == 0
    result = json.loads((tmp_path / "transfer.json").read_text())
    rows = {(r["backend"], r["policy"]): r["metrics"] for r in result["rows"]}
    assert set(rows) == {("built-in highway", "agent"), ("built-in highway", "random"),
                         ("highway-fast-v0 density 1", "agent"), ("highway-fast-v0 density 1", "idm"),
                         ("highway-fast-v0 density 1", "random")}
    for m in rows.values():
        for key in ("collision_rate", "off_road_rate", "success_rate", "route_completion", "speed"):
            assert m[key]["lo"] <= m[key]["value"] <= m[key]["hi"], key
        assert m["episodes"] == 2
    # the IDM ego is highway-env's own driver: it ignores the actions and keeps to its lane at its target speed
    assert rows[("highway-fast-v0 density 1", "idm")]["speed"]["value"] > 15.0
    assert len(result["finetune"]["curve"]) == 2 and result["finetune"]["curve"][-1]["steps"] == 40
    for name in ("transfer.md", "transfer.png", "finetune.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "| highway-fast-v0 density 1 | agent | 2 |" in (tmp_path / "transfer.md").read_text()


# ----------------------------------------------------------------------------- CARLA (the fake server)
def test_the_same_scene_gives_the_same_observation_on_the_builtin_simulator_and_carla(fake_carla):
    from morl.envs.driving.carla_env import CarlaEnv

    # the fake map: 2 lanes 3.5 m wide along +x, centres y = 0 (left) and 3.5 (right), 30 km/h
    w, limit = 3.5, 30 / 3.6
    ego_s, ego_d, psi, v = 100.0, w + 0.5, 0.05, 8.0
    cars = [(120.0, 0.0, 6.0, 0.0), (85.0, w + 0.3, 10.0, 0.5)]  # (s, d, vs, vd), sim frame
    env = DrivingEnv("highway", lanes=2, lane_width=w, speed_limit=limit, n_vehicles=2, action_type="continuous")
    env.reset(seed=0)
    ego, traf = env.sim.ego[0], env.sim.traf[0]
    ego[:] = 0.0
    ego[[E_S, E_D, E_PSI, E_V]] = ego_s, ego_d, psi, v
    for i, (s, d, vs, vd) in enumerate(cars):
        traf[[T_S, T_D, T_V, T_VD], i] = s, d, vs, vd
    a = env.observe()

    carla_env = CarlaEnv(route=[[0.0, 0.0], [300.0, 0.0]], n_traffic=2, dt=0.1)
    carla_env.reset(seed=0)
    y_of = lambda d: w - d  # noqa: E731  (sim lane 0 is the right lane, at y = 3.5)
    car = fake_carla.SERVER.ego()
    car.x, car.y, car.yaw, car.speed = ego_s, y_of(ego_d), -psi, v
    for actor, (s, d, vs, vd) in zip(carla_env._traffic, cars):
        actor.x, actor.y, actor.yaw, actor.speed = s, y_of(d), math.atan2(-vd, vs), math.hypot(vs, vd)
    b = carla_env._observation(*carla_env._measure())
    assert carla_env.observation_space == env.observation_space
    # from the definition: 0.5 m left of the lane centre, 2.25 m left of the 7 m road's centre line, no lane to
    # the left, one to the right; nearest first: the car behind (15 m back, 0.2 m right), then the one ahead
    vs_e, vd_e = v * math.cos(psi), v * math.sin(psi)
    expected = np.zeros(48, np.float32)
    expected[:18] = [8 / 40, 0.05 / (math.pi / 2), 0.5 / 1.75, 2.25 / 3.5, (8 - limit) / 10, limit / 40, 0, 0, 0, 0,
                     0, 1, 1, 0, 0, 0, limit / 40, 1]
    expected[18:28] = [1, -15 / 60, -0.2 / 10, (10 - vs_e) / 20, (0.5 - vd_e) / 20,
                       1, 20 / 60, -4.0 / 10, (6 - vs_e) / 20, (0 - vd_e) / 20]
    np.testing.assert_allclose(a, expected, atol=1e-6)
    np.testing.assert_allclose(b, expected, atol=1e-5)
    carla_env.close()


def test_run_carla_drives_a_model_trained_in_the_builtin_simulator(fake_carla, tiny_run, load_script, capsys):
    script = load_script("run_carla")
    assert script.main(["--route", "random", "--route-length", "40", "--episodes", "1", "--traffic", "2",
                        "--max-steps", "20", "--policy", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert out.count("episode ") == 1 and "steps, return" in out
    assert fake_carla.SERVER.ticks > 5 and fake_carla.SERVER.actors == {}
    with pytest.raises(FileNotFoundError, match="missing.zip"):
        script.main(["--policy", str(tiny_run / "missing.zip")])


def test_observation_module_doctest_and_bad_input():
    import doctest

    from morl.envs.driving import observation

    assert doctest.testmod(observation).failed == 0
    with pytest.raises(ValueError, match="neighbours contain NaN"):
        observation.build_observation(observation.EgoScene(), [[np.nan, 0, 0, 0]])
    with pytest.raises(ValueError, match="curvature must hold 3"):
        observation.build_observation(observation.EgoScene(curvature=(0.0,)))
    with pytest.raises(ValueError, match="k_vehicles"):
        observation.build_observation(observation.EgoScene(), k_vehicles=-1)


def test_shipped_transfer_config_trains_on_the_gym_env_with_3_and_4_lanes():
    from morl.config import load_config
    from morl.experiment import env_kwargs

    cfg = load_config(str(ROOT / "configs" / "highway_transfer_iqn.yaml"))
    assert cfg.env.id == "morl/Highway-v0" and cfg.env.scenario is None
    lanes = [env_kwargs(cfg, i)["lanes"] for i in range(cfg.train.n_envs)]
    assert lanes.count(3) == lanes.count(4) == cfg.train.n_envs // 2
    envs = [DrivingEnv("highway", **env_kwargs(cfg, i)) for i in (0, 1)]
    assert [e.road.n_lanes for e in envs] == [3, 4]
    assert envs[0].observation_space == envs[1].observation_space  # one policy drives both roads


def test_transfer_script_trains_a_per_env_config_on_the_gym_env(tmp_path, load_script):
    script = load_script("transfer_driving")
    assert script.main(["--quick", "--out", str(tmp_path), "--config", str(ROOT / "configs/highway_transfer_iqn.yaml"),
                        "--policies", "agent"]) == 0
    _, cfg = script.load_agent(tmp_path / "train")
    assert cfg.env.id == "morl/Highway-v0" and cfg.env.scenario is None
    assert cfg.env.kwargs["per_env"]["lanes"][:2] == [3, 4]
    rows = json.loads((tmp_path / "transfer.json").read_text())["rows"]
    assert [(r["backend"], r["policy"]) for r in rows] == [("built-in highway", "agent"),
                                                          ("highway-fast-v0 density 1", "agent")]
    # another process evaluates the baselines on highway-env only; --combine merges the rows into one table
    assert script.main(["--quick", "--out", str(tmp_path / "b"), "--run", str(tmp_path / "train"),
                        "--policies", "random", "--skip-builtin"]) == 0
    path, other = str(tmp_path / "transfer.json"), str(tmp_path / "b" / "transfer.json")
    assert script.main(["--combine", path, other, "--out", str(tmp_path / "merged")]) == 0
    table = (tmp_path / "merged" / "transfer.md").read_text()
    assert table.count("| agent | 2 |") == 2 and table.count("| random | 2 |") == 1
    assert "| built-in highway | random |" not in table
    assert (tmp_path / "merged" / "transfer.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="already in an earlier file"):
        script.combine([path, path], tmp_path / "merged")
