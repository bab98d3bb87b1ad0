"""Quantile dominance between actions and the preorder's optimal subset of actions.

"Beyond Scalar Rewards" (arXiv 2603.20230) compares actions' return distributions objective by
objective with *Quantile Dominance* (QD) and keeps "the subset of actions that remain non-dominated
under each objective" (its abstract), both to act and to build training targets. The paper's formulas
are not available; this module is our reconstruction, with every open choice a parameter.

**Quantile dominance (ours).** For quantiles ``Z_k(a, τ_j)`` of objective ``k`` on one shared τ grid,

    QD_k(a, b) = (1/K) Σ_j 1[ Z_k(a, τ_j) > Z_k(b, τ_j) + δ_k ]

and ``a`` dominates ``b`` on ``k`` when ``QD_k(a, b) ≥ θ``. The quantiles are compared at *equal
fractions*: the two returns are coupled comonotonically (the j-th worst outcome of ``a`` against the
j-th worst of ``b``), not ``P(Z_a > Z_b)`` over all ``K²`` pairs of independent draws. We chose this
coupling because with ``θ = 1`` and ``δ = 0`` it is first-order stochastic dominance checked on the
grid (the classical dominance of distributions), it needs ``K`` comparisons rather than ``K²``, and the
per-pair probability would call an action with a small chance of a crash "better" than a sure safe
one whenever its usual outcome is. ``θ`` in (0.5, 1) asks for a majority of quantiles; ``δ_k ≥ 0`` is
an indifference margin in the objective's return units. ``θ > 0.5`` and ``δ_k ≥ 0`` together make
sure two actions never dominate each other on one objective; both are checked.

Quantile dominance is only a partial order on each objective (two actions may each win some
quantiles), so "non-dominated under the preorder" has two defensible readings. Both are offered:

**Staged elimination** (``rule="staged"``, :func:`staged_subsets`; the agents' default, the
abstract's wording). The stages are the preorder's generations (:attr:`Preorder.level_indices`),
highest precedence first; for a total preorder they are its levels. At a stage, a candidate ``j`` is
removed when another candidate ``i`` dominates it on an objective ``k`` of the stage and ``j``
dominates ``i`` on no objective tied with or incomparable to ``k`` (:attr:`Preorder.peers`). Within a
level of a total preorder this is Pareto dominance over the level; an objective never removes an
action that wins on an objective it does not outrank. Only the survivors of a stage take part in the
next, so an action removed early cannot remove others later.

**Rulebook non-dominated set** (``rule="rulebook"``, :func:`rulebook_subset`). ``i`` is preferred to
``j`` as :meth:`Preorder.prefers` says of score vectors, with "``i`` beats ``j`` on ``k``" read as
"``i`` dominates ``j`` on ``k``": every objective on which ``j`` dominates ``i`` is outranked by one on
which ``i`` dominates ``j`` (Censi et al. 2019). The subset holds the valid actions no valid action
strictly prefers (:meth:`Preorder.strictly_prefers`), every pair compared, removed actions included.

Where they differ (point quantiles, ``θ = 1``, ``δ = 0``), first an action removed early that still
beats a survivor lower down. Under ``safety > progress``, with two quantiles per objective,
action 2 dominates action 0 on safety, action 0 dominates action 1 on progress, and the other pairs
are incomparable on both:

>>> import torch
>>> from morl.preorder import Preorder
>>> z = torch.tensor([[[[0., 0.], [-1., 2.], [1., 1.]],      # safety quantiles of 3 actions
...                    [[5., 5.], [0., 0.], [-1., 1.]]]])    # progress quantiles
>>> optimal_subset(z, "safety > progress", theta=1.0, rule="staged").tolist()   # 2 removes 0 on safety
[[False, True, True]]
>>> optimal_subset(z, "safety > progress", theta=1.0, rule="rulebook").tolist() # 0 is still preferred to 1
[[False, False, True]]

then tied objectives above the last level: under ``"a, b > c"`` with ``x = (1, 0, 0)`` and
``y = (0, 1, 5)``, staging keeps only ``y`` (the first level cannot split them, then ``c`` decides),
while the rulebook keeps both (``x`` wins on ``a``, which ``c`` does not outrank):

>>> z = torch.tensor([[[[1.], [0.]], [[0.], [1.]], [[0.], [5.]]]])
>>> optimal_subset(z, "a, b > c", theta=1.0, rule="staged").tolist()
[[False, True]]
>>> optimal_subset(z, "a, b > c", theta=1.0, rule="rulebook").tolist()
[[True, True]]

For a strict chain such as ``safety > rules > progress > comfort`` the staged rule is lexicographic
elimination level by level (as in thresholded lexicographic Q-learning and LexDQN).

**Fallbacks.** With ``θ < 1`` dominance need not be transitive, and with several objectives the
rulebook preference can be cyclic even at ``θ = 1``. When a stage would remove every candidate, it
keeps the candidates with the largest sum over the stage's objectives of mean quantiles (all of them
on a tie, up to a relative 1e-5 of float rounding). When no action is rulebook non-dominated, the
subset is the top cycle: the actions that every action above them through a chain of strict
preferences is itself below through such a chain (the sources of the condensed preference graph).
The subset is therefore never empty for a row with at least one valid action; a row with no valid
action returns an empty row. A NaN mean quantile of a valid action (a diverged value network) raises
a ``ValueError`` naming the objective: no action is chosen from it.

**Computation.** On the CPU numba kernels walk the states one by one and count quantile wins only for
pairs of current candidates; they give the same masks as the whole-batch tensor code
(``_staged_subsets_torch`` and ``_rulebook_subset_torch``, used on other devices and as their
references in ``tests/test_dominance_kernel.py``) at a fraction of the cost for acting (one state) and
the small Bellman-target batches, where the tensor code spends its time dispatching many small operations.
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
import torch

from morl.dominance_kernels import (
    check_kernel_nan,
    check_theta,
    kernel_constants,
    raise_nan,
    staged_subsets_kernel,
    subset_kernel,
)
from morl.preorder import Preorder

__all__ = ["SUBSET_RULES", "quantile_dominance", "dominance", "check_theta", "check_delta", "staged_subsets",
           "rulebook_subset", "optimal_subset"]

SUBSET_RULES = ("staged", "rulebook")


def check_delta(delta, m: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """``delta`` as a ``(m,)`` tensor (of ``like``'s dtype and device), or a ValueError naming the value.

    Every margin must be ``>= 0``: a negative one lets two actions dominate each other. A tensor on
    an accelerator is not inspected (that would wait for the device at every call); the agents check
    their margins when they are built.
    """
    if isinstance(delta, torch.Tensor):
        d = delta.to(like.dtype) if like is not None else delta
    else:
        d = torch.as_tensor(delta, dtype=like.dtype if like is not None else torch.float64,
                            device=like.device if like is not None else None)
    if d.dim() == 0:
        d = d.expand(m)
    if d.shape != (m,):
        raise ValueError(f"delta must be a scalar or have one entry per objective ({m}), got shape {tuple(d.shape)}")
    if d.device.type == "cpu" and not bool((d >= 0).all()):
        raise ValueError(f"delta must be >= 0 for every objective (a negative margin lets two actions dominate "
                         f"each other), got {d.tolist()}")
    return d


def quantile_dominance(z: torch.Tensor, delta: float | Sequence[float] | torch.Tensor = 0.0) -> torch.Tensor:
    """QD rates of every ordered pair of actions.

    :param z: quantiles ``[B, m, A, K]`` (batch, objectives, actions, quantiles on one shared τ grid).
    :param delta: indifference margin δ_k ≥ 0, a scalar or one per objective.
    :return: ``[B, m, A, A]`` tensor; entry ``[b, k, i, j] = QD_k(i, j)`` in [0, 1].
    """
    if z.dim() != 4:
        raise ValueError(f"z must be [B, m, A, K], got shape {tuple(z.shape)}")
    d = check_delta(delta, z.shape[1], z)
    # [B, m, A, 1, K] > [B, m, 1, A, K] + δ  → mean over the τ grid
    wins = z.unsqueeze(3) > z.unsqueeze(2) + d.view(1, -1, 1, 1, 1)
    return wins.to(z.dtype).mean(dim=-1)


def check_rule(rule: str) -> str:
    if rule not in SUBSET_RULES:
        raise ValueError(f"rule must be one of {SUBSET_RULES}, got {rule!r}")
    return rule


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


def _check_nan_torch(means: torch.Tensor, cand: torch.Tensor, preorder: Preorder):
    nan = torch.isnan(means) & cand.unsqueeze(1)  # [B, m, A]
    if bool(nan.any()):
        b, k, a = (int(x) for x in nan.nonzero()[0])
        raise_nan(preorder, k, b, a)


def _use_kernel(z: torch.Tensor) -> bool:
    return z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64) and z.shape[3] > 0


def staged_subsets(z: torch.Tensor, preorder: Preorder | str, theta: float = 0.75, delta=0.0,
                   valid_mask=None) -> list[torch.Tensor]:
    """Candidate masks after each stage of staged elimination (see the module docstring).

    :param z: quantiles ``[B, m, A, K]``, objectives in ``preorder.objectives`` order.
    :param preorder: the precedence over objectives (a :class:`Preorder` or what it parses).
    :param theta: QD threshold in (0.5, 1].
    :param delta: margin δ_k ≥ 0, scalar or one per objective.
    :param valid_mask: optional bool ``[B, A]``; invalid actions are never kept and dominate nothing.
    :return: a list with one bool ``[B, A]`` mask per stage (:attr:`Preorder.level_indices`); entry ``i``
        is the candidate set after stages ``0..i``. The last entry is the staged optimal subset.
    """
    preorder = Preorder.parse(preorder)
    cand = _check(z, preorder, valid_mask)
    if _use_kernel(z):
        return _staged_subsets_cpu(z, preorder, theta, delta, cand)
    return _staged_subsets_torch(z, preorder, theta, delta, cand)


def rulebook_subset(z: torch.Tensor, preorder: Preorder | str, theta: float = 0.75, delta=0.0,
                    valid_mask=None) -> torch.Tensor:
    """The rulebook non-dominated actions, bool ``[B, A]`` (see the module docstring); same arguments as
    :func:`staged_subsets`."""
    preorder = Preorder.parse(preorder)
    cand = _check(z, preorder, valid_mask)
    if _use_kernel(z):
        return _subset_cpu(z, preorder, theta, delta, cand, "rulebook")
    return _rulebook_subset_torch(z, preorder, theta, delta, cand)


def optimal_subset(z: torch.Tensor, preorder: Preorder | str, theta: float = 0.75, delta=0.0, valid_mask=None,
                   rule: str = "staged") -> torch.Tensor:
    """The actions left non-dominated under the preorder: a bool mask ``[B, A]``.

    Same arguments as :func:`staged_subsets`; ``rule`` is ``"staged"`` (:func:`staged_subsets`' last
    mask) or ``"rulebook"`` (:func:`rulebook_subset`). Used both to act and in the Bellman target.
    """
    if check_rule(rule) == "rulebook":
        return rulebook_subset(z, preorder, theta, delta, valid_mask)
    return staged_subsets(z, preorder, theta, delta, valid_mask)[-1]


def _fallback_best(mean_sum: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """Candidates with the largest ``mean_sum`` (up to a relative 1e-5: the sums' order of addition varies by
    device); an infinite maximum keeps exactly the candidates that reach it."""
    score = mean_sum.masked_fill(~cand, float("-inf"))
    top = score.max(dim=1, keepdim=True).values
    threshold = torch.where(torch.isfinite(top), top - 1e-5 * (1.0 + top.abs()), top)
    return cand & (score >= threshold)


def _staged_subsets_torch(z: torch.Tensor, preorder: Preorder, theta: float, delta, cand: torch.Tensor) -> list[torch.Tensor]:
    """:func:`staged_subsets` as whole-batch tensor operations (any device; the CPU kernel's reference)."""
    dom = dominance(z, theta, delta)  # [B, m, A, A]
    means = z.mean(dim=-1)  # [B, m, A]
    _check_nan_torch(means, cand, preorder)
    # Integer indexing, one objective at a time: a Python list as an index would be copied to the
    # device (a host-device synchronisation on CUDA) at every call.
    against = []  # against[k][b, i, j]: j dominates i on an objective tied with or incomparable to k
    for k in range(preorder.m):
        peers = np.flatnonzero(preorder.peers[k]).tolist()
        acc = dom[:, peers[0]]
        for l_ in peers[1:]:
            acc = acc | dom[:, l_]
        against.append(acc.transpose(1, 2))
    out = []
    for stage in preorder.level_indices:
        removes = dom[:, stage[0]] & ~against[stage[0]]  # removes[b, i, j]: i removes j
        mean_sum = means[:, stage[0]]
        for k in stage[1:]:
            removes = removes | (dom[:, k] & ~against[k])
            mean_sum = mean_sum + means[:, k]
        removes = removes & cand.unsqueeze(2)  # only candidates can remove others
        survivors = cand & ~removes.any(dim=1)
        empty = ~survivors.any(dim=1, keepdim=True)  # a cycle removed every candidate
        cand = torch.where(empty, _fallback_best(mean_sum, cand), survivors)
        out.append(cand)
    return out


def _rulebook_subset_torch(z: torch.Tensor, preorder: Preorder, theta: float, delta, cand: torch.Tensor) -> torch.Tensor:
    """:func:`rulebook_subset` as whole-batch tensor operations (any device; the CPU kernel's reference)."""
    dom = dominance(z, theta, delta)  # [B, m, A, A]
    _check_nan_torch(z.mean(dim=-1), cand, preorder)
    above = preorder.strictly_above
    prefers = torch.ones_like(dom[:, 0])  # prefers[b, i, j]: i preferred to j
    for k in range(preorder.m):
        covered = torch.zeros_like(prefers)  # i dominates j on an objective strictly above k
        for l_ in np.flatnonzero(above[:, k]).tolist():
            covered = covered | dom[:, l_]
        prefers = prefers & (~dom[:, k].transpose(1, 2) | covered)
    pair = cand.unsqueeze(2) & cand.unsqueeze(1)
    strict = prefers & ~prefers.transpose(1, 2) & pair
    non_dominated = cand & ~strict.any(dim=1)
    # Top cycle for rows where preference is cyclic: reach[b, i, j] when a chain of strict preferences leads i to j.
    reach, n_a = strict, z.shape[2]
    for _ in range(max(1, int(np.ceil(np.log2(max(n_a, 2)))))):
        reach = reach | (reach.to(z.dtype) @ reach.to(z.dtype) > 0)
    top = cand & ~(reach & ~reach.transpose(1, 2)).any(dim=1)
    return torch.where(non_dominated.any(dim=1, keepdim=True), non_dominated, top)


def _kernel_inputs(z: torch.Tensor, preorder: Preorder, theta: float, delta):
    d = check_delta(delta, z.shape[1], z)
    means = z.detach().mean(dim=-1)  # the torch code's means, so the fallback sees the same floats
    # numpy views of the tensors, strided ones included (numba reads any strides): no copies.
    return z.detach().numpy(), d.detach().numpy(), means.numpy(), kernel_constants(preorder, theta, z.shape[3], z.dtype)


def _staged_subsets_cpu(z: torch.Tensor, preorder: Preorder, theta: float, delta, cand: torch.Tensor) -> list[torch.Tensor]:
    """:func:`staged_subsets` on CPU through the numba kernel: the same masks as the torch code (the tests check it)."""
    zn, d, means, (plan, need, tol) = _kernel_inputs(z, preorder, theta, delta)
    out, bad = staged_subsets_kernel(zn, d, means, plan, need, cand.numpy(), tol)
    check_kernel_nan(bad, preorder)
    return list(torch.from_numpy(out).unbind(0))


def _subset_cpu(z: torch.Tensor, preorder: Preorder, theta: float, delta, cand: torch.Tensor, rule: str) -> torch.Tensor:
    """:func:`optimal_subset` on CPU through :func:`~morl.dominance_kernels.subset_kernel`."""
    zn, d, means, (plan, need, tol) = _kernel_inputs(z, preorder, theta, delta)
    out, bad = subset_kernel(zn, d, means, plan, need, cand.numpy(), tol, rule == "rulebook")
    check_kernel_nan(bad, preorder)
    return torch.from_numpy(out)
