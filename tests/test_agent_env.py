"""Agents given a vector-reward env: scalarised with the env's declared weights, or (QDIQN) with none,
or refused at construction with a message naming the wrapper to use."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from morl.agents import IQN, QDIQN, CaRLPPO
from morl.registry import two_objective_cartpole
from morl.wrappers import Scalarize

TINY = {"learning_starts": 16, "batch_size": 8, "buffer_size": 200, "n_quantiles": 4, "n_target_quantiles": 4,
        "n_quantiles_act": 4, "policy_kwargs": {"net_arch": [8]}, "device": "cpu", "seed": 0}


class _Declared(gym.Wrapper):
    """A user's vector-reward env that declares its scalarisation."""

    reward_weights = {"balance": 2.0, "centred": 0.5}


def test_qdiqn_trains_on_the_package_env_as_given():
    # The first thing a user tries: it used to die in SB3's Monitor (a vector reward is no Python scalar).
    import morl.envs.driving  # noqa: F401 - registers morl/Route-v0

    model = QDIQN("MlpPolicy", gym.make("morl/Route-v0", max_steps=20), preorder=None, **TINY)
    model.learn(40)
    assert model.num_timesteps == 40
    vectors = model.replay_buffer.vector_rewards[: model.replay_buffer.size(), 0]
    assert vectors.shape == (40, 4) and np.abs(vectors).sum() > 0  # the reward vectors reached the buffer


def test_scalar_agents_use_the_declared_weights_or_name_the_wrapper():
    with pytest.raises(ValueError, match=r"^IQN trains on a scalar reward, but the env's reward is a vector over "
                                         r"\(balance, centred\) and the env declares no reward_weights: wrap it as "
                                         r"morl.wrappers.Scalarize\(env, weights\)"):
        IQN("MlpPolicy", two_objective_cartpole(), **TINY)
    with pytest.raises(ValueError, match=r"^CaRLPPO trains on a scalar reward"):
        CaRLPPO("MlpPolicy", two_objective_cartpole(), device="cpu")
    model = IQN("MlpPolicy", _Declared(two_objective_cartpole()), **TINY)
    env = model.get_env()
    env.reset()
    _, reward, _, infos = env.step(np.array([0]))
    vec = infos[0]["vector_reward"]
    assert reward[0] == pytest.approx(2.0 * vec[0] + 0.5 * vec[1])  # the declared weights, by name
    model.learn(32)
    assert model.num_timesteps == 32
    # Already scalarised: passed unchanged.
    env = Scalarize(two_objective_cartpole(), [1.0, 0.0])
    assert IQN("MlpPolicy", env, **TINY).get_env().envs[0].env is env


def test_a_vec_env_of_vector_rewards_is_refused_at_construction():
    venv = DummyVecEnv([two_objective_cartpole])
    with pytest.raises(ValueError, match=r"QDIQN got a VecEnv whose envs return a vector reward over \(balance, "
                                         r"centred\): .*wrap each env in morl.wrappers.Scalarize\(env, weights\) "
                                         r"before building the VecEnv"):
        QDIQN("MlpPolicy", venv, preorder="balance > centred", **TINY)
    ok = DummyVecEnv([lambda: Scalarize(two_objective_cartpole(), [1.0, 1.0])])
    QDIQN("MlpPolicy", ok, preorder="balance > centred", **TINY)
