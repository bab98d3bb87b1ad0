"""numba kernels: one batched step of the SubRL grid worlds with incremental marginal gains.

Each kernel moves every env one step (``s' = T[s, a]``), computes the marginal gain
``F(s' | tau) = F(tau + {s'}) - F(tau)`` from a small per-env state instead of re-evaluating F on the
visited set, updates that state, and writes the modular reward ``F({s'})`` used by the ModPO baseline.
Costs per env and step: coverage O(block**2), items O(1), experiment design O(|S|**2) (one forward
substitution against the running Cholesky factor, instead of an O(|S|**3) log-determinant).

The plain set-based references these kernels must match live in :mod:`morl.envs.coverage.objectives`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def visit_cover(b, s, footprint, weights, covered):
    """Mark the footprint of cell ``s`` covered in env ``b``; return the weight newly covered."""
    gain = 0.0
    for j in range(footprint.shape[1]):
        c = footprint[s, j]
        if c < 0:
            break
        if covered[b, c] == 0:
            covered[b, c] = 1
            gain += weights[c]
    return gain


@numba.njit(cache=True)
def step_cover(transitions, footprint, weights, cell_modular, pos, t, actions, visited, covered, value, gains,
               modular):
    """Weighted coverage ``F(S) = sum of w over the union of footprints``: gain = weight newly covered."""
    for b in range(pos.shape[0]):
        s = transitions[pos[b], actions[b]]
        pos[b] = s
        t[b] += 1
        visited[b, s] = 1
        g = visit_cover(b, s, footprint, weights, covered)
        value[b] += g
        gains[b] = g
        modular[b] = cell_modular[s]


@numba.njit(cache=True)
def visit_item(b, s, item_type, demand, visited, counts):
    """Gain of visiting ``s`` under ``F(S) = sum_k min(|S cap items_k|, D_k)`` (visited updated by caller)."""
    k = item_type[s]
    if k < 0 or visited[b, s] != 0:
        return 0.0
    counts[b, k] += 1
    return 1.0 if counts[b, k] <= demand[k] else 0.0


@numba.njit(cache=True)
def step_items(transitions, item_type, demand, pos, t, actions, visited, counts, value, gains, modular):
    """Item collection: a first visit to an item cell of type k gains 1 while fewer than D_k are held."""
    for b in range(pos.shape[0]):
        s = transitions[pos[b], actions[b]]
        pos[b] = s
        t[b] += 1
        g = visit_item(b, s, item_type, demand, visited, counts)
        visited[b, s] = 1
        value[b] += g
        gains[b] = g
        modular[b] = 1.0 if item_type[s] >= 0 else 0.0


@numba.njit(cache=True)
def visit_design(b, s, cov, noise, visited, chol, selected, n_selected):
    """Gain of adding ``s`` to S under ``F(S) = 1/2 logdet(I + K_SS / noise)``, by a Cholesky update.

    With ``A = K_SS + noise I = L L^T`` and ``v = L^{-1} k_S(s)``, the Schur complement gives
    ``logdet A' = logdet A + log(k(s, s) + noise - v.v)``, so the gain is
    ``1/2 log((k(s, s) + noise - v.v) / noise)`` and ``L`` grows by the row ``[v, sqrt(d)]``.
    A cell already in S gains 0 (set semantics).
    """
    if visited[b, s] != 0:
        return 0.0
    m = n_selected[b]
    d = cov[s, s] + noise
    for i in range(m):  # forward substitution L v = k, row i of the new factor
        acc = cov[selected[b, i], s]
        for j in range(i):
            acc -= chol[b, i, j] * chol[b, m, j]
        v = acc / chol[b, i, i]
        chol[b, m, i] = v
        d -= v * v
    if d < noise * 1e-9:  # round-off on near-duplicate kernel rows; the true d is >= noise
        d = noise * 1e-9
    chol[b, m, m] = np.sqrt(d)
    selected[b, m] = s
    n_selected[b] = m + 1
    return 0.5 * np.log(d / noise)


@numba.njit(cache=True)
def step_design(transitions, cov, noise, cell_modular, pos, t, actions, visited, chol, selected, n_selected, value,
                gains, modular):
    """Experiment design (GP information gain): incremental log-determinant by a Cholesky row."""
    for b in range(pos.shape[0]):
        s = transitions[pos[b], actions[b]]
        pos[b] = s
        t[b] += 1
        g = visit_design(b, s, cov, noise, visited, chol, selected, n_selected)
        visited[b, s] = 1
        value[b] += g
        gains[b] = g
        modular[b] = cell_modular[s]
