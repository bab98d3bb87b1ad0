import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import morl.envs.mujoco  # noqa: F401  (registers the ids)
from morl.envs.mujoco import GYMNASIUM_WEIGHTS, OBJECTIVES, VELOCITY_THRESHOLDS
from morl.wrappers import DiscretizeAction, Scalarize

ROBOTS = sorted(VELOCITY_THRESHOLDS)
W = np.array([GYMNASIUM_WEIGHTS[o] for o in OBJECTIVES])


@pytest.mark.parametrize("robot", ROBOTS)
def test_vector_sums_to_gymnasium_reward(robot):
    ours, theirs = gym.make(f"morl/{robot}-v5"), gym.make(f"{robot}-v5")
    ours.reset(seed=3)
    theirs.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        a = rng.uniform(-1, 1, ours.action_space.shape).astype(np.float32)
        _, vec, t1, tr1, info = ours.step(a)
        _, r, t2, tr2, _ = theirs.step(a)
        assert vec.dtype == np.float32 and vec.shape == (3,)
        assert t1 == t2 and tr1 == tr2
        # safety weight 0: the other two objectives carry Gymnasium's whole reward
        assert float(W @ vec) == pytest.approx(r, rel=1e-5, abs=1e-5)
        assert vec[0] == -(info["cost"] + info["fall"])
        if t1:
            break


def step_with_velocity(robot, qvel_index, value):
    env = gym.make(f"morl/{robot}-v5")
    env.reset(seed=0)
    u = env.unwrapped
    qvel = np.zeros(u.model.nv)
    qvel[qvel_index] = value
    u.set_state(u.init_qpos.copy(), qvel)
    return env.step(np.zeros(env.action_space.shape, np.float32))


@pytest.mark.parametrize("robot", ["HalfCheetah", "Walker2d"])
def test_cost_is_forward_velocity_over_threshold(robot):
    v = VELOCITY_THRESHOLDS[robot]
    _, vec, _, _, info = step_with_velocity(robot, 0, 3 * v)
    assert info["x_velocity"] > v and info["cost"] == 1.0 and vec[0] <= -1.0
    _, vec, _, _, info = step_with_velocity(robot, 0, 0.0)
    assert abs(info["x_velocity"]) < v and info["cost"] == 0.0


def test_ant_cost_uses_planar_speed():
    v = VELOCITY_THRESHOLDS["Ant"]
    _, _, _, _, info = step_with_velocity("Ant", 1, 3 * v)  # sideways only
    assert abs(info["x_velocity"]) < v < abs(info["y_velocity"])
    assert info["cost"] == 1.0


def test_hopper_fall_is_penalised_once_and_terminates():
    env = gym.make("morl/Hopper-v5")
    env.reset(seed=0)
    u = env.unwrapped
    qpos = u.init_qpos.copy()
    qpos[1] = 0.3  # torso far below the healthy height
    u.set_state(qpos, np.zeros(u.model.nv))
    _, vec, terminated, _, info = env.step(np.zeros(3, np.float32))
    assert terminated and info["fall"] == 1.0
    assert vec[0] == -(1.0 + info["cost"])
    # HalfCheetah cannot fall: never a fall flag
    assert not gym.make("morl/HalfCheetah-v5").get_wrapper_attr("can_fall")


def test_env_checker_and_preorder():
    env = gym.make("morl/HalfCheetah-v5")
    assert env.get_wrapper_attr("objectives") == OBJECTIVES
    assert env.get_wrapper_attr("preorder").levels == (("safety",), ("progress",), ("energy",))
    check_env(Scalarize(env, GYMNASIUM_WEIGHTS), skip_render_check=True)


def test_bad_input():
    with pytest.raises(ValueError, match="robot 'Humanoid'"):
        morl.envs.mujoco.make_safe_velocity("Humanoid")
    with pytest.raises(ValueError, match="velocity_threshold"):
        gym.make("morl/Hopper-v5", velocity_threshold=-1.0)
    with pytest.raises(ValueError, match="SafeVelocity supports"):
        morl.envs.mujoco.SafeVelocity(gym.make("Swimmer-v5"))


def test_discretize_product_exact_at_bin_centres():
    env = DiscretizeAction(gym.make("morl/Hopper-v5"), bins=5)
    assert env.action_space == gym.spaces.Discrete(125)
    for a in range(125):
        cont = env.action(a)
        assert cont.dtype == np.float32 and cont.shape == (3,)
        assert env.discretize(cont) == a
    np.testing.assert_array_equal(env.action(0), np.full(3, -0.8, np.float32))
    np.testing.assert_array_equal(env.action(124), np.full(3, 0.8, np.float32))
    # dimension 0 varies slowest
    np.testing.assert_allclose(env.action(25), [-0.4, -0.8, -0.8], atol=1e-6)
    env.reset(seed=0)
    assert env.step(62)[1].shape == (3,)
    with pytest.raises(ValueError, match="outside Discrete"):
        env.action(125)


def test_discretize_factorised_and_errors():
    env = DiscretizeAction(gym.make("morl/HalfCheetah-v5"), bins=[2, 3, 3, 3, 3, 4], mode="factorised")
    assert env.action_space == gym.spaces.MultiDiscrete([2, 3, 3, 3, 3, 4])
    cont = env.action([1, 0, 1, 2, 1, 3])
    np.testing.assert_allclose(cont, [0.5, -2 / 3, 0.0, 2 / 3, 0.0, 0.75], atol=1e-6)
    assert env.discretize(cont).tolist() == [1, 0, 1, 2, 1, 3]
    with pytest.raises(ValueError, match="bins"):
        DiscretizeAction(gym.make("Pendulum-v1"), bins=1)
    with pytest.raises(ValueError, match="mode"):
        DiscretizeAction(gym.make("Pendulum-v1"), mode="joint")
    with pytest.raises(ValueError, match="bounded Box"):
        DiscretizeAction(gym.make("CartPole-v1"))
