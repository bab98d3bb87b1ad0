"""Tests for morl.buffers with real SB3 DQN and PPO on a tiny env that reports info["vector_reward"]."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from morl.buffers import (
    MORolloutBuffer,
    MORolloutBufferSamples,
    VectorRewardCallback,
    VectorRewardError,
)
from morl.replay import MOReplayBuffer

EPISODE_LENGTH = 5


class CountingEnv(gym.Env):
    """Obs ``[t / 5, x]``; reward 1 per step; terminates after 5 steps (or truncates, if asked)."""

    def __init__(self, truncate: bool = False):
        self.observation_space = spaces.Box(-10.0, 10.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.truncate = truncate
        self.t = 0

    def _obs(self):
        return np.array([self.t / EPISODE_LENGTH, self.np_random.uniform(-1, 1)], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        end = self.t >= EPISODE_LENGTH
        return self._obs(), 1.0, end and not self.truncate, end and self.truncate, {}


class VectorInfo(gym.Wrapper):
    """Vector ``[reward, action, t]`` in info["vector_reward"]; SB3 gets the first component."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["vector_reward"] = np.array([reward, float(action), float(self.env.unwrapped.t)], dtype=np.float32)
        return obs, reward, terminated, truncated, info


def make_vec_env(n_envs=2, truncate=False, wrap=True):
    def make(i):
        def thunk():
            env = CountingEnv(truncate)
            if truncate:
                env = gym.wrappers.TimeLimit(env, EPISODE_LENGTH)
            return VectorInfo(env) if wrap else env

        return thunk

    venv = DummyVecEnv([make(i) for i in range(n_envs)])
    venv.seed(0)
    return venv


OBS = spaces.Box(-10.0, 10.0, (2,), np.float32)
ACT = spaces.Discrete(3)


def fill_replay(buffer, n_steps, n_envs, rng, timeout_every=0):
    """Transitions whose vector reward encodes (obs, next obs, action) so samples can be checked row by row."""
    obs = rng.normal(size=(n_envs, 2)).astype(np.float32)
    for step in range(n_steps):
        next_obs = rng.normal(size=(n_envs, 2)).astype(np.float32)
        action = rng.integers(0, 3, size=(n_envs, 1))
        done = rng.random(n_envs) < 0.3
        infos = [
            {
                "vector_reward": np.array([obs[i, 0], next_obs[i, 0], action[i, 0]], np.float32),
                "TimeLimit.truncated": bool(timeout_every and step % timeout_every == 0),
            }
            for i in range(n_envs)
        ]
        buffer.add(obs, next_obs, action, obs[:, 1].copy(), done, infos)
        # with optimize_memory_usage the next obs is the next step's obs
        obs = next_obs


# ----------------------------------------------------------------------------------------------
# MOReplayBuffer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimize_memory_usage", [False, True])
def test_replay_samples_keep_vector_aligned_with_transition(optimize_memory_usage):
    rng = np.random.default_rng(0)
    buffer = MOReplayBuffer(
        40, OBS, ACT, "cpu", n_envs=2, optimize_memory_usage=optimize_memory_usage,
        handle_timeout_termination=not optimize_memory_usage,
    )
    fill_replay(buffer, 30, 2, rng)  # wraps around: 40 // 2 = 20 slots per env
    assert buffer.full and buffer.vector_rewards.shape == (20, 2, 3) and buffer.reward_dim == 3
    s = buffer.sample(256)
    assert s.rewards.shape == (256, 3) and s.rewards.dtype == th.float32
    th.testing.assert_close(s.rewards, s.vector_rewards)
    th.testing.assert_close(s.vector_rewards[:, 0], s.observations[:, 0])
    th.testing.assert_close(s.vector_rewards[:, 1], s.next_observations[:, 0])
    th.testing.assert_close(s.vector_rewards[:, 2], s.actions[:, 0].float())
    th.testing.assert_close(s.scalar_rewards[:, 0], s.observations[:, 1])
    assert s.scalar_rewards.shape == (256, 1) and s.dones.shape == (256, 1)


def test_replay_timeouts_are_not_terminations_and_scalar_mode():
    rng = np.random.default_rng(1)
    buffer = MOReplayBuffer(64, OBS, ACT, "cpu", n_envs=1, reward_dim=3, sample_scalar_rewards=True)
    fill_replay(buffer, 64, 1, rng, timeout_every=2)
    buffer.dones[:] = 1.0  # every step done, every other one by timeout
    s = buffer._get_samples(np.arange(64))
    expected = 1.0 - buffer.timeouts[np.arange(64), 0]
    np.testing.assert_array_equal(s.dones[:, 0].numpy(), expected)
    assert 0 < expected.sum() < 64
    # scalar mode: the rewards SB3 trains on are the scalar rewards that were added (fill_replay: obs[:, 1])
    np.testing.assert_array_equal(s.rewards[:, 0].numpy(), s.observations[:, 1].numpy())
    th.testing.assert_close(s.rewards, s.scalar_rewards)
    np.testing.assert_array_equal(s.vector_rewards[:, 0].numpy(), s.observations[:, 0].numpy())


def test_replay_missing_vector_reward_names_env_and_wrapper():
    buffer = MOReplayBuffer(10, OBS, ACT, "cpu", n_envs=2)
    obs = np.zeros((2, 2), np.float32)
    infos = [{"vector_reward": np.ones(3)}, {}]
    with pytest.raises(VectorRewardError, match=r"env index 1.*morl\.wrappers\.Scalarize"):
        buffer.add(obs, obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2), infos)
    assert buffer.pos == 0  # nothing half-written
    buffer.add(obs, obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2), [{"vector_reward": np.ones(3)}] * 2)
    with pytest.raises(VectorRewardError, match="reward_dim=3"):
        buffer.add(obs, obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2), [{"vector_reward": np.ones(2)}] * 2)
    with pytest.raises(ValueError, match="reward_dim"):
        MOReplayBuffer(10, OBS, ACT, "cpu", reward_dim=0)


def test_replay_buffer_with_sb3_dqn_save_and_load(tmp_path):
    env = make_vec_env(2)
    model = DQN(
        "MlpPolicy", env, learning_starts=20, buffer_size=1000, batch_size=16, train_freq=4,
        replay_buffer_class=MOReplayBuffer, replay_buffer_kwargs=dict(reward_dim=3, sample_scalar_rewards=True),
        policy_kwargs=dict(net_arch=[16]), seed=0, device="cpu",
    )
    model.learn(120)
    buffer = model.replay_buffer
    assert isinstance(buffer, MOReplayBuffer)
    n = buffer.pos
    vec = buffer.vector_rewards[:n]
    assert n == 60 and vec.shape == (60, 2, 3)
    # the vector is the one of the stored transition: [reward, action, step index in episode]
    np.testing.assert_array_equal(vec[..., 0], buffer.rewards[:n])
    np.testing.assert_array_equal(vec[..., 1], buffer.actions[:n, :, 0])
    np.testing.assert_array_equal(vec[..., 2], buffer.observations[:n, :, 0] * EPISODE_LENGTH + 1)
    np.testing.assert_array_equal(buffer.dones[:n] == 1, vec[..., 2] == EPISODE_LENGTH)

    model.save_replay_buffer(tmp_path / "rb.pkl")
    model.save(tmp_path / "dqn.zip")
    loaded = DQN.load(tmp_path / "dqn.zip", env=make_vec_env(2), device="cpu")
    assert loaded.replay_buffer_class is MOReplayBuffer
    assert loaded.replay_buffer_kwargs == dict(reward_dim=3, sample_scalar_rewards=True)
    loaded.load_replay_buffer(tmp_path / "rb.pkl")
    assert isinstance(loaded.replay_buffer, MOReplayBuffer)
    np.testing.assert_array_equal(loaded.replay_buffer.vector_rewards, buffer.vector_rewards)
    loaded.learn(40, reset_num_timesteps=False)  # keeps training on the loaded buffer
    assert loaded.replay_buffer.pos == n + 20


# ----------------------------------------------------------------------------------------------
# MORolloutBuffer
# ----------------------------------------------------------------------------------------------
def sb3_gae(rewards, values, starts, last_values, last_dones, gamma, lam):
    """SB3's own RolloutBuffer on one (T, n_envs) slice."""
    T, n = rewards.shape
    buf = RolloutBuffer(T, OBS, ACT, "cpu", gae_lambda=lam, gamma=gamma, n_envs=n)
    buf.rewards[:], buf.values[:], buf.episode_starts[:] = rewards, values, starts
    buf.compute_returns_and_advantage(th.as_tensor(last_values), last_dones)
    return buf.advantages, buf.returns


def fill_rollout(buffer, rng, with_values):
    T, n, m = buffer.buffer_size, buffer.n_envs, 3
    data = dict(
        r=rng.normal(size=(T, n)).astype(np.float32),
        v=rng.normal(size=(T, n)).astype(np.float32),
        vr=rng.normal(size=(T, n, m)).astype(np.float32),
        vv=rng.normal(size=(T, n, m)).astype(np.float32),
        starts=(rng.random((T, n)) < 0.2).astype(np.float32),
    )
    data["starts"][0] = 1.0
    for t in range(T):
        obs = np.stack([np.full(n, t), np.arange(n)], axis=1).astype(np.float32)  # [step, env index]
        buffer.add(
            obs, np.zeros((n, 1)), data["r"][t], data["starts"][t], th.as_tensor(data["v"][t]), th.zeros(n),
            vector_reward=data["vr"][t], vector_value=data["vv"][t] if with_values else None,
        )
    return data


def gae_from_definition(rewards, values, starts, last_values, last_dones, gamma, lam):
    """GAE (Schulman et al. 2016, eq. 16) per env, written out: an episode start at t + 1 cuts the bootstrap."""
    T, n = rewards.shape[:2]
    adv = np.zeros(rewards.shape)
    for e in range(n):
        following = 0.0
        for t in reversed(range(T)):
            if t == T - 1:
                alive, v_next = 1.0 - float(last_dones[e]), last_values[e]
            else:
                alive, v_next = 1.0 - starts[t + 1, e], values[t + 1, e]
            delta = rewards[t, e] + gamma * alive * v_next - values[t, e]
            following = delta + gamma * lam * alive * following
            adv[t, e] = following
    return adv, adv + values


def test_rollout_scalar_and_vector_gae_equal_sb3():
    rng = np.random.default_rng(0)
    buffer = MORolloutBuffer(17, OBS, ACT, "cpu", gae_lambda=0.9, gamma=0.95, n_envs=3)
    d = fill_rollout(buffer, rng, with_values=True)
    last_v = rng.normal(size=3).astype(np.float32)
    last_vv = rng.normal(size=(3, 3)).astype(np.float32)
    dones = np.array([True, False, True])
    buffer.compute_returns_and_advantage(th.as_tensor(last_v), dones, last_vector_values=last_vv)
    adv, ret = sb3_gae(d["r"], d["v"], d["starts"], last_v, dones, 0.95, 0.9)
    np.testing.assert_allclose(buffer.advantages, adv, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(buffer.returns, ret, rtol=1e-6, atol=1e-6)
    for j in range(3):
        adv, ret = sb3_gae(d["vr"][..., j], d["vv"][..., j], d["starts"], last_vv[:, j], dones, 0.95, 0.9)
        np.testing.assert_allclose(buffer.vector_advantages[..., j], adv, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(buffer.vector_returns[..., j], ret, rtol=1e-6, atol=1e-6)
    adv, ret = gae_from_definition(d["vr"], d["vv"], d["starts"], last_vv, dones, 0.95, 0.9)
    np.testing.assert_allclose(buffer.vector_advantages, adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buffer.vector_returns, ret, rtol=1e-5, atol=1e-5)


def test_rollout_without_vector_values_gives_discounted_reward_to_go():
    rng = np.random.default_rng(1)
    buffer = MORolloutBuffer(9, OBS, ACT, "cpu", gae_lambda=0.8, gamma=0.9, n_envs=2)
    d = fill_rollout(buffer, rng, with_values=False)
    buffer.compute_returns_and_advantage(th.zeros(2), np.array([False, True]))
    expected = np.zeros_like(d["vr"])
    running = np.zeros((2, 3))  # no bootstrap after the rollout
    for t in reversed(range(9)):
        if t < 8:
            running = running * (1.0 - d["starts"][t + 1])[:, None]
        running = d["vr"][t] + 0.9 * running
        expected[t] = running
    np.testing.assert_allclose(buffer.vector_returns, expected, rtol=1e-5)
    np.testing.assert_allclose(buffer.vector_advantages, expected, rtol=1e-5)
    np.testing.assert_allclose(buffer.mean_vector_return(), expected.mean(axis=(0, 1)), rtol=1e-5)


def test_rollout_get_yields_vector_fields_aligned():
    rng = np.random.default_rng(2)
    buffer = MORolloutBuffer(8, OBS, ACT, "cpu", n_envs=2, reward_dim=3)
    fill_rollout(buffer, rng, with_values=True)
    buffer.compute_returns_and_advantage(th.zeros(2), np.zeros(2, bool))
    stored = {name: getattr(buffer, name).copy() for name in
              ("vector_rewards", "vector_values", "vector_advantages", "vector_returns")}
    advantages = buffer.advantages.copy()  # (T, n_envs) before get() flattens it
    seen = []
    for batch in buffer.get(batch_size=5):
        assert isinstance(batch, MORolloutBufferSamples)
        t, i = batch.observations[:, 0].long().numpy(), batch.observations[:, 1].long().numpy()  # obs = [step, env]
        for name, array in stored.items():  # each row's vectors are those of its own (step, env)
            np.testing.assert_array_equal(getattr(batch, name).numpy(), array[t, i], err_msg=name)
        np.testing.assert_array_equal(batch.advantages.numpy(), advantages[t, i])  # the scalar fields agree
        seen += list(zip(t, i))
    assert sorted(seen) == [(t, i) for t in range(8) for i in range(2)]  # every (step, env) once
    assert buffer.vector_rewards.shape == (8, 2, 3)  # the (T, n_envs, m) arrays stay for logging


def test_rollout_add_without_vector_and_staging():
    buffer = MORolloutBuffer(4, OBS, ACT, "cpu", n_envs=2, gamma=0.5)
    args = (np.zeros((2, 2)), np.zeros((2, 1)), np.zeros(2), np.zeros(2), th.zeros(2), th.zeros(2))
    with pytest.raises(RuntimeError, match="VectorRewardCallback"):
        buffer.add(*args)
    infos = [{"vector_reward": [1.0, 2.0]}, {"vector_reward": [3.0, 4.0]}]
    buffer.stage_vector_rewards(infos, truncation_values=np.array([[0.0, 0.0], [10.0, 20.0]]))
    buffer.add(*args)
    np.testing.assert_allclose(buffer.vector_rewards[0], [[1.0, 2.0], [8.0, 14.0]])  # + gamma * V(terminal)
    with pytest.raises(RuntimeError):  # the staged vector is used once
        buffer.add(*args)
    with pytest.raises(VectorRewardError, match="env index 0"):
        buffer.stage_vector_rewards([{}, {}])


def test_ppo_with_vector_reward_callback(tmp_path):
    env = make_vec_env(2)
    model = PPO(
        "MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, gamma=0.9, gae_lambda=0.8,
        rollout_buffer_class=MORolloutBuffer, rollout_buffer_kwargs=dict(reward_dim=3),
        policy_kwargs=dict(net_arch=[16]), seed=0, device="cpu",
    )
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    model.learn(64, callback=VectorRewardCallback(objectives=("progress", "action", "t")))
    buffer = model.rollout_buffer
    assert isinstance(buffer, MORolloutBuffer)
    vr = buffer.vector_rewards
    # terminating env, no truncation: SB3's scalar reward is the first component
    np.testing.assert_array_equal(vr[..., 0], buffer.rewards)
    # PPO's train() flattened the actions to (n_envs * T, 1), env-major (SB3's swap_and_flatten)
    actions = buffer.actions.reshape(2, 16).T
    np.testing.assert_array_equal(vr[..., 1], actions)
    # episode starts line up with the step counter carried in the vector
    np.testing.assert_array_equal(buffer.episode_starts[1:] == 1, vr[:-1, :, 2] == EPISODE_LENGTH)
    # vector returns: discounted reward-to-go (no per-objective critic, no bootstrap after the rollout)
    expected = np.zeros(vr.shape)
    running = np.zeros((2, 3))
    for t in reversed(range(16)):
        alive = np.ones(2) if t == 15 else 1.0 - buffer.episode_starts[t + 1]
        running = vr[t] + 0.9 * alive[:, None] * running
        expected[t] = running
    np.testing.assert_allclose(buffer.vector_returns, expected, rtol=1e-5)
    # reward 1 per step: the undiscounted return is the length; whole episodes sum t = 1..5
    stats = buffer.rollout_episode_statistics()
    np.testing.assert_array_equal(stats.returns[:, 0], stats.lengths)
    whole = stats.lengths == EPISODE_LENGTH
    assert whole.sum() >= 4  # 16 steps per env: at least two whole episodes each
    np.testing.assert_array_equal(stats.returns[whole, 2], 15.0)
    # the last rollout's per-objective means were logged
    import csv

    rows = list(csv.DictReader(open(tmp_path / "log" / "progress.csv")))
    assert len(rows) == 2
    for name, value in zip(("progress", "action", "t"), buffer.mean_vector_return()):
        assert float(rows[-1][f"rollout/vector_return/{name}"]) == pytest.approx(value, rel=1e-6)
    # episodes counted whole across rollouts: all last 5 steps, so sum 5 x 1 and t = 1 + ... + 5
    assert float(rows[-1]["rollout/ep_vector_return/progress"]) == 5.0
    assert float(rows[-1]["rollout/ep_vector_return/t"]) == 15.0
    # save / load keeps the buffer class
    model.save(tmp_path / "ppo.zip")
    loaded = PPO.load(tmp_path / "ppo.zip", env=make_vec_env(2), device="cpu")
    assert isinstance(loaded.rollout_buffer, MORolloutBuffer)
    loaded.learn(32, callback=VectorRewardCallback())


def test_callback_requires_mo_rollout_buffer_and_ppo_fails_without_callback():
    model = PPO("MlpPolicy", make_vec_env(1), n_steps=8, batch_size=8, n_epochs=1, device="cpu")
    with pytest.raises(TypeError, match="MORolloutBuffer"):
        model.learn(8, callback=VectorRewardCallback())
    model = PPO("MlpPolicy", make_vec_env(1), n_steps=8, batch_size=8, n_epochs=1, device="cpu",
                rollout_buffer_class=MORolloutBuffer)
    with pytest.raises(RuntimeError, match="VectorRewardCallback"):
        model.learn(8)


def test_with_morl_wrappers_scalarize():
    """The project's own Scalarize wrapper feeds the buffers."""
    from morl import wrappers

    def make():
        env = wrappers.VectorReward(CountingEnv(), ("alive", "constant"), fn=lambda obs, r, info: [r, 2.0])
        return wrappers.Scalarize(env, [1.0, 0.5])

    model = PPO("MlpPolicy", DummyVecEnv([make]), n_steps=8, batch_size=8, n_epochs=1, device="cpu",
                rollout_buffer_class=MORolloutBuffer, policy_kwargs=dict(net_arch=[8]))
    model.learn(8, callback=VectorRewardCallback())
    buffer = model.rollout_buffer
    np.testing.assert_array_equal(buffer.vector_rewards[..., 0], 1.0)
    np.testing.assert_array_equal(buffer.vector_rewards[..., 1], 2.0)
    np.testing.assert_allclose(buffer.rewards, 2.0)  # 1 * 1 + 0.5 * 2
