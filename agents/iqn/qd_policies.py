"""The QD-IQN policy: one quantile head per objective, acting on the preorder's optimal subset.

"Beyond Scalar Rewards" (arXiv 2603.20230): the greedy action is picked inside the optimal subset of the actions
under quantile dominance (:func:`morl.dominance.optimal_subset`), by a tie-break on the objectives' means. The
networks are :mod:`morl.agents.iqn.policies`'; on CPU the subset and the tie-break of each acting step run in one
numba call (:func:`_select_kernel`), checked against the tensor code in the tests.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule

from morl.agents.iqn.policies import IQNPolicy
from morl.dominance import check_rule, optimal_subset
from morl.dominance_kernels import check_kernel_nan, kernel_constants, subset_kernel
from morl.preorder import Preorder

__all__ = [
    "TIE_BREAKS",
    "QDCnnPolicy",
    "QDIQNPolicy",
    "QDMlpPolicy",
    "QDMultiInputPolicy",
    "check_thresholds",
    "masked_argmax",
    "tie_break_scores",
]

TIE_BREAKS = ("lowest_mean", "sum_mean", "random")


def masked_argmax(scores: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Argmax of ``scores [B, A]`` over the actions where ``mask [B, A]`` is True (never empty)."""
    return scores.masked_fill(~mask, -math.inf).argmax(dim=-1)


def tie_break_scores(mean_z: th.Tensor, mode: str, last_level: th.Tensor) -> th.Tensor:
    """Scores ``[B, A]`` used to pick one action inside an optimal subset.

    :param mean_z: per-objective means ``[B, m, A]``.
    :param mode: ``"lowest_mean"`` (mean of the lowest-precedence level, summed over its objectives),
        ``"sum_mean"`` (sum of all objectives' means) or ``"random"`` (uniform within the subset).
    :param last_level: indices of the objectives in the lowest-precedence level.
    """
    if mode == "lowest_mean":
        return mean_z.index_select(1, last_level).sum(dim=1)
    if mode == "sum_mean":
        return mean_z.sum(dim=1)
    if mode == "random":
        return th.rand(mean_z.shape[0], mean_z.shape[2], device=mean_z.device)
    raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {mode!r}")


@numba.njit(cache=True)
def _masked_argmax_kernel(mean_z, score_objs, mask):
    """``masked_argmax(tie_break_scores(mean_z, mode, ...), mask)`` of the mean modes in one call, row by row:
    an action's score is its means summed over ``score_objs`` in order, an action outside ``mask`` scores
    -inf, the first maximum wins and a NaN beats every number, as with ``torch.argmax``."""
    n_b, _, n_a = mean_z.shape
    out = np.zeros(n_b, dtype=np.int64)
    for b in range(n_b):
        best = -np.inf
        for a in range(n_a):
            if mask[b, a]:
                s = mean_z[b, score_objs[0], a]
                for t in range(1, score_objs.shape[0]):
                    s = s + mean_z[b, score_objs[t], a]
                if s != s:
                    out[b] = a
                    break
                if s > best:
                    best = s
                    out[b] = a
    return out


@numba.njit(cache=True)
def _select_kernel(z, caps, d, plan, need, tol, rulebook, score_objs):
    """:meth:`QDIQNPolicy.select` of the mean tie-breaks in one call: from quantiles ``z [B, K, m, A]``, the
    optimal subset of ``min(z, caps)`` (``morl.dominance.subset_kernel`` under ``rulebook`` or staged, its
    fallback on the capped means) and the masked argmax of the uncapped means (``_masked_argmax_kernel``).
    ``caps [m]`` is ``inf`` where an objective has no threshold; a NaN quantile stays NaN, as under
    ``torch.minimum``, and is reported in ``bad`` (see ``subset_kernel``).

    :return: ``(actions [B], subset mask [B, A], bad)``.
    """
    n_b, n_k, m, n_a = z.shape
    zc = np.empty((n_b, m, n_a, n_k), dtype=z.dtype)  # the layout subset_kernel reads
    means_c = np.empty((n_b, m, n_a), dtype=z.dtype)
    means = np.empty((n_b, m, n_a), dtype=z.dtype)
    zero = np.zeros(1, dtype=z.dtype)[0]
    for b in range(n_b):
        for k in range(m):
            cap = caps[k]
            for a in range(n_a):
                s = zero
                s_c = zero
                for q in range(n_k):
                    v = z[b, q, k, a]
                    v_c = cap if v > cap else v
                    zc[b, k, a, q] = v_c
                    s += v
                    s_c += v_c
                means[b, k, a] = s / n_k
                means_c[b, k, a] = s_c / n_k
    valid = np.ones((n_b, n_a), dtype=np.bool_)
    mask, bad = subset_kernel(zc, d, means_c, plan, need, valid, tol, rulebook)
    return _masked_argmax_kernel(means, score_objs, mask), mask, bad


def check_thresholds(thresholds, preorder: Preorder) -> tuple[float | None, ...] | None:
    """``thresholds`` as a tuple of ``m`` floats or ``None`` (all ``None`` gives ``None``), or a ValueError."""
    if thresholds is None:
        return None
    thresholds = tuple(thresholds)
    if len(thresholds) != preorder.m:
        raise ValueError(f"thresholds needs one entry per objective ({preorder.m}: {', '.join(preorder.objectives)}; "
                         f"null for none), got {list(thresholds)}")
    out = []
    for name, t in zip(preorder.objectives, thresholds):
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t)):
            raise ValueError(f"thresholds: the entry of {name!r} must be a finite number or null, got {t!r}")
        out.append(None if t is None else float(t))
    return tuple(out) if any(t is not None for t in out) else None


class QDIQNPolicy(IQNPolicy):
    """Multi-head IQN policy that acts on the preorder's optimal subset (quantile dominance).

    The greedy action is ``tie_break(optimal_subset(Z(s, .; tau_grid)))``: the quantiles of every
    objective on the deterministic acting grid go through :func:`morl.dominance.optimal_subset`
    under ``preorder``, and one action is picked inside the subset by ``tie_break``.

    :param preorder: the preorder over the objectives, objectives in head order.
    :param theta: quantile-dominance threshold.
    :param delta: per-objective indifference margins (``m`` floats).
    :param thresholds: per-objective satisfaction thresholds (``m`` floats or ``None``; ``None`` = no
        threshold): quantile dominance compares ``min(Z_k, thresholds[k])``, see :class:`~morl.agents.iqn.QDIQN`.
    :param tie_break: one of :data:`TIE_BREAKS`.
    :param subset_rule: ``"staged"`` (default) or ``"rulebook"``: which optimal subset
        (:func:`morl.dominance.optimal_subset`'s ``rule``).
    :param objective_risk_etas: one CVaR level per objective (``None``: ``risk_eta`` for all). The acting grid
        is then one block of ``K`` fractions on ``(0, eta]`` per distinct level, and objective ``k`` is read
        on its own block (:meth:`objective_grid`).
    :param kwargs: the :class:`IQNPolicy` parameters (``n_heads`` is set to ``m``).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule,
                 preorder: Preorder | str | None = None, theta: float = 0.75, delta: tuple[float, ...] | None = None,
                 tie_break: str = "lowest_mean", thresholds: tuple[float | None, ...] | None = None,
                 objective_risk_etas: tuple[float, ...] | None = None, subset_rule: str = "staged", **kwargs):
        if preorder is None:
            raise ValueError("QDIQNPolicy needs a preorder")
        preorder = Preorder.parse(preorder)
        m = preorder.m
        kwargs["n_heads"] = m
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        delta = tuple(float(x) for x in ((0.0,) * m if delta is None else delta))
        if len(delta) != m or not all(x >= 0 for x in delta):
            raise ValueError(f"delta needs one margin >= 0 per objective ({m}: {preorder.objectives}), got {delta}")
        self.preorder = preorder
        self.theta = float(theta)
        self.delta = delta
        self.tie_break = tie_break
        self.subset_rule = check_rule(subset_rule)
        self.register_buffer("delta_t", th.tensor(delta, dtype=th.float32), persistent=False)
        self.thresholds = check_thresholds(thresholds, preorder)
        # [1, 1, m, 1] against z [B, K, m, A]; None while no objective has a threshold (nothing to clip).
        # A buffer, like delta_t, so it moves with the policy to its device.
        self.register_buffer("thresholds_t", None if self.thresholds is None else th.tensor(
            [np.inf if t is None else t for t in self.thresholds], dtype=th.float32).view(1, 1, m, 1), persistent=False)
        self.register_buffer("last_level", th.tensor(preorder.level_indices[-1], dtype=th.long), persistent=False)
        # The objectives whose means score the actions inside the subset (the mean tie-breaks), for the CPU kernel.
        self._score_objs = np.array(preorder.level_indices[-1] if tie_break == "lowest_mean" else range(m), dtype=np.int64)
        self._kernel_cache: dict = {}
        self.objective_risk_etas = None if objective_risk_etas is None else tuple(float(e) for e in objective_risk_etas)
        self.register_buffer("grid_index", None, persistent=False)
        if self.objective_risk_etas is not None:
            etas = self.objective_risk_etas
            if len(etas) != m or not all(0.0 < e <= 1.0 for e in etas):
                raise ValueError(f"objective_risk_etas needs {m} levels in (0, 1] ({', '.join(preorder.objectives)}), "
                                 f"got {list(objective_risk_etas)}")
            levels = sorted(set(etas))
            k = self.n_quantiles_act
            self._set_acting_grid(levels)
            # grid_index[q, j]: the fraction of the acting grid where objective j reads its q-th quantile.
            self.grid_index = th.tensor([[levels.index(e) * k + q for e in etas] for q in range(k)], dtype=th.long)
        # Running sum of acting-subset sizes (a tensor on devices other than the CPU: no sync in the acting loop).
        self.subset_size_sum: float | th.Tensor = 0.0
        self.subset_size_count = 0

    def objective_grid(self, z: th.Tensor) -> th.Tensor:
        """Quantiles ``[B, K, m, A]`` on each objective's own grid, from ``z`` on the acting grid (``[B, L K, m, A]``
        with ``L`` distinct ``objective_risk_etas``); ``z`` itself with one level for all."""
        if self.grid_index is None:
            return z
        b, _, m, a = z.shape
        return z.gather(1, self.grid_index.view(1, -1, m, 1).expand(b, -1, m, a))

    def dominance_quantiles(self, z: th.Tensor) -> th.Tensor:
        """What quantile dominance compares: ``z [B, K, m, A]`` capped at the thresholds (``z`` itself when none)."""
        if self.thresholds_t is None:
            return z
        return th.minimum(z, self.thresholds_t)

    def subset(self, z: th.Tensor) -> th.Tensor:
        """Optimal subset ``[B, A]`` from quantiles ``z`` laid out ``[B, K, m, A]``."""
        return optimal_subset(self.dominance_quantiles(z).permute(0, 2, 3, 1), self.preorder, self.theta, self.delta_t,
                              rule=self.subset_rule)

    def select(self, z: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """One action per state from ``z [B, K, m, A]``: ``(actions [B], subset mask [B, A])``."""
        if z.dim() != 4 or z.shape[2] != self.preorder.m:
            # before the kernel, which reads one threshold and margin per objective of z
            raise ValueError(f"z must be [B, K, m={self.preorder.m}, A] (one slot per objective of the preorder), "
                             f"got shape {tuple(z.shape)}")
        if self.tie_break != "random" and z.device.type == "cpu" and z.dtype in (th.float32, th.float64):
            # One numba call instead of about twenty small tensor operations (acting calls this at every env
            # step); the tests check it against the tensor code below.
            actions, mask, bad = _select_kernel(z.detach().numpy(), *self._kernel_args(z.shape[1], z.dtype),
                                                self.subset_rule == "rulebook", self._score_objs)
            check_kernel_nan(bad, self.preorder)
            return th.from_numpy(actions), th.from_numpy(mask)
        mask = self.subset(z)
        mean_z = z.detach().mean(dim=1)
        return masked_argmax(tie_break_scores(mean_z, self.tie_break, self.last_level), mask), mask

    def _kernel_args(self, k: int, dtype: th.dtype) -> tuple:
        """``(caps, delta, plan, need, tol)`` of :func:`_select_kernel` for ``k`` quantiles of ``dtype``."""
        key = (k, dtype)
        if key not in self._kernel_cache:
            consts = kernel_constants(self.preorder, self.theta, k, dtype)
            tol = consts[-1]
            caps = np.array([np.inf if t is None else t for t in (self.thresholds or (None,) * self.preorder.m)],
                            dtype=tol.dtype)
            self._kernel_cache[key] = (caps, np.array(self.delta, dtype=tol.dtype), *consts)
        return self._kernel_cache[key]

    @staticmethod
    def mean_size(mask: th.Tensor) -> float | th.Tensor:
        """Mean subset size of ``mask [B, A]``: a float on CPU, a tensor elsewhere (no device sync)."""
        if mask.device.type == "cpu":
            return float(mask.numpy().sum()) / mask.shape[0]
        return mask.sum(dim=1).float().mean()

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        actions, mask = self.select(self.objective_grid(self.act_quantiles(obs)))
        self.subset_size_sum = self.subset_size_sum + self.mean_size(mask)
        self.subset_size_count += 1
        return actions

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("n_heads", None)
        data.update({"preorder": self.preorder, "theta": self.theta, "delta": self.delta, "tie_break": self.tie_break,
                     "thresholds": self.thresholds, "objective_risk_etas": self.objective_risk_etas,
                     "subset_rule": self.subset_rule})
        return data


class QDCnnPolicy(QDIQNPolicy):
    """:class:`QDIQNPolicy` with the Nature CNN features extractor."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class QDMultiInputPolicy(QDIQNPolicy):
    """:class:`QDIQNPolicy` for dict observations."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


QDMlpPolicy = QDIQNPolicy
