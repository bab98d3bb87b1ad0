import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from morl.agents.carl import CaRLReward, CaRLVecReward
from morl.envs.driving import DrivingEnv, make_vec

BASE = {"speed": 10.0, "speed_limit": 12.0, "ttc_violation": False, "collision": False, "red_light": False,
        "off_road": False, "carl_route_completion_delta": 2.0, "carl_speeding_factor": 1.0, "carl_outside_lanes_factor": 1.0,
        "carl_ttc_factor": 1.0, "carl_comfort_factor": 1.0, "carl_lane_center_factor": 1.0,
        "carl_hard_infraction": 0.0, "carl_terminal_penalty": 0.0}


class Scripted(gym.Env):
    """Replays a list of info overrides, one per step, with a 2-objective vector reward."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(1)

    def __init__(self, script):
        self.script = script

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        info = {**BASE, **self.script[self.t]}
        self.t += 1
        return np.zeros(1, np.float32), np.array([0.5, -0.5], np.float32), False, self.t >= len(self.script), info


def rewards(script, **kwargs):
    env = CaRLReward(Scripted(script), **kwargs)
    env.reset()
    out = []
    for _ in script:
        _, r, term, trunc, info = env.step(0)
        out.append(r)
        if term or trunc:
            break
    return out, term, info


def test_no_penalty_pays_route_completion_and_keeps_vector():
    r, term, info = rewards([{}] * 3)
    assert r == [2.0, 2.0, 2.0] and not term
    assert info["vector_reward"].tolist() == [0.5, -0.5]


def test_soft_factors_multiply():
    r, _, info = rewards([{"carl_speeding_factor": 0.5, "carl_comfort_factor": 0.75, "carl_lane_center_factor": 0.5}])
    assert r[0] == pytest.approx(2.0 * 0.5 * 0.75 * 0.5)  # the env's factors
    assert info["carl_factors"]["speeding"] == pytest.approx(0.5)
    # a tolerance of its own: the factor from the speed, 1 - (13.115 - 12) / 2.23 = 0.5
    r, _, info = rewards([{"speed": 13.115, "carl_speeding_factor": 1.0}], speeding_tolerance=2.23)
    assert r[0] == pytest.approx(2.0 * 0.5) and info["carl_factors"]["speeding"] == pytest.approx(0.5)
    r, _, _ = rewards([{"carl_outside_lanes_factor": 0.0}])
    assert r == [0.0]
    # switched off, a factor no longer applies
    r, _, _ = rewards([{"speed": 30.0, "carl_outside_lanes_factor": 0.0}], speeding=False, outside_lanes=False)
    assert r == [2.0]


def test_ttc_penalty_is_held_for_the_given_steps():
    script = [{"ttc_violation": True}] + [{}] * 4
    r, _, _ = rewards(script, ttc_hold_steps=3)
    assert r == [1.0, 1.0, 1.0, 2.0, 2.0]  # the violating step and the next two at 0.5
    r, _, _ = rewards([{"carl_ttc_factor": 0.5}])  # default: the env's held factor
    assert r == [1.0]


def test_hard_infractions_terminate_with_penalty_only_for_collision_and_red_light():
    r, term, _ = rewards([{}, {"collision": True, "carl_hard_infraction": 1.0, "carl_terminal_penalty": -1.0}, {}])
    assert term and r == [2.0, 2.0 - 1.0]
    r, term, _ = rewards([{"red_light": True, "carl_hard_infraction": 1.0, "carl_terminal_penalty": -1.0}])
    assert term and r == [1.0]
    r, term, _ = rewards([{"off_road": True, "carl_hard_infraction": 1.0}])
    assert term and r == [2.0]  # off-road ends the episode with T = 0


def test_a_hand_computed_episode_takes_t_from_the_env():
    # RC 2 % a step; step 2 speeds (env factor 0.5) with a TTC violation (env factor 0.5); step 3 ends by a
    # collision the env penalises (T = -1) and reports no event key of its own: r = 2 * 0.25, then 2 - 1.
    script = [{}, {"carl_speeding_factor": 0.5, "carl_ttc_factor": 0.5},
              {"carl_hard_infraction": 1.0, "carl_terminal_penalty": -1.0}]
    r, term, _ = rewards(script)
    assert term and r == [2.0, 0.5, 1.0]
    r, _, _ = rewards(script, terminal_penalty=-10.0)  # T's size is the wrapper's
    assert r == [2.0, 0.5, -8.0]
    # a collision the env does not penalise (T = 0 reported): no T
    r, term, _ = rewards([{"collision": True, "carl_hard_infraction": 1.0, "carl_terminal_penalty": 0.0}])
    assert term and r == [2.0]


def test_default_reward_is_the_envs_carl_reward_on_the_simulator():
    from morl.envs.driving.objectives import carl_reward_from_info

    env = CaRLReward(DrivingEnv("route", action_type="continuous"))
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    seen_t = 0
    for _ in range(400):
        _, r, term, trunc, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        expected = carl_reward_from_info(info) if term else carl_reward_from_info({**info, "carl_terminal_penalty": 0.0})
        assert r == pytest.approx(expected, abs=1e-9)
        seen_t += info["carl_terminal_penalty"] != 0
        if term or trunc:
            env.reset()
    assert seen_t > 0  # episodes ended by a collision or a red light inside the window


def test_missing_quantity_and_bad_parameters_are_named():
    class Bare(Scripted):
        def step(self, action):
            return np.zeros(1, np.float32), 0.0, False, True, {}

    env = CaRLReward(Bare([{}]))
    env.reset()
    with pytest.raises(KeyError, match=r"CaRLReward needs info\['carl_hard_infraction'\]"):
        env.step(0)
    with pytest.raises(ValueError, match="ttc_factor"):
        CaRLReward(Scripted([{}]), ttc_factor=2.0)
    with pytest.raises(ValueError, match="ttc_hold_steps"):
        CaRLReward(Scripted([{}]), ttc_hold_steps=0)


@pytest.mark.parametrize("kwargs", [{}, {"ttc_hold_steps": 5, "speeding_tolerance": 1.0},
                                    {"comfort": False, "lane_center": False, "terminal_penalty": -2.0}])
def test_vec_reward_equals_the_gym_wrapper_on_the_batched_simulator(kwargs):
    n, steps = 3, 300
    venv = CaRLVecReward(make_vec("route", n, action_type="continuous", seed=7), **kwargs)
    envs = [CaRLReward(DrivingEnv("route", action_type="continuous"), **kwargs) for _ in range(n)]
    venv.reset()
    for i, env in enumerate(envs):
        env.reset(seed=7 + i)
    rng = np.random.default_rng(0)
    got, want, ends = [], [], 0
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        _, r, dones, _ = venv.step(actions)
        got.append(r)
        row = []
        for i, env in enumerate(envs):
            _, ri, term, trunc, _ = env.step(actions[i])
            row.append(ri)
            assert (term or trunc) == dones[i]
            if term or trunc:
                env.reset()
                ends += 1
        want.append(row)
    got, want = np.array(got), np.array(want)
    assert ends > 0  # episodes ended (and auto-reset) inside the window
    assert np.abs(want).sum() > 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_vec_reward_refuses_a_hard_infraction_that_does_not_end_the_episode():
    class NoEnd(Scripted):
        def step(self, action):
            obs, r, _, _, info = super().step(action)
            return obs, 0.0, False, False, info

    venv = CaRLVecReward(DummyVecEnv([lambda: NoEnd([{}, {"collision": True, "carl_hard_infraction": 1.0}])]))
    venv.reset()
    _, r, _, _ = venv.step(np.zeros(1, dtype=np.int64))
    assert r.tolist() == [2.0]  # from the infos (no array on a DummyVecEnv)
    with pytest.raises(RuntimeError, match="env 0 reported a hard infraction"):
        venv.step(np.zeros(1, dtype=np.int64))
