"""QD-IQN: IQN with one return distribution per objective, acting through a preorder.

"Beyond Scalar Rewards: Distributional RL with Preordered Objectives for Safe and Reliable
Autonomous Driving" (Abouelazm, Michel et al., ICRA 2026, arXiv 2603.20230; the authors call it
Pr-IQN). Its method section is not available; this is our reconstruction from its abstract, IQN (Dabney et
al. 2018, arXiv 1806.06923) and lexicographic DQN (Skalse et al. 2022), with every open choice a documented parameter.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from morl.agents.iqn.iqn import IQN
from morl.agents.iqn.qd_policies import (
    TIE_BREAKS,
    QDCnnPolicy,
    QDIQNPolicy,
    QDMlpPolicy,
    QDMultiInputPolicy,
    check_thresholds,
)
from morl.agent_env import env_preorder
from morl.dominance import check_rule, check_theta, staged_subsets
from morl.preorder import Preorder
from morl.replay import MOReplayBuffer

__all__ = ["QDIQN"]

TARGET_MODES = ("shared", "per_objective")


class QDIQN(IQN):
    """Preordered multi-objective IQN with quantile-dominance action filtering.

    One IQN quantile head per objective on a shared trunk (state embedding, cosine tau embedding,
    hidden layers), trained on the reward vector that :class:`morl.replay.MOReplayBuffer` keeps
    from ``info["vector_reward"]``. Per objective ``k`` (paper: Pr-MOMDP with a preorder over the
    reward components)::

        C*(s)    = optimal_subset(Z(s, .; tau_grid), preorder, theta, delta, subset_rule)   morl.dominance
        a(s)     = tie_break(C*(s))                                                acting (greedy)
        y_k,j    = r_k + gamma_k (1 - done) Z_target,k(s', a*_k; tau'_j)           Bellman target
        loss     = sum_k w_k QuantileHuber(Z_k(s, a; tau_1..N), y_k,1..N')

    Choices the paper leaves open (ours; each a parameter):

    - ``theta`` / ``delta``: quantile-dominance threshold and per-objective indifference margins
      (``delta`` in each objective's return units; a scalar applies to all). Default ``theta=0.75``:
      a majority of three quarters of the quantiles must be better by more than ``delta_k``.
    - ``subset_rule``: ``"staged"`` (default) eliminates stage by stage through the preorder's levels, the
      paper's "actions that remain non-dominated under each objective"; ``"rulebook"`` keeps the actions no
      action is preferred to under the rulebook relation, every pair compared. For a strict chain
      (``safety > rules > progress > comfort``) staged is lexicographic elimination; the two differ where an
      action removed at a higher level still beats a survivor lower down (``morl.dominance`` has examples).
    - ``target_mode="shared"`` (default): one next action ``a* = tie_break(C*(s'))`` for every
      objective, the action the greedy policy would take, so each head learns the return of the
      executed policy. ``"per_objective"``: ``a*_k = argmax`` of objective ``k``'s mean over the
      actions left before the stage of ``k`` (``morl.dominance.staged_subsets``), so a low-precedence head
      learns its best value inside what the higher levels admit; it needs ``subset_rule="staged"``.
    - ``tie_break`` inside the subset: ``"lowest_mean"`` (default; argmax of the mean of the
      lowest-precedence level, summed over its objectives — deterministic, as in thresholded
      lexicographic Q-learning, which spends the leftover freedom on the last objective),
      ``"sum_mean"`` (argmax of the sum of all means) or ``"random"`` (uniform in the subset).
    - ``double_q`` / ``select_taus`` (from :class:`~morl.agents.iqn.IQN`): the subset of ``s'`` is
      computed on the target network (default) or the online one, on the deterministic tau grid
      (default) or on sampled fractions. Acting always uses the grid, so QD compares every action
      at the same fractions and ``predict`` is deterministic.
    - ``risk_eta`` (from :class:`~morl.agents.iqn.IQN`): QD compares the quantiles on the grid over
      ``(0, risk_eta]``. With the full grid (``1``, default) and ``theta = 0.75`` an action whose
      collision risk is below 75 % is never dominated on safety (its upper quantiles equal the safe
      action's); on ``(0, eta]`` a risk ``p`` shows on a fraction ``p / eta`` of the grid, so
      ``eta = 0.25`` exposes risks from about 19 %. This is CVaR-style distortion (IQN Sec. 3.1), ours.
    - ``thresholds``: per-objective satisfaction thresholds (``None`` or ``null`` entries: none; default
      none). Quantile dominance then compares ``min(Z_k, thresholds[k])``: every return above an objective's
      threshold counts as equally good, so that objective no longer separates actions that all satisfy it
      and the lower levels decide. This is the thresholded lexicographic ordering of Gabor, Kalmar and
      Szepesvari (ICML 1998) applied quantile by quantile (ours). Without it, ``safety > ... > progress``
      has standing still as its optimum wherever a stopped car is never hit: any motion lowers the safety
      return a little (TTC shaping), and a small ``delta`` lets that difference prune every moving action.
    - ``objective_weights``: the per-objective loss weights ``w_k`` (default all 1). On a shared trunk these
      weights set how much each objective's error shapes the features: a safety return in ``[-1, 0]`` gives
      much smaller quantile-Huber gradients than a progress return in the hundreds.
    - ``policy_kwargs={"separate_trunks": True}``: one trunk (state embedding, tau embedding, hidden layers)
      per objective, so no objective's loss shapes another's features, at m times the network cost. Default
      shared, as one IQN with m outputs.
    - ``objective_gammas``: one discount per objective (default ``None``: ``gamma`` for all). A Pr-MOMDP may
      give its objectives different horizons, which a scalarised agent cannot (its one return has one
      discount).
    - ``n_steps``: n-step returns of the reward vector (default 1). With ``n_steps > 1`` the replay buffer
      (:class:`morl.replay.MOReplayBuffer`) sums each objective's rewards over up to n steps with its own
      discount and the target bootstraps with ``gamma_k ** L`` (``L <= n`` stops at the episode's end).
    - ``objective_risk_etas``: one CVaR level per objective (default ``None``: ``risk_eta`` for all). A single
      level makes every objective risk-averse, progress included, where a risky action's lower tail also holds
      the episodes it ends early, so the safety level's penalty is counted twice. With ``[0.25, 1, 1, 1]`` only
      safety compares its lower quarter; the others compare their whole distribution. The acting and selection
      grid then holds one block of ``K`` fractions per distinct level (``L K`` rows instead of ``K``).

    With one objective, ``theta=1`` and any ``delta >= 0``, the subset always holds the greedy
    action (an action that dominates it at every quantile would have a larger mean), so the
    targets equal :class:`~morl.agents.iqn.IQN`'s; for ``theta < 1`` they may differ.

    The mean optimal-subset size is logged as ``train/optimal_subset_size`` (in the targets) and
    ``rollout/optimal_subset_size`` (when acting).

    :param policy: "MlpPolicy", "CnnPolicy", "MultiInputPolicy" or a :class:`QDIQNPolicy` subclass.
    :param env: environment with ``info["vector_reward"]`` (e.g. wrapped in ``morl.wrappers.Scalarize``), or a
        Gymnasium env whose reward is the vector (scalarised here, see :func:`morl.agent_env.agent_env`).
    :param preorder: a :class:`~morl.preorder.Preorder` or a string / levels it parses; ``None``
        reads ``env.get_attr("preorder")``. Reindexed to ``env.get_attr("objectives")`` when the env
        has them; otherwise its objective order is the order of the reward vector.
    :param theta: QD threshold in (0.5, 1].
    :param delta: indifference margin, a scalar or one per objective.
    :param subset_rule: "staged" or "rulebook".
    :param target_mode: "shared" or "per_objective".
    :param tie_break: "lowest_mean", "sum_mean" or "random".
    :param thresholds: satisfaction threshold per objective (``None`` entries: none), or ``None``.
    :param objective_weights: loss weight per objective (``None``: all 1).
    :param objective_gammas: discount per objective (``None``: ``gamma`` for all).
    :param objective_risk_etas: CVaR level per objective in (0, 1] (``None``: ``risk_eta`` for all); not with
        ``risk_eta``.
    :param kwargs: every :class:`~morl.agents.iqn.IQN` parameter.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": QDMlpPolicy,
        "CnnPolicy": QDCnnPolicy,
        "MultiInputPolicy": QDMultiInputPolicy,
    }
    policy: QDIQNPolicy
    trains_on_scalar_reward: ClassVar[bool] = False  # the reward vector, from info["vector_reward"]

    def __init__(
        self,
        policy: str | type[QDIQNPolicy],
        env: GymEnv | str | None,
        preorder: Preorder | str | list | None = None,
        theta: float = 0.75,
        delta: float | tuple[float, ...] = 0.0,
        target_mode: str = "shared",
        subset_rule: str = "staged",
        tie_break: str = "lowest_mean",
        objective_weights: tuple[float, ...] | None = None,
        thresholds: tuple[float | None, ...] | None = None,
        objective_gammas: tuple[float, ...] | None = None,
        objective_risk_etas: tuple[float, ...] | None = None,
        learning_rate: float | Schedule = 5e-5,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ):
        if target_mode not in TARGET_MODES:
            raise ValueError(f"target_mode must be one of {TARGET_MODES}, got {target_mode!r}")
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        self.preorder = preorder
        self.theta = check_theta(theta)  # checked here too, so a bad config fails before training
        self.delta = delta
        self.target_mode = target_mode
        self.subset_rule = check_rule(subset_rule)
        if target_mode == "per_objective" and subset_rule != "staged":
            raise ValueError("target_mode='per_objective' reads the admissible actions of each objective from the "
                             f"stages of subset_rule='staged', got subset_rule={subset_rule!r}")
        self.tie_break = tie_break
        self.objective_weights = objective_weights
        self.thresholds = thresholds
        self.objective_gammas = objective_gammas
        self.objective_risk_etas = objective_risk_etas
        if objective_risk_etas is not None and float(kwargs.get("risk_eta", 1.0)) != 1.0:
            raise ValueError("give either risk_eta (one CVaR level for every objective) or objective_risk_etas (one "
                             f"per objective), not both: got risk_eta={kwargs['risk_eta']} and "
                             f"objective_risk_etas={objective_risk_etas}")
        super().__init__(policy, env, learning_rate=learning_rate, _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ setup
    def _resolve_preorder(self) -> Preorder:
        return env_preorder(self.env, self.preorder, "QDIQN")

    def _setup_model(self) -> None:
        self.preorder = self._resolve_preorder()
        m = self.preorder.m
        delta = (self.delta,) * m if isinstance(self.delta, (int, float)) else self.delta
        self.delta = self._per_objective("delta", delta, "non-negative margins", lambda d: float(d) >= 0)
        weights = (1.0,) * m if self.objective_weights is None else self.objective_weights
        self.objective_weights = self._per_objective("objective_weights", weights, "entries")
        if self.objective_gammas is not None:
            self.objective_gammas = self._per_objective(
                "objective_gammas", self.objective_gammas, "discounts in [0, 1]",
                lambda g: isinstance(g, (int, float)) and not isinstance(g, bool) and 0.0 <= g <= 1.0)
        if self.objective_risk_etas is not None:
            self.objective_risk_etas = self._per_objective(
                "objective_risk_etas", self.objective_risk_etas, "CVaR levels in (0, 1]",
                lambda e: isinstance(e, (int, float)) and not isinstance(e, bool) and 0.0 < e <= 1.0)
        if self.replay_buffer_class is None:
            self.replay_buffer_class = MOReplayBuffer
        if isinstance(self.replay_buffer_class, type) and issubclass(self.replay_buffer_class, MOReplayBuffer):
            self.replay_buffer_kwargs = dict(self.replay_buffer_kwargs)  # the caller's dict stays as it was
            self.replay_buffer_kwargs.setdefault("reward_dim", m)
        self.thresholds = check_thresholds(self.thresholds, self.preorder)
        self.policy_kwargs.update(preorder=self.preorder, theta=self.theta, delta=self.delta, tie_break=self.tie_break,
                                  subset_rule=self.subset_rule,
                                  thresholds=self.thresholds, objective_risk_etas=self.objective_risk_etas)
        super()._setup_model()
        self._weights_t = th.tensor(self.objective_weights, dtype=th.float32, device=self.device)
        self._gammas_t = None if self.objective_gammas is None else th.tensor(
            self.objective_gammas, dtype=th.float32, device=self.device).view(1, 1, m)
        # Level of each objective, and an all-true row, for the per-objective target.
        level_of = [0] * m
        for li, level in enumerate(self.preorder.level_indices):
            for k in level:
                level_of[k] = li
        self._level_of = th.tensor(level_of, dtype=th.long, device=self.device)
        self._subset_size_sum: float | th.Tensor = 0.0  # see QDIQNPolicy.mean_size
        self._subset_size_count = 0

    def _per_objective(self, name: str, values, what: str, valid=None) -> tuple[float, ...]:
        """``values`` as one float per objective, or a ValueError naming ``name``, the objectives and ``values``.

        :param valid: test of each given value (default: none beyond ``float`` taking it).
        """
        m, given = self.preorder.m, tuple(values)
        if len(given) != m or (valid is not None and not all(valid(v) for v in given)):
            raise ValueError(f"{name} needs {m} {what} ({', '.join(self.preorder.objectives)}), got {values}")
        return tuple(float(v) for v in given)

    # ------------------------------------------------------------------ training hooks
    def _rewards(self, replay_data) -> th.Tensor:
        rewards = replay_data.rewards
        m = self.preorder.m
        if rewards.dim() != 2 or rewards.shape[1] != m:
            raise ValueError(f"QDIQN needs vector rewards [batch, {m}] from the replay buffer, got "
                             f"{tuple(rewards.shape)}: use morl.replay.MOReplayBuffer and an env that puts "
                             "info['vector_reward']")
        return rewards

    def _n_step_kwargs(self) -> dict[str, Any]:
        return {**super()._n_step_kwargs(), "objective_gammas": self.objective_gammas}

    def _discounts(self, replay_data):
        """``gamma_k`` per objective ``[1, 1, m]``, ``gamma``, or the n-step buffer's ``[B, m]`` ``gamma_k ** L``."""
        if self._gammas_t is None or getattr(replay_data, "discounts", None) is not None:
            return super()._discounts(replay_data)
        return self._gammas_t

    def _next_actions(self, z_select: th.Tensor) -> th.Tensor:
        z_select = self.policy.objective_grid(z_select)
        batch, m = z_select.shape[0], z_select.shape[2]
        if self.target_mode == "shared":
            actions, mask = self.policy.select(z_select)
            self._subset_size_sum = self._subset_size_sum + self.policy.mean_size(mask)
            self._subset_size_count += 1
            return actions.unsqueeze(1).expand(batch, m)
        # per_objective: admissible set of objective k = subset after the levels strictly above k.
        subsets = staged_subsets(self.policy.dominance_quantiles(z_select).permute(0, 2, 3, 1), self.preorder,
                                self.theta, self.policy.delta_t)
        self._subset_size_sum = self._subset_size_sum + self.policy.mean_size(subsets[-1])
        self._subset_size_count += 1
        before = th.stack([th.ones_like(subsets[0]), *subsets[:-1]], dim=1)  # [B, L, A]
        admissible = before.index_select(1, self._level_of)  # [B, m, A]
        return z_select.mean(dim=1).masked_fill(~admissible, float("-inf")).argmax(dim=-1)

    def _combine_losses(self, per_head: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
        return (per_head * self._weights_t).sum(dim=1).mean()

    def _record_train_stats(self) -> None:
        if self._subset_size_count:
            self.logger.record("train/optimal_subset_size", float(self._subset_size_sum / self._subset_size_count))
            self._subset_size_sum = 0.0
            self._subset_size_count = 0
        if self.policy.subset_size_count:
            self.logger.record("rollout/optimal_subset_size",
                               float(self.policy.subset_size_sum / self.policy.subset_size_count))
            self.policy.subset_size_sum = 0.0
            self.policy.subset_size_count = 0

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_weights_t", "_gammas_t", "_level_of", "_subset_size_sum"]

    def learn(self, total_timesteps: int, callback=None, log_interval: int = 4, tb_log_name: str = "QDIQN",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)
