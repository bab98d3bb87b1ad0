import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from morl.preorder import PreorderError
from morl.wrappers import MOEpisodeStatistics, PreorderGate, Scalarize, VectorReward, WithPreorder, vector_reward_of


class EventEnv(gym.Env):
    """Ten steps; reports a collision on step 3, speeding on steps 2 and 5, cost 0.5 each step."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        info = {"collision": self.t == 3, "speeding": self.t in (2, 5), "cost": 0.5, "progress_m": float(action),
                "route_completion": self.t / 10}
        return np.zeros(1, np.float32), 1.0, False, self.t >= 10, info


def make(weights=(1.0, 2.0)):
    env = VectorReward(EventEnv(), ("safety", "progress"), keys={"safety": ("collision", -1.0), "progress": "progress_m"})
    return env


def test_vector_from_keys_with_scale():
    env = make()
    env.reset(seed=0)
    rewards = [env.step(1)[1] for _ in range(3)]
    assert [r.tolist() for r in rewards] == [[0.0, 1.0], [0.0, 1.0], [-1.0, 1.0]]
    assert rewards[0].dtype == np.float32
    assert env.reward_space.shape == (2,)


def test_missing_info_key_names_key_and_objective():
    env = VectorReward(EventEnv(), ("safety",), keys={"safety": "crash"})
    env.reset()
    with pytest.raises(KeyError, match="'crash' for objective 'safety'"):
        env.step(0)


def test_constructor_errors():
    with pytest.raises(ValueError, match="exactly one"):
        VectorReward(EventEnv(), ("a",))
    with pytest.raises(ValueError, match="missing"):
        VectorReward(EventEnv(), ("a", "b"), keys={"a": "cost"})
    with pytest.raises(ValueError, match="2 weights for 1 objectives"):
        Scalarize(VectorReward(EventEnv(), ("a",), keys={"a": "cost"}), [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown objective 'c'"):
        Scalarize(make(), {"c": 1.0})


def test_with_preorder_reindexes_and_rejects_unknown_or_missing():
    env = WithPreorder(make(), "progress > safety")
    assert env.preorder.objectives == ("safety", "progress")
    assert env.preorder.strictly_above[1, 0]
    assert env.get_wrapper_attr("preorder") is env.preorder
    with pytest.raises(PreorderError, match="'speed'"):
        WithPreorder(make(), "safety > speed")
    with pytest.raises(PreorderError, match="'progress'"):
        WithPreorder(make(), "safety")


def test_scalarize_keeps_vector_and_stats_count_events():
    env = MOEpisodeStatistics(Scalarize(WithPreorder(make(), "safety > progress"), {"safety": 10.0, "progress": 1.0}), gamma=0.9)
    env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        _, r, term, trunc, info = env.step(1)
        assert isinstance(r, float)
        np.testing.assert_allclose(r, np.dot([10.0, 1.0], info["vector_reward"]))
        total += r
        done = term or trunc
    ep = info["mo_episode"]
    np.testing.assert_allclose(ep["r"], [-1.0, 10.0])
    disc = 0.9 ** np.arange(10)
    np.testing.assert_allclose(ep["dr"], [-(0.9 ** 2), disc.sum()], rtol=1e-6)
    assert ep["l"] == 10 and ep["collision"] == 1 and ep["speeding"] == 2 and ep["cost"] == pytest.approx(5.0)
    assert ep["success"] == 0 and ep["route_completion"] == pytest.approx(1.0)
    assert total == pytest.approx(0.0)
    # The next episode starts from zero.
    env.reset()
    for _ in range(10):
        info = env.step(0)[4]
    np.testing.assert_allclose(info["mo_episode"]["r"], [-1.0, 0.0])


def test_sb3_monitor_and_evaluate_policy_work_unchanged():
    def factory():
        return Monitor(MOEpisodeStatistics(Scalarize(make(), [1.0, 1.0])))

    venv = make_vec_env(factory, n_envs=2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    mean, _ = evaluate_policy(model, venv, n_eval_episodes=2)
    assert np.isfinite(mean)
    # Monitor owns info["episode"] (a scalar record); the vector record is under "mo_episode".
    venv.reset()
    for _ in range(10):
        _, _, dones, infos = venv.step(np.array([1, 1]))
    assert dones.all()
    assert np.ndim(infos[0]["episode"]["r"]) == 0
    assert infos[0]["mo_episode"]["r"].shape == (2,)


def test_vector_reward_of():
    assert vector_reward_of(np.array([1.0, 2.0]), {}).tolist() == [1.0, 2.0]
    assert vector_reward_of(3.0, {"vector_reward": [1, 2]}).tolist() == [1.0, 2.0]
    with pytest.raises(KeyError, match="Scalarize"):
        vector_reward_of(3.0, {})


def test_scalarize_passes_on_a_scalar_chosen_by_an_inner_reward_wrapper():
    class Shaped(gym.Wrapper):
        def step(self, action):
            obs, vec, term, trunc, info = self.env.step(action)
            info["vector_reward"] = vec
            return obs, 7.0, term, trunc, info

    env = Scalarize(Shaped(make()), [1.0, 2.0])
    env.reset(seed=0)
    _, r, _, _, info = env.step(1)
    assert r == 7.0 and info["vector_reward"].tolist() == [0.0, 1.0]


def _fixed_reward_env(objectives, values):
    values = list(values)
    return VectorReward(EventEnv(), objectives, fn=lambda o, r, i: values.pop(0))


def test_preorder_gate_pays_lower_objectives_only_while_higher_ones_are_met():
    # safety > progress > comfort; safety met (0), missed (-1), then met again
    rewards = [[0.0, 2.0, -0.5], [-1.0, 3.0, -0.5], [0.0, 1.0, -0.25]]
    env = PreorderGate(_fixed_reward_env(("safety", "progress", "comfort"), rewards), {"safety": 0.0},
                       weights={"progress": 2.0}, preorder="safety > progress > comfort")
    env.reset(seed=0)
    got = [env.step(0)[1] for _ in range(3)]
    assert got == pytest.approx([0.0 + 2 * 2.0 - 0.5, -1.0, 0.0 + 2 * 1.0 - 0.25])
    # a soft factor scales instead of zeroing, once per missed objective above
    env = PreorderGate(_fixed_reward_env(("safety", "rules", "progress"), [[-1.0, -1.0, 4.0]]),
                       {"safety": 0.0, "rules": 0.0}, factor=0.5, preorder="safety > rules > progress")
    env.reset(seed=0)
    _, r, _, _, info = env.step(0)
    assert r == pytest.approx(-1.0 + 0.5 * -1.0 + 0.25 * 4.0)
    assert info["vector_reward"].tolist() == [-1.0, -1.0, 4.0]


def test_preorder_gate_ignores_incomparable_and_tied_objectives_and_checks_its_input():
    # 'a' and 'b' tied: a miss of 'a' does not gate 'b'
    env = PreorderGate(_fixed_reward_env(("a", "b"), [[-1.0, 3.0]]), {"a": 0.0}, preorder=[["a", "b"]])
    env.reset(seed=0)
    assert env.step(0)[1] == pytest.approx(2.0)
    base = _fixed_reward_env(("a", "b"), [])
    with pytest.raises(ValueError, match="unknown objective 'c'"):
        PreorderGate(base, {"c": 0.0}, preorder="a > b")
    with pytest.raises(ValueError, match="factor must be in"):
        PreorderGate(base, {"a": 0.0}, factor=2.0, preorder="a > b")
    with pytest.raises(PreorderError, match="needs a preorder"):
        PreorderGate(base, {"a": 0.0})
