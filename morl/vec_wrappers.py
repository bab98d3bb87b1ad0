"""stable-baselines3 VecEnv wrappers for vector rewards (for batched simulators, which take no Gymnasium wrappers).

- :class:`PreorderVecGate`: :class:`morl.wrappers.PreorderGate` for a VecEnv, all envs in one array computation.
- :class:`ArrayVecMonitor`: SB3's ``VecMonitor`` for array-step VecEnvs (:mod:`morl.vec_arrays`).

Both pass array steps on (``step_arrays``).

>>> from morl.envs.driving import make_vec
>>> venv = PreorderVecGate(make_vec("route", 2, seed=0), {"safety": 0.0}, factor=0.0)
>>> _ = venv.reset()
>>> obs, rewards, dones, infos = venv.step([1, 1])
>>> rewards.shape, infos[0]["vector_reward"].shape
((2,), (4,))
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor

from morl.buffers import step_vector_rewards, vector_reward_array_env
from morl.gate import GateTerms
from morl.preorder import PreorderError
from morl.vec_arrays import ArrayStep

__all__ = ["ArrayVecMonitor", "PreorderVecGate"]


class PreorderVecGate(VecEnvWrapper):
    """The preorder gate of :mod:`morl.gate` on a VecEnv: SB3 gets the gated scalar of each env's reward vector.

    The vectors are read from the VecEnv's ``vector_rewards`` array when it keeps one (the batched
    simulators), else from each env's ``info["vector_reward"]``; the infos keep the vectors.

    :param venv: a VecEnv with ``objectives`` whose steps report reward vectors.
    :param thresholds: and the other parameters: as :class:`morl.gate.GateTerms`; ``preorder`` defaults to
        the env's.
    """

    def __init__(self, venv, thresholds: Mapping[str, float], weights: Mapping[str, float] | None = None,
                 factor: float = 0.0, preorder=None):
        VecEnvWrapper.__init__(self, venv)
        objectives = tuple(venv.get_attr("objectives")[0])
        if preorder is None:
            try:
                preorder = venv.get_attr("preorder")[0]
            except AttributeError:
                raise PreorderError("PreorderVecGate needs a preorder: the env has none, pass preorder=...") from None
        self.terms = GateTerms(objectives, thresholds, weights, factor, preorder, who="PreorderVecGate")
        self._array_env = vector_reward_array_env(venv)

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, _, dones, infos = self.venv.step_wait()
        return obs, self._rewards(infos), dones, infos

    def step_arrays(self, actions) -> ArrayStep:
        """The array step (:mod:`morl.vec_arrays`) with the gated rewards."""
        step = self.venv.step_arrays(actions)
        return step._replace(rewards=self._rewards(step.infos))

    def _rewards(self, infos) -> np.ndarray:
        return self.terms.reward(step_vector_rewards(self._array_env, infos, self.num_envs, len(self.terms.objectives)))


class ArrayVecMonitor(VecMonitor):
    """SB3's ``VecMonitor`` (episode return ``"r"``, length ``"l"`` and time ``"t"`` in the ended envs'
    ``info["episode"]``) that also passes array steps (:mod:`morl.vec_arrays`) on.

    Parameters are ``VecMonitor``'s.
    """

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        infos = list(infos)
        self._record(rewards, dones, infos, copy=True)
        return obs, rewards, dones, infos

    def step_arrays(self, actions) -> ArrayStep:
        """The array step of the wrapped env, with ``info["episode"]`` in the ended envs' infos (those are the
        step's own, built for it, so they are written to, not copied first)."""
        step = self.venv.step_arrays(actions)
        self._record(step.rewards, step.dones, step.infos, copy=False)
        return step

    def _record(self, rewards, dones, infos, copy: bool) -> None:
        # VecMonitor.step_wait's bookkeeping (SB3 2.x), on the ended envs only
        self.episode_returns += rewards
        self.episode_lengths += 1
        for i in np.flatnonzero(dones):
            info = infos[i].copy() if copy else infos[i]
            episode_info = {"r": self.episode_returns[i], "l": self.episode_lengths[i],
                            "t": round(time.time() - self.t_start, 6)}
            for key in self.info_keywords:
                episode_info[key] = info[key]
            info["episode"] = episode_info
            self.episode_count += 1
            self.episode_returns[i] = 0
            self.episode_lengths[i] = 0
            if self.results_writer:
                self.results_writer.write_row(episode_info)
            infos[i] = info
