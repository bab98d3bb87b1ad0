"""Per-objective numbers from Python: the vector evaluate_policy, and rollout/return_<objective> logged by
the agents themselves."""

import csv

import numpy as np
import pytest
from stable_baselines3.common.logger import configure

from morl.agents import QDIQN
from morl.evaluate import evaluate_policy
from morl.registry import two_objective_cartpole

TINY = {"learning_starts": 16, "batch_size": 8, "buffer_size": 500, "n_quantiles": 4, "n_target_quantiles": 4,
        "n_quantiles_act": 4, "policy_kwargs": {"net_arch": [8]}, "device": "cpu", "seed": 0}


def _env():
    return two_objective_cartpole(max_episode_steps=30, off_road_limit=0.05)


def test_agents_log_per_objective_returns_without_the_cli(tmp_path):
    model = QDIQN("MlpPolicy", _env(), preorder="balance > centred", **TINY)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(200, log_interval=1)
    with open(tmp_path / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    balance = [float(r["rollout/return_balance"]) for r in rows if r.get("rollout/return_balance")]
    centred = [float(r["rollout/return_centred"]) for r in rows if r.get("rollout/return_centred")]
    assert balance and centred
    # CartPole pays +1 a step on "balance": the mean return is the mean episode length, 1..30
    assert all(1 <= b <= 30 for b in balance) and all(c <= 0 for c in centred)


def test_evaluate_policy_gives_returns_and_event_rates_per_objective():
    model = QDIQN("MlpPolicy", _env(), preorder="balance > centred", **TINY)
    result = evaluate_policy(model, _env(), n_eval_episodes=3, seeds=[5, 6, 7], reps=200)
    # reference: the same episodes played by hand on a fresh env, the reward vectors summed
    env = _env()
    returns, off_road = [], []
    for seed in (5, 6, 7):
        obs, _ = env.reset(seed=seed)
        total, any_off, done = np.zeros(2), False, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, term, trunc, info = env.step(int(action))
            total += reward
            any_off |= info["off_road"]
            done = term or trunc
        returns.append(total)
        off_road.append(any_off)
    assert result["objectives"] == ["balance", "centred"]
    assert [ep["seed"] for ep in result["episodes"]] == [5, 6, 7]
    for ep, ref in zip(result["episodes"], returns):
        assert [ep["returns"]["balance"], ep["returns"]["centred"]] == pytest.approx(ref, rel=1e-5)
    assert result["mean_returns"]["balance"] == pytest.approx(np.mean([r[0] for r in returns]))
    assert result["metrics"]["off_road_rate"]["value"] == pytest.approx(np.mean(off_road))
    with pytest.raises(ValueError, match="a VecEnv of 2"):
        from stable_baselines3.common.vec_env import DummyVecEnv

        from morl.wrappers import Scalarize
        evaluate_policy(model, DummyVecEnv([lambda: Scalarize(_env(), [1.0, 1.0])] * 2))
