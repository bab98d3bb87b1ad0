import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure

from morl.agents.carl import BetaDistribution, BetaPolicy, CaRLPPO
from morl.agents.carl.carl_ppo import clipped_value_loss


def test_beta_distribution_change_of_variables():
    d = BetaDistribution(2)
    params = th.tensor([[0.3, -1.0, 2.0, 0.1]])
    d.proba_distribution(params)
    alpha = th.nn.functional.softplus(th.tensor([0.3, -1.0])) + 1
    beta = th.nn.functional.softplus(th.tensor([2.0, 0.1])) + 1
    x = th.tensor([[0.2, -0.6]])
    u = (x + 1) / 2
    expected = (th.distributions.Beta(alpha, beta).log_prob(u) - math.log(2)).sum()
    assert d.log_prob(x).item() == pytest.approx(expected.item(), rel=1e-5)
    # The density of x integrates to 1 on [-1, 1] (numerically, one dimension at a time).
    grid = th.linspace(-1 + 1e-4, 1 - 1e-4, 20001)
    one = BetaDistribution(1).proba_distribution(th.tensor([[0.3, 2.0]]).expand(len(grid), 2))
    integral = th.trapz(one.log_prob(grid[:, None]).exp(), grid).item()
    assert integral == pytest.approx(1.0, abs=1e-3)
    # Deterministic action = mean of the Beta, mapped to [-1, 1] (CaRL acts on the mean).
    mean = 2 * alpha / (alpha + beta) - 1
    assert th.allclose(d.mode(), mean[None])
    samples = th.stack([d.sample() for _ in range(200)])
    assert samples.min() >= -1 and samples.max() <= 1
    assert th.allclose(samples.mean(0), mean, atol=0.1)
    assert d.entropy().item() == pytest.approx((th.distributions.Beta(alpha, beta).entropy() + math.log(2)).sum().item())


def test_clipped_value_loss_takes_the_larger_error():
    v, old, ret = th.tensor([1.0, 0.0]), th.tensor([0.0, 0.0]), th.tensor([2.0, -1.0])
    # element 0: unclipped (1-2)^2 = 1, clipped (0.1-2)^2 = 3.61 -> 3.61; element 1: 1 vs 1 -> 1
    assert clipped_value_loss(v, old, ret, 0.1).item() == pytest.approx(0.5 * (3.61 + 1.0) / 2)
    assert clipped_value_loss(v, old, ret, None).item() == pytest.approx(0.5 * (1.0 + 1.0) / 2)


class Target(gym.Env):
    """Continuous one-step-at-a-time target tracking: reward −|a − target|, 8 steps an episode."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Box(-2, 2, (1,), np.float32)  # not [-1, 1]: exercises rescaling

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.target = self.np_random.uniform(-1.5, 1.5, 1).astype(np.float32)
        return self.target / 1.5, {}

    def step(self, action):
        self.t += 1
        err = float(abs(action[0] - self.target[0]))
        self.target = self.np_random.uniform(-1.5, 1.5, 1).astype(np.float32)
        return self.target / 1.5, -err, False, self.t >= 8, {"vector_reward": np.array([-err, 1.0], np.float32)}


def test_carl_ppo_learns_continuous_target_and_logs_objectives(tmp_path):
    env = make_vec_env(Target, n_envs=8, seed=0)
    model = CaRLPPO("MlpPolicy", env, n_steps=64, batch_size=256, learning_rate=1e-3, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    assert isinstance(model.policy, BetaPolicy)
    before, _ = evaluate_policy(model, env, n_eval_episodes=16)
    model.learn(12_000)
    after, _ = evaluate_policy(model, env, n_eval_episodes=16)
    # An untrained Beta policy acts near 0: mean |error| ≈ 0.75 per step, −6 per episode.
    assert before < -4.5
    assert after > -2.0, (before, after)
    # Per-objective returns were logged each rollout; objective 1 pays 1 per step.
    progress = pd.read_csv(tmp_path / "log" / "progress.csv")
    assert progress["rollout/vector_return/1"].between(1.0, 8.0).all()
    assert progress["rollout/vector_return/0"].iloc[-1] > progress["rollout/vector_return/0"].iloc[0]
    # Save/load gives the same deterministic actions.
    model.save(tmp_path / "m.zip")
    loaded = CaRLPPO.load(tmp_path / "m.zip", device="cpu")
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
