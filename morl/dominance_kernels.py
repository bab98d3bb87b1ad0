"""numba kernels of :mod:`morl.dominance`: the staged and rulebook optimal subsets, one state at a time.

They give the same masks as the whole-batch tensor code of :mod:`morl.dominance` (its references, checked
in ``tests/test_dominance_kernel.py``), comparing only the pairs of current candidates.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
import torch

from morl.preorder import Preorder

__all__ = ["kernel_constants", "subset_kernel", "staged_subsets_kernel", "rulebook_subset_kernel", "check_kernel_nan"]


def check_theta(theta) -> float:
    """``theta`` as a float, or a ValueError: it must be in (0.5, 1] so two actions never dominate each other."""
    if not 0.5 < float(theta) <= 1.0:
        raise ValueError(f"theta must be in (0.5, 1], got {theta!r}: below 0.5 two actions could dominate each other")
    return float(theta)


def raise_nan(preorder: Preorder, k: int, b: int | None = None, a: int | None = None):
    """The error for a NaN mean quantile of objective ``k`` (state ``b``, action ``a`` where known)."""
    where = "" if b is None else f" (state {b}, action {a})"
    raise ValueError(f"the quantiles of objective {preorder.objectives[k]!r} hold NaN{where}: the value network has "
                     "diverged, and no action can be chosen from them")


def check_kernel_nan(bad: tuple[int, int, int], preorder: Preorder) -> None:
    """Raise the NaN error a kernel reported in ``bad = (state, objective, action)`` (``-1`` entries: none)."""
    if bad[0] >= 0:
        raise_nan(preorder, int(bad[1]), int(bad[0]), int(bad[2]))


@lru_cache(maxsize=64)
def _min_wins(k: int, theta: float, dtype: torch.dtype) -> int:
    """Fewest quantile wins out of ``k`` with ``QD >= theta``, decided by the very operations of
    :func:`morl.dominance.dominance` (the float mean of 0/1 wins, compared in ``dtype``), so the kernel's integer
    count test agrees with them bit for bit."""
    wins = torch.arange(k) < torch.arange(k + 1).unsqueeze(1)  # row c: c wins
    ok = (wins.to(dtype).mean(dim=-1) >= theta).tolist()
    return ok.index(True) if True in ok else k + 1


@lru_cache(maxsize=64)
def _csr(groups: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """Groups of objectives as CSR arrays: group ``g`` is ``objs[ptr[g]:ptr[g + 1]]``."""
    ptr = np.cumsum([0] + [len(g) for g in groups]).astype(np.int64)
    return ptr, np.array([k for g in groups for k in g], dtype=np.int64)


@numba.njit(cache=True)
def _beats(z, d, objs, start, stop, b, i, j, need):
    """Action i dominates j on some objective of ``objs[start:stop]``: ``need`` of the K quantiles better by more than d_k."""
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
def _nan_objective(means, valid, b):
    """The first objective with a NaN mean of a valid action of state ``b``, and that action; ``(-1, -1)`` if none."""
    for k in range(means.shape[1]):
        for a in range(means.shape[2]):
            if valid[b, a] and means[b, k, a] != means[b, k, a]:
                return k, a
    return -1, -1


@numba.njit(cache=True)
def staged_subsets_kernel(z, d, means, plan, need, valid, tol):
    """Candidate masks ``[S, B, A]`` of staged elimination, one state at a time, comparing only the pairs
    of current candidates; and the first NaN as ``(state, objective, action)`` (``-1`` entries if none).

    Same steps as :func:`morl.dominance._staged_subsets_torch`, in the same float arithmetic: dominance as an integer
    count of wins (see :func:`_min_wins`); with ``plan`` unpacked by :func:`_unpack`, stage ``s`` holds the
    objectives ``objs[ptr[s]:ptr[s + 1]]``, those tied with or incomparable to ``k`` are ``pobjs[pptr[k]:pptr[k + 1]]``; the fallback score
    is the stage's means added in stage order, its tie margin ``top - tol[0] * (tol[1] + |top|)`` in the dtype
    of ``means`` (``tol = [1e-5, 1, -inf]``; ``top`` itself when infinite). A state with a NaN stops the walk.
    """
    n_b, _, n_a, _ = z.shape
    ptr, objs, pptr, pobjs, _ = _unpack(plan)
    n_stages = ptr.shape[0] - 1
    out = np.zeros((n_stages, n_b, n_a), dtype=np.bool_)
    cand = np.empty(n_a, dtype=np.bool_)
    surv = np.empty(n_a, dtype=np.bool_)
    score = np.empty(n_a, dtype=means.dtype)
    for b in range(n_b):
        k_nan, a_nan = _nan_objective(means, valid, b)
        if k_nan >= 0:
            return out, (b, k_nan, a_nan)
        for a in range(n_a):
            cand[a] = valid[b, a]
        for st in range(n_stages):
            start, stop = ptr[st], ptr[st + 1]
            any_surv = False
            for j in range(n_a):
                surv[j] = False
                if not cand[j]:
                    continue
                removed = False
                for i in range(n_a):
                    if i == j or not cand[i]:
                        continue
                    for t in range(start, stop):
                        k = objs[t]
                        if _beats(z, d, objs, t, t + 1, b, i, j, need) \
                                and not _beats(z, d, pobjs, pptr[k], pptr[k + 1], b, j, i, need):
                            removed = True
                            break
                    if removed:
                        break
                surv[j] = not removed
                any_surv = any_surv or surv[j]
            if any_surv:
                for a in range(n_a):
                    cand[a] = surv[a]
            else:  # every candidate removed (a cycle): keep the best mean sum over the stage
                top = tol[2]  # -inf in the dtype of means, so that top stays in it
                for a in range(n_a):
                    if cand[a]:
                        s = means[b, objs[start], a]
                        for t in range(start + 1, stop):
                            s = s + means[b, objs[t], a]
                        score[a] = s
                        if s > top:
                            top = s
                threshold = top
                if abs(top) != np.inf:
                    threshold = top - tol[0] * (tol[1] + abs(top))
                for a in range(n_a):
                    cand[a] = cand[a] and score[a] >= threshold
            for a in range(n_a):
                out[st, b, a] = cand[a]
    return out, (-1, -1, -1)


@numba.njit(cache=True)
def rulebook_subset_kernel(z, d, means, plan, need, valid):
    """The rulebook non-dominated mask ``[B, A]``, one state at a time (``above[l, k]`` of :func:`_unpack`:
    objective l strictly outranks k); the top cycle where no action is non-dominated; and the first NaN as in
    :func:`staged_subsets_kernel`. Same masks as :func:`morl.dominance._rulebook_subset_torch`."""
    n_b, m, n_a, _ = z.shape
    above = _unpack(plan)[4]
    out = np.zeros((n_b, n_a), dtype=np.bool_)
    objs = np.arange(m)
    win = np.zeros((m, n_a, n_a), dtype=np.bool_)
    pref = np.zeros((n_a, n_a), dtype=np.bool_)
    reach = np.zeros((n_a, n_a), dtype=np.bool_)
    for b in range(n_b):
        k_nan, a_nan = _nan_objective(means, valid, b)
        if k_nan >= 0:
            return out, (b, k_nan, a_nan)
        for k in range(m):
            for i in range(n_a):
                for j in range(n_a):
                    win[k, i, j] = i != j and valid[b, i] and valid[b, j] and _beats(z, d, objs, k, k + 1, b, i, j, need)
        for i in range(n_a):
            for j in range(n_a):
                ok = True
                for k in range(m):
                    if win[k, j, i]:
                        covered = False
                        for l_ in range(m):
                            if above[l_, k] and win[l_, i, j]:
                                covered = True
                                break
                        if not covered:
                            ok = False
                            break
                pref[i, j] = ok
        any_nd = False
        for i in range(n_a):
            for j in range(n_a):
                reach[i, j] = valid[b, i] and valid[b, j] and pref[i, j] and not pref[j, i]
        for j in range(n_a):
            dominated = False
            for i in range(n_a):
                if reach[i, j]:
                    dominated = True
                    break
            out[b, j] = valid[b, j] and not dominated
            any_nd = any_nd or out[b, j]
        if not any_nd:  # cyclic preference: the top cycle
            for c in range(n_a):  # transitive closure (Floyd–Warshall)
                for i in range(n_a):
                    if reach[i, c]:
                        for j in range(n_a):
                            if reach[c, j]:
                                reach[i, j] = True
            for j in range(n_a):
                keep = valid[b, j]
                for i in range(n_a):
                    if reach[i, j] and not reach[j, i]:
                        keep = False
                        break
                out[b, j] = keep
    return out, (-1, -1, -1)


def kernel_constants(preorder: Preorder, theta: float, k: int, dtype: torch.dtype):
    """The constant arguments of :func:`subset_kernel` for ``k`` quantiles of ``dtype``: ``(plan, need, tol)``
    (the preorder packed for :func:`_unpack`, fewest wins, the fallback's tie margin)."""
    need = _min_wins(k, check_theta(theta), dtype)
    tol = np.array([1e-5, 1.0, -np.inf], dtype=torch.empty((), dtype=dtype).numpy().dtype)
    return _plan(preorder.m, preorder.geq.tobytes()), need, tol


@lru_cache(maxsize=64)
def _plan(m: int, geq: bytes) -> np.ndarray:
    """The preorder of matrix ``geq`` as one int64 array (one argument to unbox, not five, at every call):
    ``[S, m, ptr (S + 1), objs (m), pptr (m + 1), pobjs, above (m * m)]``, see :func:`_unpack`."""
    p = Preorder([f"o{i}" for i in range(m)], np.frombuffer(geq, dtype=bool).reshape(m, m))
    ptr, objs = _csr(tuple(tuple(lv) for lv in p.level_indices))
    pptr, pobjs = _csr(tuple(tuple(int(x) for x in np.flatnonzero(row)) for row in p.peers))
    head = np.array([len(ptr) - 1, m], dtype=np.int64)
    return np.concatenate([head, ptr, objs, pptr, pobjs, p.strictly_above.reshape(-1).astype(np.int64)])


@numba.njit(cache=True)
def _unpack(plan):
    """``(ptr, objs, pptr, pobjs, above)`` from :func:`_plan`: the stages (``objs[ptr[s]:ptr[s + 1]]``), the
    objectives tied with or incomparable to each objective (CSR likewise) and ``above[l, k]``, l strictly above k."""
    n_s, m = plan[0], plan[1]
    at = 2
    ptr = plan[at:at + n_s + 1]
    at += n_s + 1
    objs = plan[at:at + m]
    at += m
    pptr = plan[at:at + m + 1]
    at += m + 1
    pobjs = plan[at:at + pptr[m]]
    at += pptr[m]
    return ptr, objs, pptr, pobjs, plan[at:at + m * m].reshape((m, m)) != 0


@numba.njit(cache=True)
def subset_kernel(z, d, means, plan, need, valid, tol, rulebook):
    """The optimal subset ``[B, A]`` under ``rulebook`` (else staged) and the NaN report of the kernels."""
    if rulebook:
        return rulebook_subset_kernel(z, d, means, plan, need, valid)
    out, bad = staged_subsets_kernel(z, d, means, plan, need, valid, tol)
    return out[-1], bad
