"""Tests of the IQN building blocks, the scalar IQN agent and the EnsembleIQN baseline."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import (
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from morl.agents.iqn import IQN, EnsembleIQN, quantile_huber_loss
from morl.agents.iqn.policies import CosineTauEmbedding, tau_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------- loss
def reference_loss(current, target, taus, kappa):
    """The quantile Huber loss written out term by term (IQN, loss under Eq. 3)."""
    b, n = current.shape[:2]
    total = 0.0
    for s in range(b):
        for i in range(n):
            acc = 0.0
            for y in target[s]:
                d = float(y - current[s, i])
                if kappa > 0:
                    h = 0.5 * d * d if abs(d) <= kappa else kappa * (abs(d) - 0.5 * kappa)
                    h /= kappa
                else:
                    h = abs(d)
                acc += abs(float(taus[s, i]) - (1.0 if d < 0 else 0.0)) * h
            total += acc / target.shape[1]
    return total / b


def test_quantile_huber_loss_hand_computed():
    # delta = y_j - z_i; z = (0, 1) at tau = (0.25, 0.75); y = (0.5, 3).
    # i=0: d=0.5 -> 0.25*0.125, d=3 -> 0.25*2.5; mean 0.328125
    # i=1: d=-0.5 -> 0.25*0.125, d=2 -> 0.75*1.5; mean 0.578125 -> total 0.90625
    current = th.tensor([[0.0, 1.0]])
    target = th.tensor([[0.5, 3.0]])
    taus = th.tensor([[0.25, 0.75]])
    assert float(quantile_huber_loss(current, target, taus)) == pytest.approx(0.90625)
    # kappa = 2: every |d| <= 2 except d=3 -> 2*(3-1)/2 = 2; total 0.2578125 + 0.3828125
    assert float(quantile_huber_loss(current, target, taus, kappa=2.0)) == pytest.approx(0.640625)
    # kappa = 0: pinball loss 0.25*(0.5+3)/2 + (0.25*0.5 + 0.75*2)/2
    assert float(quantile_huber_loss(current, target, taus, kappa=0.0)) == pytest.approx(0.4375 + 0.8125)


@pytest.mark.parametrize("kappa", [1.0, 0.3, 0.0])
def test_quantile_huber_loss_matches_reference_with_heads(kappa):
    g = th.Generator().manual_seed(0)
    current = th.randn(3, 5, 2, generator=g)
    target = 2 * th.randn(3, 4, 2, generator=g)
    taus = th.rand(3, 5, generator=g)
    per_head = quantile_huber_loss(current, target, taus, kappa, reduction="none")
    assert per_head.shape == (3, 2)
    for h in range(2):
        expected = reference_loss(current[..., h], target[..., h], taus, kappa)
        assert float(per_head[:, h].mean()) == pytest.approx(expected, rel=1e-5)


def test_quantile_huber_loss_gradient_moves_quantile_towards_its_fraction():
    # One online quantile at tau=0.9 against targets 0..9: the minimiser is the 0.9-quantile (~8.1..9).
    z = th.zeros(1, 1, requires_grad=True)
    target = th.arange(10.0).view(1, 10)
    opt = th.optim.SGD([z], lr=0.5)
    for _ in range(100):
        opt.zero_grad()
        quantile_huber_loss(z, target, th.tensor([[0.9]]), kappa=0.0).backward()
        opt.step()
    assert 8.0 <= float(z.detach()) <= 9.0


@pytest.mark.parametrize("kappa", [1.0, 0.3, 0.0])
def test_quantile_huber_loss_gradient_matches_autograd_of_the_formula(kappa):
    # The loss computes its gradient in the forward pass; it must equal autograd through the plain formula,
    # ties (delta = 0, |delta| = kappa) included, for each head and per-sample weights of the batch.
    g = th.Generator().manual_seed(1)
    current = (th.randn(4, 6, 3, generator=g) * 4).round() / 4
    target = (th.randn(4, 5, 3, generator=g) * 4).round() / 4
    taus = th.rand(4, 6, generator=g)
    weights = th.rand(4, 3, generator=g)

    def formula(cur):
        delta = target.unsqueeze(1) - cur.unsqueeze(2)  # [B, N, N', H]
        if kappa > 0:
            h = th.where(delta.abs() <= kappa, 0.5 * delta**2, kappa * (delta.abs() - 0.5 * kappa)) / kappa
        else:
            h = delta.abs()
        w = (taus.view(4, 6, 1, 1) - (delta.detach() < 0).float()).abs()
        return (w * h).mean(dim=2).sum(dim=1)  # [B, H]

    ours = current.clone().requires_grad_()
    ref = current.clone().requires_grad_()
    loss = quantile_huber_loss(ours, target, taus, kappa, reduction="none")
    expected = formula(ref)
    assert th.allclose(loss, expected, atol=1e-5)
    (loss * weights).sum().backward()
    (expected * weights).sum().backward()
    assert th.allclose(ours.grad, ref.grad, atol=1e-6)


@pytest.mark.parametrize("kappa", [1.0, 0.3, 0.0])
@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@pytest.mark.parametrize("shared_taus", [False, True])
def test_quantile_huber_cpu_kernel_matches_the_tensor_code(kappa, dtype, shared_taus):
    # On CPU the loss runs a fused numba kernel; other devices run the tensor code. Same losses and gradients,
    # with ties (delta = 0, |delta| = kappa), two head axes, and fractions shared by the batch or per sample.
    from morl.agents.iqn.losses import _per_sample_torch

    g = th.Generator().manual_seed(2)
    current = ((th.randn(5, 7, 2, 3, generator=g) * 4).round() / 4).to(dtype)
    target = ((th.randn(5, 6, 2, 3, generator=g) * 4).round() / 4).to(dtype)
    taus = th.rand(7, generator=g) if shared_taus else th.rand(5, 7, generator=g)
    weights = th.rand(5, 2, 3, generator=g).to(dtype)
    ours, ref = current.clone().requires_grad_(), current.clone().requires_grad_()
    loss = quantile_huber_loss(ours, target, taus, kappa, reduction="none")
    expected = _per_sample_torch(ref, target, taus.unsqueeze(0) if shared_taus else taus, kappa)
    assert loss.shape == (5, 2, 3) and loss.dtype == dtype
    assert th.allclose(loss, expected, rtol=1e-5, atol=1e-6)
    (loss * weights).sum().backward()
    (expected * weights).sum().backward()
    assert th.allclose(ours.grad, ref.grad, rtol=1e-5, atol=1e-7)


def test_quantile_huber_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="taus"):
        quantile_huber_loss(th.zeros(2, 3), th.zeros(2, 4), th.zeros(2, 4))
    for dtype in (th.float32, th.float64):  # the CPU kernel path: a shorter taus batch would be read past its end
        with pytest.raises(ValueError, match=r"taus \(3, 8\) must be \[B, 8\]"):
            quantile_huber_loss(th.zeros(64, 8, 2, dtype=dtype), th.zeros(64, 8, 2, dtype=dtype), th.rand(3, 8))
    with pytest.raises(ValueError, match="kappa"):
        quantile_huber_loss(th.zeros(2, 3), th.zeros(2, 4), th.zeros(2, 3), kappa=-1.0)


# ---------------------------------------------------------------------------------------------- network
def test_cosine_embedding_and_network_shapes():
    emb = CosineTauEmbedding(8, 16)
    assert emb(th.rand(3, 5)).shape == (3, 5, 16)
    # i starts at 1: with weights picking cos(pi * tau) the output is cos(pi tau) (then ReLU).
    with th.no_grad():
        emb.linear.weight.zero_()
        emb.linear.bias.zero_()
        emb.linear.weight[0, 0] = 1.0
    tau = th.tensor([0.1, 0.3])
    assert th.allclose(emb(tau)[:, 0], th.relu(th.cos(np.pi * tau)))
    assert th.allclose(tau_grid(4), th.tensor([0.125, 0.375, 0.625, 0.875]))


def test_constant_tau_embedding_follows_weight_updates_written_through_data():
    # The acting grid's embedding is reused between updates; SB3's target update writes through `.data`
    # (no version-counter bump), and the reuse must still see it, as it must see optimiser steps.
    from stable_baselines3.common.utils import polyak_update

    emb, other = CosineTauEmbedding(8, 16), CosineTauEmbedding(8, 16)
    grid = tau_grid(5)
    with th.no_grad():
        first = emb.constant(grid)
        assert emb.constant(grid) is first  # reused while nothing changed
        polyak_update(other.parameters(), emb.parameters(), 0.5)
        assert th.equal(emb.constant(grid), emb(grid)) and not th.equal(emb.constant(grid), first)
        assert th.equal(emb.constant(grid * 0.5), emb(grid * 0.5))  # other fractions, same storage size
    opt = th.optim.SGD(emb.parameters(), lr=0.1)
    emb(th.rand(3)).sum().backward()
    opt.step()
    with th.no_grad():
        assert th.equal(emb.constant(grid), emb(grid))
    assert emb.constant(grid).requires_grad  # with autograd on, no reuse: gradients reach the weights

    model = EnsembleIQN("MlpPolicy", "CartPole-v1", n_ensemble=3, learning_starts=10, seed=0)
    net = model.quantile_net
    obs = th.randn(6, 4)
    shared = net(obs, tau_grid(7))
    per_sample = net(obs, tau_grid(7).expand(6, 7))
    assert shared.shape == (6, 7, 3, 2)
    assert th.allclose(shared, per_sample, atol=1e-6)


# ---------------------------------------------------------------------------------------------- IQN
def test_quantiles_of_several_fraction_sets_equal_separate_passes():
    # The target pass embeds the shared grid and per-sample fractions together (written in place when no
    # gradient is needed); it must equal one pass per set, with and without autograd.
    model = IQN("MlpPolicy", "CartPole-v1", seed=0)
    net = model.quantile_net
    psi = net.embed(th.rand(5, 4))
    grid, per_sample = tau_grid(7), th.rand(5, 3)
    separate = th.cat([net.quantiles(psi, grid), net.quantiles(psi, per_sample)], dim=1)
    with th.no_grad():
        fused = net.quantiles(psi, grid, per_sample)
    assert fused.shape == (5, 10, 1, 2) and th.allclose(fused, separate.detach(), atol=1e-6)
    assert th.allclose(net.quantiles(psi, grid, per_sample), separate, atol=1e-6)


def test_iqn_target_is_reward_at_terminal_and_bootstraps_otherwise():
    model = IQN("MlpPolicy", "CartPole-v1", gamma=0.5, learning_starts=10, seed=0)
    obs = th.randn(4, 4)
    rewards = th.tensor([[1.0], [2.0], [3.0], [4.0]])
    dones = th.tensor([[1.0], [0.0], [1.0], [0.0]])
    tau_next = th.rand(4, 6)
    with th.no_grad():
        y = model._target_quantiles(obs, rewards, dones, 0.5, tau_next)
        z = model.quantile_net_target(obs, tau_next)[:, :, 0]  # [B, N', A]
        greedy = model.quantile_net_target(obs, model.policy.act_taus)[:, :, 0].mean(1).argmax(1)
    assert y.shape == (4, 6, 1)
    assert th.allclose(y[0, :, 0], th.full((6,), 1.0)) and th.allclose(y[2, :, 0], th.full((6,), 3.0))
    for b in (1, 3):
        assert th.allclose(y[b, :, 0], rewards[b] + 0.5 * z[b, :, greedy[b]])


def test_iqn_learns_cartpole_with_eval_callback():
    env = gym.make("CartPole-v1")
    eval_env = Monitor(gym.make("CartPole-v1"))
    stop = StopTrainingOnRewardThreshold(reward_threshold=175, verbose=0)
    eval_cb = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=1000, n_eval_episodes=5, verbose=0)
    model = IQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=50_000, learning_starts=1000,
                target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                exploration_final_eps=0.04, n_quantiles=16, n_target_quantiles=16, n_quantiles_act=16,
                policy_kwargs={"net_arch": [128, 128]}, seed=0)
    model.learn(20_000, callback=eval_cb)
    assert eval_cb.best_mean_reward >= 175, f"IQN did not learn CartPole: best {eval_cb.best_mean_reward}"
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=5)
    assert mean >= 100


def test_epsilon_greedy_is_per_env_and_skipped_when_deterministic():
    model = IQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0)
    obs = np.zeros((2000, 4), dtype=np.float32)
    model.exploration_rate = 0.0
    greedy, _ = model.predict(obs)
    assert np.all(greedy == greedy[0])
    model.exploration_rate = 0.5
    np.random.seed(0)
    acts, _ = model.predict(obs)
    # Half the envs explore, half of those pick the other action: about 25% differ from greedy.
    assert 0.2 < np.mean(acts != greedy[0]) < 0.3
    det, _ = model.predict(obs, deterministic=True)
    assert np.all(det == greedy)
    single, _ = model.predict(obs[0])
    assert np.shape(single) == ()


# ---------------------------------------------------------------------------------------------- ensemble
def test_ensemble_bootstrap_mask_gates_heads():
    model = EnsembleIQN("MlpPolicy", "CartPole-v1", n_ensemble=3, bootstrap_prob=0.5, learning_starts=50,
                        learning_rate=1e-2, seed=0)
    model.learn(200)
    model._bootstrap_masks[:, 0] = False  # head 0 never trains
    model._bootstrap_masks[:, 1:] = True
    model.policy.optimizer.state.clear()  # no Adam momentum left over from learn()
    out = model.quantile_net.head[-1]
    n_actions = 2
    before = out.weight.detach().clone()
    model.train(gradient_steps=5, batch_size=32)
    changed = (out.weight.detach() - before).abs().sum(dim=1).view(3, n_actions).sum(dim=1)
    assert changed[0] == 0 and changed[1] > 0 and changed[2] > 0


def test_ensemble_bootstrap_masks_survive_save_load_and_sample_the_drawn_rows(tmp_path):
    # seed None: loading cannot redraw the same masks by reseeding (with a seed, _setup_model reseeds first)
    model = EnsembleIQN("MlpPolicy", "CartPole-v1", n_ensemble=3, bootstrap_prob=0.5, buffer_size=500,
                        learning_starts=50, seed=None)
    model.learn(120)
    masks = model.bootstrap_masks.copy()
    model.save(tmp_path / "ens.zip")
    np.random.seed(123)  # a different global stream: redrawn masks would differ
    loaded = EnsembleIQN.load(tmp_path / "ens.zip", env=model.get_env(), device="cpu")
    assert np.array_equal(loaded.bootstrap_masks, masks) and masks.shape == (500, 3)
    assert th.equal(loaded._bootstrap_masks, th.as_tensor(masks))
    # The host sampler: the masks returned are those of the rows whose transitions it returns.
    loaded.replay_buffer = model.replay_buffer
    np.random.seed(7)
    data, weights = loaded._sample(64)
    np.random.seed(7)
    rows = np.random.randint(0, model.replay_buffer.pos, size=64)
    envs = np.random.randint(0, 1, size=64)
    assert th.equal(weights, th.as_tensor(masks[rows]).float())
    assert th.equal(data.observations, th.as_tensor(model.replay_buffer.observations[rows, envs]))


def test_ensemble_acts_on_mean_of_heads():
    model = EnsembleIQN("MlpPolicy", "CartPole-v1", n_ensemble=4, learning_starts=10, seed=1)
    obs = th.randn(16, 4)
    with th.no_grad():
        z = model.quantile_net(obs, model.policy.act_taus)  # [B, K, E, A]
        expected = z.mean(dim=(1, 2)).argmax(dim=1).numpy()
    actions, _ = model.predict(obs.numpy(), deterministic=True)
    assert np.array_equal(actions, expected)


def test_training_mode_reaches_every_module_and_device_follows_the_policy():
    # The policy sets the modules' training flags in one loop, and keeps its device until it moves.
    policy = IQN("MlpPolicy", "CartPole-v1", seed=0).policy
    net = policy.quantile_net
    for mode in (True, False, True):
        policy.set_training_mode(mode)
        assert policy.training == mode and all(m.training == mode for m in net.modules())
    assert not any(m.training for m in policy.quantile_net_target.modules())  # the target stays in eval mode
    assert policy.device == th.device("cpu")
    policy.to("meta")
    assert policy.device == th.device("meta")

    class OwnTrain(th.nn.Identity):
        calls: list = []

        def train(self, mode=True):
            OwnTrain.calls.append(mode)
            return super().train(mode)

    policy = IQN("MlpPolicy", "CartPole-v1", seed=0).policy
    policy.quantile_net.psi.append(OwnTrain())  # a module with its own train(): it must still be called
    policy.set_training_mode(False)
    policy.set_training_mode(True)
    assert OwnTrain.calls == [False, True] and all(m.training for m in policy.quantile_net.modules())


# ---------------------------------------------------------------------------------------------- SB3 API
@pytest.mark.parametrize("cls,kwargs", [(IQN, {}), (EnsembleIQN, {"n_ensemble": 3})])
def test_save_load_identical_predict_and_callbacks(tmp_path, cls, kwargs):
    env = gym.make("CartPole-v1")
    ckpt = CheckpointCallback(save_freq=150, save_path=str(tmp_path / "ckpt"), name_prefix="m")
    eval_cb = EvalCallback(Monitor(gym.make("CartPole-v1")), eval_freq=200, n_eval_episodes=2,
                           best_model_save_path=str(tmp_path / "best"), verbose=0)
    model = cls("MlpPolicy", env, learning_starts=50, batch_size=16, seed=0, **kwargs)
    model.learn(400, callback=[ckpt, eval_cb])
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["m_150_steps.zip", "m_300_steps.zip"]
    assert (tmp_path / "best" / "best_model.zip").exists() and np.isfinite(eval_cb.last_mean_reward)
    model.save(tmp_path / "model")
    loaded = cls.load(tmp_path / "model", env=env)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    a0, _ = model.predict(obs, deterministic=True)
    a1, _ = loaded.predict(obs, deterministic=True)
    assert np.array_equal(a0, a1)
    for p0, p1 in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert th.equal(p0, p1)
    # SB3's evaluate_policy runs the loaded model: on seeded episodes it gives the saved model's returns, and
    # each CartPole return is the episode's length (+1 a step); the weights check above catches a lost policy.
    def episodes(m):
        venv = DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1"))])
        venv.seed(3)
        return evaluate_policy(m, venv, n_eval_episodes=3, return_episode_rewards=True)

    returns, lengths = episodes(loaded)
    assert len(returns) == 3 and returns == [float(n) for n in lengths]
    assert (returns, lengths) == episodes(model)
    loaded.learn(100)  # training resumes after load


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="n_quantiles"):
        IQN("MlpPolicy", "CartPole-v1", n_quantiles=0)
    with pytest.raises(ValueError, match="select_taus"):
        IQN("MlpPolicy", "CartPole-v1", select_taus="fixed")
    with pytest.raises(ValueError, match="bootstrap_prob"):
        EnsembleIQN("MlpPolicy", "CartPole-v1", bootstrap_prob=0.0)


def test_caller_optimizer_kwargs_are_merged_with_the_iqn_defaults():
    model = IQN("MlpPolicy", "CartPole-v1", batch_size=50, learning_starts=10, seed=0,
                policy_kwargs={"optimizer_kwargs": {"weight_decay": 0.1}})
    group = model.policy.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.1 and group["eps"] == pytest.approx(0.01 / 50)
    own_eps = IQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0, policy_kwargs={"optimizer_kwargs": {"eps": 1e-3}})
    assert own_eps.policy.optimizer.param_groups[0]["eps"] == 1e-3  # the caller's key wins


def test_fused_adam_is_asked_for_only_where_torch_has_it(monkeypatch):
    from morl.agents.iqn import iqn as iqn_module

    for version, cpu in (("2.3.1+cpu", False), ("2.4.0", True), ("2.13.0", True)):
        monkeypatch.setattr(iqn_module.th, "__version__", version)
        assert iqn_module._fused_adam_supported(th.device("cpu")) is cpu
        assert iqn_module._fused_adam_supported(th.device("cuda")) is True


def test_learning_rate_final_decays_linearly_through_training_and_survives_save_load(tmp_path):
    model = IQN("MlpPolicy", "CartPole-v1", learning_rate=1e-3, learning_rate_final=1e-4, learning_starts=20,
                train_freq=1, seed=0)
    model.learn(200)
    # the last train call comes after the 200th step, at progress remaining 0: the final rate
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-9)
    model.save(tmp_path / "m")
    loaded = IQN.load(tmp_path / "m")
    assert loaded.lr_schedule(0.5) == pytest.approx(5.5e-4)
    constant = IQN("MlpPolicy", "CartPole-v1", learning_rate=1e-3, seed=0)
    assert constant.lr_schedule(0.0) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="learning_rate_final"):
        IQN("MlpPolicy", "CartPole-v1", learning_rate=1e-4, learning_rate_final=1e-3)
    with pytest.raises(ValueError, match="learning_rate_final"):
        IQN("MlpPolicy", "CartPole-v1", learning_rate=lambda p: 1e-3 * p, learning_rate_final=0.0)


# ---------------------------------------------------------------------------------------------- acting average
def _params(net):
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("cls,kwargs", [(IQN, {}), (EnsembleIQN, {"n_ensemble": 2})])
def test_acting_average_is_the_exponential_average_of_the_online_weights_step_by_step(cls, kwargs):
    alpha = 0.3
    model = cls("MlpPolicy", "CartPole-v1", learning_starts=32, batch_size=16, learning_rate=1e-2,
                acting_average=alpha, seed=0, **kwargs)
    model.learn(64)  # fills the buffer past learning_starts; the acting net has followed every step so far
    policy = model.policy
    expected = _params(policy.quantile_net_acting)
    for _ in range(5):  # one gradient step at a time, the average written out from its definition
        model.train(gradient_steps=1, batch_size=16)
        online = _params(policy.quantile_net)
        expected = [(1 - alpha) * e + alpha * w for e, w in zip(expected, online)]
        for mine, want in zip(_params(policy.quantile_net_acting), expected):
            assert th.allclose(mine, want, atol=1e-6)
    # the online network moved away from it: the two are different networks
    assert any(not th.equal(a, w) for a, w in zip(_params(policy.quantile_net_acting), online))


def test_acting_and_evaluation_use_the_averaged_network(tmp_path):
    obs = np.random.default_rng(1).normal(size=(256, 4)).astype(np.float32)
    model = IQN("MlpPolicy", "CartPole-v1", learning_starts=50, batch_size=32, learning_rate=5e-2, train_freq=1,
                acting_average=1e-12, seed=0)
    with th.no_grad():
        start = model.policy.quantile_net(th.as_tensor(obs), model.policy.act_taus).mean(dim=(1, 2)).argmax(1)
    model.learn(600)
    online = model.policy.quantile_net
    with th.no_grad():
        now = online(th.as_tensor(obs), model.policy.act_taus).mean(dim=(1, 2)).argmax(1)
    assert not th.equal(now, start)  # training changed the online network's greedy actions ...
    acts, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(acts, start.numpy())  # ... but an average that barely moves still acts as at the start
    # save / load keeps the averaged network and its acting
    model.save(tmp_path / "m")
    loaded = IQN.load(tmp_path / "m")
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], acts)
    for a, b in zip(model.policy.quantile_net_acting.state_dict().values(),
                    loaded.policy.quantile_net_acting.state_dict().values()):
        assert th.equal(a, b)
    # without an average there is no third network and acting is the online network's
    plain = IQN("MlpPolicy", "CartPole-v1", seed=0)
    assert plain.policy.quantile_net_acting is None
    with pytest.raises(ValueError, match="acting_average"):
        IQN("MlpPolicy", "CartPole-v1", acting_average=1.0)
