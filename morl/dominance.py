"""Quantile dominance between actions and the preorder's optimal subset of actions.

"Beyond Scalar Rewards" (arXiv 2603.20230) compares actions' return distributions objective by
objective with *Quantile Dominance* (QD) and keeps the actions left non-dominated under the preorder,
both to act and to build training targets. The paper's formula is not available; this module is our
reconstruction (see ``shared/research/prmomdp-qd-iqn.md`` §4.2–4.3), with every open choice a parameter.

**Quantile dominance (ours).** For quantiles ``Z_k(a, τ_j)`` of objective ``k`` on one shared τ grid,

    QD_k(a, b) = (1/K) Σ_j 1[ Z_k(a, τ_j) > Z_k(b, τ_j) + δ_k ]

and ``a`` dominates ``b`` on ``k`` when ``QD_k(a, b) ≥ θ``. With ``θ = 1`` and ``δ = 0`` this is
first-order stochastic dominance checked on the grid; ``θ`` in (0.5, 1) asks for a majority of
quantiles; ``δ_k ≥ 0`` is an indifference margin in the objective's return units. ``θ`` must exceed
0.5 so that two actions never dominate each other.

**Optimal subset (ours).** Levels of the preorder are processed from the highest precedence down
(lexicographic elimination, as in thresholded lexicographic Q-learning and LexDQN): at each level
``L`` an action of the current candidate set ``C`` is removed when another candidate beats it on some
objective of ``L`` and it beats that candidate on none of ``L`` (Pareto dominance inside a level of
tied objectives). Only survivors of higher levels are compared at lower levels. For a general
preorder the levels are the topological generations of its classes, so incomparable objectives
of one generation are compared Pareto-wise, as ties are.

**Fallback.** With ``θ < 1`` dominance need not be transitive, so a level can remove every
candidate (a cycle). Then that level keeps the candidates with the largest sum over ``L`` of mean
quantiles (all of them on a tie, up to a relative 1e-5 of float rounding). The subset is therefore never empty for a row that has at
least one valid action; a row with no valid action returns an empty row.

**Computation.** On the CPU a numba kernel walks the states one by one and counts quantile wins only
for pairs of current candidates (a vectorised count per pair); it gives the same masks as
the whole-batch tensor code (``_level_subsets_torch``, used on other devices and as its reference in
``tests/test_dominance_kernel.py``) at a fraction of the cost for acting (one state) and the small
Bellman-target batches, where the tensor code spends its time dispatching dozens of tiny operations.

>>> import torch
>>> from morl.preorder import Preorder
>>> p = Preorder.parse("safety > progress")
>>> z = torch.tensor([[[[0., 0.], [-1., -1.], [0., 0.]],      # safety quantiles of 3 actions
...                    [[1., 1.], [5., 5.], [2., 2.]]]])     # progress quantiles
>>> optimal_subset(z, p, theta=1.0, delta=0.0).tolist()       # action 1 is unsafe; 2 is faster than 0
[[False, False, True]]
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numba
import numpy as np
import torch

from morl.preorder import Preorder

__all__ = ["quantile_dominance", "dominance", "check_theta", "level_subsets", "optimal_subset"]


def _delta_tensor(delta, m: int, like: torch.Tensor) -> torch.Tensor:
    d = torch.as_tensor(delta, dtype=like.dtype, device=like.device)
    if d.dim() == 0:
        d = d.expand(m)
    if d.shape != (m,):
        raise ValueError(f"delta must be a scalar or have one entry per objective ({m}), got shape {tuple(d.shape)}")
    return d


def quantile_dominance(z: torch.Tensor, delta: float | Sequence[float] | torch.Tensor = 0.0) -> torch.Tensor:
    """QD rates of every ordered pair of actions.

    :param z: quantiles ``[B, m, A, K]`` (batch, objectives, actions, quantiles on one shared τ grid).
    :param delta: indifference margin δ_k ≥ 0, a scalar or one per objective.
    :return: ``[B, m, A, A]`` tensor; entry ``[b, k, i, j] = QD_k(i, j)`` in [0, 1].
    """
    if z.dim() != 4:
        raise ValueError(f"z must be [B, m, A, K], got shape {tuple(z.shape)}")
    d = _delta_tensor(delta, z.shape[1], z)
    # [B, m, A, 1, K] > [B, m, 1, A, K] + δ  → mean over the τ grid
    wins = z.unsqueeze(3) > z.unsqueeze(2) + d.view(1, -1, 1, 1, 1)
    return wins.to(z.dtype).mean(dim=-1)


def check_theta(theta) -> float:
    """``theta`` as a float, or a ValueError: it must be in (0.5, 1] so two actions never dominate each other."""
    if not 0.5 < float(theta) <= 1.0:
        raise ValueError(f"theta must be in (0.5, 1], got {theta!r}: below 0.5 two actions could dominate each other")
    return float(theta)


def dominance(z: torch.Tensor, theta: float, delta=0.0) -> torch.Tensor:
    """Boolean ``[B, m, A, A]``: ``[b, k, i, j]`` when action i dominates action j on objective k."""
    return quantile_dominance(z, delta) >= check_theta(theta)


def _check(z: torch.Tensor, preorder: Preorder, valid_mask):
    if z.dim() != 4:
        raise ValueError(f"z must be [B, m, A, K], got shape {tuple(z.shape)}")
    if z.shape[1] != preorder.m:
        raise ValueError(f"z has {z.shape[1]} objectives but the preorder has {preorder.m} ({', '.join(preorder.objectives)})")
    B, _, A, _ = z.shape
    if valid_mask is None:
        return torch.ones(B, A, dtype=torch.bool, device=z.device)
    valid = torch.as_tensor(valid_mask, device=z.device)
    if valid.dtype != torch.bool or valid.shape != (B, A):
        raise ValueError(f"valid_mask must be a bool tensor of shape {(B, A)}, got {valid.dtype} {tuple(valid.shape)}")
    return valid


def level_subsets(z: torch.Tensor, preorder: Preorder, theta: float = 0.75, delta=0.0, valid_mask=None) -> list[torch.Tensor]:
    """Candidate masks after each level of the preorder (see the module docstring).

    :param z: quantiles ``[B, m, A, K]``, objectives in ``preorder.objectives`` order.
    :param preorder: the precedence over objectives.
    :param theta: QD threshold in (0.5, 1].
    :param delta: margin δ_k, scalar or one per objective.
    :param valid_mask: optional bool ``[B, A]``; invalid actions are never kept and dominate nothing.
    :return: a list with one bool ``[B, A]`` mask per level; entry ``i`` is the candidate set after
        levels ``0..i``. The last entry is the optimal subset.
    """
    cand = _check(z, preorder, valid_mask)
    if z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64) and z.shape[3] > 0:
        return _level_subsets_cpu(z, preorder, theta, delta, cand)
    return _level_subsets_torch(z, preorder, theta, delta, cand)


def _level_subsets_torch(z: torch.Tensor, preorder: Preorder, theta: float, delta, cand: torch.Tensor) -> list[torch.Tensor]:
    """:func:`level_subsets` as whole-batch tensor operations (any device; the CPU kernel's reference)."""
    dom = dominance(z, theta, delta)  # [B, m, A, A]
    means = z.mean(dim=-1)  # [B, m, A]
    out = []
    for level in preorder.level_indices:
        # Integer indexing, one objective at a time: a Python list as an index would be copied to the
        # device (a host-device synchronisation on CUDA) at every call.
        beats = dom[:, level[0]]  # beats[b, i, j]: i beats j on some objective of L
        mean_sum = means[:, level[0]]
        for k in level[1:]:
            beats = beats | dom[:, k]
            mean_sum = mean_sum + means[:, k]
        pareto = beats & ~beats.transpose(1, 2)  # i beats j and j beats i on none of L
        pareto = pareto & cand.unsqueeze(2)  # only candidates can remove others
        survivors = cand & ~pareto.any(dim=1)
        # Fallback for a cycle that removed every candidate: keep the best mean sum over L.
        score = mean_sum.masked_fill(~cand, float("-inf"))
        top = score.max(dim=1, keepdim=True).values
        # Equal means up to float rounding count as a tie (the sums' order of addition varies by device).
        best = cand & (score >= top - 1e-5 * (1.0 + top.abs()))
        empty = ~survivors.any(dim=1, keepdim=True)
        cand = torch.where(empty, best, survivors)
        out.append(cand)
    return out


@lru_cache(maxsize=64)
def _min_wins(k: int, theta: float, dtype: torch.dtype) -> int:
    """Fewest quantile wins out of ``k`` with ``QD >= theta``, decided by the very operations of
    :func:`dominance` (the float mean of 0/1 wins, compared in ``dtype``), so the kernel's integer
    count test agrees with them bit for bit."""
    wins = torch.arange(k) < torch.arange(k + 1).unsqueeze(1)  # row c: c wins
    ok = (wins.to(dtype).mean(dim=-1) >= theta).tolist()
    return ok.index(True) if True in ok else k + 1


@lru_cache(maxsize=64)
def _level_arrays(levels: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Levels as CSR arrays: objectives of level ``l`` are ``objs[ptr[l]:ptr[l + 1]]``."""
    ptr = np.cumsum([0] + [len(lv) for lv in levels]).astype(np.int64)
    return ptr, np.array([k for lv in levels for k in lv], dtype=np.int64)


@numba.njit(cache=True)
def _beats(z, d, objs, start, stop, b, i, j, need):
    """Action i beats j on some objective of the level: ``need`` of the K quantiles better by more than d_k."""
    for t in range(start, stop):
        k = objs[t]
        zi, zj, dk = z[b, k, i], z[b, k, j], d[k]
        wins = 0
        for q in range(zi.shape[0]):  # branch-free, so the compiler vectorises it
            wins += zi[q] > zj[q] + dk
        if wins >= need:
            return True
    return False


@numba.njit(cache=True)
def level_subsets_kernel(z, d, means, ptr, objs, need, valid, tol):
    """Candidate masks ``[L, B, A]``, one state at a time, comparing only the pairs of current candidates.

    Same steps as :func:`_level_subsets_torch`, in the same float arithmetic: dominance as an integer
    count of wins (see :func:`_min_wins`); the fallback score as the level's means added in level
    order; its tie margin ``top - tol[0] * (tol[1] + |top|)`` in the dtype of ``means`` (``tol = [1e-5, 1, -inf]``).
    """
    n_b, _, n_a, _ = z.shape
    n_levels = ptr.shape[0] - 1
    out = np.zeros((n_levels, n_b, n_a), dtype=np.bool_)
    cand = np.empty(n_a, dtype=np.bool_)
    surv = np.empty(n_a, dtype=np.bool_)
    score = np.empty(n_a, dtype=means.dtype)
    for b in range(n_b):
        for a in range(n_a):
            cand[a] = valid[b, a]
        for lv in range(n_levels):
            start, stop = ptr[lv], ptr[lv + 1]
            any_surv = False
            for j in range(n_a):
                surv[j] = False
                if not cand[j]:
                    continue
                removed = False
                for i in range(n_a):
                    if i != j and cand[i] and _beats(z, d, objs, start, stop, b, i, j, need) \
                            and not _beats(z, d, objs, start, stop, b, j, i, need):
                        removed = True
                        break
                surv[j] = not removed
                any_surv = any_surv or surv[j]
            if any_surv:
                for a in range(n_a):
                    cand[a] = surv[a]
            else:  # every candidate removed (a cycle): keep the best mean sum over the level
                top = tol[2]  # -inf in the dtype of means, so that top stays in it
                nan = False
                for a in range(n_a):
                    if cand[a]:
                        s = means[b, objs[start], a]
                        for t in range(start + 1, stop):
                            s = s + means[b, objs[t], a]
                        score[a] = s
                        if s != s:
                            nan = True
                        elif s > top:
                            top = s
                if nan:  # torch's max propagates NaN, and nothing compares >= NaN
                    for a in range(n_a):
                        cand[a] = False
                else:
                    threshold = top - tol[0] * (tol[1] + abs(top))
                    for a in range(n_a):
                        cand[a] = cand[a] and score[a] >= threshold
            for a in range(n_a):
                out[lv, b, a] = cand[a]
    return out


def kernel_constants(preorder: Preorder, theta: float, k: int, dtype: torch.dtype):
    """The constant arguments of :func:`level_subsets_kernel` for ``k`` quantiles of ``dtype``:
    ``(ptr, objs, need, tol)`` (levels as CSR arrays, fewest wins, the fallback's tie margin)."""
    ptr, objs = _level_arrays(tuple(tuple(lv) for lv in preorder.level_indices))
    need = _min_wins(k, check_theta(theta), dtype)
    tol = np.array([1e-5, 1.0, -np.inf], dtype=torch.empty((), dtype=dtype).numpy().dtype)
    return ptr, objs, need, tol


def _level_subsets_cpu(z: torch.Tensor, preorder: Preorder, theta: float, delta, cand: torch.Tensor) -> list[torch.Tensor]:
    """:func:`level_subsets` on CPU through the numba kernel: the same masks as the torch code (the tests
    check it), at a fraction of the cost for the few states of acting and the small Bellman-target
    batches, where the torch code spends its time dispatching many small operations."""
    d = _delta_tensor(delta, z.shape[1], z)
    ptr, objs, need, tol = kernel_constants(preorder, theta, z.shape[3], z.dtype)
    means = z.detach().mean(dim=-1)  # the torch code's means, so the fallback sees the same floats
    # numpy views of the tensors, strided ones included (numba reads any strides): no copies.
    out = level_subsets_kernel(z.detach().numpy(), d.detach().numpy(), means.numpy(), ptr, objs, need, cand.numpy(), tol)
    return list(torch.from_numpy(out).unbind(0))


def optimal_subset(z: torch.Tensor, preorder: Preorder, theta: float = 0.75, delta=0.0, valid_mask=None) -> torch.Tensor:
    """The actions left non-dominated under the preorder: a bool mask ``[B, A]``.

    Same arguments as :func:`level_subsets`; used both to act and in the Bellman target.
    """
    return level_subsets(z, preorder, theta, delta, valid_mask)[-1]
