"""n-step returns of the reward vector in morl.replay.MOReplayBuffer, against a plain loop over the episode record."""

import warnings

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from morl.agents.iqn import QDIQN
from morl.replay import MOReplayBuffer

OBS = spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACT = spaces.Discrete(3)
GAMMAS = (0.5, 0.9, 1.0)


def filled_buffer(size, n_envs, n_transitions, n_steps, seed, **kwargs):
    """A buffer of ``size`` rows (SB3 divides its buffer_size by n_envs) fed random transitions (episodes that terminate or truncate at random), and the record of
    every transition in the order it was added: ``record[env]`` lists dicts of that env's transitions."""
    rng = np.random.default_rng(seed)
    buf = MOReplayBuffer(size * n_envs, OBS, ACT, device="cpu", n_envs=n_envs, reward_dim=3, n_steps=n_steps,
                         gamma=0.8, objective_gammas=GAMMAS, **kwargs)
    record = [[] for _ in range(n_envs)]
    for t in range(n_transitions):
        obs = rng.normal(size=(n_envs, 2)).astype(np.float32)
        next_obs = rng.normal(size=(n_envs, 2)).astype(np.float32)
        ended = rng.random(n_envs) < 0.25
        truncated = ended & (rng.random(n_envs) < 0.5)
        vec = rng.normal(size=(n_envs, 3)).astype(np.float32)
        scalar = rng.normal(size=n_envs).astype(np.float32)
        infos = [{"vector_reward": vec[e], "TimeLimit.truncated": bool(truncated[e])} for e in range(n_envs)]
        buf.add(obs, next_obs, rng.integers(0, 3, size=(n_envs, 1)), scalar, ended, infos)
        for e in range(n_envs):
            record[e].append({"vec": vec[e].astype(np.float64), "r": float(scalar[e]), "next_obs": next_obs[e],
                              "terminated": bool(ended[e] and not truncated[e]), "ended": bool(ended[e])})
    return buf, record


def reference(record_env, start, n, gammas, gamma):
    """The n-step sample of transition ``start`` of one env, from the definition: sum the discounted rewards
    forward until the episode ends, the record ends (no newer transition is stored) or n rewards are summed."""
    vec, r, steps = np.zeros(len(gammas)), 0.0, 0
    for i in range(n):
        tr = record_env[start + i]
        vec += np.asarray(gammas) ** i * tr["vec"]
        r += gamma ** i * tr["r"]
        steps += 1
        if tr["ended"] or start + i == len(record_env) - 1:
            break
    last = record_env[start + steps - 1]
    return vec, r, np.asarray(gammas) ** steps, gamma ** steps, float(last["terminated"]), last["next_obs"]


@pytest.mark.parametrize("n_transitions", [9, 23], ids=["not-full", "wrapped"])
@pytest.mark.parametrize("n_steps", [1, 3])
def test_n_step_samples_equal_a_plain_loop_over_the_record(n_transitions, n_steps):
    size, n_envs = 10, 2
    buf, record = filled_buffer(size, n_envs, n_transitions, n_steps, seed=n_transitions)
    kept = min(n_transitions, size)
    first = n_transitions - kept  # chronological index of the oldest transition still stored
    chrono = np.arange(first, n_transitions)
    rows = chrono % size
    for e in range(n_envs):
        envs = np.full(len(rows), e)
        s = buf.samples_at(rows, envs)
        for j, c in enumerate(chrono):
            vec, r, disc, sdisc, term, next_obs = reference(record[e], c, n_steps, GAMMAS, 0.8)
            np.testing.assert_allclose(s.vector_rewards[j].numpy(), vec, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(s.rewards[j].numpy(), vec, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(s.scalar_rewards[j, 0].item(), r, rtol=1e-5, atol=1e-6)
            assert s.dones[j, 0].item() == term
            np.testing.assert_array_equal(s.next_observations[j].numpy(), next_obs)
            if n_steps == 1:
                assert s.discounts is None
            else:
                np.testing.assert_allclose(s.discounts[j].numpy(), disc, rtol=1e-6)
    if n_steps > 1:  # the scalar view: discounts are gamma ** L, [B, 1]
        buf.sample_scalar_rewards = True
        s = buf.samples_at(rows, np.zeros(len(rows), dtype=np.int64))
        for j, c in enumerate(chrono):
            _, r, _, sdisc, _, _ = reference(record[0], c, n_steps, GAMMAS, 0.8)
            assert s.rewards.shape == (len(rows), 1) and s.discounts.shape == (len(rows), 1)
            np.testing.assert_allclose(s.rewards[j, 0].item(), r, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(s.discounts[j, 0].item(), sdisc, rtol=1e-6)


def test_device_copy_gives_the_host_path_n_step_samples():
    buf, _ = filled_buffer(10, 2, 23, 4, seed=3, device_storage=True)
    rows, envs = th.arange(10).repeat(2), th.arange(2).repeat_interleave(10)
    dev = buf.samples_at(rows, envs)
    host = buf.samples_at(rows.numpy(), envs.numpy())
    for name in ("observations", "actions", "next_observations", "dones", "rewards", "discounts", "scalar_rewards"):
        a, b = getattr(dev, name), getattr(host, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        th.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_steps": 0}, "n_steps must be a positive integer, got 0"),
    ({"n_steps": 3, "optimize_memory_usage": True}, "optimize_memory_usage"),
    ({"objective_gammas": (0.9, 1.5, 1.0)}, r"objective_gammas must be discounts in \[0, 1\]"),
    ({"objective_gammas": (0.9, 0.9)}, "objective_gammas has 2 entries for reward vectors of length 3"),
])
def test_bad_n_step_settings_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MOReplayBuffer(10, OBS, ACT, device="cpu", reward_dim=3, **kwargs)


def test_qdiqn_n_steps_reach_the_buffer_and_its_per_objective_discounts_reach_the_target():
    from tests.agents.test_qdiqn import SafeOrFast

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 warns when it ignores n_steps; here it must not
        model = QDIQN("MlpPolicy", SafeOrFast(), n_steps=3, objective_gammas=(0.5, 0.9), learning_starts=10,
                      seed=0, device="cpu")
    buf = model.replay_buffer
    assert isinstance(buf, MOReplayBuffer) and buf.n_steps == 3 and buf.objective_gammas == (0.5, 0.9)
    model.learn(60)
    data = buf.sample(16)
    assert data.discounts.shape == (16, 2)
    assert th.equal(model._discounts(data), data.discounts)
    # every discount is gamma_k ** L for one L in 1..3, the same L for both objectives
    steps = th.log(data.discounts[:, 0]) / np.log(0.5)
    th.testing.assert_close(data.discounts[:, 1], 0.9 ** steps)
    assert set(th.round(steps).long().tolist()) <= {1, 2, 3}
    with pytest.raises(ValueError, match="replay_buffer_kwargs\\['n_steps'\\] = 2 disagrees with QDIQN's n_steps = 3"):
        QDIQN("MlpPolicy", SafeOrFast(), n_steps=3, replay_buffer_kwargs={"n_steps": 2})


@pytest.mark.parametrize("n_transitions", [9, 23], ids=["not-full", "wrapped"])
def test_scalar_n_step_samples_equal_sb3_n_step_buffer(n_transitions):
    """DeviceReplayBuffer's scalar n-step returns against SB3's own NStepReplayBuffer on the same transitions."""
    from stable_baselines3.common.buffers import NStepReplayBuffer

    from morl.replay import DeviceReplayBuffer

    ours = DeviceReplayBuffer(20, OBS, ACT, device="cpu", n_envs=2, n_steps=3, gamma=0.8)
    sb3 = NStepReplayBuffer(20, OBS, ACT, device="cpu", n_envs=2, n_steps=3, gamma=0.8)
    rng = np.random.default_rng(n_transitions)
    for _ in range(n_transitions):
        ended = rng.random(2) < 0.25
        infos = [{"TimeLimit.truncated": bool(e and rng.random() < 0.5)} for e in ended]
        step = (rng.normal(size=(2, 2)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32),
                rng.integers(0, 3, size=(2, 1)), rng.normal(size=2).astype(np.float32), ended, infos)
        ours.add(*step)
        sb3.add(*step)
    rows = np.arange(ours.buffer_size if ours.full else ours.pos)
    np.random.seed(1)
    a = ours._get_samples(rows)
    np.random.seed(1)
    b = sb3._get_samples(rows)
    for name in ("observations", "actions", "next_observations", "dones", "rewards", "discounts"):
        th.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-6, msg=name)


def test_iqn_and_ensemble_iqn_sample_n_step_returns_from_their_device_buffer():
    from morl.agents.iqn import IQN, EnsembleIQN
    from morl.replay import DeviceReplayBuffer

    for cls, kwargs in ((IQN, {}), (EnsembleIQN, {"n_ensemble": 2, "bootstrap_prob": 0.5})):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # SB3 warns when it ignores n_steps; here it must not
            model = cls("MlpPolicy", "CartPole-v1", n_steps=3, gamma=0.9, learning_starts=10, seed=0, **kwargs)
        buf = model.replay_buffer
        assert type(buf) is DeviceReplayBuffer and buf.n_steps == 3 and buf.gamma == 0.9 and model.n_steps == 3
        model.learn(50)  # trains on the n-step samples (EnsembleIQN through samples_at)
        data = buf.sample(8)
        assert data.discounts.shape == (8, 1)
        assert set(th.round(th.log(data.discounts) / np.log(0.9)).long().flatten().tolist()) <= {1, 2, 3}
