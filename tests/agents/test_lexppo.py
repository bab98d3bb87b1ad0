"""LexPPO: PPO's update with one objective, the slack kept where the scalarised optimum breaks it,
ties symmetric in order, incomparable objectives unordered, the SB3 contract and the shipped configs."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from morl.agents import LexPPO
from morl.agents.lexppo import lexicographic_weights, strictly_above
from morl.preorder import Preorder
from morl.wrappers import Scalarize, VectorReward, WithPreorder

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class Signals(gym.Env):
    """One-step episodes on a constant observation; ``info`` holds the objectives' values of the action,
    plus Gaussian noise of standard deviation ``noise[name]``."""

    def __init__(self, table: dict[str, list[float]], noise: dict[str, float] | None = None, obs_dim: int = 2):
        self.table, self.noise = table, noise or {}
        self.observation_space = spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.action_space = spaces.Discrete(len(next(iter(table.values()))))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        info = {name: float(values[int(action)] + self.noise.get(name, 0.0) * self.np_random.normal())
                for name, values in self.table.items()}
        return np.zeros(self.observation_space.shape, np.float32), 0.0, True, False, info


def _vector_env(table, preorder, n_envs=1, weights=None, noise=None):
    names = tuple(table)

    def make():
        env = VectorReward(Signals(table, noise), objectives=names, keys={n: n for n in names})
        return Scalarize(WithPreorder(env, preorder), weights or [1.0] * len(names))

    return DummyVecEnv([make] * n_envs)


def _quiet(model):
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def _fill(model, rewards, obs, actions, last_values=None):
    """Put one fixed rollout into ``model``'s buffer: values and log-probabilities from its own policy."""
    buf = model.rollout_buffer
    buf.reset()
    starts = np.ones(buf.n_envs, np.float32)
    with th.no_grad():
        for t in range(buf.buffer_size):
            o = th.as_tensor(obs[t])
            a = th.as_tensor(actions[t])
            values, log_prob, _ = model.policy.evaluate_actions(o, a)
            buf.add(obs[t], actions[t].reshape(-1, 1), rewards[t], starts, values, log_prob)
            starts = np.zeros(buf.n_envs, np.float32)
        last = model.policy.predict_values(th.as_tensor(obs[-1])) if last_values is None else last_values
    buf.compute_returns_and_advantage(last, np.zeros(buf.n_envs))


def _batch(n_steps, n_envs, m, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n_steps, n_envs, 2)).astype(np.float32)
    actions = rng.integers(0, 3, (n_steps, n_envs))
    rewards = rng.normal(size=(n_steps, n_envs, m)).astype(np.float32)
    return obs, actions, rewards


PPO_KW = dict(n_steps=16, batch_size=16, n_epochs=3, seed=0, device="cpu", policy_kwargs={"net_arch": [16]})


def test_one_objective_update_equals_ppo():
    table = {"only": [0.0, 1.0, 0.5]}
    lex = _quiet(LexPPO("MlpPolicy", _vector_env(table, "only", 2), **PPO_KW))
    ppo = _quiet(PPO("MlpPolicy", _vector_env(table, "only", 2), **PPO_KW))
    ppo.policy.load_state_dict(lex.policy.state_dict())
    before = [p.detach().clone() for p in lex.policy.parameters()]
    obs, actions, rewards = _batch(16, 2, 1)
    _fill(lex, rewards, obs, actions)
    _fill(ppo, rewards[..., 0], obs, actions)
    np.testing.assert_allclose(lex.rollout_buffer.vector_advantages[..., 0], ppo.rollout_buffer.advantages, atol=1e-6)
    for model in (lex, ppo):
        np.random.seed(0)  # the minibatch permutation
        model.train()
    moved = 0.0
    for p_lex, p_ppo, p0 in zip(lex.policy.parameters(), ppo.policy.parameters(), before):
        th.testing.assert_close(p_lex, p_ppo, atol=1e-6, rtol=1e-5)
        moved = max(moved, float((p_lex.detach() - p0).abs().max()))
    assert moved > 1e-4  # the update did something


# "reckless" pays the scalarised sum 0.5 against 0.2 but loses 0.5 on the top objective; the noise on "safe"
# makes that loss small in units of its spread, so the sum of the normalised advantages (LexPPO with its
# multipliers held at 0) prefers "reckless" too
TRADE_OFF = {"safe": [0.0, -0.5, 0.0], "fast": [0.2, 1.0, 0.0]}
NOISE = {"safe": 0.5}
LEARN_KW = dict(n_steps=16, batch_size=64, n_epochs=4, learning_rate=3e-3, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]})


STEPS = 3072


def _expected(model, values):
    with th.no_grad():
        probs = model.policy.get_distribution(th.zeros(1, 2)).distribution.probs[0].numpy()
    return float(probs @ np.asarray(values))


def test_lexppo_keeps_the_top_objective_within_its_slack_where_scalarised_ppo_sacrifices_it():
    slack = 0.1
    lex = LexPPO("MlpPolicy", _vector_env(TRADE_OFF, "safe > fast", 8, noise=NOISE), slacks=slack, slack_kind="absolute",
                 references={"safe": 0.0}, multiplier_lr=5.0,
                 **LEARN_KW).learn(STEPS)
    ppo = PPO("MlpPolicy", _vector_env(TRADE_OFF, "safe > fast", 8, noise=NOISE), **LEARN_KW).learn(STEPS)
    safe_lex, safe_ppo = _expected(lex, TRADE_OFF["safe"]), _expected(ppo, TRADE_OFF["safe"])
    assert safe_ppo < -0.35, safe_ppo  # the scalarised optimum is the reckless action
    assert safe_lex >= -slack - 0.05, (safe_lex, lex.multipliers)  # within the slack of the best safe value, 0
    assert _expected(lex, TRADE_OFF["fast"]) > 0.2  # and it spends the slack on the objective below


def test_multipliers_and_references_follow_eq_2():
    model = _quiet(LexPPO("MlpPolicy", _vector_env(TRADE_OFF, "safe > fast", 2), slacks={"safe": 0.1},
                          slack_kind="absolute", multiplier_lr=1.0, reference_decay=0.0, **PPO_KW))
    rewards = model.rollout_buffer.vector_rewards  # (16, 2, 2); the safe column alternates mean -+ 0.1

    def rollout(safe_mean, fast_mean):
        rewards[..., 0] = safe_mean + 0.1 * np.where(np.arange(16)[:, None] % 2 == 0, 1.0, -1.0)
        rewards[..., 1] = fast_mean
        model._update_multipliers()
        return model.reference.round(6).tolist(), round(float(model.multipliers[0]), 6)

    # first rollout: the references are the averages; safe -0.2 is within 0.1 of itself
    assert rollout(-0.2, 1.0) == ([-0.2, 1.0], 0.0)
    # safe falls to -0.5: gap (-0.2 - 0.1) - (-0.5) = 0.2 in units of its spread 0.1; fast's best is re-measured
    assert rollout(-0.5, 0.5) == ([-0.2, 0.5], 2.0)
    # safe reaches a new best 0.0 (a stricter constraint): lambda 2 + (0 - 0.1 - 0) / 0.1; fast re-measured again
    assert rollout(0.0, 0.3) == ([0.0, 0.3], 1.0)
    # nothing above fast changes: fast keeps its running best
    assert rollout(0.0, 0.1) == ([0.0, 0.3], 0.0)


def _permuted(model, perm):
    """A copy of ``model``'s parameters for the objectives in the order ``perm``: the critic rows follow."""
    state = {k: v.clone() for k, v in model.policy.state_dict().items()}
    state["value_net.weight"] = state["value_net.weight"][perm]
    state["value_net.bias"] = state["value_net.bias"][perm]
    return state


def test_tied_objectives_give_the_same_update_in_either_order():
    table = {"top": [0.0, -1.0, 0.0], "x": [1.0, 0.0, 0.5], "y": [0.0, 1.0, 0.2]}
    swapped = {"top": table["top"], "y": table["y"], "x": table["x"]}
    kw = dict(slacks=0.1, slack_kind="absolute", **PPO_KW)
    a = _quiet(LexPPO("MlpPolicy", _vector_env(table, "top > x, y", 2), **kw))
    b = _quiet(LexPPO("MlpPolicy", _vector_env(swapped, "top > y, x", 2), **kw))
    assert a.preorder.objectives == ("top", "x", "y") and b.preorder.objectives == ("top", "y", "x")
    perm = [0, 2, 1]
    b.policy.load_state_dict(_permuted(a, perm))
    a.multipliers[:] = b.multipliers[:] = [0.7, 0.0, 0.0]  # the top objective's constraint is active
    obs, actions, rewards = _batch(16, 2, 3, seed=1)
    _fill(a, rewards, obs, actions)
    _fill(b, rewards[..., perm], obs, actions)
    for model in (a, b):
        np.random.seed(0)
        model.train()
    after_a, after_b = a.policy.state_dict(), _permuted(b, perm)
    for key in after_a:
        th.testing.assert_close(after_a[key], after_b[key], atol=1e-6, rtol=1e-5, msg=key)
    np.testing.assert_allclose(a.multipliers, b.multipliers[perm])
    w = a.combination_weights()
    assert w[1] == w[2] and w[0] > w[1]


def test_weights_follow_the_stages_and_leave_incomparable_objectives_unordered():
    p = Preorder.parse("a > c; b")  # a above c; b incomparable to both
    a, b, c = (p.index(n) for n in "abc")
    above = strictly_above(p)
    assert np.flatnonzero(above.ravel()).tolist() == [a * 3 + c]  # the only strict pair
    lam, beta = np.array([0.5, 3.0, 0.2]), np.array([1.0, 2.0, 4.0])
    # Reference from the definition: the gradient of sum_i beta_i * L_i, L_i = K_i + sum_{j above i} lam_j K_j.
    expected = np.zeros(3)
    for i in range(3):
        expected[i] += beta[i]
        for j in range(3):
            if p.strictly_prefers(np.eye(3)[j], np.eye(3)[i]):
                expected[j] += beta[i] * lam[j]
    np.testing.assert_allclose(lexicographic_weights(above, lam, beta), expected)
    assert expected[a] == beta[a] + lam[a] * beta[c] and expected[b] == beta[b] and expected[c] == beta[c]
    # A total order with ties: "s > x, y > z".
    p = Preorder.parse("s > x, y > z")
    above = strictly_above(p)
    assert above[0, 1:].all() and above[1, 3] and above[2, 3] and not above[1, 2] and not above[2, 1]


def test_lexppo_multiplier_of_an_incomparable_objective_stays_zero():
    # c's best action costs b, which is incomparable to c: b's value falls, yet nothing may protect it
    table = {"a": [0.0, 0.0, 0.0], "b": [-1.0, 0.0, 0.0], "c": [1.0, 0.0, 0.0]}
    model = LexPPO("MlpPolicy", _vector_env(table, "a > c; b", 4), slacks=0.0, slack_kind="absolute",
                   **PPO_KW).learn(512)
    assert model.multipliers.tolist() == [0.0, 0.0, 0.0]
    assert model.combination_weights().tolist() == [1.0, 1.0, 1.0]


def test_bad_slacks_name_the_field():
    env = _vector_env(TRADE_OFF, "safe > fast")
    with pytest.raises(ValueError, match="slacks must name every objective with an objective below it: missing 'safe'"):
        LexPPO("MlpPolicy", env, slacks={"fast": 0.1})
    with pytest.raises(ValueError, match="slacks: unknown objective 'speed'"):
        LexPPO("MlpPolicy", env, slacks={"safe": 0.1, "speed": 0.1})
    with pytest.raises(ValueError, match=r"slack_kind\['safe'\] must be one of"):
        LexPPO("MlpPolicy", env, slack_kind="percent")
    with pytest.raises(ValueError, match="LexPPO needs a preorder"):
        LexPPO("MlpPolicy", DummyVecEnv([lambda: Scalarize(VectorReward(Signals(TRADE_OFF), ("safe", "fast"),
                                                                          keys={"safe": "safe", "fast": "fast"}),
                                                              [1.0, 1.0])]))


def test_sb3_contract_save_load_callbacks_vec_normalize(tmp_path):
    venv = VecNormalize(_vector_env(TRADE_OFF, "safe > fast", 2))
    calls = []

    class Count(BaseCallback):
        def _on_step(self):
            calls.append(self.num_timesteps)
            return True

    model = LexPPO("MlpPolicy", venv, slacks=0.1, **PPO_KW).learn(64, callback=Count())
    assert calls[-1] == 64 and model.get_env() is venv
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=2, warn=False)
    assert np.isfinite(mean)
    model.multipliers[:] = [1.5, 0.0]
    model.save(tmp_path / "lex")
    loaded = LexPPO.load(tmp_path / "lex", env=venv, device="cpu")
    obs = np.random.default_rng(0).uniform(-1, 1, (32, 2)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    with th.no_grad():
        dist_a = model.policy.get_distribution(th.as_tensor(obs)).distribution.probs
        dist_b = loaded.policy.get_distribution(th.as_tensor(obs)).distribution.probs
    assert th.equal(dist_a, dist_b)
    assert loaded.multipliers.tolist() == [1.5, 0.0] and loaded.preorder == model.preorder
    assert np.array_equal(loaded.policy.predict_values(th.as_tensor(obs)), model.policy.predict_values(th.as_tensor(obs)))
    loaded.learn(32)  # keeps training after loading


TINY = {
    "lexppo_route": ["train.total_timesteps=64", "env.kwargs.max_steps=20", "agent.n_steps=4", "agent.batch_size=32",
                     "train.n_envs=8"],
    "mujoco_halfcheetah_lexppo": ["train.total_timesteps=128", "env.kwargs.max_episode_steps=50", "agent.n_steps=32",
                                  "agent.batch_size=32", "train.n_envs=2"],
}


@pytest.mark.parametrize("name", list(TINY))
def test_lexppo_configs_train_and_evaluate_in_a_tiny_budget(name, tmp_path):
    from morl.config import load_config
    from morl.experiment import train

    path = CONFIGS / f"{name}.yaml"
    cfg = load_config(path, TINY[name] + ["eval.episodes=1", f"output.root={tmp_path}"])
    assert cfg.agent.name == "LexPPO"
    run = train(cfg, source=str(path))
    ev = json.loads((run / "eval.json").read_text())
    assert len(ev["episodes"]) == 1 and ev["preorder"] == str(cfg.preorder())
    progress = (run / "progress.csv").read_text().splitlines()[0].split(",")
    first = cfg.preorder().objectives[0]
    assert f"train/multiplier/{first}" in progress and f"train/reference/{first}" in progress
    full = load_config(path)
    assert full.train.total_timesteps >= 100_000
