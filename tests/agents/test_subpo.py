"""Tests of SubPO / ModPO: the estimator's credit terms, SB3 API, and SubPO beating ModPO on a small grid."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import configure

from morl.agents.subpo import ModPO, SubPO, SubPOPolicy
from morl.agents.subpo.subpo import cumulative_return, loo_baseline, reward_to_go
from morl.envs.coverage import CoverageVecEnv


def _env(n=16, **kw):
    return CoverageVecEnv(num_envs=n, rows=kw.pop("rows", 6), cols=kw.pop("cols", 6), horizon=kw.pop("horizon", 8),
                          **kw)


def mean_F(model, env, episodes=4):
    """Mean F(tau) of sampled episodes of the stochastic policy (J(pi) = E[F(tau)])."""
    out = []
    for _ in range(episodes):
        obs = env.reset()
        for _ in range(env.horizon):
            a, _ = model.predict(obs, deterministic=False)
            obs, _, done, infos = env.step(a)
        out += [i["F"] for i in infos]
    return float(np.mean(out))


def test_credit_terms_against_loops():
    rng = np.random.default_rng(0)
    r = rng.random((6, 4))
    d = np.zeros((6, 4))
    d[2, 1] = d[5] = 1.0  # env 1 ends an episode after step 2
    g, c = reward_to_go(r, d), cumulative_return(r, d)
    for b in range(4):
        ends = [t for t in range(6) if d[t, b]]
        for t in range(6):
            end = min(e for e in ends if e >= t)
            start = max([e + 1 for e in ends if e < t], default=0)
            assert np.isclose(g[t, b], r[t:end + 1, b].sum())
            assert np.isclose(c[t, b], r[start:t + 1, b].sum())
    # Env 1 restarts at row 3: its rows 3..5 are steps 0..2 of a new episode, beside the others' steps 3..5.
    steps = np.tile(np.arange(6)[:, None], (1, 4))
    steps[3:, 1] = np.arange(3)
    base = loo_baseline(g, steps)
    for t in range(6):
        for b in range(4):  # the other samples at the same step of their episodes, the sample itself left out
            others = [g[u, c] for u in range(6) for c in range(4) if steps[u, c] == steps[t, b] and (u, c) != (t, b)]
            assert np.isclose(base[t, b], np.mean(others) if others else 0.0)
    assert not np.allclose(base[3:, 0], g[3:, 1:].mean(axis=1))  # not the mean of the rollout's row


def test_rollout_records_each_samples_step_within_its_episode():
    from stable_baselines3.common.callbacks import CallbackList

    model = SubPO("MultiInputPolicy", _env(n=2, horizon=5), n_steps=8, seed=0)  # episodes cross the rollout's rows
    model.learn(16)  # one rollout of 8 steps: the next starts at step 3 of the envs' episodes
    callback = CallbackList([])
    callback.init_callback(model)
    rollout = model.collect_rollout(callback)
    expected = np.array([[(3 + t) % 5] * 2 for t in range(8)])
    assert np.array_equal(rollout["episode_t"], expected)
    g = reward_to_go(rollout["rewards"], rollout["dones"])
    assert np.allclose(model._weights(rollout), g - loo_baseline(g, expected))


@pytest.mark.parametrize("credit", ["reward_to_go", "greedy_repo"])
def test_gradient_step_follows_weights(credit):
    """One step raises the log-prob of the action of the trajectory with the larger credit."""
    th.manual_seed(0)
    env = _env(n=2, horizon=1, start=(0, 0))
    model = SubPO("MultiInputPolicy", env, learning_rate=0.05, credit=credit, seed=0, device="cpu",
                  normalize_advantage=False, max_grad_norm=None)
    model.set_logger(configure(None, []))
    obs = env.reset()
    obs_t = model._obs_tensor(obs)
    rollout = {"obs": [obs_t], "actions": np.array([[1, 0]]), "rewards": np.array([[2.0, 0.0]]),
               "dones": np.ones((1, 2)), "final_F": np.array([6.0, 4.0]), "episode_t": np.zeros((1, 2), dtype=int)}
    before = model.policy.distribution(obs_t).log_prob(th.tensor([1, 0])).detach()
    model.train_on_rollout(rollout)
    after = model.policy.distribution(obs_t).log_prob(th.tensor([1, 0])).detach()
    assert after[0] > before[0]  # "move right" gained 2: reinforced under both credits
    if credit == "reward_to_go":  # with the baseline, the zero-gain "stay" is pushed down
        assert after[1] < before[1]


@pytest.mark.parametrize("features", ["visited", "markov", "repo"])
def test_policy_features_shapes(features):
    env = _env(n=3)
    pol = SubPOPolicy(env.observation_space, env.action_space, lambda _: 1e-3, features=features)
    obs = env.reset()
    for _ in range(2):  # two steps in: t = 2 and some cells visited
        obs, _, _, _ = env.step(np.array([1, 2, 3]))
    x = pol.featurize({k: th.as_tensor(v) for k, v in obs.items()})
    assert x.shape == (3, {"visited": 73, "markov": 37, "repo": 2}[features])
    # the values, built here from the observation's definition: one-hot cell, t / horizon, visited bitmap
    n = 36
    for i in range(3):
        cell, t = int(obs["cell"][i]), float(np.ravel(obs["t"][i])[0])
        if features == "repo":
            assert x[i].tolist() == [float(cell), t]
            continue
        onehot = np.zeros(n)
        onehot[cell] = 1.0
        expected = [*onehot, t / 8]
        if features == "visited":
            expected += list(np.ravel(obs["visited"][i]).astype(float))
        assert np.allclose(x[i].numpy(), expected)
    assert float(np.ravel(obs["t"][0])[0]) == 2.0
    with pytest.raises(ValueError, match="unknown features"):
        SubPOPolicy(env.observation_space, env.action_space, lambda _: 1e-3, features="image")


def test_bad_arguments():
    env = _env(n=2)
    for kwargs, match in [(dict(credit="mc"), "credit"), (dict(baseline="critic"), "baseline"),
                          (dict(reward="sparse"), "reward"), (dict(n_epochs=0), "n_epochs")]:
        with pytest.raises(ValueError, match=match):
            SubPO("MultiInputPolicy", env, **kwargs)


def test_sb3_api_save_load_logger_progress(tmp_path):
    env = _env(n=4)
    model = ModPO("MultiInputPolicy", env, seed=1, device="cpu")
    assert model.reward == "modular" and model.n_steps == env.horizon
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    model.learn(4 * 8 * 2, progress_bar=True)
    assert model.num_timesteps == 64
    text = (tmp_path / "log" / "progress.csv").read_text()
    assert "rollout/F_mean" in text and "train/loss" in text
    obs = env.reset()
    a1, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "m.zip")
    loaded = ModPO.load(tmp_path / "m.zip", env=env, device="cpu")
    a2, _ = loaded.predict(obs, deterministic=True)
    assert loaded.reward == "modular" and np.array_equal(a1, a2) and a1.shape == (4,)
    one = {k: v[0] for k, v in obs.items()}  # a single (non-batched) observation
    assert np.ndim(loaded.predict(one, deterministic=True)[0]) == 0


def test_subpo_beats_modpo_on_small_coverage():
    """Same budget, seeds and features: SubPO's marginal gains cover more than ModPO's modular reward."""
    th.set_num_threads(1)
    scores = {}
    for cls in (SubPO, ModPO):
        env = _env(n=32, rows=8, cols=8, horizon=12, start=(0, 0))
        model = cls("MultiInputPolicy", env, learning_rate=1e-2, seed=0, device="cpu")  # default "visited" input
        model.learn(32 * 12 * 25)
        scores[cls.__name__] = mean_F(model, env)
    best = 4 + 2 * 12  # the coverage bound: 4 cells, then at most 2 new ones per move
    assert scores["SubPO"] >= 0.85 * best, scores
    assert scores["SubPO"] > scores["ModPO"] + 4, scores
