"""Gymnasium env and SB3 VecEnv of the built-in driving simulator."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import morl.envs.driving  # noqa: F401  (registers the ids)
from morl.envs.driving import DrivingEnv, make_vec
from morl.envs.driving import objectives as ob
from morl.envs.driving.sim import E_D, E_S, E_TLANE, E_TSPEED
from morl.envs.driving.traffic import T_D, T_S, T_V, T_VD
from morl.preorder import Preorder


class _Scalar(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Linear scalarisation so gymnasium's checker sees a float reward (MO-Gymnasium's test pattern)."""

    def __init__(self, env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(np.dot(reward, [1.0, 1.0, 1.0, 1.0])), terminated, truncated, info


@pytest.mark.parametrize("env_id", ["morl/Highway-v0", "morl/Route-v0"])
@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
def test_env_checker_and_conventions(env_id, action_type):
    env = gym.make(env_id, action_type=action_type)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
        check_env(_Scalar(env.unwrapped), skip_render_check=True)
    u = env.unwrapped
    assert u.objectives == ("safety", "rules", "progress", "comfort")
    assert u.preorder == Preorder.parse("safety > rules > progress > comfort")
    assert u.reward_space.shape == (4,)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert isinstance(reward, np.ndarray) and reward.dtype == np.float32 and reward.shape == (4,)
    assert u.reward_space.contains(reward)
    for key in ob.INFO_KEYS:
        assert key in info
    np.testing.assert_array_equal(info["vector_reward"], reward)


def test_scenario_kwarg_and_pickle():
    env = gym.make("morl/Highway-v0", scenario="route", lanes=2)
    assert env.unwrapped.road.n_lanes == 2 and env.unwrapped.scenario == "route"
    env.reset(seed=3)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    a = env.unwrapped.step(3)
    b = clone.step(3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def _rollout(env, actions):
    out = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    return out


def test_same_seed_same_trajectory_and_seed_matters():
    actions = np.random.default_rng(0).integers(0, 5, 120)
    runs = []
    for seed in (4, 4, 5):
        env = DrivingEnv("route")
        env.reset(seed=seed)
        runs.append(_rollout(env, actions))
    assert len(runs[0]) == len(runs[1])
    for x, y in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
    assert not np.array_equal(runs[0][0][0], runs[2][0][0])


@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
def test_batch_equals_single(action_type):
    n, seed, steps = 4, 11, 60
    rng = np.random.default_rng(1)
    if action_type == "discrete":
        actions = rng.integers(0, 5, (steps, n))
    else:
        actions = rng.uniform(-0.3, 0.3, (steps, n, 2))
    venv = make_vec("highway", n, action_type=action_type, seed=seed)
    vobs = [venv.reset()]
    vrew, vdone = [], []
    for t in range(steps):
        o, r, d, infos = venv.step(actions[t])
        vobs.append(o)
        vrew.append(np.stack([i["vector_reward"] for i in infos]))
        vdone.append(d)
    for i in range(n):
        env = DrivingEnv("highway", action_type=action_type)
        obs, _ = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs, vobs[0][i])
        for t in range(steps):
            obs, reward, terminated, truncated, _ = env.step(actions[t][i])
            np.testing.assert_array_equal(reward, vrew[t][i])
            assert vdone[t][i] == (terminated or truncated)
            if vdone[t][i]:
                break
            np.testing.assert_array_equal(obs, vobs[t + 1][i])


def _empty_road_env(**kw):
    env = DrivingEnv("route", n_vehicles=0, **kw)
    env.reset(seed=0)
    return env


def test_route_completion_monotonic_and_complete():
    env = _empty_road_env(max_steps=1000)
    rc, carl_sum, progress = [0.0], 0.0, 0.0
    for _ in range(1000):
        # leave the dropped left lane, hold the target speed at 15 m/s (under every limit)
        obs, reward, terminated, truncated, info = env.step(_cruise(env, 15.0))
        rc.append(info["route_completion"])
        carl_sum += info["carl_route_completion_delta"]
        progress += reward[2]
        if terminated or truncated:
            break
    assert terminated and info["success"] and not info["collision"] and not info["off_road"]
    assert np.all(np.diff(rc) >= 0.0)
    assert rc[-1] == 1.0
    assert carl_sum == pytest.approx(100.0, abs=0.01)
    # progress sums to the route length in units of v_ref * dt (plus the last step's overshoot)
    u = env.unwrapped if hasattr(env, "unwrapped") else env
    assert progress * 25.0 * 0.2 == pytest.approx(u.road.length - 10.0, abs=25.0 * 0.2 + 1.0)


def _cruise(env, speed):
    ego = env.sim.ego[0]
    if ego[E_TLANE] >= env.road.n_lanes - 1:
        return 2  # right
    return 4 if ego[E_TSPEED] > speed else 3 if ego[E_TSPEED] < speed else 1


def test_collision_detected_and_terminates():
    env = DrivingEnv("highway", n_vehicles=2)
    env.reset(seed=0)
    sim = env.sim
    # place traffic vehicle 0 right in front of the ego, same lane, standing still
    sim.traf[0, T_S, 0] = sim.ego[0, E_S] + 6.0
    sim.traf[0, T_D, 0] = sim.ego[0, E_D]
    sim.traf[0, T_V, 0] = 0.0
    sim.traf[0, T_VD, 0] = 0.0
    sim.traf[0, T_S, 1] = sim.ego[0, E_S] + 200.0
    sim.order[0] = [0, 1]
    obs, reward, terminated, truncated, info = env.step(1)
    assert info["collision"] and terminated and reward[0] == -1.0
    assert info["carl_hard_infraction"] == 1.0 and info["carl_terminal_penalty"] == -1.0 and info["cost"] == 1.0


def test_ttc_violation_before_collision():
    env = DrivingEnv("highway", n_vehicles=1)
    env.reset(seed=0)
    sim = env.sim
    sim.traf[0, T_S, 0] = sim.ego[0, E_S] + 25.0
    sim.traf[0, T_D, 0] = sim.ego[0, E_D]
    sim.traf[0, T_V, 0] = 0.0
    _, reward, terminated, _, info = env.step(1)
    assert not terminated and info["ttc_violation"] and info["ttc"] < 2.0
    assert -ob.make_scales()[ob.S_W_TTC] <= reward[0] < 0.0 and info["carl_ttc_factor"] == 0.5


def test_off_road_detected_continuous():
    env = _empty_road_env(action_type="continuous")
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0], np.float32))  # full left
        if terminated:
            break
    assert terminated and info["off_road"] and not info["success"] and reward[0] == -1.0
    assert info["carl_terminal_penalty"] == 0.0  # CaRL: T = 0 for off-road


def test_speeding_breaks_rules():
    env = _empty_road_env()
    for _ in range(10):
        _, reward, _, _, info = env.step(3)  # faster
    assert info["speeding"] and reward[1] < 0.0 and info["carl_speeding_factor"] < 1.0


def test_vec_env_infos_and_terminal_observation():
    venv = make_vec("highway", 6, seed=0, scalarization=[1.0, 0.0, 2.0, 0.0], max_steps=20)
    venv.reset()
    assert venv.get_attr("objectives") == [ob.OBJECTIVES] * 6
    assert venv.get_attr("preorder")[0] == Preorder.parse(ob.DEFAULT_PREORDER)
    assert venv.get_attr("reward_space")[0].shape == (4,)
    ended = 0
    for _ in range(25):
        obs, rewards, dones, infos = venv.step(np.full(6, 1))
        assert rewards.dtype == np.float32
        np.testing.assert_allclose(rewards, venv.vector_rewards @ np.array([1, 0, 2, 0], np.float32), rtol=1e-6)
        for i, info in enumerate(infos):
            np.testing.assert_array_equal(info["vector_reward"], venv.vector_rewards[i])
            assert info["collision"] == bool(venv.events["collision"][i])
            if dones[i]:
                ended += 1
                assert info["terminal_observation"].shape == obs[i].shape
                assert info["TimeLimit.truncated"] == (not (info["collision"] or info["off_road"] or info["success"]))
                info["vector_reward"] = "overridden"  # an assigned key wins over the arrays, as in a dict
                copy = info.copy()
                assert isinstance(copy, dict) and "terminal_observation" in copy
                assert list(copy) == list(info) and copy["vector_reward"] == "overridden"
                for key, value in copy.items():  # the one-row copy equals the per-key reads, types included
                    assert type(value) is type(info[key]) and np.array_equal(value, info[key]), key
            else:
                assert "terminal_observation" not in info
                assert info.get("terminal_observation", "absent") == "absent"
                with pytest.raises(KeyError):
                    info["terminal_observation"]
            assert info.get("collision") == info["collision"] and info.get("episode") is None
    assert ended >= 6  # max_steps 20: every env ended at least once


def test_sb3_ppo_runs_on_vec_env():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    venv = VecMonitor(make_vec("route", 4, action_type="continuous", seed=0))
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    assert model.num_timesteps >= 128


def test_render_rgb_array():
    env = gym.make("morl/Route-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    # the ego's blue and the traffic's yellow are both drawn
    assert np.any(np.all(frame == [40, 140, 240], axis=-1))
    assert np.any(np.all(frame == [240, 200, 40], axis=-1))
    venv = make_vec("highway", 2, seed=0, render_mode="rgb_array")
    venv.reset()
    assert len(venv.get_images()) == 2


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="scenario"):
        DrivingEnv("parking")
    with pytest.raises(ValueError, match="lanes"):
        DrivingEnv("highway", lanes=0)
    with pytest.raises(ValueError, match="n_envs"):
        make_vec("highway", 0)
    with pytest.raises(ValueError, match="action_type"):
        make_vec("highway", 2, action_type="joystick")
    with pytest.raises(TypeError, match="colour"):
        DrivingEnv("highway", colour="red")
    env = DrivingEnv("highway", action_type="continuous")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="action"):
        env.step(np.array([1.5, 0.0]))
    denv = DrivingEnv("highway")
    denv.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        denv.step(5)
    with pytest.raises(ValueError, match="action"):
        denv.step(float("nan"))
    venv = make_vec("highway", 3, seed=0)
    venv.reset()
    with pytest.raises(ValueError, match="action"):
        venv.step(np.array([0, 1, 7]))


def test_record_script_writes_gif(tmp_path, load_script):
    import imageio.v2 as imageio

    out = tmp_path / "episode.gif"
    load_script("record_driving").main(["--scenario", "highway", "--steps", "4", "--out", str(out)])
    frames = imageio.mimread(out)
    assert len(frames) == 5 and frames[0].shape[:2] == (400, 300)


@pytest.mark.parametrize("scenario", ["highway", "route"])
def test_decisions_matter_rule_driver_beats_idle(scenario, load_script):
    """The task is solvable from the observation alone, and driving decisions change the outcome: a small
    rule-based driver (scripts/record_driving.py) completes routes that keeping lane and speed does not."""
    rule = load_script("record_driving").rule_policy
    outcomes = {"rule": [], "idle": []}
    for name in outcomes:
        for seed in range(3):
            env = DrivingEnv(scenario)
            obs, _ = env.reset(seed=seed)
            for _ in range(600):
                obs, reward, terminated, truncated, info = env.step(rule(obs) if name == "rule" else 1)
                if terminated or truncated:
                    break
            outcomes[name].append((info["success"], info["collision"], info["route_completion"]))
    assert sum(o[0] for o in outcomes["rule"]) >= 2
    assert sum(o[0] for o in outcomes["idle"]) <= 1
    assert np.mean([o[2] for o in outcomes["rule"]]) > np.mean([o[2] for o in outcomes["idle"]])


def test_threaded_batch_equals_serial_and_infos_keep_their_step():
    actions = np.random.default_rng(2).integers(0, 5, (40, 8))
    serial = make_vec("route", 8, seed=3)
    threaded = make_vec("route", 8, seed=3, parallel=True, n_threads=2)
    serial.reset()
    threaded.reset()
    first = None
    for t in range(40):
        a = serial.step(actions[t])
        b = threaded.step(actions[t])
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])
        if t == 0:
            first = (a[3][0], a[3][0]["vector_reward"].copy(), a[3][0]["speed"])
    # an info handed out at step 0 still reads step 0's values
    np.testing.assert_array_equal(first[0]["vector_reward"], first[1])
    assert first[0]["speed"] == first[2]
