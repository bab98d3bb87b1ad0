"""PreorderVecGate: the preorder gate on a VecEnv gives what the definition gives, env by env."""

import gymnasium as gym
import numpy as np
import pytest

import morl.envs.driving  # noqa: F401
from morl.envs.driving import make_vec
from morl.vec_wrappers import PreorderVecGate
from morl.wrappers import PreorderGate

WEIGHTS = {"safety": 10.0, "rules": 1.0, "progress": 1.0, "comfort": 0.2}


def _gated(vec, thresholds, weights, factor, order):
    """The gate written from its definition: objective i pays w_i r_i times factor per missed objective above it."""
    out = 0.0
    for i, name in enumerate(order):
        g = 1.0
        for j, above in enumerate(order[:i]):  # a strict chain: every earlier objective is above
            if above in thresholds and vec[j] < thresholds[above]:
                g *= factor
        out += weights[name] * vec[i] * g
    return out


def test_vec_gate_matches_the_definition_and_the_single_env_gate():
    order = ("safety", "rules", "progress", "comfort")
    thresholds = {"safety": 0.0, "rules": 0.0}
    venv = PreorderVecGate(make_vec("route", 8, seed=3), thresholds, WEIGHTS, factor=0.25)
    single = PreorderGate(gym.make("morl/Route-v0"), thresholds, WEIGHTS, factor=0.25)
    venv.reset()
    rng = np.random.default_rng(0)
    violated = 0
    for _ in range(60):
        actions = rng.integers(0, 5, size=8)
        _, rewards, _, infos = venv.step(actions)
        for i in range(8):
            vec = infos[i]["vector_reward"]
            violated += vec[0] < 0
            assert rewards[i] == pytest.approx(_gated(vec, thresholds, WEIGHTS, 0.25, order), rel=1e-5, abs=1e-6)
            assert rewards[i] == pytest.approx(float(single.terms.reward(vec)), rel=1e-6, abs=1e-7)
    assert violated > 0, "some steps should violate safety, or the gate is never exercised"


def test_vec_gate_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown objective 'speed'"):
        PreorderVecGate(make_vec("route", 2), {"speed": 0.0})
    with pytest.raises(ValueError, match="factor must be in"):
        PreorderVecGate(make_vec("route", 2), {"safety": 0.0}, factor=2.0)
