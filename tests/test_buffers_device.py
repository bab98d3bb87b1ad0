"""Device-side sampling of morl.buffers: MOReplayBuffer(device_storage=True) and DeviceRolloutBuffer.

On the CPU the device path runs the same code as on CUDA (the mirror is a copy there too), so these
tests check that it gives exactly the NumPy path's minibatches.
"""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer

from morl.buffers import DeviceRolloutBuffer, MORolloutBuffer
from morl.replay import DeviceReplayBuffer, MOReplayBuffer

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)


def _infos(vec):
    return [{"vector_reward": v} for v in vec]


def _fill(buffer, start, steps, n_envs, rng):
    """Transitions whose observation is ``(t, env, noise)`` so a sample shows which row it came from."""
    for t in range(start, start + steps):
        obs = np.stack([[t, e, rng.normal()] for e in range(n_envs)]).astype(np.float32)
        next_obs = obs + np.array([1, 0, 0], np.float32)
        buffer.add(obs, next_obs, rng.integers(0, 4, n_envs), rng.normal(size=n_envs).astype(np.float32),
                   rng.random(n_envs) < 0.2, _infos(np.stack([[t, e] for e in range(n_envs)]).astype(np.float32)))


def _assert_same(a, b):
    for name in a._fields:
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None, name
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert th.equal(x, y), name


@pytest.mark.parametrize("optimize_memory_usage", [False, True])
def test_device_samples_equal_host_samples_for_the_same_indices_after_wrapping(optimize_memory_usage):
    rng = np.random.default_rng(0)
    n_envs, size = 2, 7
    buffer = MOReplayBuffer(size * n_envs, OBS, spaces.Discrete(4), device="cpu", n_envs=n_envs,
                            optimize_memory_usage=optimize_memory_usage, reward_dim=2, device_storage=True,
                            handle_timeout_termination=False)
    step = 0
    # first sample builds the mirror; later adds must reach it (a partial update that wraps round,
    # then more rows than the buffer holds)
    for added in (4, 5, 2, 9):
        _fill(buffer, step, added, n_envs, rng)
        step += added
        upper = size if buffer.full else buffer.pos
        rows = np.array([r for r in range(upper) if not (optimize_memory_usage and r == buffer.pos)])
        envs = np.arange(len(rows)) % n_envs
        host = buffer.samples_at(rows, envs)
        device = buffer.samples_at(th.as_tensor(rows), th.as_tensor(envs))
        _assert_same(host, device)
        # the vector reward and the observation come from the same (step, env)
        assert th.equal(device.vector_rewards, device.observations[:, :2])


def test_device_sample_draws_valid_rows_on_the_device():
    rng = np.random.default_rng(1)
    buffer = MOReplayBuffer(20, OBS, spaces.Discrete(4), device="cpu", n_envs=2, reward_dim=2, device_storage=True)
    _fill(buffer, 0, 6, 2, rng)
    th.manual_seed(0)
    batch = buffer.sample(256)
    assert batch.observations.shape == (256, 3) and batch.rewards.shape == (256, 2)
    t = batch.observations[:, 0]
    assert t.min() >= 0 and t.max() <= 5 and len(th.unique(t)) == 6  # only written rows, all of them
    assert th.equal(batch.next_observations[:, 0], t + 1)
    assert th.equal(batch.vector_rewards, batch.observations[:, :2])
    th.manual_seed(0)
    again = buffer.sample(256)
    _assert_same(batch, again)  # seeded by torch's generator


def test_device_storage_off_keeps_the_numpy_path_and_rejects_torch_indices():
    rng = np.random.default_rng(2)
    buffer = MOReplayBuffer(20, OBS, spaces.Discrete(4), device="cpu", n_envs=2, reward_dim=2)
    _fill(buffer, 0, 3, 2, rng)
    np.random.seed(0)
    a = buffer.sample(8)
    np.random.seed(0)
    rows = np.random.randint(0, 3, size=8)
    _assert_same(a, buffer.samples_at(rows, np.random.randint(0, 2, size=8)))
    with pytest.raises(ValueError, match="device_storage=True"):
        buffer.samples_at(th.zeros(2, dtype=th.long), th.zeros(2, dtype=th.long))
    empty = MOReplayBuffer(20, OBS, spaces.Discrete(4), device="cpu", reward_dim=2, device_storage=True)
    with pytest.raises(RuntimeError, match="empty"):
        empty.sample(4)


def test_pickled_buffer_drops_the_mirror_and_rebuilds_it():
    import pickle

    rng = np.random.default_rng(3)
    buffer = MOReplayBuffer(20, OBS, spaces.Discrete(4), device="cpu", n_envs=2, reward_dim=2, device_storage=True)
    _fill(buffer, 0, 4, 2, rng)
    buffer.sample(4)
    clone = pickle.loads(pickle.dumps(buffer))
    assert clone._mirror is None and clone.device_storage
    rows, envs = th.arange(4), th.tensor([0, 1, 0, 1])
    _assert_same(buffer.samples_at(rows, envs), clone.samples_at(rows, envs))


def _fill_rollout(buffer, rng, n_envs, vector):
    for _ in range(buffer.buffer_size):
        kwargs = {"vector_reward": rng.normal(size=(n_envs, 2))} if vector else {}
        buffer.add(rng.normal(size=(n_envs, 3)).astype(np.float32), rng.normal(size=(n_envs, 2)),
                   rng.normal(size=n_envs), rng.random(n_envs) < 0.1, th.as_tensor(rng.normal(size=n_envs)),
                   th.as_tensor(rng.normal(size=n_envs)), **kwargs)
    buffer.compute_returns_and_advantage(th.as_tensor(rng.normal(size=n_envs)), np.zeros(n_envs))


def test_device_rollout_buffer_gives_sb3_minibatches():
    act = spaces.Box(-1, 1, (2,), np.float32)
    ours, sb3 = (cls(8, OBS, act, device="cpu", n_envs=3) for cls in (DeviceRolloutBuffer, RolloutBuffer))
    for buffer in (ours, sb3):
        _fill_rollout(buffer, np.random.default_rng(4), 3, vector=False)
    for _ in range(2):  # the second epoch reuses the device copy
        np.random.seed(5)
        mine = list(ours.get(5))
        np.random.seed(5)
        theirs = list(sb3.get(5))
        assert len(mine) == len(theirs) == 5
        for a, b in zip(mine, theirs):
            _assert_same(a, b)


def test_mo_rollout_buffer_minibatches_match_its_host_samples():
    act = spaces.Box(-1, 1, (2,), np.float32)
    buffer = MORolloutBuffer(8, OBS, act, device="cpu", n_envs=3, reward_dim=2)
    _fill_rollout(buffer, np.random.default_rng(6), 3, vector=True)
    np.random.seed(7)
    order = np.random.permutation(24)
    np.random.seed(7)
    batches = list(buffer.get(10))
    assert [len(b.observations) for b in batches] == [10, 10, 4]
    for i, batch in enumerate(batches):
        _assert_same(batch, buffer._get_samples(order[i * 10:(i + 1) * 10]))
    buffer.reset()
    assert buffer._device_fields is None


@pytest.mark.parametrize("optimize_memory_usage", [False, True])
def test_device_replay_buffer_gives_sb3_samples_for_the_same_indices(optimize_memory_usage):
    rng = np.random.default_rng(8)
    buffer = DeviceReplayBuffer(12, OBS, spaces.Discrete(4), device="cpu", n_envs=2, device_storage=True,
                                optimize_memory_usage=optimize_memory_usage, handle_timeout_termination=False)
    step = 0
    for added in (3, 5, 8):
        _fill(buffer, step, added, 2, rng)
        step += added
        upper = 6 if buffer.full else buffer.pos
        rows = np.array([r for r in range(upper) if not (optimize_memory_usage and r == buffer.pos)])
        np.random.seed(added)
        envs = np.random.randint(0, 2, size=len(rows))
        np.random.seed(added)
        sb3 = ReplayBuffer._get_samples(buffer, rows)  # SB3's NumPy path draws the same env indices
        _assert_same(sb3, buffer.samples_at(th.as_tensor(rows), th.as_tensor(envs)))
    th.manual_seed(0)
    batch = buffer.sample(64)
    assert batch.observations.shape == (64, 3) and batch.rewards.shape == (64, 1) and batch.dones.shape == (64, 1)
    # each sampled row is a stored transition: its step is one the buffer still holds (the last 6 of 16), its next
    # observation is the next step's, and its reward and done are those stored at that (row, env)
    t, e = batch.observations[:, 0].long().numpy(), batch.observations[:, 1].long().numpy()
    assert set(t) <= set(range(10, 16)) and set(e) <= {0, 1}
    assert th.equal(batch.next_observations[:, :2], batch.observations[:, :2] + th.tensor([1.0, 0.0]))
    np.testing.assert_array_equal(batch.rewards[:, 0].numpy(), buffer.rewards[t % 6, e])
    np.testing.assert_array_equal(batch.dones[:, 0].numpy(), buffer.dones[t % 6, e])


def test_device_storage_auto_follows_the_device_and_bad_values_raise():
    assert DeviceReplayBuffer(8, OBS, spaces.Discrete(4), device="cpu", device_storage="auto").device_storage is False
    with pytest.raises(ValueError, match="device_storage"):
        DeviceReplayBuffer(8, OBS, spaces.Discrete(4), device="cpu", device_storage="yes")
