"""Tests of QDIQN: preordered multi-objective IQN with quantile-dominance action filtering."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from morl.agents.iqn import IQN, QDIQN
from morl.replay import MOReplayBuffer
from morl.preorder import Preorder
from morl.wrappers import Scalarize, VectorReward

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SafeOrFast(gym.Env):
    """A tiny Pr-MOMDP where the weighted-sum optimum violates the top objective.

    ``horizon`` steps; the observation is the one-hot time step. Actions, reward (safety, progress):
    0 "safe" (0, 0.5), 1 "risky" (-0.3, 1.0), 2 "idle" (0, 0); progress carries N(0, 0.1) noise.
    The scalar reward is the sum (weights 1, 1): risky earns 0.7 a step, safe 0.5, so the
    weighted-sum optimum is risky; under ``safety > progress`` risky is dominated on safety and safe
    beats idle on progress, so the preordered optimum is safe.
    """

    objectives = ("safety", "progress")
    preorder = Preorder.parse("safety > progress")
    reward_weights = (1.0, 1.0)  # the scalar the weighted-sum IQN trains on
    REWARDS = np.array([[0.0, 0.5], [-0.3, 1.0], [0.0, 0.0]], dtype=np.float32)

    def __init__(self, horizon: int = 4):
        self.horizon = horizon
        self.observation_space = spaces.Box(0.0, 1.0, (horizon,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.reward_space = spaces.Box(-1.0, 2.0, (2,), np.float32)
        self.t = 0

    def _obs(self):
        obs = np.zeros(self.horizon, np.float32)
        if self.t < self.horizon:
            obs[self.t] = 1.0
        return obs

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        r = self.REWARDS[int(action)].copy()
        r[1] += self.np_random.normal(0.0, 0.1)
        self.t += 1
        return self._obs(), float(r.sum()), self.t >= self.horizon, False, {"vector_reward": r}


FAST = {"learning_rate": 1e-3, "learning_starts": 200, "batch_size": 32, "train_freq": 2, "target_update_interval": 100,
            "exploration_fraction": 0.3, "exploration_final_eps": 0.05, "buffer_size": 10_000,
            "policy_kwargs": {"net_arch": [32, 32]}, "n_quantiles": 16, "n_target_quantiles": 16, "n_quantiles_act": 16}


def one_objective_env():
    env = VectorReward(gym.make("CartPole-v1"), objectives=("alive",), fn=lambda obs, r, info: [r])
    return Scalarize(env, [1.0])


# ---------------------------------------------------------------------------------------------- learning
def test_qdiqn_picks_safe_action_where_weighted_sum_iqn_does_not():
    obs = np.eye(4, dtype=np.float32)
    qd = QDIQN("MlpPolicy", SafeOrFast(), delta=0.1, seed=0, **FAST)
    qd.learn(2500)
    qd_actions, _ = qd.predict(obs, deterministic=True)
    iqn = IQN("MlpPolicy", SafeOrFast(), seed=0, **FAST)
    iqn.learn(2500)
    iqn_actions, _ = iqn.predict(obs, deterministic=True)
    assert np.all(qd_actions == 0), f"QDIQN should be safe at every step, took {qd_actions}"
    assert np.all(iqn_actions == 1), f"IQN on the weighted sum should take the risky action, took {iqn_actions}"
    # QDIQN learned the per-objective returns of its own (safe) policy: safety ~0, progress ~0.5/step.
    with th.no_grad():
        means = qd.policy.act_quantiles(th.as_tensor(obs)).mean(dim=1)  # [4, m, A]
    assert th.allclose(means[:, 0, 0], th.zeros(4), atol=0.1)
    assert th.allclose(means[:, 1, 0], th.tensor([2.0, 1.5, 1.0, 0.5]), atol=0.25)
    # Subset sizes were logged while learning and in the targets.
    qd.train(gradient_steps=2, batch_size=32)
    assert 1.0 <= qd.logger.name_to_value["train/optimal_subset_size"] <= 3.0
    assert 1.0 <= qd.logger.name_to_value["rollout/optimal_subset_size"] <= 3.0  # the predict calls above
    assert qd.policy.subset_size_count == 0 and qd._subset_size_count == 0  # reset once logged


# ---------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("double_q", [False, True])
@pytest.mark.parametrize("target_mode", ["shared", "per_objective"])
def test_one_objective_qdiqn_has_iqn_targets(double_q, target_mode):
    common = {"learning_starts": 10, "gamma": 0.9, "double_q": double_q, "seed": 0}
    iqn = IQN("MlpPolicy", one_objective_env(), **common)
    qd = QDIQN("MlpPolicy", one_objective_env(), preorder="alive", theta=1.0, delta=0.0, target_mode=target_mode, **common)
    qd.policy.load_state_dict(iqn.policy.state_dict())
    g = th.Generator().manual_seed(1)
    next_obs = th.randn(64, 4, generator=g)
    rewards = th.randn(64, 1, generator=g)
    dones = (th.rand(64, 1, generator=g) < 0.2).float()
    tau_next = th.rand(64, 32, generator=g)
    with th.no_grad():
        y_iqn = iqn._target_quantiles(next_obs, rewards, dones, 0.9, tau_next)
        y_qd = qd._target_quantiles(next_obs, rewards, dones, 0.9, tau_next)
    assert y_qd.shape == y_iqn.shape == (64, 32, 1)
    assert th.allclose(y_qd, y_iqn)
    obs = next_obs.numpy()
    assert np.array_equal(qd.predict(obs, deterministic=True)[0], iqn.predict(obs, deterministic=True)[0])


def constructed_quantiles():
    """z_select [1, K=2, m=2, A=3] with known subsets under 'safety > progress', delta=0.1.

    safety means (0.09, -1, 0), progress (1.95, 5, 2): action 1 is dominated on safety; 0 and 2
    tie within the margins on both objectives, so the optimal subset is {0, 2}.
    """
    safety = th.tensor([[0.09, 0.09], [-1.0, -1.0], [0.0, 0.0]])  # [A, K]
    progress = th.tensor([[1.95, 1.95], [5.0, 5.0], [2.0, 2.0]])
    return th.stack([safety, progress]).permute(2, 0, 1).unsqueeze(0)  # [1, K, m, A]


@pytest.mark.parametrize(
    "target_mode,tie_break,expected",
    [
        ("shared", "lowest_mean", [2, 2]),  # progress mean decides inside {0, 2}
        ("shared", "sum_mean", [0, 0]),  # 0.09 + 1.95 > 0 + 2
        ("per_objective", "lowest_mean", [0, 2]),  # safety head: argmax over all; progress: within {0, 2}
    ],
)
def test_next_action_modes_and_tie_breaks(target_mode, tie_break, expected):
    model = QDIQN("MlpPolicy", SafeOrFast(), theta=1.0, delta=0.1, target_mode=target_mode, tie_break=tie_break,
                  learning_starts=10, seed=0)
    actions = model._next_actions(constructed_quantiles())
    assert actions.tolist() == [expected]
    mask = model.policy.subset(constructed_quantiles())
    assert mask.tolist() == [[True, False, True]]


def test_random_tie_break_stays_in_subset():
    model = QDIQN("MlpPolicy", SafeOrFast(), theta=1.0, delta=0.1, tie_break="random", learning_starts=10, seed=0)
    z = constructed_quantiles().expand(500, -1, -1, -1)
    picked = model._next_actions(z)[:, 0]
    assert set(picked.tolist()) == {0, 2}


def test_thresholds_let_the_lower_level_decide_among_satisfying_actions(tmp_path):
    """Safety quantiles -0.05 / -0.2 / -0.8 (moving / closing in / risky), progress 0 / 3 / 5, delta 0.02."""
    safety = th.tensor([[-0.05, -0.05], [-0.2, -0.2], [-0.8, -0.8]])  # [A, K]
    progress = th.tensor([[0.0, 0.0], [3.0, 3.0], [5.0, 5.0]])
    z = th.stack([safety, progress]).permute(2, 0, 1).unsqueeze(0)  # [1, K, m, A]
    plain = QDIQN("MlpPolicy", SafeOrFast(), theta=1.0, delta=0.02, learning_starts=10, seed=0)
    assert plain.policy.subset(z).tolist() == [[True, False, False]]  # any safety loss prunes: action 0 only
    model = QDIQN("MlpPolicy", SafeOrFast(), theta=1.0, delta=0.02, thresholds=[-0.3, None], learning_starts=10, seed=0)
    # 0 and 1 both satisfy safety >= -0.3, so progress picks 1; 2 stays dominated below the threshold
    assert model.policy.subset(z).tolist() == [[False, True, False]]
    assert model._next_actions(z).tolist() == [[1, 1]]
    per_objective = QDIQN("MlpPolicy", SafeOrFast(), theta=1.0, delta=0.02, thresholds=[-0.3, None],
                          target_mode="per_objective", learning_starts=10, seed=0)
    assert per_objective._next_actions(z).tolist() == [[0, 1]]  # safety head: raw argmax; progress: in {0, 1}
    model.save(tmp_path / "qd")
    assert QDIQN.load(tmp_path / "qd").policy.thresholds == (-0.3, None)
    with pytest.raises(ValueError, match="thresholds needs one entry per objective"):
        QDIQN("MlpPolicy", SafeOrFast(), thresholds=[-0.3])
    with pytest.raises(ValueError, match="'progress' must be a finite number or null"):
        QDIQN("MlpPolicy", SafeOrFast(), thresholds=[-0.3, float("nan")])
    assert QDIQN("MlpPolicy", SafeOrFast(), thresholds=[None, None]).policy.thresholds_t is None


def test_objective_gammas_discount_each_head_with_its_own_gamma(tmp_path):
    model = QDIQN("MlpPolicy", SafeOrFast(), objective_gammas=(0.5, 0.9), learning_starts=10, seed=0)
    g = th.Generator().manual_seed(2)
    next_obs = th.rand(16, 4, generator=g)
    rewards = th.randn(16, 2, generator=g)
    dones = (th.rand(16, 1, generator=g) < 0.3).float()
    tau_next = th.rand(16, 8, generator=g)
    batch = SimpleNamespace(discounts=None)
    with th.no_grad():
        y = model._target_quantiles(next_obs, rewards, dones, model._discounts(batch), tau_next)
        # The next action does not depend on the discount, so each head equals the one-gamma target at its gamma.
        y_half = model._target_quantiles(next_obs, rewards, dones, 0.5, tau_next)
        y_most = model._target_quantiles(next_obs, rewards, dones, 0.9, tau_next)
    assert th.allclose(y[..., 0], y_half[..., 0]) and th.allclose(y[..., 1], y_most[..., 1])
    assert not th.allclose(y[..., 1], y_half[..., 1])  # the heads' discounts really differ
    assert QDIQN("MlpPolicy", SafeOrFast(), learning_starts=10)._discounts(batch) == 0.99  # default: gamma for all
    model.save(tmp_path / "qd")
    assert QDIQN.load(tmp_path / "qd")._gammas_t.flatten().tolist() == pytest.approx([0.5, 0.9])
    n_step = th.tensor([[0.25, 0.81]]).repeat(16, 1)  # an n-step buffer's gamma_k ** L (L = 2) wins over gamma_k
    assert model._discounts(SimpleNamespace(discounts=n_step)) is n_step
    for bad in ((0.9,), (0.9, 1.5), (0.9, "x")):
        with pytest.raises(ValueError, match=r"objective_gammas needs 2 discounts in \[0, 1\] \(safety, progress\)"):
            QDIQN("MlpPolicy", SafeOrFast(), objective_gammas=bad)


# ---------------------------------------------------------------------------------------------- preorder
def test_preorder_from_env_reindexed_to_objectives_and_errors():
    model = QDIQN("MlpPolicy", SafeOrFast(), learning_starts=10)
    assert model.preorder.objectives == ("safety", "progress")
    assert isinstance(model.replay_buffer, MOReplayBuffer) and model.replay_buffer.reward_dim == 2
    # A passed preorder is reindexed to the env's objective order.
    flipped = QDIQN("MlpPolicy", SafeOrFast(), preorder="progress > safety", learning_starts=10)
    assert flipped.preorder.objectives == ("safety", "progress")
    assert flipped.preorder.level_indices == ((1,), (0,))
    with pytest.raises(ValueError, match="needs a preorder"):
        QDIQN("MlpPolicy", gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="theta"):
        QDIQN("MlpPolicy", SafeOrFast(), theta=0.5)
    with pytest.raises(ValueError, match="target_mode"):
        QDIQN("MlpPolicy", SafeOrFast(), target_mode="lexicographic")
    with pytest.raises(ValueError, match="delta"):
        QDIQN("MlpPolicy", SafeOrFast(), delta=(0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="tie_break"):
        QDIQN("MlpPolicy", SafeOrFast(), tie_break="first")


# ---------------------------------------------------------------------------------------------- SB3 API
def test_qdiqn_save_load_identical_predict_and_callbacks(tmp_path):
    env = SafeOrFast()
    ckpt = CheckpointCallback(save_freq=200, save_path=str(tmp_path / "ckpt"), name_prefix="qd")
    eval_cb = EvalCallback(Monitor(SafeOrFast()), eval_freq=200, n_eval_episodes=3, verbose=0)
    model = QDIQN("MlpPolicy", env, theta=0.8, delta=(0.05, 0.1), tie_break="sum_mean", seed=0,
                  **{**FAST, "learning_starts": 50})
    model.learn(400, callback=[ckpt, eval_cb])
    assert (tmp_path / "ckpt" / "qd_400_steps.zip").exists() and np.isfinite(eval_cb.last_mean_reward)
    model.save(tmp_path / "qd")
    loaded = QDIQN.load(tmp_path / "qd", env=SafeOrFast())
    assert loaded.preorder == model.preorder and loaded.delta == (0.05, 0.1) and loaded.theta == 0.8
    assert loaded.policy.tie_break == "sum_mean"
    obs = np.random.default_rng(0).uniform(size=(64, 4)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    no_env = QDIQN.load(tmp_path / "qd")  # the preorder travels in the zip
    assert np.array_equal(no_env.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    mean, _ = evaluate_policy(loaded, Monitor(SafeOrFast()), n_eval_episodes=3)
    assert np.isfinite(mean)
    loaded.learn(100)


def test_qdiqn_acts_on_the_averaged_network_when_asked(tmp_path):
    obs = np.random.default_rng(2).uniform(size=(64, 4)).astype(np.float32)
    model = QDIQN("MlpPolicy", SafeOrFast(), theta=0.8, delta=(0.05, 0.1), seed=0, acting_average=0.5,
                  **{**FAST, "learning_starts": 50})
    model.learn(300)
    policy = model.policy
    # the quantiles that select the action are the averaged network's, not the online one's
    with th.no_grad():
        obs_t = th.as_tensor(obs)
        acting = policy.quantile_net_acting(obs_t, policy.act_taus)
        online = policy.quantile_net(obs_t, policy.act_taus)
        assert not th.allclose(acting, online)
        assert th.equal(policy.act_quantiles(obs_t), acting)
        expected = policy.select(acting)[0].numpy()
    assert np.array_equal(model.predict(obs, deterministic=True)[0], expected)
    model.save(tmp_path / "qd")
    assert np.array_equal(QDIQN.load(tmp_path / "qd").predict(obs, deterministic=True)[0], expected)


def test_separate_trunks_keep_each_heads_loss_out_of_the_other_heads(tmp_path):
    model = QDIQN("MlpPolicy", SafeOrFast(), seed=0, **{**FAST, "policy_kwargs": {"net_arch": [16, 16],
                                                                                   "separate_trunks": True}})
    net = model.policy.quantile_net
    assert len(net.psi) == len(net.phi) == len(net.head) == 2
    obs, taus = th.rand(5, 4), th.rand(5, 7)
    z = net(obs, taus)
    assert z.shape == (5, 7, 2, 3)
    z[:, :, 0].sum().backward()  # the safety head's output only
    for k, touched in ((0, True), (1, False)):
        grads = [p.grad for part in (net.psi[k], net.phi[k], net.head[k]) for p in part.parameters()]
        assert all((g is not None and g.abs().sum() > 0) == touched for g in grads), k
    # the same sets in one pass as separately (the target's selection and evaluation fractions)
    with th.no_grad():
        psi = net.embed(obs)
        both = net.quantiles(psi, model.policy.act_taus, taus)
        assert th.allclose(both[:, :16], net.quantiles(psi, model.policy.act_taus), atol=1e-6)
        assert th.allclose(both[:, 16:], net.quantiles(psi, taus), atol=1e-6)
    model.learn(300)
    model.save(tmp_path / "qd")
    loaded = QDIQN.load(tmp_path / "qd")
    assert loaded.policy.quantile_net.separate_trunks
    obs = np.random.default_rng(0).uniform(size=(32, 4)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_risk_eta_puts_the_acting_grid_on_the_lower_tail():
    model = QDIQN("MlpPolicy", SafeOrFast(), risk_eta=0.25, n_quantiles_act=4, learning_starts=10, seed=0)
    assert th.allclose(model.policy.act_taus, th.tensor([0.03125, 0.09375, 0.15625, 0.21875]))
    # A 20 % risk (lowest fifth of the quantiles at -1) is dominated on the tail grid, not on the full one.
    safe = th.zeros(1, 2, 1, 100)
    risky = th.where(th.arange(100) < 20, -1.0, 0.0).view(1, 1, 1, 100).expand(1, 2, 1, 100).clone()
    risky[:, 1] += 1.0  # but faster
    taus = (th.arange(100) + 0.5) / 100
    for eta, expected in ((1.0, [False, True]), (0.25, [True, False])):
        keep = taus <= eta
        z = th.cat([safe, risky], dim=2)[..., keep]  # [1, m, A, K] on the grid's fractions
        assert model.policy.subset(z.permute(0, 3, 1, 2)).tolist() == [expected]
    with pytest.raises(ValueError, match="risk_eta"):
        QDIQN("MlpPolicy", SafeOrFast(), risk_eta=0.0)


@pytest.mark.parametrize("select_taus", ["grid", "sample"])
def test_objective_risk_etas_read_each_objective_on_its_own_grid(select_taus, tmp_path):
    model = QDIQN("MlpPolicy", SafeOrFast(), objective_risk_etas=(0.25, 1.0), n_quantiles_act=4, learning_starts=10,
                  select_taus=select_taus, seed=0)
    grid = th.tensor([0.125, 0.375, 0.625, 0.875])
    assert th.allclose(model.policy.act_taus, th.cat([grid * 0.25, grid]))  # one block per distinct level
    # Objective 0 (safety) reads the (0, 0.25] block, objective 1 the whole distribution.
    z = th.arange(8.0).view(1, 8, 1, 1).expand(3, 8, 2, 5)
    z_obj = model.policy.objective_grid(z)
    assert z_obj.shape == (3, 4, 2, 5)
    assert z_obj[0, :, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0] and z_obj[0, :, 1, 0].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert model._select_taus(6).shape == ((8,) if select_taus == "grid" else (6, 8))
    model.learn(200)  # acting and the targets run on the two-block grid
    model.save(tmp_path / "qd")
    loaded = QDIQN.load(tmp_path / "qd")
    assert loaded.policy.objective_risk_etas == (0.25, 1.0) and th.equal(loaded.policy.act_taus, model.policy.act_taus)
    obs = np.random.default_rng(0).uniform(size=(16, 4)).astype(np.float32)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    # One level for every objective is the scalar risk_eta.
    same = QDIQN("MlpPolicy", SafeOrFast(), objective_risk_etas=(0.25, 0.25), n_quantiles_act=4, seed=0)
    scalar = QDIQN("MlpPolicy", SafeOrFast(), risk_eta=0.25, n_quantiles_act=4, seed=0)
    assert th.equal(same.policy.act_taus, scalar.policy.act_taus)
    assert np.array_equal(same.predict(obs, deterministic=True)[0], scalar.predict(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match="objective_risk_etas needs 2 CVaR levels"):
        QDIQN("MlpPolicy", SafeOrFast(), objective_risk_etas=(0.25, 0.0))
    with pytest.raises(ValueError, match="not both"):
        QDIQN("MlpPolicy", SafeOrFast(), objective_risk_etas=(0.25, 1.0), risk_eta=0.5)


# ---------------------------------------------------------------------------------------------- configs
CONFIG_DIR = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"
TINY_AGENT = ["agent.learning_starts=8", "agent.batch_size=8", "agent.buffer_size=200", "agent.n_quantiles=8",
              "agent.n_target_quantiles=8", "agent.n_quantiles_act=8", "agent.policy_kwargs.net_arch=[16]",
              "train.n_envs=1", "eval.episodes=1"]
# highway-env runs ~20-40 steps/s: 4-step episodes with 3 vehicles, 12 training steps, one process.
TINY_HIGHWAY = ["env.kwargs.config.duration=4", "env.kwargs.config.vehicles_count=3", "train.vec_env=dummy",
                "train.total_timesteps=12"]
TINY_ROUTE = ["train.total_timesteps=24", "env.kwargs.max_steps=20"]


CONFIG_AGENTS = {"highway_env_qdiqn": "QDIQN", "highway_env_iqn": "IQN", "driving_qdiqn": "QDIQN", "driving_iqn": "IQN",
                 "driving_ensemble_iqn": "EnsembleIQN"}


@pytest.mark.parametrize("name", list(CONFIG_AGENTS))
def test_iqn_configs_train_and_evaluate_in_a_tiny_budget(name, tmp_path):
    from morl.config import load_config
    from morl.experiment import train

    path = CONFIG_DIR / f"{name}.yaml"
    tiny = TINY_HIGHWAY if name.startswith("highway") else TINY_ROUTE
    cfg = load_config(path, TINY_AGENT + tiny + [f"output.root={tmp_path}"])
    assert cfg.agent.name == CONFIG_AGENTS[name]
    run = train(cfg, source=str(path))
    import json

    ev = json.loads((run / "eval.json").read_text())
    assert ev["objectives"] == ["safety", "rules", "progress", "comfort"] and len(ev["episodes"]) == 1
    assert (run / "model.zip").exists()
    # The full config's sweep resolves (QDIQN and IQN with the same budget on highway-env).
    full = load_config(path)
    assert full.train.total_timesteps >= 10_000 and str(full.preorder()) == "safety > rules > progress > comfort"


@pytest.mark.parametrize("tie_break", ["lowest_mean", "sum_mean"])
def test_cpu_select_kernel_matches_the_tensor_tie_break(tie_break):
    from morl.agents.iqn.qd_policies import QDIQNPolicy, _masked_argmax_kernel, masked_argmax, tie_break_scores

    p = Preorder.parse("a > b, c")  # the last level has two objectives: their means are summed
    policy = QDIQNPolicy(spaces.Box(-1, 1, (2,)), spaces.Discrete(5), lambda _: 1e-3, preorder=p, tie_break=tie_break)
    g = th.Generator().manual_seed(0)
    mean_z = (th.randn(200, 3, 5, generator=g) * 2).round() / 2  # ties between actions are common
    mean_z[0, :, 1] = float("nan")
    mean_z[1] = float("-inf")
    mask = th.rand(200, 5, generator=g) < 0.6
    mask[2] = False
    expected = masked_argmax(tie_break_scores(mean_z, tie_break, policy.last_level), mask)
    got = _masked_argmax_kernel(mean_z.numpy(), policy._score_objs, mask.numpy())
    assert got.tolist() == expected.tolist()
    # and select() (which takes the kernel on CPU) agrees with the tensor code on real quantiles: the subset of
    # the torch staged elimination, then the tensor tie-break inside it
    from morl.dominance import _staged_subsets_torch

    z = th.randn(64, 8, 3, 5, generator=g)
    actions, subset = policy.select(z)
    expected_subset = _staged_subsets_torch(z.permute(0, 2, 3, 1), p, policy.theta, policy.delta_t,
                                            th.ones(64, 5, dtype=th.bool))[-1]
    assert th.equal(subset, expected_subset) and 1.0 < policy.mean_size(subset) < 5.0
    scores = tie_break_scores(z.mean(dim=1), tie_break, policy.last_level)
    assert th.equal(actions, masked_argmax(scores, expected_subset))


@pytest.mark.parametrize("rule", ["staged", "rulebook"])
@pytest.mark.parametrize("thresholds", [None, (-0.5, None, 0.5)])
@pytest.mark.parametrize("dtype", [th.float32, th.float64])
def test_fused_select_kernel_matches_the_subset_and_tie_break_it_replaces(thresholds, dtype, rule):
    # On CPU select() is one numba call; it must give the torch code's mask (of the quantiles capped at the
    # thresholds) and the tensor tie-break's action, with ties, cycles (theta < 1) and inf quantiles.
    from morl.agents.iqn.qd_policies import QDIQNPolicy, masked_argmax, tie_break_scores
    from morl.dominance import _rulebook_subset_torch, _staged_subsets_torch

    policy = QDIQNPolicy(spaces.Box(-1, 1, (2,)), spaces.Discrete(5), lambda _: 1e-3, preorder="a > b, c",
                         theta=0.6, delta=(0.5, 0.0, 0.0), thresholds=thresholds, subset_rule=rule)
    g = th.Generator().manual_seed(3)
    z = ((th.randn(400, 8, 3, 5, generator=g) * 2).round() / 2).to(dtype)  # sums exact: equal means tie exactly
    z[1, :, 1, 3] = float("inf")
    z[2, 3, 2, 0] = float("-inf")
    actions, mask = policy.select(z)
    torch_code = _staged_subsets_torch if rule == "staged" else _rulebook_subset_torch
    expected_mask = torch_code(policy.dominance_quantiles(z).permute(0, 2, 3, 1), policy.preorder, 0.6,
                               policy.delta_t.to(dtype), th.ones(400, 5, dtype=th.bool))
    expected_mask = expected_mask[-1] if rule == "staged" else expected_mask
    assert th.equal(mask, expected_mask)
    expected = masked_argmax(tie_break_scores(z.mean(dim=1), "lowest_mean", policy.last_level), expected_mask)
    assert th.equal(actions, expected)
    assert 1.0 < policy.mean_size(mask) < 5.0  # the subsets are neither trivial nor everything


@pytest.mark.parametrize("m", [2, 4])
def test_select_checks_the_objective_axis_before_the_kernel(m):
    # The kernel reads a threshold and a margin per objective of z and the preorder's plan of 3 objectives:
    # a z with another number of objectives would be read out of bounds.
    from morl.agents.iqn.qd_policies import QDIQNPolicy

    policy = QDIQNPolicy(spaces.Box(-1, 1, (2,)), spaces.Discrete(5), lambda _: 1e-3, preorder="a > b, c",
                         thresholds=(-0.5, None, 0.5))
    with pytest.raises(ValueError, match=rf"z must be \[B, K, m=3, A\].*got shape \(2, 8, {m}, 5\)"):
        policy.select(th.zeros(2, 8, m, 5))
    with pytest.raises(ValueError, match=r"z must be \[B, K, m=3, A\].*got shape \(8, 3, 5\)"):
        policy.select(th.zeros(8, 3, 5))


@pytest.mark.parametrize("tie_break", ["lowest_mean", "random"])
def test_nan_quantiles_raise_naming_the_objective_instead_of_acting(tie_break):
    model = QDIQN("MlpPolicy", SafeOrFast(), tie_break=tie_break, learning_starts=10, seed=0)
    z = th.zeros(3, 8, 2, 3)
    z[2, 5, 1, 0] = float("nan")  # progress of action 0 in state 2
    with pytest.raises(ValueError, match="'progress'.*state 2, action 0"):
        model.policy.select(z)
    with th.no_grad():
        for param in model.policy.quantile_net.parameters():
            param.fill_(float("nan"))
    with pytest.raises(ValueError, match="'safety'.*diverged"):
        model.predict(np.eye(4, dtype=np.float32)[:1], deterministic=True)


def test_subset_rule_reaches_the_policy_and_per_objective_needs_staged():
    z = th.tensor([[[[0., 0.], [-1., 2.], [1., 1.]], [[5., 5.], [0., 0.], [-1., 1.]]]])  # [1, m, A, K]
    z = z.permute(0, 3, 1, 2)  # [1, K, m, A]: 2 removes 0 on safety, 0 still beats 1 on progress
    staged = QDIQN("MlpPolicy", SafeOrFast(), theta=1.0, learning_starts=10, seed=0)
    rulebook = QDIQN("MlpPolicy", SafeOrFast(), theta=1.0, subset_rule="rulebook", learning_starts=10, seed=0)
    assert staged.policy.select(z)[1].tolist() == [[False, True, True]]
    assert rulebook.policy.select(z)[1].tolist() == [[False, False, True]]
    assert rulebook.policy._get_constructor_parameters()["subset_rule"] == "rulebook"
    with pytest.raises(ValueError, match="per_objective.*subset_rule='staged'"):
        QDIQN("MlpPolicy", SafeOrFast(), subset_rule="rulebook", target_mode="per_objective", learning_starts=10)
    with pytest.raises(ValueError, match="rule must be one of"):
        QDIQN("MlpPolicy", SafeOrFast(), subset_rule="pareto", learning_starts=10)


def test_quickstart_runs_the_agents_of_the_driving_comparison():
    """configs/quickstart.yaml says its agents are as in configs/driving_qdiqn.yaml: the grids must agree."""
    import yaml

    def agents(name):
        return {a["name"]: a for a in yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())["sweep"]["grid"]["agent"]}

    quick, full = agents("quickstart"), agents("driving_qdiqn")
    assert set(quick) == {"QDIQN", "IQN"} and all(quick[name] == full[name] for name in quick)
