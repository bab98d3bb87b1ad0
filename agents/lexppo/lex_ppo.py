"""LexPPO: PPO that follows a preorder over objectives, with one critic per objective.

Lexicographic PPO (LPPO) of Skalse, Hammond, Griffin and Abate, "Lexicographic Multi-Objective
Reinforcement Learning" (IJCAI 2022, arXiv 2212.13769; its policy-based algorithms LPPO / LA2C), generalised from a
total order to a :class:`~morl.preorder.Preorder` (ties and incomparable objectives).

**The problem.** With ``K_k(θ)`` the value of objective k under the policy π_θ, objective i
is maximised subject to the objectives above it staying within a slack of what they can reach::

    max_θ K_i(θ)   subject to   K_j(θ) ≥ k_j − ε_j   for every j strictly above i          (P_i)

and the Lagrangian of (P_i) is ``L_i(θ, λ) = K_i(θ) + Σ_{j ≻ i} λ_j (K_j(θ) − k_j + ε_j)``, λ ≥ 0.

**The update implemented: the paper's Lagrangian form, all stages at once (multi-timescale).**
The paper solves the stages simultaneously: θ ascends ``Σ_i β_i L_i`` and each multiplier descends its
Lagrangian, on a slower timescale. With one multiplier per constrained objective,
``∇_θ Σ_i β_i L_i = Σ_k c_k ∇_θ K_k`` with::

    c_k = β_k + λ_k · Σ_{i : k ≻ i} β_i                                                      (1)
    λ_k ← clip(λ_k + η · (k̂_k − ε_k − Ĵ_k) / σ_k, 0, λ_max)        once per rollout          (2)

(1) is the weight the authors' implementation of LPPO puts on each objective's advantage (there with
β_k decreasing down the order); (2) is projected dual ascent on
the constraint of (P_i). The policy step is PPO's clipped surrogate (Schulman et al. 2017, eq. 7) on the
combined advantage ``Â = Σ_k c_k Â_k / Σ_k c_k`` of the per-objective GAE advantages ``Â_k`` (each
normalised over the minibatch when ``normalize_advantage``), so with one objective it is PPO's update.
The critic is fitted per objective (the mean of the per-objective squared errors).

**Choices where the paper leaves it open (ours):**

- ``Ĵ_k`` is the rollout's mean per-step reward of objective k (no critic in the constraint, so the
  multiplier does not chase the critic's errors); ``σ_k`` is its standard deviation over the rollout
  (at least 1e-6), which makes η free of the objective's units.
- ``k̂_k`` (the paper's ``k_j``, the best attainable value) is a fixed ``references[k]`` when given (a
  threshold, as in thresholded lexicographic RL), else the running best of an exponential average of
  ``Ĵ_k`` (``reference_decay``); while any objective above k violates its constraint, or its reference
  rose (a stricter constraint), the running best of k is reset to the current average, because ``k_j``
  is the best *subject to the constraints above*. The
  running best is what the policy has reached, not what it could reach: with equal weights β a top
  objective is held near its best so far, and driven further only by its own advantage. Where the best
  is known (no safety cost: 0), give it as a reference.
- Slacks: ``ε_k = slack_k`` (absolute) or ``slack_k · |k̂_k|`` (relative), per objective.
- General preorders: "j above i" is the preorder's strict relation, read through
  :meth:`Preorder.strictly_prefers` on unit score vectors. Tied objectives (a shared level) and
  incomparable objectives constrain each other in no way: neither is in the other's (P_i), so neither
  multiplier carries the other's β in (1); each is maximised with its own weight β (``objective_weights``,
  1 by default: the same for every objective, so nothing is ordered by a weight). The multiplier of an
  objective with nothing below it is never used and stays 0. A multiplier responds to its objective's
  value whatever lowered it: the policy is shared by every stage.
- The sums over objectives run in the order of the objective names, so permuting the reward vector
  (and the critic's outputs with it) gives the same update.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import explained_variance

from morl.agents.lexppo.policies import LexActorCriticCnnPolicy, LexActorCriticPolicy, vector_value_policy
from morl.agents.lexppo.rollout import VecVectorReward, VectorRolloutBuffer
from morl.agent_env import env_preorder
from morl.buffers import log_vector_returns, update_info_buffer_at_ends
from morl.ppo import ppo_epochs, ppo_loss
from morl.preorder import Preorder
from morl.rollout import ArrayRollouts
from morl.registry import import_callable

__all__ = ["LexPPO", "lexicographic_weights", "strictly_above"]

SLACK_KINDS = ("absolute", "relative")


def strictly_above(preorder: Preorder) -> np.ndarray:
    """``above[j, i]``: objective j has strictly higher precedence than i, read from the preorder's
    public comparison: the unit score vector of j is strictly preferred to that of i exactly then."""
    eye = np.eye(preorder.m)
    return np.array([[j != i and preorder.strictly_prefers(eye[j], eye[i]) for i in range(preorder.m)]
                     for j in range(preorder.m)], dtype=bool)


def lexicographic_weights(above: np.ndarray, multipliers, betas) -> np.ndarray:
    """Eq. (1): ``c_k = β_k + λ_k · Σ_{i : k ≻ i} β_i``, the weight of objective k's advantage."""
    betas = np.asarray(betas, dtype=np.float64)
    return betas + np.asarray(multipliers, dtype=np.float64) * (above.astype(np.float64) @ betas)


class LexPPO(ArrayRollouts, PPO):
    """PPO with one critic per objective and a policy step that follows the env's preorder.

    :param policy: ``"MlpPolicy"`` / ``"CnnPolicy"`` (the vector-value policies of
        :mod:`morl.agents.lexppo.policies`), an ``ActorCriticPolicy`` subclass, or a ``"package.module:Class"``
        reference to one (e.g. ``"morl.agents.carl.policies:BetaPolicy"``); a class without a vector value head
        gets one (:func:`~morl.agents.lexppo.policies.vector_value_policy`).
    :param env: a VecEnv (or anything SB3 accepts) whose envs report ``info["vector_reward"]`` or keep a
        ``vector_rewards`` array; it is wrapped in :class:`~morl.agents.lexppo.rollout.VecVectorReward`.
    :param preorder: a :class:`~morl.preorder.Preorder` or what :meth:`Preorder.parse` reads; ``None``
        reads the env's ``preorder`` attribute. Reindexed to the env's ``objectives``.
    :param slacks: ε per objective: one number for all, or a mapping objective -> number that names
        every objective with an objective below it.
    :param slack_kind: ``"absolute"`` (ε_k = slack_k) or ``"relative"`` (ε_k = slack_k · |k̂_k|), one
        for all or a mapping like ``slacks``.
    :param references: fixed k̂_k per objective (mapping objective -> value), e.g. ``{safety: 0.0}``;
        objectives not named track their running best.
    :param objective_weights: β_k per objective (mapping objective -> positive number, default 1).
    :param multiplier_lr: η of eq. (2).
    :param max_multiplier: λ_max of eq. (2).
    :param reference_decay: decay of the exponential average of Ĵ_k that the running best reads.
    Other parameters are SB3 ``PPO``'s, with its defaults.
    """

    policy_aliases: ClassVar[dict[str, type]] = {"MlpPolicy": LexActorCriticPolicy,
                                                  "CnnPolicy": LexActorCriticCnnPolicy}

    def __init__(
        self,
        policy: str | type = "MlpPolicy",
        env=None,
        preorder: Preorder | str | list | None = None,
        slacks: float | Mapping[str, float] = 0.05,
        slack_kind: str | Mapping[str, str] = "relative",
        references: Mapping[str, float] | None = None,
        objective_weights: Mapping[str, float] | None = None,
        multiplier_lr: float = 0.5,
        max_multiplier: float = 100.0,
        reference_decay: float = 0.9,
        learning_rate=3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range=0.2,
        clip_range_vf=None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        target_kl: float | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        _init_setup_model: bool = True,
        **kwargs,
    ):
        for key in ("rollout_buffer_class", "rollout_buffer_kwargs"):
            if kwargs.get(key) is not None:
                raise ValueError(f"LexPPO uses its own rollout buffer (VectorRolloutBuffer); {key} cannot be set")
        if isinstance(policy, str) and ":" in policy:
            try:
                policy = import_callable(policy)
            except ValueError as exc:
                raise ValueError(f"policy {policy!r}: {exc}") from None
        if isinstance(policy, type):
            policy = vector_value_policy(policy)
        self.preorder = preorder
        self.slacks, self.slack_kind, self.references_given = slacks, slack_kind, references
        self.objective_weights = objective_weights
        if not multiplier_lr >= 0 or not max_multiplier >= 0 or not 0.0 <= reference_decay < 1.0:
            raise ValueError(f"need multiplier_lr >= 0, max_multiplier >= 0 and 0 <= reference_decay < 1, got "
                             f"{multiplier_lr}, {max_multiplier}, {reference_decay}")
        self.multiplier_lr, self.max_multiplier = float(multiplier_lr), float(max_multiplier)
        self.reference_decay = float(reference_decay)
        super().__init__(policy, env, learning_rate=learning_rate, n_steps=n_steps, batch_size=batch_size,
                         n_epochs=n_epochs, gamma=gamma, gae_lambda=gae_lambda, clip_range=clip_range,
                         clip_range_vf=clip_range_vf, normalize_advantage=normalize_advantage, ent_coef=ent_coef,
                         vf_coef=vf_coef, max_grad_norm=max_grad_norm, target_kl=target_kl,
                         policy_kwargs=policy_kwargs, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    @staticmethod
    def _wrap_env(env, verbose: int = 0, monitor_wrapper: bool = True):
        env = OnPolicyAlgorithm._wrap_env(env, verbose, monitor_wrapper)
        return env if isinstance(env, VecVectorReward) else VecVectorReward(env)

    def get_env(self):
        """The env as given (scalar rewards), without the vector-reward wrapper the rollouts read, so
        ``evaluate_policy(model, model.get_env())`` and callbacks see SB3's usual VecEnv."""
        return self.env.venv if isinstance(self.env, VecVectorReward) else self.env

    # ------------------------------------------------------------------ setup
    def _resolve_preorder(self) -> Preorder:
        return env_preorder(self.env, self.preorder, "LexPPO")

    def _per_objective(self, name: str, spec, default, valid, what: str, required: bool) -> np.ndarray | list:
        """``spec`` (one value, or a mapping objective -> value) as one entry per objective.

        :param required: every objective with an objective below it must be named in a mapping.
        """
        names = self.preorder.objectives
        if not isinstance(spec, Mapping):
            values = [spec] * len(names)
        else:
            unknown = [k for k in spec if k not in names]
            if unknown:
                raise ValueError(f"{name}: unknown objective {unknown[0]!r} (objectives: {', '.join(names)})")
            missing = [n for k, n in enumerate(names) if required and self._above[k].any() and n not in spec]
            if missing:
                raise ValueError(f"{name} must name every objective with an objective below it: missing {missing[0]!r}")
            values = [spec.get(n, default) for n in names]
        for n, v in zip(names, values):
            given = spec.get(n) if isinstance(spec, Mapping) else spec
            if n in (spec if isinstance(spec, Mapping) else names) and not valid(given):
                raise ValueError(f"{name}[{n!r}] must be {what}, got {given!r}")
        return values

    def _setup_model(self) -> None:
        if isinstance(self.observation_space, spaces.Dict):
            raise ValueError("LexPPO needs a Box (or discrete) observation space, got a Dict space")
        self.preorder = self._resolve_preorder()
        m = self.preorder.m
        self._above = strictly_above(self.preorder)
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)  # noqa: E731
        self._slack = np.array(self._per_objective("slacks", self.slacks, None, lambda v: number(v) and v >= 0,
                                                   "a number >= 0", True), dtype=np.float64)
        self._relative = np.array([k == "relative" for k in self._per_objective(
            "slack_kind", self.slack_kind, None, lambda v: v in SLACK_KINDS, f"one of {SLACK_KINDS}", True)])
        refs = self.references_given or {}
        if not isinstance(refs, Mapping):
            raise ValueError(f"references must be a mapping objective -> value, got {refs!r}")
        self._fixed_reference = np.array(self._per_objective("references", refs, np.nan, number, "a number", False),
                                         dtype=np.float64)
        self._betas = np.array(self._per_objective("objective_weights", self.objective_weights or {}, 1.0,
                                                   lambda v: number(v) and v > 0, "a number > 0", False),
                               dtype=np.float64)
        if not hasattr(self, "multipliers"):  # a loaded model keeps its multipliers and references
            self.multipliers = np.zeros(m)
            self.reference = self._fixed_reference.copy()
            self._average = np.full(m, np.nan)
        self._order = th.as_tensor(np.argsort(np.array(self.preorder.objectives)), device=self.device)
        self._vector_carry = None
        self.rollout_buffer_class = VectorRolloutBuffer
        self.rollout_buffer_kwargs = {"reward_dim": m, "sample_vectors": True}
        self.policy_kwargs = {**self.policy_kwargs, "n_objectives": m}
        super()._setup_model()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_order", "_vector_carry"]

    def _update_info_buffer(self, infos, dones=None) -> None:
        update_info_buffer_at_ends(self, infos, dones)  # SB3's, reading the ended envs' infos only

    # ------------------------------------------------------------------ constraints, eq. (2)
    def _update_multipliers(self) -> None:
        """One step of eq. (2) on the rollout just collected, objectives in order of precedence."""
        rewards = self.rollout_buffer.vector_rewards  # (T, n_envs, m)
        j_hat = rewards.mean(axis=(0, 1), dtype=np.float64)
        sigma = np.maximum(rewards.std(axis=(0, 1), dtype=np.float64), 1e-6)
        first = np.isnan(self._average)
        tau = self.reference_decay
        self._average = np.where(first, j_hat, tau * self._average + (1.0 - tau) * j_hat)
        violated = np.zeros(self.preorder.m, dtype=bool)
        tightened = np.zeros(self.preorder.m, dtype=bool)  # the reference rose: a stricter constraint below it
        for level in self.preorder.levels:  # higher objectives first: they reset the references below them
            for k in map(self.preorder.index, level):
                old = self.reference[k]
                if not np.isnan(self._fixed_reference[k]):
                    self.reference[k] = self._fixed_reference[k]
                elif np.isnan(old) or (self._above[:, k] & (violated | tightened)).any():
                    self.reference[k] = self._average[k]
                else:
                    self.reference[k] = max(old, self._average[k])
                tightened[k] = not np.isnan(old) and self.reference[k] > old
                eps = self._slack[k] * (abs(self.reference[k]) if self._relative[k] else 1.0)
                gap = self.reference[k] - eps - j_hat[k]
                violated[k] = gap > 0
                if self._above[k].any():  # only an objective with one below it is a constraint
                    step = self.multipliers[k] + self.multiplier_lr * gap / sigma[k]
                    self.multipliers[k] = float(np.clip(step, 0.0, self.max_multiplier))
        for k, name in enumerate(self.preorder.objectives):
            self.logger.record(f"train/reward_rate/{name}", float(j_hat[k]))
            self.logger.record(f"train/reference/{name}", float(self.reference[k]))
            if self._above[k].any():
                self.logger.record(f"train/multiplier/{name}", float(self.multipliers[k]))

    def combination_weights(self) -> np.ndarray:
        """Eq. (1) with the current multipliers: one weight per objective, in objective order."""
        return lexicographic_weights(self._above, self.multipliers, self._betas)

    # ------------------------------------------------------------------ update
    def _combined_advantage(self, advantages: th.Tensor, weights: th.Tensor) -> th.Tensor:
        """``Σ_k c_k Â_k / Σ_k c_k`` over the objectives in name order (``weights`` already in that order)."""
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean(dim=0)) / (advantages.std(dim=0) + 1e-8)
        if advantages.shape[1] > 1:
            advantages = advantages.index_select(1, self._order)
        return (advantages * weights).sum(dim=1) / weights.sum()

    def train(self) -> None:
        """Eq. (2), then PPO's update (:func:`morl.ppo.ppo_loss`: the clipped surrogate, Schulman et al. 2017,
        eq. 7) on the combined advantage of eq. (1) over ``n_epochs`` passes."""
        self._vector_carry = log_vector_returns(self.rollout_buffer, self.logger, self.preorder.objectives,
                                                self._vector_carry)
        self._update_multipliers()
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        weights = self.combination_weights()
        weights_t = th.as_tensor(weights, dtype=th.float32, device=self.device)[self._order]

        def minibatch_loss(batch):
            actions = batch.actions
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.long().flatten()
            values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, actions)
            advantages = self._combined_advantage(batch.vector_advantages, weights_t)
            if clip_range_vf is not None:
                values = batch.vector_values + th.clamp(values - batch.vector_values, -clip_range_vf, clip_range_vf)
            value_loss = F.mse_loss(batch.vector_returns, values)  # mean over samples and objectives
            return ppo_loss(advantages, log_prob, batch.old_log_prob, entropy, value_loss, clip_range,
                            self.ent_coef, self.vf_coef)

        ppo_epochs(self, minibatch_loss)
        buffer = self.rollout_buffer
        for k, name in enumerate(self.preorder.objectives):
            self.logger.record(f"train/weight/{name}", float(weights[k] / weights.sum()))
            self.logger.record(f"train/explained_variance/{name}", explained_variance(
                buffer.vector_values[..., k].ravel(), buffer.vector_returns[..., k].ravel()))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        self.logger.record("train/learning_rate", self.policy.optimizer.param_groups[0]["lr"])
