"""Scalar numba kernels of the driving simulator: RNG, road look-ups, kinematics, IDM, box overlap.

Every function here is ``numba.njit(cache=True)`` and works on scalars or small arrays, so the batched
step in :mod:`morl.envs.driving.sim` composes them and the tests can call each one from Python and compare
it with a plain reference implementation.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Kernels are compiled with `_nrt=False` (no reference counting: they never allocate). Called from the
# batched step, a non-inlined call that passes arrays otherwise pays an atomic incref/decref per array
# argument, which measured several times slower in the per-vehicle loops. They work from Python as usual.
# The ones with loops that the step calls several times (`road_edges`, `box_off_road_cs`) are also
# `inline="always"`: LLVM does not inline them across numba's modules (see envs/driving/traffic.py).

# ----------------------------------------------------------------------------- random numbers


@numba.njit(cache=True, _nrt=False)
def seed_state(seed):
    """A non-zero xorshift64* state from an integer seed (splitmix64 scrambling)."""
    z = np.uint64(seed) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    if z == np.uint64(0):
        z = np.uint64(0x2545F4914F6CDD1D)
    return z


@numba.njit(cache=True, _nrt=False)
def rand_uniform(rng, e):
    """Next uniform in ``[0, 1)`` from env ``e``'s xorshift64* state ``rng[e]`` (updated in place)."""
    x = rng[e]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[e] = x
    r = x * np.uint64(0x2545F4914F6CDD1D)
    return float(r >> np.uint64(11)) * (1.0 / 9007199254740992.0)


# ----------------------------------------------------------------------------- road look-ups

@numba.njit(cache=True, _nrt=False)
def grid_value(grid, step, s):
    """Value of a road grid at ``s`` (nearest lower grid point, clamped to the grid)."""
    i = int(s / step)
    if i < 0:
        i = 0
    elif i >= grid.shape[0]:
        i = grid.shape[0] - 1
    return grid[i]


@numba.njit(cache=True, _nrt=False)
def lane_exists(lane_start, lane_end, n_lanes, lane, s):
    """Whether lane ``lane`` exists at ``s``."""
    if lane < 0 or lane >= n_lanes:
        return False
    return lane_start[lane] <= s < lane_end[lane]


@numba.njit(cache=True, _nrt=False, inline="always")
def road_edges(lane_start, lane_end, n_lanes, lane_width, s):
    """Right and left edges ``(d_right, d_left)`` of the lanes existing at ``s``; ``(0, 0)`` if none."""
    lo = 1e9
    hi = -1e9
    for lane in range(n_lanes):
        if lane_start[lane] <= s < lane_end[lane]:
            c = lane * lane_width
            if c - 0.5 * lane_width < lo:
                lo = c - 0.5 * lane_width
            if c + 0.5 * lane_width > hi:
                hi = c + 0.5 * lane_width
    if lo > hi:
        return 0.0, 0.0
    return lo, hi


@numba.njit(cache=True, _nrt=False)
def lane_of(d, lane_width):
    """Index of the lane whose centre is nearest to lateral offset ``d``."""
    return int(math.floor(d / lane_width + 0.5))


# ----------------------------------------------------------------------------- kinematics

@numba.njit(cache=True, _nrt=False)
def bicycle_step(s, d, psi, v, accel, steer, kappa, wheelbase, v_max, dt):
    """One Euler step of the kinematic bicycle model in the route's Frenet frame.

    Centre-of-gravity form (Rajamani, "Vehicle Dynamics and Control", eq. 2.10-2.12, with the centre of
    gravity midway between the axles): slip angle ``beta = atan(tan(steer) / 2)``, world yaw rate
    ``v * sin(beta) / (wheelbase / 2)``; the Frenet frame adds ``s' = v cos(psi + beta) / (1 - kappa d)``,
    ``d' = v sin(psi + beta)`` and subtracts the reference line's turning ``kappa * s'`` from the

    heading relative to the road ``psi``. On a straight road (``kappa = 0``) this is the Cartesian model.

    :return: ``(s, d, psi, v, yaw_rate)`` after the step; ``v`` is clipped to ``[0, v_max]``.
    """
    beta = math.atan(0.5 * math.tan(steer))
    yaw_rate = v * math.sin(beta) / (0.5 * wheelbase)
    s_dot = v * math.cos(psi + beta) / (1.0 - kappa * d)
    d_dot = v * math.sin(psi + beta)
    psi_dot = yaw_rate - kappa * s_dot
    v_new = v + accel * dt
    if v_new < 0.0:
        v_new = 0.0
    elif v_new > v_max:
        v_new = v_max
    psi_new = psi + psi_dot * dt
    # keep the relative heading in (-pi, pi]
    if psi_new > math.pi:
        psi_new -= 2.0 * math.pi
    elif psi_new <= -math.pi:
        psi_new += 2.0 * math.pi
    return s + s_dot * dt, d + d_dot * dt, psi_new, v_new, yaw_rate


@numba.njit(cache=True, _nrt=False)
def idm_accel(v, v0, gap, v_lead, a_max, b_comf, s0, time_headway, delta):
    """Intelligent Driver Model acceleration (Treiber, Hennecke, Helbing 2000, eq. 1-2).

    ``a = a_max (1 - (v/v0)^delta - (s*/gap)^2)``, ``s* = s0 + max(0, v T + v dv / (2 sqrt(a_max b)))``
    with ``dv = v - v_lead``; ``gap`` is bumper to bumper (a huge value when there is no leader).
    ``delta`` is a whole number (4 in the paper): the power is a few multiplications, never a ``pow`` call,
    which LLVM would otherwise evaluate speculatively in the per-vehicle loops.
    """
    x = v / max(v0, 0.1)
    n = int(delta)
    if n == 4:  # the usual exponent
        x2 = x * x
        xn = x2 * x2
    else:
        xn = 1.0
        for _ in range(n):
            xn *= x
    free = 1.0 - xn
    if gap > 1e6:
        return a_max * free
    dv = v - v_lead
    s_star = s0 + max(0.0, v * time_headway + v * dv / (2.0 * math.sqrt(a_max * b_comf)))
    r = s_star / max(gap, 0.01)
    return a_max * (free - r * r)


# ----------------------------------------------------------------------------- boxes

@numba.njit(cache=True, _nrt=False)
def _project_extent(ca, sa, half_l, half_w, ax, ay):
    # half-extent of a box (axes (ca, sa), (-sa, ca)) projected on axis (ax, ay)
    return half_l * abs(ca * ax + sa * ay) + half_w * abs(-sa * ax + ca * ay)


@numba.njit(cache=True, _nrt=False)
def boxes_overlap(x1, y1, h1, l1, w1, x2, y2, h2, l2, w2):
    """Whether two oriented boxes (centre, heading, length, width) overlap: separating-axis test."""
    dx = x2 - x1
    dy = y2 - y1
    c1 = math.cos(h1)
    s1 = math.sin(h1)
    c2 = math.cos(h2)
    s2 = math.sin(h2)
    # the four candidate separating axes: both boxes' length and width directions
    for k in range(4):
        if k == 0:
            ax, ay = c1, s1
        elif k == 1:
            ax, ay = -s1, c1
        elif k == 2:
            ax, ay = c2, s2
        else:
            ax, ay = -s2, c2
        dist = abs(dx * ax + dy * ay)
        r = _project_extent(c1, s1, 0.5 * l1, 0.5 * w1, ax, ay) + _project_extent(c2, s2, 0.5 * l2, 0.5 * w2, ax, ay)
        if dist > r:
            return False
    return True


@numba.njit(cache=True, _nrt=False)
def box_off_road(s, d, psi, length, width, lane_start, lane_end, n_lanes, lane_width, shoulder):
    """Whether any corner of the box at ``(s, d)`` with road-relative heading ``psi`` lies outside the
    drivable area (the existing lanes at the corner's ``s`` plus ``shoulder`` on each side)."""
    return box_off_road_cs(s, d, math.cos(psi), math.sin(psi), length, width, lane_start, lane_end, n_lanes,
                           lane_width, shoulder)


@numba.njit(cache=True, _nrt=False, inline="always")
def box_off_road_cs(s, d, c, sn, length, width, lane_start, lane_end, n_lanes, lane_width, shoulder):
    """:func:`box_off_road` with the heading given as its cosine ``c`` and sine ``sn`` (callers that have
    them already save the trigonometric calls)."""
    # Where every lane exists (``s_all_lo <= s < s_all_hi``) the edges are those of all the lanes: one pass
    # finds that stretch and those edges (the same expressions as :func:`road_edges`, so the same bits), and
    # only corners outside it pay for their own look-up.
    s_all_lo = -math.inf
    s_all_hi = math.inf
    lo_all = 1e9
    hi_all = -1e9
    for lane in range(n_lanes):
        s_all_lo = max(s_all_lo, lane_start[lane])
        s_all_hi = min(s_all_hi, lane_end[lane])
        cl = lane * lane_width
        if cl - 0.5 * lane_width < lo_all:
            lo_all = cl - 0.5 * lane_width
        if cl + 0.5 * lane_width > hi_all:
            hi_all = cl + 0.5 * lane_width
    for k in range(4):
        fl = 0.5 * length if k < 2 else -0.5 * length
        fw = 0.5 * width if (k % 2) == 0 else -0.5 * width
        cs = s + fl * c - fw * sn
        cd = d + fl * sn + fw * c
        if s_all_lo <= cs < s_all_hi:
            lo, hi = lo_all, hi_all
        else:
            lo, hi = road_edges(lane_start, lane_end, n_lanes, lane_width, cs)
        if lo >= hi:
            return True
        if cd < lo - shoulder or cd > hi + shoulder:
            return True
    return False
