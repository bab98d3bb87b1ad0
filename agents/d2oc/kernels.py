"""numba kernels of D2OC (stages A-1, B, C) and of the Lloyd baseline.

Weights are float64 so that mass is conserved to round-off. Sample selection never sorts all M
samples: an agent point takes mass ``alpha = 1 / (N T)``, a few samples' worth, so the kernels pick the
next-best sample by repeated linear scans (the first one fused with the key computation) and fall back
to one argsort only when more than ``_MAX_SCANS`` samples are needed.

Stage C keeps, as the authors' MATLAB code, per-agent *consumption logs* with timestamps, but stores
them as append-only event lists ``(time, sample, amount)`` rather than N x N dense copies: knowing agent
r's log up to time ``tau`` is knowing r's first ``known[i, r]`` events, so a merge subtracts only the
events agent i had not seen. Memory is O(N^2 + N M + events) instead of O(N^2 M).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["select_mass", "local_target", "consume", "d2oc_step", "voronoi_centroids",
           "MODE_CENTRALISED", "MODE_LOG_GOSSIP", "MODE_MIN_CONSENSUS"]

MODE_CENTRALISED, MODE_LOG_GOSSIP, MODE_MIN_CONSENSUS = 0, 1, 2
_MAX_SCANS = 24


@numba.njit(cache=True)
def select_mass(keys, w, need, first, idx_out, amt_out):
    """Fill mass ``need`` from samples in ascending ``keys`` (``inf`` = excluded); ``first`` = argmin of keys.

    Writes the chosen indices and amounts (full weights, the last one partial) into ``idx_out``/``amt_out``
    and returns their count. Ties are broken by index, so the result is deterministic.
    """
    m = keys.shape[0]
    n = 0
    if first < 0:
        return 0
    j = first
    prev_k, prev_j = keys[first], first
    while True:
        take = min(w[j], need)
        idx_out[n], amt_out[n] = j, take
        n += 1
        need -= take
        if need <= 0.0:
            return n
        if n >= _MAX_SCANS:
            break
        best, bj = np.inf, -1
        for jj in range(m):  # next in (key, index) order after (prev_k, prev_j)
            k = keys[jj]
            if k < best or (k == best and jj < bj):
                if k > prev_k or (k == prev_k and jj > prev_j):
                    best, bj = k, jj
        if bj < 0 or best == np.inf:
            return n
        j, prev_k, prev_j = bj, best, bj
    # many samples needed: sort the rest once
    order = np.argsort(keys, kind="mergesort")
    for jj in order:
        k = keys[jj]
        if k == np.inf:
            break
        if k < prev_k or (k == prev_k and jj <= prev_j):
            continue
        take = min(w[jj], need)
        idx_out[n], amt_out[n] = jj, take
        n += 1
        need -= take
        if need <= 0.0:
            break
    return n


@numba.njit(cache=True, error_model="numpy")
def _keys(px, py, sx, sy, w, by_weight, keys):
    """Ranking keys (``d^2``, or ``d^2 / w^2`` when ``by_weight``), ``inf`` where ``w == 0``; returns the argmin.

    The mass test is a select, not a branch: whether a sample still has mass is unpredictable, and a
    branch per sample made this scan three times slower. The running minimum's branch is predictable.
    """
    m = sx.shape[0]
    best, first = np.inf, -1
    if by_weight:
        for j in range(m):
            dx, dy, wj = sx[j] - px, sy[j] - py, w[j]
            k = (dx * dx + dy * dy) / (wj * wj) if wj > 0.0 else np.inf
            keys[j] = k
            if k < best:
                best, first = k, j
    else:
        for j in range(m):
            dx, dy = sx[j] - px, sy[j] - py
            k = dx * dx + dy * dy if w[j] > 0.0 else np.inf
            keys[j] = k
            if k < best:
                best, first = k, j
    return first


@numba.njit(cache=True)
def local_target(px, py, sx, sy, w, alpha, keys, idx, amt):
    """Stage A-1: greedy fill of mass ``alpha`` ranked by ``d^2 / w^2`` (near and heavy first); barycenter.

    Returns ``(gx, gy, mass)``; ``mass == 0`` when the weight copy is empty. The barycenter is the point
    the local W2 cost is quadratic around (Prop. 1 of arXiv 2511.18579).
    """
    first = _keys(px, py, sx, sy, w, True, keys)
    n = select_mass(keys, w, alpha, first, idx, amt)
    gx, gy, mass = 0.0, 0.0, 0.0
    for s in range(n):
        j, a = idx[s], amt[s]
        gx += a * sx[j]
        gy += a * sy[j]
        mass += a
    if mass > 0.0:
        return gx / mass, gy / mass, mass
    return px, py, 0.0


@numba.njit(cache=True)
def consume(px, py, sx, sy, w, alpha, keys, idx, amt):
    """Stage B: the agent point at ``(px, py)`` takes mass ``alpha`` nearest-first from ``w`` (in place).

    This is the exact OT of one point of mass ``alpha`` against the capacities ``w``. Returns the number
    of (index, amount) events written into ``idx``/``amt``.
    """
    first = _keys(px, py, sx, sy, w, False, keys)
    n = select_mass(keys, w, alpha, first, idx, amt)
    for s in range(n):
        j = idx[s]
        w[j] = max(w[j] - amt[s], 0.0)  # a full take gives exactly 0
    return n


@numba.njit(cache=True)
def _apply_events(W, dst, ev_j, ev_a, r, start, stop):
    """Subtract agent r's log entries ``start..stop-1`` from agent ``dst``'s copy (clipped at 0)."""
    for k in range(start, stop):
        j = ev_j[r, k]
        W[dst, j] = max(W[dst, j] - ev_a[r, k], 0.0)


@numba.njit(cache=True)
def _merge(W, i, q, mode, known, ev_j, ev_a):
    """Stage C between neighbours i and q."""
    if mode == MODE_MIN_CONSENSUS:
        for j in range(W.shape[1]):
            v = min(W[i, j], W[q, j])
            W[i, j] = v
            W[q, j] = v
        return
    # Timestamped log gossip: the holder of the older copy of agent r's log adopts the newer one. Logs
    # are append-only, so "known up to time tau" is "known up to entry count"; counts avoid searches.
    for r in range(known.shape[1]):
        kq, ki = known[q, r], known[i, r]
        if kq > ki:
            _apply_events(W, i, ev_j, ev_a, r, ki, kq)
            known[i, r] = kq
        elif ki > kq:
            _apply_events(W, q, ev_j, ev_a, r, kq, ki)
            known[q, r] = ki


@numba.njit(cache=True)
def _predicted_copy(W, i, t, alpha, known, ev_t, ev_j, start_j, sx, sy, out, keys, idx, amt):
    """Agent i's copy minus the mass the agents it has not heard from lately should have consumed since.

    Agent r takes ``alpha`` per step; i knows r's log up to the entry at time ``t_r``, while a complete
    graph would have told it up to ``t`` (agents before i in this step's order) or ``t - 1`` (the others).
    The missing ``(t_known - t_r) * alpha`` is taken nearest-first around the sample of r's last known entry
    (where r was then) from ``out``, a scratch copy of ``W[i]``; the copy itself is unchanged, so the real
    log replaces the estimate at the next contact. An agent i has never heard of is taken from its start,
    the sample ``start_j[r]`` nearest to where it began (``-1``: unknown, no estimate). Returns ``out``.
    """
    out[:] = W[i]
    for r in range(known.shape[0]):
        if r == i:
            continue
        if known[i, r] == 0:
            if start_j[r] < 0:
                continue
            j, since = start_j[r], 0  # r's first entry is at step 1: it has taken t_known steps' worth
        else:
            last = known[i, r] - 1
            j, since = ev_j[r, last], ev_t[r, last]
        stale = (t if r < i else t - 1) - since
        if stale >= 1:
            consume(sx[j], sy[j], sx, sy, out, stale * alpha, keys, idx, amt)
    return out


@numba.njit(cache=True)
def d2oc_step(pos, t, sx, sy, W, mode, comm_r2, alpha, known, ev_t, ev_j, ev_a, ev_n, consumed, targets, masses,
              predict=False, start_j=None):
    """One D2OC decision for all agents, in the authors' sequential (Gauss-Seidel) agent order.

    For agent i: stage B (consume at the observed position, when ``t >= 1``), stage C (merge with the
    agents within ``sqrt(comm_r2)``), stage A-1 (target for the next move). ``W`` is ``(1, M)`` in
    centralised mode (one shared weight vector) and ``(N, M)`` otherwise. ``consumed[i]`` accumulates
    agent i's consumed mass. With ``predict`` (log gossip only), stage A-1 works on
    :func:`_predicted_copy`, which also estimates the agents never heard of from ``start_j`` (the sample
    nearest each agent's start; ``None``: unknown). Returns the event arrays (reallocated when they had to grow).
    """
    n_agents = pos.shape[0]
    m = sx.shape[0]
    keys = np.empty(m)
    idx = np.empty(m, dtype=np.int64)
    amt = np.empty(m)
    scratch = np.empty(m)
    predict = predict and mode == MODE_LOG_GOSSIP
    starts = np.full(n_agents, -1, dtype=np.int64) if start_j is None else start_j
    for i in range(n_agents):
        row = 0 if mode == MODE_CENTRALISED else i
        px, py = pos[i, 0], pos[i, 1]
        if t >= 1:
            n = consume(px, py, sx, sy, W[row], alpha, keys, idx, amt)
            for s in range(n):
                consumed[i] += amt[s]
            if mode == MODE_LOG_GOSSIP:
                if ev_n[i] + n > ev_t.shape[1]:  # grow the logs (doubling)
                    cap = max(2 * ev_t.shape[1], ev_n[i] + n)
                    nt = np.zeros((n_agents, cap), dtype=np.int64)
                    nj = np.zeros((n_agents, cap), dtype=np.int64)
                    na = np.zeros((n_agents, cap))
                    nt[:, :ev_t.shape[1]] = ev_t
                    nj[:, :ev_t.shape[1]] = ev_j
                    na[:, :ev_t.shape[1]] = ev_a
                    ev_t, ev_j, ev_a = nt, nj, na
                for s in range(n):
                    ev_t[i, ev_n[i]] = t
                    ev_j[i, ev_n[i]] = idx[s]
                    ev_a[i, ev_n[i]] = amt[s]
                    ev_n[i] += 1
                known[i, i] = ev_n[i]
        if mode != MODE_CENTRALISED:
            for q in range(n_agents):
                if q != i:
                    dx, dy = pos[q, 0] - px, pos[q, 1] - py
                    if dx * dx + dy * dy < comm_r2:
                        _merge(W, i, q, mode, known, ev_j, ev_a)
        mass = 0.0
        if predict:
            w = _predicted_copy(W, i, t, alpha, known, ev_t, ev_j, starts, sx, sy, scratch, keys, idx, amt)
            gx, gy, mass = local_target(px, py, sx, sy, w, alpha, keys, idx, amt)
        if mass == 0.0:  # no prediction, or it emptied the copy: the copy itself
            gx, gy, mass = local_target(px, py, sx, sy, W[row], alpha, keys, idx, amt)
        targets[i, 0], targets[i, 1] = gx, gy
        masses[i] = mass
    return ev_t, ev_j, ev_a


@numba.njit(cache=True)
def voronoi_centroids(pos, cells, mass, targets, cell_mass):
    """Lloyd step: each grid cell goes to its nearest agent; targets = mass-weighted centroids.

    Agents whose Voronoi cell holds no mass keep their position. ``cell_mass[i]`` = mass of agent i's cell.
    """
    n = pos.shape[0]
    sx = np.zeros(n)
    sy = np.zeros(n)
    cell_mass[:] = 0.0
    for c in range(cells.shape[0]):
        mc = mass[c]
        if mc <= 0.0:
            continue
        best, bi = np.inf, 0
        for i in range(n):
            dx, dy = cells[c, 0] - pos[i, 0], cells[c, 1] - pos[i, 1]
            d2 = dx * dx + dy * dy
            if d2 < best:
                best, bi = d2, i
        sx[bi] += mc * cells[c, 0]
        sy[bi] += mc * cells[c, 1]
        cell_mass[bi] += mc
    for i in range(n):
        if cell_mass[i] > 0.0:
            targets[i, 0], targets[i, 1] = sx[i] / cell_mass[i], sy[i] / cell_mass[i]
        else:
            targets[i, 0], targets[i, 1] = pos[i, 0], pos[i, 1]
