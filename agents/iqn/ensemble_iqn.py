"""Ensemble IQN: the ensemble baseline of "Beyond Scalar Rewards" (arXiv 2603.20230).

The paper compares against "ensemble-IQN" without describing it. Ours is a
bootstrapped ensemble in the manner of Bootstrapped DQN (Osband et al. 2016, arXiv 1602.04621) and
of the ensemble quantile networks of Hoel et al. (2021, arXiv 2105.10266): ``E`` IQN heads on the
scalarised reward, each trained on its own bootstrap sample of the replay data, acting on the
ensemble mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from morl.agents.iqn.iqn import IQN
from morl.agents.iqn.policies import IQNPolicy

__all__ = ["EnsembleIQN"]


class EnsembleIQN(IQN):
    """Bootstrapped ensemble of IQN heads on the scalar reward; acts on the ensemble mean.

    Choices (ours; the paper gives none), each a parameter or stated here:

    - ``n_ensemble`` heads (default 5) share the trunk (state embedding, tau embedding, hidden
      layers) as in Bootstrapped DQN; only the output layer is per head. Separate networks would
      cost ``E`` times more.
    - Bootstrap: every replay-buffer row carries a fixed Bernoulli(``bootstrap_prob``) mask over
      the heads, drawn once with the seeded RNG. Since the mask does not depend on the data, a
      transition written to a row gets an independent mask, which is the bootstrap of Bootstrapped
      DQN; all envs written in the same row share it. The masks are saved with the model
      (``bootstrap_masks``), so a loaded or resumed run trains each head on the rows it had. ``bootstrap_prob=1`` trains every head on every
      sample (diversity then comes from the initialisation only).
    - Each head bootstraps from its own target head: ``a*_e = argmax_a mean Z_target,e(s', a)``.
    - Loss: each head's quantile Huber loss averaged over the samples its mask keeps, then
      averaged over heads (so the shared trunk gets a ``1/E`` share of each head's gradient).
    - Acting: epsilon-greedy on ``argmax_a mean_{e, tau} Z_e(s, a; tau)`` (ensemble mean on the tau
      grid). No per-episode head sampling (Thompson-style exploration) and no randomised priors.

    :param policy: "MlpPolicy", "CnnPolicy", "MultiInputPolicy".
    :param env: environment with a scalar (scalarised) reward.
    :param n_ensemble: number of heads ``E``.
    :param bootstrap_prob: probability that a head trains on a replay row.
    :param kwargs: every :class:`~morl.agents.iqn.IQN` parameter.
    """

    policy: IQNPolicy

    def __init__(
        self,
        policy: str | type[IQNPolicy],
        env: GymEnv | str | None,
        n_ensemble: int = 5,
        bootstrap_prob: float = 0.5,
        learning_rate: float | Schedule = 5e-5,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        if int(n_ensemble) < 1:
            raise ValueError(f"n_ensemble must be >= 1, got {n_ensemble}")
        if not 0.0 < float(bootstrap_prob) <= 1.0:
            raise ValueError(f"bootstrap_prob must be in (0, 1], got {bootstrap_prob}")
        self.n_ensemble = int(n_ensemble)
        self.bootstrap_prob = float(bootstrap_prob)
        super().__init__(policy, env, learning_rate=learning_rate, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self.policy_kwargs["n_heads"] = self.n_ensemble
        super()._setup_model()
        rows = self.replay_buffer.buffer_size  # SB3 divides buffer_size by n_envs into rows
        masks = getattr(self, "bootstrap_masks", None)  # saved with the model: a loaded or resumed run keeps them
        if masks is None or np.shape(masks) != (rows, self.n_ensemble):
            masks = np.random.rand(rows, self.n_ensemble) < self.bootstrap_prob
        self.bootstrap_masks = np.asarray(masks, dtype=bool)
        self._bootstrap_masks = th.as_tensor(self.bootstrap_masks, device=self.device)

    def _sample(self, batch_size: int):
        rb = self.replay_buffer
        if self.bootstrap_prob >= 1.0:
            return rb.sample(batch_size, env=self._vec_normalize_env), None  # type: ignore[union-attr]
        if not hasattr(rb, "samples_at"):
            raise TypeError(f"EnsembleIQN with bootstrap_prob < 1 looks the masks of the sampled rows up, which needs "
                            f"a replay buffer with samples_at (morl.replay.DeviceReplayBuffer or MOReplayBuffer), "
                            f"got {type(rb).__name__}")
        if getattr(rb, "device_storage", False) and self._vec_normalize_env is None:
            # Indices drawn on the device: the masks are looked up there too, with no host-device copy.
            rows, envs = rb.sample_indices(batch_size)
            return rb.samples_at(rows, envs), self._bootstrap_masks[rows].float()
        # Draw the row and env indices here (over the ranges ReplayBuffer.sample uses) to look their masks up.
        if rb.optimize_memory_usage:
            if rb.full:
                inds = (np.random.randint(1, rb.buffer_size, size=batch_size) + rb.pos) % rb.buffer_size
            else:
                inds = np.random.randint(0, rb.pos, size=batch_size)
        else:
            inds = np.random.randint(0, rb.buffer_size if rb.full else rb.pos, size=batch_size)
        envs = np.random.randint(0, rb.n_envs, size=batch_size)
        data = rb.samples_at(inds, envs, env=self._vec_normalize_env)
        return data, self._bootstrap_masks[th.as_tensor(inds, device=self.device)].float()

    def _combine_losses(self, per_head: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
        if weights is None:
            return per_head.mean()
        per_member = (per_head * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1.0)
        return per_member.mean()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_bootstrap_masks"]

    def learn(self, total_timesteps: int, callback=None, log_interval: int = 4, tb_log_name: str = "EnsembleIQN",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)
