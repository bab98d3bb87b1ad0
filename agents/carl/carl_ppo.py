"""CaRL PPO: large-minibatch PPO with a Beta policy (Jaeger et al. 2025, arXiv 2504.17838).

Defaults are the authors' "Atari-style" settings:
learning rate 2.5e-4 decayed linearly to 0, γ 0.99, λ 0.95, clip 0.1 with value clipping, entropy
0.01, value 0.5, gradient norm 0.5, 3 epochs, normalised advantages, Adam ε 1e-5, and a Beta policy
whose evaluation acts on the mean.

What differs from SB3's ``PPO.train``:

- value clipping is CleanRL's / CaRL's ``0.5 · max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²)``
  (SB3 takes only the clipped term);
- losses are accumulated on the device and read once per update, and the rollout goes to the
  device once per update (:class:`morl.buffers.DeviceRolloutBuffer`, which :class:`~morl.buffers.MORolloutBuffer`
  extends), so a CUDA run does not synchronise after every minibatch;
- on an array-step VecEnv (the batched simulator) rollouts are collected without per-env Python work
  (:mod:`morl.rollout`), with the same buffer contents as SB3's ``collect_rollouts``;
- per-objective returns are logged (``rollout/vector_return/<objective>``) through
  :class:`morl.buffers.MORolloutBuffer` whenever the env reports ``info["vector_reward"]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.utils import explained_variance

from morl.agents.carl.policies import BetaPolicy
from morl.agent_env import FitsVectorEnvOnLoad, agent_env
from morl.evaluate import with_objective_logger
from morl.ppo import ppo_epochs, ppo_loss
from morl.rollout import ArrayRollouts
from morl.buffers import (
    DeviceRolloutBuffer,
    MORolloutBuffer,
    VectorRewardCallback,
    log_vector_returns,
    update_info_buffer_at_ends,
)

__all__ = ["CaRLPPO", "clipped_value_loss", "linear_schedule"]


def clipped_value_loss(values: th.Tensor, old_values: th.Tensor, returns: th.Tensor, eps: float | None) -> th.Tensor:
    """CaRL's / CleanRL's value loss ``0.5 · mean(max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²))``.

    ``eps=None`` gives the unclipped ``0.5 · mean((V − R)²)``.
    """
    err = (values - returns) ** 2
    if eps is not None:
        clipped = old_values + th.clamp(values - old_values, -eps, eps)
        err = th.max(err, (clipped - returns) ** 2)
    return 0.5 * err.mean()


class linear_schedule:  # noqa: N801 (a picklable callable used like a function)
    """``lr(progress_remaining) = initial · progress_remaining``: linear decay to 0 over training."""

    def __init__(self, initial: float):
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining

    def __repr__(self) -> str:
        return f"linear_schedule({self.initial})"


class CaRLPPO(ArrayRollouts, FitsVectorEnvOnLoad, PPO):
    """PPO with CaRL's defaults and a Beta policy for ``Box`` actions.

    :param policy: ``"BetaPolicy"`` (default for ``Box`` actions) or any SB3 PPO policy alias/class;
        ``"MlpPolicy"`` maps to ``BetaPolicy`` for ``Box`` actions and to SB3's for discrete ones.
    :param env: the environment (a VecEnv or anything SB3 accepts).
    :param learning_rate: initial learning rate, decayed linearly to 0 (or an SB3 schedule).
    :param n_steps: rollout steps per env; the rollout holds ``n_steps · n_envs`` samples.
    :param batch_size: minibatch size (CaRL scales this to 16,384; the default keeps 4 minibatches in a
        one-env rollout of the default n_steps, so loading a model onto one env does not warn).
    :param n_epochs: epochs per rollout (CaRL: 3).
    :param clip_range: policy clip ε (CaRL: 0.1); value clipping uses the same ε unless
        ``clip_range_vf`` is given; ``clip_range_vf=0`` turns value clipping off.
    :param log_vector_returns: log per-objective returns from ``info["vector_reward"]`` (needs the env
        to report it; turn off for envs that do not).

    Other parameters are SB3 ``PPO``'s, with CaRL's defaults.
    """

    policy_aliases: ClassVar[dict[str, type]] = {
        "BetaPolicy": BetaPolicy,
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }

    def __init__(
        self,
        policy: str | type = "BetaPolicy",
        env=None,
        learning_rate=2.5e-4,
        n_steps: int = 512,
        batch_size: int = 256,
        n_epochs: int = 3,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float = 0.1,
        clip_range_vf: float | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.01,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        log_vector_returns: bool = True,
        policy_kwargs: dict[str, Any] | None = None,
        rollout_buffer_class=None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ):
        env = agent_env(env, type(self).__name__, weights_needed=True)
        if env is not None and policy == "MlpPolicy" and isinstance(getattr(env, "action_space", None), spaces.Box):
            policy = "BetaPolicy"
        policy_kwargs = dict(policy_kwargs or {})
        policy_kwargs.setdefault("optimizer_kwargs", {"eps": 1e-5})
        if isinstance(learning_rate, (int, float)):
            learning_rate = linear_schedule(learning_rate)
        self.log_vector_returns = log_vector_returns
        if rollout_buffer_class is None and log_vector_returns:
            rollout_buffer_class = MORolloutBuffer
            # the vectors are only logged: minibatches without them (train reads SB3's fields)
            rollout_buffer_kwargs = {"sample_vectors": False, **(rollout_buffer_kwargs or {})}
        super().__init__(
            policy, env, learning_rate=learning_rate, n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs,
            gamma=gamma, gae_lambda=gae_lambda, clip_range=clip_range,
            clip_range_vf=clip_range if clip_range_vf is None else (clip_range_vf or None),
            normalize_advantage=normalize_advantage, ent_coef=ent_coef, vf_coef=vf_coef, max_grad_norm=max_grad_norm,
            policy_kwargs=policy_kwargs, rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs, **kwargs,
        )

    def _setup_model(self) -> None:
        if self.rollout_buffer_class is None and not isinstance(self.observation_space, spaces.Dict):
            self.rollout_buffer_class = DeviceRolloutBuffer  # SB3's minibatches, cut on the device
        super()._setup_model()

    _log_vectors_here = False  # set by learn()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_vector_carry", "_log_vectors_here", "_vector_names"]

    def _objective_names(self):
        try:
            return tuple(self.env.get_attr("objectives")[0])
        except (AttributeError, IndexError):
            return None

    def learn(self, total_timesteps: int, callback=None, log_interval: int = 1, tb_log_name: str = "CaRLPPO",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        self._vector_carry, self._log_vectors_here = None, False
        callback = with_objective_logger(callback, self.env)  # rollout/return_<objective>, by default
        if isinstance(self.rollout_buffer, MORolloutBuffer):
            if self.rollout_buffer.read_vector_rewards_from(self.env):
                # a batched env keeps the step's vectors in one array that the buffer reads itself:
                # no per-step callback; collect_rollouts logs them
                self._log_vectors_here, self._vector_names = True, self._objective_names()
            else:
                vector_cb = VectorRewardCallback(objectives=self._objective_names())
                callback = vector_cb if callback is None else CallbackList(
                    [vector_cb, *(callback if isinstance(callback, list) else [callback])])
        return super().learn(total_timesteps, callback=callback, log_interval=log_interval, tb_log_name=tb_log_name,
                             reset_num_timesteps=reset_num_timesteps, progress_bar=progress_bar)

    def collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps: int) -> bool:
        complete = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        if complete and self._log_vectors_here:
            self._vector_carry = log_vector_returns(rollout_buffer, self.logger, self._vector_names,
                                                    self._vector_carry)
        return complete

    def _update_info_buffer(self, infos, dones=None) -> None:
        update_info_buffer_at_ends(self, infos, dones)  # SB3's, reading the ended envs' infos only

    def _minibatch_loss(self, batch, eps: float, eps_vf: float | None) -> tuple[th.Tensor, th.Tensor]:
        """PPO loss on one minibatch and its statistics, both on the device (nothing is read back).

        :return: ``(loss, stats)`` with ``stats = [policy loss, value loss, entropy loss, clip fraction,
            approx KL]`` (detached).
        """
        actions = batch.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, actions)
        values = values.flatten()
        adv = batch.advantages
        if self.normalize_advantage and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        value_loss = clipped_value_loss(values, batch.old_values, batch.returns, eps_vf)
        return ppo_loss(adv, log_prob, batch.old_log_prob, entropy, value_loss, eps, self.ent_coef, self.vf_coef)

    def train(self) -> None:
        """One PPO update over the rollout: ``n_epochs`` passes of minibatches of ``batch_size``."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        eps = self.clip_range(self._current_progress_remaining)
        eps_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        ppo_epochs(self, lambda batch: self._minibatch_loss(batch, eps, eps_vf))
        self.logger.record("train/explained_variance",
                           explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", eps)
        self.logger.record("train/learning_rate", self.policy.optimizer.param_groups[0]["lr"])

