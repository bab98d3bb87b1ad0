"""stable-baselines3 VecEnv wrappers for vector rewards (for batched simulators, which take no Gymnasium wrappers).

- :class:`PreorderVecGate`: :class:`morl.wrappers.PreorderGate` for a VecEnv, all envs in one array computation.

>>> from morl.envs.driving import make_vec
>>> venv = PreorderVecGate(make_vec("route", 2, seed=0), {"safety": 0.0}, factor=0.0)
>>> _ = venv.reset()
>>> obs, rewards, dones, infos = venv.step([1, 1])
>>> rewards.shape, infos[0]["vector_reward"].shape
((2,), (4,))
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

from morl.buffers import step_vector_rewards, vector_reward_array_env
from morl.gate import GateTerms
from morl.preorder import PreorderError

__all__ = ["PreorderVecGate"]


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
        vec = step_vector_rewards(self._array_env, infos, self.num_envs, len(self.terms.objectives))
        return obs, self.terms.reward(vec), dones, infos
