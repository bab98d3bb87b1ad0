"""Tests for morl.stats: each numba kernel against a plain numpy reference written here."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from morl.stats import EpisodeCarry, discounted_returns, episode_statistics, gae


# ----------------------------------------------------------------------------------------------
# plain references (one env, one objective at a time; obviously correct, slow)
# ----------------------------------------------------------------------------------------------
def ref_gae(rewards, values, starts, last_values, last_dones, gamma, lam):
    T, n, m = rewards.shape
    adv = np.zeros((T, n, m))
    for i in range(n):
        for j in range(m):
            running = 0.0
            for t in reversed(range(T)):
                if t == T - 1:
                    alive, v_next = 1.0 - float(last_dones[i]), last_values[i, j]
                else:
                    alive, v_next = 1.0 - float(starts[t + 1, i]), values[t + 1, i, j]
                delta = rewards[t, i, j] + gamma * v_next * alive - values[t, i, j]
                running = delta + gamma * lam * alive * running
                adv[t, i, j] = running
    return adv, adv + values


def ref_returns(rewards, starts, last_values, last_dones, gamma):
    T, n, m = rewards.shape
    out = np.zeros((T, n, m))
    for i in range(n):
        for j in range(m):
            for t in reversed(range(T)):
                if t == T - 1:
                    nxt = (1.0 - float(last_dones[i])) * last_values[i, j]
                else:
                    nxt = (1.0 - float(starts[t + 1, i])) * out[t + 1, i, j]
                out[t, i, j] = rewards[t, i, j] + gamma * nxt
    return out


def ref_episodes(rewards, dones, gamma):
    """List of (step, env, return, discounted return, length), by explicit per-env episode lists."""
    T, n, m = rewards.shape
    rows = []
    for i in range(n):
        episode = []
        for t in range(T):
            episode.append(rewards[t, i])
            if dones[t, i]:
                ep = np.array(episode)
                weights = gamma ** np.arange(len(ep))
                rows.append((t, i, ep.sum(0), (weights[:, None] * ep).sum(0), len(ep)))
                episode = []
    rows.sort(key=lambda row: (row[0], row[1]))
    return rows


def random_rollout(seed, T=23, n=5, m=3, dtype=np.float64, p_start=0.2):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, n, m)).astype(dtype)
    values = rng.normal(size=(T, n, m)).astype(dtype)
    starts = (rng.random((T, n)) < p_start).astype(dtype)
    # episode boundaries at the first and at the last step, always
    starts[0, 0] = 1.0
    starts[-1, 1] = 1.0
    last_values = rng.normal(size=(n, m)).astype(dtype)
    last_dones = rng.random(n) < 0.5
    last_dones[2 % n] = True
    return rewards, values, starts, last_values, last_dones


# ----------------------------------------------------------------------------------------------
# GAE
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0), (1.0, 1.0)])
def test_gae_matches_reference(seed, gamma, lam):
    r, v, s, lv, ld = random_rollout(seed)
    adv, ret = gae(r, v, s, lv, ld, gamma=gamma, gae_lambda=lam)
    ref_adv, ref_ret = ref_gae(r, v, s, lv, ld, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-10, atol=1e-10)


def test_gae_float32_keeps_dtype_and_matches():
    r, v, s, lv, ld = random_rollout(7, dtype=np.float32)
    adv, ret = gae(r, v, s, lv, ld, 0.99, 0.95)
    assert adv.dtype == np.float32 and ret.dtype == np.float32
    ref_adv, ref_ret = ref_gae(r, v, s, lv, ld, 0.99, 0.95)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-4, atol=1e-5)


def test_gae_single_step_rollout():
    r, v, s, lv, ld = random_rollout(3, T=1)
    adv, _ = gae(r, v, s, lv, ld, 0.9, 0.8)
    np.testing.assert_allclose(adv, ref_gae(r, v, s, lv, ld, 0.9, 0.8)[0])


@pytest.mark.parametrize("seed", range(3))
def test_gae_equals_sb3_rollout_buffer(seed):
    """m = 1 GAE equals SB3's RolloutBuffer.compute_returns_and_advantage on random data."""
    T, n = 37, 6
    r, v, s, lv, ld = random_rollout(seed, T=T, n=n, m=1, dtype=np.float32, p_start=0.15)
    buf = RolloutBuffer(T, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), "cpu", gae_lambda=0.93, gamma=0.97, n_envs=n)
    buf.rewards[:] = r[..., 0]
    buf.values[:] = v[..., 0]
    buf.episode_starts[:] = s
    buf.compute_returns_and_advantage(th.as_tensor(lv[:, 0]), ld)
    adv, ret = gae(r, v, s, lv, ld, gamma=0.97, gae_lambda=0.93)
    np.testing.assert_allclose(adv[..., 0], buf.advantages, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ret[..., 0], buf.returns, rtol=1e-6, atol=1e-6)


def test_gae_truncation_bootstraps_the_truncated_episode_hand_computed():
    """One env: an episode of steps 0-1 truncated after step 1 with V(terminal_obs) = 4, then an episode from step 2
    cut by the rollout's end (last value 2, not done). gamma 0.5, values (0.5, 0.25, 1), rewards (1, 2, 3).

    lambda 1: returns 1 + .5 * (2 + .5 * 4) = 3, 2 + .5 * 4 = 4, 3 + .5 * 2 = 4; advantages = returns - values.
    lambda 0: one-step TD errors 1 + .5 * .25 - .5 = .625, 2 + .5 * 4 - .25 = 3.75, 3 + .5 * 2 - 1 = 3.
    """
    r = np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
    v = np.array([0.5, 0.25, 1.0]).reshape(3, 1, 1)
    starts = np.array([1.0, 0.0, 1.0]).reshape(3, 1)
    trunc = np.array([0.0, 4.0, 0.0]).reshape(3, 1, 1)
    lv, ld = np.array([[2.0]]), np.array([0.0])
    adv, ret = gae(r, v, starts, lv, ld, 0.5, 1.0, truncation_values=trunc)
    np.testing.assert_allclose(ret.ravel(), [3.0, 4.0, 4.0])
    np.testing.assert_allclose(adv.ravel(), [2.5, 3.75, 3.0])
    adv0, _ = gae(r, v, starts, lv, ld, 0.5, 0.0, truncation_values=trunc)
    np.testing.assert_allclose(adv0.ravel(), [0.625, 3.75, 3.0])
    # without the truncation value the episode counts as terminated at step 1
    adv_t, _ = gae(r, v, starts, lv, ld, 0.5, 1.0)
    np.testing.assert_allclose(adv_t.ravel(), [1 + 0.5 * 2 - 0.5, 2 - 0.25, 3.0])
    rets = discounted_returns(r, starts, ld, 0.5, last_values=lv, truncation_values=trunc)
    np.testing.assert_allclose(np.ravel(rets), [3.0, 4.0, 4.0])


def test_gae_out_arrays_are_written():
    r, v, s, lv, ld = random_rollout(5, dtype=np.float32)
    out = (np.zeros_like(r), np.zeros_like(r))
    adv, ret = gae(r, v, s, lv, ld, out=out)
    assert adv is out[0] and ret is out[1]
    np.testing.assert_allclose(out[0], gae(r, v, s, lv, ld)[0])
    with pytest.raises(ValueError, match=r"out\[0\]"):
        gae(r, v, s, lv, ld, out=(np.zeros(r.shape), np.zeros_like(r)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rewards=np.zeros((4, 2))), "rewards must have shape"),
        (dict(values=np.zeros((4, 2, 2))), "values must have shape"),
        (dict(episode_starts=np.zeros((4, 3))), "episode_starts must have shape"),
        (dict(last_values=np.zeros((2,))), "last_values must have shape"),
        (dict(last_dones=np.zeros((3,))), "last_dones must have shape"),
        (dict(gamma=1.5), "gamma must lie in"),
        (dict(gae_lambda=-0.1), "gae_lambda must lie in"),
        (dict(truncation_values=np.zeros((4, 2))), "truncation_values must have shape"),
    ],
)
def test_gae_validation_names_the_argument(kwargs, match):
    args = dict(
        rewards=np.zeros((4, 2, 3)),
        values=np.zeros((4, 2, 3)),
        episode_starts=np.zeros((4, 2)),
        last_values=np.zeros((2, 3)),
        last_dones=np.zeros(2),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gae(**args)


def test_gae_rejects_non_numeric():
    with pytest.raises(TypeError, match="rewards"):
        gae(np.array([[["a"]]]), np.zeros((1, 1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1))


# ----------------------------------------------------------------------------------------------
# discounted returns
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gamma", [0.0, 0.9, 1.0])
def test_returns_match_reference(seed, gamma):
    r, _, s, lv, ld = random_rollout(seed)
    out = discounted_returns(r, s, ld, gamma=gamma, last_values=lv)
    np.testing.assert_allclose(out, ref_returns(r, s, lv, ld, gamma), rtol=1e-10, atol=1e-12)


def test_returns_default_cut_at_rollout_end_and_equal_lambda_one_gae_with_zero_values():
    r, _, s, _, ld = random_rollout(2)
    out = discounted_returns(r, s, gamma=0.9)  # no bootstrap: every episode ends with the rollout
    np.testing.assert_allclose(out, ref_returns(r, s, np.zeros(r.shape[1:]), np.ones(r.shape[1]), 0.9))
    _, ret = gae(r, np.zeros_like(r), s, np.zeros(r.shape[1:]), ld, gamma=0.9, gae_lambda=1.0)
    np.testing.assert_allclose(discounted_returns(r, s, ld, 0.9), ret, atol=1e-12)


def test_returns_validation():
    with pytest.raises(ValueError, match="episode_starts"):
        discounted_returns(np.zeros((3, 2, 1)), np.zeros((3, 1)))


# ----------------------------------------------------------------------------------------------
# episode aggregation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_episode_statistics_match_reference(seed, gamma):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(31, 4, 2))
    dones = rng.random((31, 4)) < 0.2
    dones[0, 0] = True  # a one-step episode at t = 0
    dones[-1, 1] = True  # an episode ending on the last step
    stats = episode_statistics(r, dones, gamma=gamma)
    rows = ref_episodes(r, dones, gamma)
    assert len(stats.lengths) == len(rows) == dones.sum()
    np.testing.assert_array_equal(stats.end_steps, [row[0] for row in rows])
    np.testing.assert_array_equal(stats.env_indices, [row[1] for row in rows])
    np.testing.assert_allclose(stats.returns, np.array([row[2] for row in rows]))
    np.testing.assert_allclose(stats.discounted_returns, np.array([row[3] for row in rows]))
    np.testing.assert_array_equal(stats.lengths, [row[4] for row in rows])


def test_episode_statistics_carry_joins_rollouts():
    """Two halves with the carry give the same episodes as the whole rollout at once."""
    rng = np.random.default_rng(1)
    r = rng.normal(size=(40, 3, 2))
    dones = rng.random((40, 3)) < 0.15
    dones[-1, :] = True
    whole = episode_statistics(r, dones, gamma=0.95)
    first = episode_statistics(r[:17], dones[:17], gamma=0.95)
    carry_before = [a.copy() for a in first.carry]
    second = episode_statistics(r[17:], dones[17:], gamma=0.95, carry=first.carry)
    for before, after in zip(carry_before, first.carry):
        np.testing.assert_array_equal(before, after)  # input carry untouched
    np.testing.assert_allclose(np.concatenate([first.returns, second.returns]), whole.returns)
    np.testing.assert_allclose(np.concatenate([first.discounted_returns, second.discounted_returns]), whole.discounted_returns)
    np.testing.assert_array_equal(np.concatenate([first.lengths, second.lengths]), whole.lengths)
    # every env ended on the last step, so nothing is left running
    np.testing.assert_array_equal(second.carry.lengths, 0)
    np.testing.assert_array_equal(second.carry.returns, 0.0)


def test_episode_statistics_no_episode_and_validation():
    stats = episode_statistics(np.ones((5, 2, 3)), np.zeros((5, 2)))
    assert stats.returns.shape == (0, 3)
    np.testing.assert_array_equal(stats.carry.lengths, [5, 5])
    np.testing.assert_allclose(stats.carry.returns, 5.0)
    with pytest.raises(ValueError, match="dones must have shape"):
        episode_statistics(np.ones((5, 2, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"carry.returns must have shape"):
        episode_statistics(np.ones((5, 2, 3)), np.zeros((5, 2)), carry=EpisodeCarry.zeros(2, 4))
    with pytest.raises(TypeError, match="carry"):
        episode_statistics(np.ones((5, 2, 3)), np.zeros((5, 2)), carry=(1, 2))
