"""scripts/bench_gpu.py: its loss functions against references written from the definitions, its update
functions train, and the CUDA side reported as skipped (with the reason) where there is no device."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_gpu.py"


def test_bench_gpu_exits_cleanly_without_a_cuda_device():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no CUDA device: torch.cuda.is_available() is False"), out.stdout


def test_bench_gpu_quick_cpu_mode_measures_updates_and_checks_the_loss(capsys, load_script):
    module = load_script("bench_gpu")
    threads = th.get_num_threads()
    try:
        code = module.main(["--device", "cpu", "--quick", "--threads", str(threads)])
    finally:
        th.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"torch.set_num_threads({threads})" in out
    assert "CUDA side skipped: --device cpu" in out  # the GPU half is named as not run, not left out silently
    assert not re.search(r"CUDA/CPU = ", out)  # no ratio without a CUDA measurement
    for agent in ("QDIQN", "CaRLPPO"):
        rate = re.search(rf"^{agent}\s+cpu\s+([0-9.]+)$", out, re.M)
        assert rate and float(rate.group(1)) > 0, out
        assert re.search(rf"^{agent} fixed-batch loss: cpu \S+\s+cpu \S+ .*-> agree$", out, re.M), out
    assert "FAILED" not in out


def test_bench_gpu_loss_check_sees_different_weights(load_script):
    """The check compares real losses: models whose weights differ give different losses."""
    module = load_script("bench_gpu")
    sizes = module.QUICK
    a, b = module.build_qdiqn("cpu", sizes, 0), module.build_qdiqn("cpu", sizes, 1)
    ref, other = module.loss_agreement("QDIQN", {"ref": a, "other": b})
    assert ref == other  # b took a's weights
    with th.no_grad():
        next(b.policy.parameters()).add_(0.5)
    gen = th.Generator().manual_seed(0)
    batch = a.replay_buffer.samples_at(list(range(sizes.qd_batch)), [0] * sizes.qd_batch)
    tau_next, taus = th.rand(sizes.qd_batch, 8, generator=gen), th.rand(sizes.qd_batch, 8, generator=gen)
    assert module.qdiqn_fixed_loss(a, batch, tau_next, taus) != module.qdiqn_fixed_loss(b, batch, tau_next, taus)


def _rho(delta: np.ndarray, tau: np.ndarray, kappa: float) -> np.ndarray:
    """IQN's quantile Huber element (Dabney et al. 2018, Eq. 3): |tau - 1{d < 0}| huber_kappa(d) / kappa."""
    abs_d = np.abs(delta)
    huber = np.where(abs_d <= kappa, 0.5 * delta ** 2, kappa * (abs_d - 0.5 * kappa))
    return np.abs(tau - (delta < 0)) * huber / kappa


def _same_quantiles_for_every_action(net, n_heads: int, n_actions: int) -> None:
    """Make ``net``'s last layer give every action the quantiles of action 0 (so the target's next action,
    whichever the optimal subset picks, does not change the target)."""
    last = [m for m in net.head.modules() if isinstance(m, th.nn.Linear)][-1]
    with th.no_grad():
        w = last.weight.view(n_heads, n_actions, -1)
        w.copy_(w[:, :1].expand_as(w).clone())
        b = last.bias.view(n_heads, n_actions)
        b.copy_(b[:, :1].expand_as(b).clone())


def test_qdiqn_fixed_loss_equals_the_quantile_huber_loss_written_out(load_script):
    """qdiqn_fixed_loss = mean_b sum_k w_k sum_i mean_j rho_{tau_i}(y_bjk - Z_k(s_b, a_b; tau_i)), with
    y_bjk = r_bk + gamma (1 - d_b) Z'_k(s'_b, a*; tau'_j) (the QD-IQN target, one head per objective)."""
    module = load_script("bench_gpu")
    sizes = module.QUICK
    model = module.build_qdiqn("cpu", sizes, 0)
    m, n_actions = model.preorder.m, int(model.action_space.n)
    _same_quantiles_for_every_action(model.quantile_net_target, m, n_actions)
    model.objective_weights = (1.0, 0.5, 2.0, 0.25)
    model._weights_t = th.tensor(model.objective_weights)
    rng = np.random.default_rng(0)
    batch_size = sizes.qd_batch
    batch = model.replay_buffer.samples_at(rng.integers(0, model.replay_buffer.buffer_size, batch_size),
                                           rng.integers(0, model.replay_buffer.n_envs, batch_size))
    dones = th.from_numpy((rng.random((batch_size, 1)) < 0.5).astype(np.float32))  # both kinds of target
    rewards = th.from_numpy(rng.normal(size=(batch_size, m)).astype(np.float32))
    batch = batch._replace(dones=dones, rewards=rewards)
    gen = th.Generator().manual_seed(0)
    tau_next, taus = th.rand(batch_size, 8, generator=gen), th.rand(batch_size, 8, generator=gen)
    got = module.qdiqn_fixed_loss(model, batch, tau_next, taus)

    with th.no_grad():
        z = model.quantile_net(batch.observations, taus).numpy()  # [B, N, m, A]
        z_next = model.quantile_net_target(batch.next_observations, tau_next).numpy()[..., 0]  # [B, N', m]
    a = batch.actions.long().numpy().reshape(-1)
    z_taken = z[np.arange(batch_size), :, :, a]  # [B, N, m]
    y = rewards.numpy()[:, None, :] + model.gamma * (1 - dones.numpy()[:, None, :]) * z_next  # [B, N', m]
    delta = y[:, None, :, :] - z_taken[:, :, None, :]  # [B, N, N', m]
    per_head = _rho(delta, taus.numpy()[:, :, None, None], model.kappa).mean(axis=2).sum(axis=1)  # [B, m]
    want = float((per_head * np.asarray(model.objective_weights)).sum(axis=1).mean())
    assert got == pytest.approx(want, rel=1e-5)


def test_carl_fixed_loss_equals_the_ppo_loss_written_out(load_script):
    """carl_fixed_loss = clipped surrogate (Schulman et al. 2017, eq. 7) on normalised advantages
    + vf_coef * clipped value loss + ent_coef * (-entropy), at clip ranges 0.1 and 0.1."""
    module = load_script("bench_gpu")
    model = module.build_carl("cpu", module.QUICK, 0)
    batch = next(iter(model.rollout_buffer.get(model.batch_size)))
    rng = np.random.default_rng(0)
    # Move the stored old log-probabilities and values so that some ratios and values fall outside the clip.
    batch = batch._replace(
        old_log_prob=batch.old_log_prob + th.from_numpy(rng.normal(0, 0.3, batch.old_log_prob.shape).astype(np.float32)),
        old_values=batch.old_values + th.from_numpy(rng.normal(0, 0.3, batch.old_values.shape).astype(np.float32)))
    got = module.carl_fixed_loss(model, batch)

    with th.no_grad():
        values, log_prob, entropy = model.policy.evaluate_actions(batch.observations, batch.actions)
    v, lp = values.numpy().reshape(-1).astype(float), log_prob.numpy().astype(float)
    old_lp, old_v = batch.old_log_prob.numpy().astype(float), batch.old_values.numpy().astype(float)
    ret, adv = batch.returns.numpy().astype(float), batch.advantages.numpy().astype(float)
    adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)  # normalised per minibatch (torch's unbiased std)
    eps = 0.1
    ratio = np.exp(lp - old_lp)
    assert 0 < np.mean(np.abs(ratio - 1) > eps) < 1  # both branches of the clip are exercised
    policy_loss = -np.mean(np.minimum(adv * ratio, adv * np.clip(ratio, 1 - eps, 1 + eps)))
    v_clipped = old_v + np.clip(v - old_v, -eps, eps)
    value_loss = 0.5 * np.mean(np.maximum((v - ret) ** 2, (v_clipped - ret) ** 2))
    entropy_loss = -np.mean(entropy.numpy()) if entropy is not None else np.mean(lp)
    want = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_bench_update_functions_train_the_models(load_script):
    """The timed functions run real gradient steps: the update count grows by what they claim and the
    weights move."""
    module = load_script("bench_gpu")
    sizes = module.QUICK
    qd = module.build_qdiqn("cpu", sizes, 0)
    before, n0 = [p.detach().clone() for p in qd.policy.parameters()], qd._n_updates
    rates = module.qdiqn_updates_per_s(qd, sizes)
    steps = sizes.steps("cpu")
    assert len(rates) == sizes.repeats and all(r > 0 for r in rates)
    assert qd._n_updates - n0 == max(1, steps // 4) + sizes.repeats * steps
    assert any(not th.equal(a, b) for a, b in zip(before, qd.policy.parameters()))
    carl = module.build_carl("cpu", sizes, 0)
    before, n0 = [p.detach().clone() for p in carl.policy.parameters()], carl._n_updates
    rates = module.carl_updates_per_s(carl, sizes)
    assert len(rates) == sizes.repeats and all(r > 0 for r in rates)
    assert carl._n_updates - n0 == (1 + sizes.repeats) * carl.n_epochs  # one count per epoch, as SB3's PPO
    assert module.carl_steps_per_train(carl) == carl.n_epochs * -(-carl.n_steps * carl.n_envs // carl.batch_size)
    assert any(not th.equal(a, b) for a, b in zip(before, carl.policy.parameters()))
