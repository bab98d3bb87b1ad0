"""Every registered morl id is made by gym.make, and its objectives, reward_space and preorder are reachable
through get_wrapper_attr on what gym.make returns (the wrappers Gymnasium adds do not hide them)."""

import gymnasium as gym
import numpy as np
import pytest

import morl.envs  # noqa: F401 (registers the ids)
from morl.preorder import Preorder

IDS = sorted(k for k in gym.registry if k.startswith("morl/"))


def test_the_ids_are_registered_by_importing_morl_envs():
    for expected in ("morl/Route-v0", "morl/Highway-v0", "morl/HighwayEnvAdapter-v0", "morl/Carla-v0",
                     "morl/HalfCheetah-v5", "morl/Coverage-v0", "morl/Swarm-v0"):
        assert expected in IDS


@pytest.mark.parametrize("env_id", IDS)
def test_vector_reward_attributes_reach_the_user(env_id, fake_carla):
    env = gym.make(env_id)  # Carla-v0 talks to the fake carla module's server
    try:
        objectives = tuple(env.get_wrapper_attr("objectives"))
        space = env.get_wrapper_attr("reward_space")
        assert len(objectives) >= 1 and space.shape == (len(objectives),)
        if len(objectives) > 1:  # a single-objective env (the submodular coverage tasks) needs no precedence
            preorder = env.get_wrapper_attr("preorder")
            assert isinstance(preorder, Preorder) and set(preorder.objectives) == set(objectives)
        env.reset(seed=0)
        _, reward, _, _, info = env.step(env.action_space.sample())
        # the vector is the reward, or (envs made for SB3, scalar reward) rides in info["vector_reward"]
        vector = reward if np.ndim(reward) == 1 else info["vector_reward"]
        assert np.shape(vector) == (len(objectives),)
    finally:
        env.close()


def test_a_scalar_learner_trains_on_a_driving_id_with_its_declared_weights():
    from morl.agents import IQN
    from morl.envs.driving.objectives import DEFAULT_SCALARIZATION

    env = gym.make("morl/Route-v0")
    assert env.get_wrapper_attr("reward_weights") == tuple(map(float, DEFAULT_SCALARIZATION))
    model = IQN("MlpPolicy", env, learning_starts=64, buffer_size=500, seed=0)
    model.learn(128)
    _, scalar, _, _, info = model.get_env().envs[0].step(0)
    assert scalar == pytest.approx(float(np.dot(DEFAULT_SCALARIZATION, info["vector_reward"])), rel=1e-5)
