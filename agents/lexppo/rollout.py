"""Rollout pieces for an on-policy agent that trains on the reward vector.

SB3's ``OnPolicyAlgorithm.collect_rollouts`` is used unchanged. Two pieces let it carry vectors:

- :class:`VecVectorReward`, the outermost VecEnv wrapper, hands the step's reward *vector* ``(n_envs, m)``
  to the algorithm (from ``info["vector_reward"]``, or from the VecEnv's own ``vector_rewards`` array on
  the batched simulators). Everything beneath it (``Monitor``, ``VecMonitor``, ``VecNormalize``) still
  sees the scalar. With a per-objective critic (``predict_values`` of shape ``(n, m)``), SB3's bootstrap
  of a truncated episode, ``reward += gamma * V(terminal_obs)``, then runs per objective.
- :class:`VectorRolloutBuffer` takes those ``(n_envs, m)`` rewards and values in SB3's ``add`` and
  computes per-objective GAE with :func:`morl.stats.gae` (through :class:`morl.buffers.MORolloutBuffer`).
"""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from morl.buffers import MORolloutBuffer, step_vector_rewards, vector_reward_array_env

__all__ = ["VecVectorReward", "VectorRolloutBuffer"]


class VecVectorReward(VecEnvWrapper):
    """Return each step's reward vector, shape ``(n_envs, m)`` float32, as the reward.

    :param venv: a VecEnv whose envs put ``info["vector_reward"]`` (e.g. :class:`morl.wrappers.Scalarize`),
        or that keeps the vectors in its own ``vector_rewards`` array (:func:`morl.buffers.vector_reward_array_env`).

    Vector rewards are never normalised (``VecNormalize`` beneath it only knows the scalar).
    """

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self._source = vector_reward_array_env(venv)

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, _, dones, infos = self.venv.step_wait()
        return obs, self._vectors(infos), dones, infos

    def step_arrays(self, actions):
        """The array step (:mod:`morl.vec_arrays`) with the reward vectors as rewards."""
        step = self.venv.step_arrays(actions)
        return step._replace(rewards=self._vectors(step.infos))

    def _vectors(self, infos) -> np.ndarray:
        vec = step_vector_rewards(self._source, infos, self.num_envs)
        # a copy of the simulator's array: SB3 adds to the rewards in place (the stacked infos are fresh already)
        return np.array(vec, dtype=np.float32) if self._source is not None else vec


class VectorRolloutBuffer(MORolloutBuffer):
    """:class:`~morl.buffers.MORolloutBuffer` whose ``add`` takes the reward and the value as ``(n_envs, m)``.

    ``vector_rewards`` / ``vector_values`` hold them; ``vector_advantages`` / ``vector_returns`` are GAE(λ)
    and the TD(λ) return per objective (:func:`morl.stats.gae`). SB3's scalar fields hold the unweighted
    sums over objectives, for SB3's logging only. Parameters are :class:`~morl.buffers.MORolloutBuffer`'s.
    """

    def add(self, obs, action, reward, episode_start, value, log_prob) -> None:
        vec_r = self._as_vector("reward", reward)
        vec_v = self._as_vector("value", value)
        super().add(obs, action, vec_r.sum(axis=1), episode_start, th.from_numpy(vec_v.sum(axis=1)), log_prob,
                    vector_reward=vec_r, vector_value=vec_v)

    def compute_returns_and_advantage(self, last_values, dones) -> None:
        """GAE per objective; ``last_values`` are the per-objective values ``(n_envs, m)`` after the rollout."""
        last = self._as_vector("last_values", last_values)
        super().compute_returns_and_advantage(th.from_numpy(last.sum(axis=1)), dones, last_vector_values=last)
