"""The cheap paths of the vector bookkeeping.

VectorRewardCallback reads a batched VecEnv's own ``vector_rewards`` array instead of its infos (both
ways must give the buffer the same vectors; the array way must not touch the infos), CaRLPPO lets the
buffer read that array itself (no per-step callback), SB3's episode-info bookkeeping reads only the ended
envs' infos (and keeps what SB3 keeps), and
``MORolloutBuffer(sample_vectors=False)`` gives SB3's minibatches without the vector fields.
"""

from collections import deque
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import morl.buffers as buffers
from morl.agents import CaRLPPO
from morl.envs.driving import make_vec
from morl.buffers import MORolloutBuffer, MORolloutBufferSamples, VectorRewardCallback, vector_reward_array_env
from morl.registry import two_objective_cartpole
from morl.wrappers import Scalarize


class _RecordInfos(BaseCallback):
    """The step's vector rewards as the infos report them (runs after VectorRewardCallback staged them)."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def _on_step(self):
        self.rows.append(np.stack([np.asarray(i["vector_reward"]) for i in self.locals["infos"]]))
        return True


def _train(venv):
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, rollout_buffer_class=MORolloutBuffer,
                policy_kwargs={"net_arch": [8]}, device="cpu", seed=0)
    record = _RecordInfos()
    model.learn(8 * venv.num_envs, callback=[VectorRewardCallback(), record])
    return model.rollout_buffer, np.stack(record.rows)


def test_batched_env_array_is_read_and_matches_the_infos(monkeypatch):
    venv = VecMonitor(make_vec("route", 4, action_type="continuous", seed=0))
    assert vector_reward_array_env(venv) is venv.venv
    # the infos are not read on this path: make reading them fail
    monkeypatch.setattr(buffers, "vector_rewards_from_infos", lambda *a, **k: pytest.fail("read the infos"))
    buffer, from_infos = _train(venv)
    assert buffer.vector_rewards.shape == (8, 4, 4) and np.abs(buffer.vector_rewards).sum() > 0
    np.testing.assert_array_equal(buffer.vector_rewards, from_infos)


def test_envs_without_an_array_use_the_infos():
    venv = DummyVecEnv([lambda: Scalarize(two_objective_cartpole(), [1.0, 1.0])] * 2)
    assert vector_reward_array_env(venv) is None
    buffer, from_infos = _train(venv)
    np.testing.assert_array_equal(buffer.vector_rewards, from_infos)


def test_minibatches_without_vectors_are_the_same_minibatches():
    rng = np.random.default_rng(0)
    obs_space, act_space = spaces.Box(-1, 1, (3,), np.float32), spaces.Box(-1, 1, (2,), np.float32)
    buffers_ = [MORolloutBuffer(6, obs_space, act_space, "cpu", n_envs=2, sample_vectors=s) for s in (True, False)]
    for _ in range(6):
        step = (rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32),
                rng.normal(size=2).astype(np.float32), np.zeros(2), th.zeros(2, 1), th.zeros(2))
        vec = rng.normal(size=(2, 4)).astype(np.float32)
        for b in buffers_:
            b.add(*step, vector_reward=vec)
    batches = []
    for b in buffers_:
        b.compute_returns_and_advantage(th.zeros(2), np.zeros(2))
        np.random.seed(1)  # the same permutation
        batches.append(list(b.get(4)))
    with_vec, without = batches
    assert all(type(x) is MORolloutBufferSamples for x in with_vec)
    assert all(type(x) is RolloutBufferSamples for x in without)
    for a, b in zip(with_vec, without):
        for field in RolloutBufferSamples._fields:
            assert th.equal(getattr(a, field), getattr(b, field))
    # the vectors are still kept for logging
    np.testing.assert_array_equal(buffers_[0].vector_returns, buffers_[1].vector_returns)


def test_carl_ppo_reads_the_array_without_a_callback_and_logs(tmp_path, monkeypatch):
    venv = VecMonitor(make_vec("route", 4, action_type="continuous", seed=0))
    # neither the infos nor the callback may be used on this path
    monkeypatch.setattr(buffers, "vector_rewards_from_infos", lambda *a, **k: pytest.fail("read the infos"))
    monkeypatch.setattr(VectorRewardCallback, "_on_step", lambda self: pytest.fail("ran the callback"))
    model = CaRLPPO("BetaPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, policy_kwargs={"net_arch": [8]},
                    device="cpu", seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    record = _RecordInfos()
    model.learn(3 * 32 * 4, callback=record)
    buffer = model.rollout_buffer
    assert buffer.vector_source is venv.venv
    np.testing.assert_array_equal(buffer.vector_rewards, np.stack(record.rows[-32:]))
    progress = pd.read_csv(tmp_path / "progress.csv")
    names = venv.get_attr("objectives")[0]
    assert len(progress) == 3
    logged = [progress[f"rollout/vector_return/{n}"].iloc[-1] for n in names]
    np.testing.assert_allclose(logged, buffer.mean_vector_return(), rtol=1e-6)
    # the episodes VecMonitor reported reached SB3's info buffer (read at the ended envs only)
    assert len(model.ep_info_buffer) > 0 and "rollout/ep_rew_mean" in progress


def test_info_buffer_at_ends_keeps_what_sb3_keeps():
    rng = np.random.default_rng(0)
    steps = []
    for t in range(50):
        dones = rng.random(6) < 0.3
        infos = [{"episode": {"r": float(t), "l": i}, "is_success": bool(i % 2)} if d else {"is_success": True}
                 for i, d in enumerate(dones)]
        steps.append((infos, dones))
    ours, sb3 = (SimpleNamespace(ep_info_buffer=deque(maxlen=40), ep_success_buffer=deque(maxlen=40)) for _ in "ab")
    for infos, dones in steps:
        buffers.update_info_buffer_at_ends(ours, infos, dones)
        BaseAlgorithm._update_info_buffer(sb3, infos, dones)
    assert len(sb3.ep_info_buffer) == 40 and len(sb3.ep_success_buffer) == 40
    assert ours.ep_info_buffer == sb3.ep_info_buffer and ours.ep_success_buffer == sb3.ep_success_buffer
    # without dones SB3 reads every info's episode and no success
    buffers.update_info_buffer_at_ends(ours, steps[0][0])
    BaseAlgorithm._update_info_buffer(sb3, steps[0][0])
    assert ours.ep_info_buffer == sb3.ep_info_buffer and ours.ep_success_buffer == sb3.ep_success_buffer
