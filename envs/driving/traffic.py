"""Traffic kernels: neighbour search, IDM car following, MOBIL lane changes, respawning.

Traffic lives in the route's Frenet frame (see :mod:`morl.envs.driving.road`). Per env the vehicles are kept
sorted by ``s`` (``order``), so one sweep front-to-back finds every vehicle's nearest leader in every
lane and one sweep back-to-front its nearest follower: ``O(V * lanes)`` instead of ``O(V^2)``. A vehicle
occupies each lane its lateral extent overlaps (two lanes while it changes lanes). The ego, when active,
takes part in the sweeps as vehicle index ``V``.

Layouts (all float64):

- ``traf[e, field, i]`` with fields ``T_*``; ``order[e, k]`` the traffic indices sorted by ``s``;
- ``ego[e, field]`` with fields ``E_*`` (see :mod:`morl.envs.driving.sim`);
- ``P`` the parameter vector with indices ``P_*`` (see :mod:`morl.envs.driving.sim`).
"""

from __future__ import annotations

import math

import numba

from morl.envs.driving.geometry import grid_value, idm_accel, lane_exists, lane_of, rand_uniform

# Kernels are compiled with `_nrt=False` (no reference counting: they never allocate). Called from the
# batched step, a non-inlined call that passes arrays otherwise pays an atomic incref/decref per array
# argument, which measured several times slower in the per-vehicle loops. They work from Python as usual.
# Those called once per vehicle, or once per env from the step, are also `inline="always"` (numba inlines
# them in its IR): LLVM does not inline them across numba's modules, and a call passes every array as
# about ten machine words, which cost more than the work in the loops (1.2-1.3x on the whole step).

# traffic fields
T_S, T_D, T_V, T_VD, T_V0F, T_LANE, T_TARGET = range(7)
N_TRAFFIC_FIELDS = 7

# parameter indices (shared with sim.py)
(P_DT, P_LANE_W, P_N_LANES, P_LENGTH, P_GRID_STEP, P_SHOULDER, P_V_MAX, P_ACC_MAX, P_MAX_STEER,
 P_WHEELBASE, P_VEH_LEN, P_VEH_WID, P_IDM_A, P_IDM_B, P_IDM_S0, P_IDM_T, P_IDM_DELTA, P_MOBIL_P,
 P_MOBIL_TH, P_MOBIL_BSAFE, P_MOBIL_BIAS, P_MOBIL_PERIOD, P_LC_TIME, P_BACK, P_FRONT, P_TF_LO, P_TF_HI,
 P_MAX_STEPS, P_STEP_REF, P_TTC_HOLD, P_COMFORT_HOLD, P_SPEED_STEP, P_EGO_ACTIVE, P_K, P_CONTINUOUS,
 P_SPAWN_GAP, P_DECEL_MAX, P_INIT_SPEED_F, P_RECYCLE, P_EGO_SPEED_OBS) = range(40)
N_PARAMS = 40

# ego fields used here (the rest are in sim.py)
E_S, E_D, E_PSI, E_V = 0, 1, 2, 3

NO_GAP = 1e9

# indices of the tuple returned by `traffic_consts`
C_A, C_B, C_S0, C_T, C_DELTA, C_VLEN, C_LANE_W, C_HALF_W, C_GRID_STEP, C_DECEL_MAX = range(10)


@numba.njit(cache=True, _nrt=False, inline="always")
def traffic_consts(P):
    """The parameters the per-vehicle loops read, as a tuple of locals loaded once per env. Read from ``P``
    inside the loops they would be reloaded (and ``sqrt(a b)`` of IDM recomputed) for every vehicle: ``P``
    and the ``acc`` / ``traf`` arrays the loops write are all float64, so LLVM must assume they alias."""
    return (P[P_IDM_A], P[P_IDM_B], P[P_IDM_S0], P[P_IDM_T], P[P_IDM_DELTA], P[P_VEH_LEN], P[P_LANE_W],
            0.5 * P[P_VEH_WID], P[P_GRID_STEP], P[P_DECEL_MAX])


@numba.njit(cache=True, _nrt=False, inline="always")
def _idm(v, v0, gap, v_lead, c):
    return idm_accel(v, v0, gap, v_lead, c[C_A], c[C_B], c[C_S0], c[C_T], c[C_DELTA])


@numba.njit(cache=True, _nrt=False)
def occupied_lanes(d, half_width, lane_width, n_lanes):
    """``(lo, hi)`` lane indices overlapped by the lateral extent ``[d - half_width, d + half_width]``."""
    # int() truncates towards zero: the +64 offset makes it a floor for any realistic d (> -256 m)
    inv = 1.0 / lane_width
    lo = int((d - half_width) * inv + 64.5) - 64
    hi = int((d + half_width) * inv + 64.5) - 64
    if lo < 0:
        lo = 0
    if hi > n_lanes - 1:
        hi = n_lanes - 1
    if lo > hi:  # entirely outside the lanes: attach to the nearest edge lane
        lo = hi = min(max(lane_of(d, lane_width), 0), n_lanes - 1)
    return lo, hi


@numba.njit(cache=True, _nrt=False)
def ego_half_width(psi, P):
    """Lateral half extent of the ego's box at road-relative heading ``psi``."""
    return ego_half_width_cs(math.cos(psi), math.sin(psi), P)


@numba.njit(cache=True, _nrt=False)
def ego_half_width_cs(cos_psi, sin_psi, P):
    """:func:`ego_half_width` from the heading's cosine and sine."""
    return 0.5 * P[P_VEH_LEN] * abs(sin_psi) + 0.5 * P[P_VEH_WID] * abs(cos_psi)


@numba.njit(cache=True, _nrt=False, inline="always")
def _mark(j, d, hw, target, P, n_lanes, front, table, full):
    # table[j, l] = nearest vehicle seen so far in lane l (every lane when `full`, else only j's own
    # lanes and its target lane, all that car following needs); then j becomes the nearest in its lanes.
    # A vehicle changing lanes already counts in its target lane (it has signalled), so vehicles there
    # react from the start of the manoeuvre, not once its box crosses the line.
    lo, hi = occupied_lanes(d, hw, P[P_LANE_W], n_lanes)
    if full:
        for lane in range(n_lanes):
            table[j, lane] = front[lane]
    else:
        for lane in range(lo, hi + 1):
            table[j, lane] = front[lane]
        if 0 <= target < n_lanes:
            table[j, target] = front[target]
    for lane in range(lo, hi + 1):
        front[lane] = j
    if 0 <= target < n_lanes:
        front[target] = j


@numba.njit(cache=True, _nrt=False)
def neighbours(e, ego, traf, order, P, leader, follower, front, with_followers=True):
    """Fill ``leader[i, l]`` / ``follower[i, l]``: the nearest vehicle ahead / behind vehicle ``i`` in
    lane ``l`` (``-1`` none; index ``V`` is the ego). With ``with_followers`` (what MOBIL needs) both
    tables are filled for every lane; without, only ``leader`` for each vehicle's own and target lanes
    (what car following needs)."""
    V = traf.shape[2]
    n_lanes = int(P[P_N_LANES])
    active = P[P_EGO_ACTIVE] > 0.5
    hw_t = 0.5 * P[P_VEH_WID]
    s_e = ego[e, E_S]
    d_e = ego[e, E_D]
    hw_e = ego_half_width(ego[e, E_PSI], P)
    # front to back: leaders
    for lane in range(n_lanes):
        front[lane] = -1
    done = not active
    for k in range(V - 1, -1, -1):
        i = order[e, k]
        if not done and s_e >= traf[e, T_S, i]:
            _mark(V, d_e, hw_e, -1, P, n_lanes, front, leader, with_followers)
            done = True
        _mark(i, traf[e, T_D, i], hw_t, int(traf[e, T_TARGET, i]), P, n_lanes, front, leader, with_followers)
    if not done:
        _mark(V, d_e, hw_e, -1, P, n_lanes, front, leader, with_followers)
    if not active:
        for lane in range(n_lanes):
            leader[V, lane] = -1
    if not with_followers:
        return
    # back to front: followers
    for lane in range(n_lanes):
        front[lane] = -1
    done = not active
    for k in range(V):
        i = order[e, k]
        if not done and s_e < traf[e, T_S, i]:
            _mark(V, d_e, hw_e, -1, P, n_lanes, front, follower, True)
            done = True
        _mark(i, traf[e, T_D, i], hw_t, int(traf[e, T_TARGET, i]), P, n_lanes, front, follower, True)
    if not done:
        _mark(V, d_e, hw_e, -1, P, n_lanes, front, follower, True)
    if not active:
        for lane in range(n_lanes):
            follower[V, lane] = -1


@numba.njit(cache=True, _nrt=False)
def ego_long_speed(e, ego):
    """The ego's speed along the road (what the traffic sees of it)."""
    return ego[e, E_V] * math.cos(ego[e, E_PSI])


@numba.njit(cache=True, _nrt=False)
def _pos_speed(e, j, ego, traf, vs_e):
    # (s, longitudinal speed) of vehicle j; j == V is the ego, whose longitudinal speed the caller computed
    # once (`ego_long_speed`: a cosine per vehicle that follows the ego otherwise)
    V = traf.shape[2]
    if j == V:
        return ego[e, E_S], vs_e
    return traf[e, T_S, j], traf[e, T_V, j]


@numba.njit(cache=True, _nrt=False, inline="always")
def follow_accel(e, s, v, v0, lead, ego, traf, c, vs_e):
    """IDM acceleration of a vehicle at ``(s, v)`` with desired speed ``v0`` behind vehicle ``lead``
    (``c``: :func:`traffic_consts`; ``vs_e``: :func:`ego_long_speed`)."""
    if lead < 0:
        return _idm(v, v0, NO_GAP, 0.0, c)
    sl, vl = _pos_speed(e, lead, ego, traf, vs_e)
    return _idm(v, v0, sl - s - c[C_VLEN], vl, c)


@numba.njit(cache=True, _nrt=False, inline="always")
def lane_end_accel(s, v, v0, lane, lane_end, c):
    """IDM acceleration towards the end of ``lane`` seen as a standing obstacle (``NO_GAP`` far away)."""
    gap = lane_end[lane] - s - 0.5 * c[C_VLEN]
    if gap > 400.0:
        return 1e9
    return _idm(v, v0, gap, 0.0, c)


@numba.njit(cache=True, _nrt=False)
def desired_speed(e, i, traf, speed_grid, grid_step):
    return traf[e, T_V0F, i] * grid_value(speed_grid, grid_step, traf[e, T_S, i])


@numba.njit(cache=True, _nrt=False)
def traffic_accels(e, ego, traf, P, speed_grid, lane_end, leader, acc):
    """IDM acceleration of every traffic vehicle (``acc[0:V]``) and the ego's IDM response (``acc[V]``,
    used only by MOBIL to judge what a lane change does to the ego)."""
    V = traf.shape[2]
    n_lanes = int(P[P_N_LANES])
    c = traffic_consts(P)
    vs_e = ego_long_speed(e, ego)
    for i in range(V):
        lo, hi = occupied_lanes(traf[e, T_D, i], c[C_HALF_W], c[C_LANE_W], n_lanes)
        acc[i] = _vehicle_accel(e, i, lo, hi, ego, traf, speed_grid, lane_end, leader, i, c, vs_e)
    if P[P_EGO_ACTIVE] > 0.5:
        s = ego[e, E_S]
        v = vs_e
        v0 = grid_value(speed_grid, c[C_GRID_STEP], s)
        lane = min(max(lane_of(ego[e, E_D], c[C_LANE_W]), 0), n_lanes - 1)
        acc[V] = max(follow_accel(e, s, v, v0, leader[V, lane], ego, traf, c, vs_e), -c[C_DECEL_MAX])
    else:
        acc[V] = 0.0


@numba.njit(cache=True, _nrt=False)
def _target_taken(e, i, lane, traf, speed_grid, c, b_safe):
    # Another vehicle decided (this step, so the neighbour tables do not show it yet) to move into `lane`
    # close enough that one of the two would have to brake harder than b_safe behind the other: two
    # vehicles from both sides of a lane must not merge into the same gap.
    s = traf[e, T_S, i]
    v = traf[e, T_V, i]
    vl = c[C_VLEN]
    for j in range(traf.shape[2]):
        if j == i or traf[e, T_TARGET, j] != lane or traf[e, T_LANE, j] == lane:
            continue
        sj = traf[e, T_S, j]
        if abs(sj - s) > 150.0:
            continue
        if abs(sj - s) < vl + 2.0:
            return True
        if sj > s:  # j would lead i
            a = _idm(v, desired_speed(e, i, traf, speed_grid, c[C_GRID_STEP]), sj - s - vl, traf[e, T_V, j], c)
        else:
            a = _idm(traf[e, T_V, j], desired_speed(e, j, traf, speed_grid, c[C_GRID_STEP]), s - sj - vl, v, c)
        if a < -b_safe:
            return True
    return False


@numba.njit(cache=True, _nrt=False, inline="always")
def _vehicle_accel(e, i, lo, hi, ego, traf, speed_grid, lane_end, table, row, c, vs_e):
    # IDM acceleration of traffic vehicle i (occupying lanes lo..hi) behind the nearest vehicles in its
    # own lanes and its target lane (table[row, lane] holds them), and before the end of its target lane.
    # Inlined: a call passing this many arrays costs more than the computation.
    s = traf[e, T_S, i]
    v = traf[e, T_V, i]
    v0 = desired_speed(e, i, traf, speed_grid, c[C_GRID_STEP])
    target = int(traf[e, T_TARGET, i])
    a = follow_accel(e, s, v, v0, table[row, target], ego, traf, c, vs_e)
    for lane in range(lo, hi + 1):
        if lane != target:
            a = min(a, follow_accel(e, s, v, v0, table[row, lane], ego, traf, c, vs_e))
    a = min(a, lane_end_accel(s, v, v0, target, lane_end, c))
    return max(a, -c[C_DECEL_MAX])


@numba.njit(cache=True, _nrt=False, inline="always")
def follow_sweep(e, ego, traf, order, P, speed_grid, lane_end, front, acc):
    """Car following only (steps without lane-change decisions): one front-to-back sweep in which each
    vehicle's leaders are the current ``front[0, lane]`` entries (``front`` is ``(1, lanes)`` scratch), so
    its IDM acceleration is computed on the spot (no neighbour tables). Gives the same ``acc[0:V]`` as
    :func:`neighbours` + :func:`traffic_accels`."""
    V = traf.shape[2]
    n_lanes = int(P[P_N_LANES])
    c = traffic_consts(P)
    lw = c[C_LANE_W]
    active = P[P_EGO_ACTIVE] > 0.5
    s_e = ego[e, E_S]
    # the ego's heading enters twice (its lateral extent, its speed along the road): one cosine and sine
    psi_e = ego[e, E_PSI]
    cos_e = math.cos(psi_e)
    sin_e = math.sin(psi_e)
    vs_e = ego[e, E_V] * cos_e
    for lane in range(n_lanes):
        front[0, lane] = -1
    done = not active
    for k in range(V - 1, -1, -1):
        i = order[e, k]
        if not done and s_e >= traf[e, T_S, i]:
            lo, hi = occupied_lanes(ego[e, E_D], ego_half_width_cs(cos_e, sin_e, P), lw, n_lanes)
            for lane in range(lo, hi + 1):
                front[0, lane] = V
            done = True
        lo, hi = occupied_lanes(traf[e, T_D, i], c[C_HALF_W], lw, n_lanes)
        acc[i] = _vehicle_accel(e, i, lo, hi, ego, traf, speed_grid, lane_end, front, 0, c, vs_e)
        for lane in range(lo, hi + 1):
            front[0, lane] = i
        front[0, int(traf[e, T_TARGET, i])] = i  # signalled lane change: counts in the target lane
    acc[V] = 0.0


@numba.njit(cache=True, _nrt=False)
def mobil_decisions(e, step, ego, traf, P, speed_grid, lane_start, lane_end, leader, follower, acc):
    """MOBIL lane-change decisions (Kesting, Treiber, Helbing 2007, eq. 3-5) for vehicles not already
    changing lanes; the caller runs it every ``P_MOBIL_PERIOD`` steps (deciding less often than
    following saves the follower sweep on the other steps).

    Safety: the new follower's IDM deceleration must stay above ``-b_safe`` and the gaps positive.
    Incentive: ``a~_i - a_i + p (a~_n - a_n + a~_o - a_o) > threshold``, plus a keep-right bias and a
    strong push out of a lane that ends within 200 m."""
    V = traf.shape[2]
    n_lanes = int(P[P_N_LANES])
    c = traffic_consts(P)
    vl = c[C_VLEN]
    gs = c[C_GRID_STEP]
    b_safe = P[P_MOBIL_BSAFE]
    politeness = P[P_MOBIL_P]
    bias = P[P_MOBIL_BIAS]
    threshold = P[P_MOBIL_TH]
    vs_e = ego_long_speed(e, ego)
    for i in range(V):
        lane = int(traf[e, T_LANE, i])
        if int(traf[e, T_TARGET, i]) != lane:
            continue
        s = traf[e, T_S, i]
        v = traf[e, T_V, i]
        v0 = desired_speed(e, i, traf, speed_grid, gs)
        a_i = acc[i]
        forced = lane_end[lane] - s < 200.0
        old_f = follower[i, lane]
        old_l = leader[i, lane]
        best = threshold
        best_lane = -1
        gain_of = 0.0
        have_gain_of = False  # the old follower's gain is the same for both sides: computed once, when needed
        for side in range(2):
            new = lane - 1 if side == 0 else lane + 1
            if not lane_exists(lane_start, lane_end, n_lanes, new, s) or lane_end[new] - s < 250.0:
                continue
            nl = leader[i, new]
            nf = follower[i, new]
            if nl >= 0:
                sl, _ = _pos_speed(e, nl, ego, traf, vs_e)
                if sl - s - vl < 2.0:
                    continue
            # the safety checks first: a side they rule out needs no acceleration of i's
            gain_nf = 0.0
            if nf >= 0:
                sf, vf = _pos_speed(e, nf, ego, traf, vs_e)
                if s - sf - vl < 2.0:
                    continue
                v0f = desired_speed(e, nf, traf, speed_grid, gs) if nf < V else grid_value(speed_grid, gs, sf)
                a_nf_new = _idm(vf, v0f, s - sf - vl, v, c)
                if a_nf_new < -b_safe:
                    continue
                gain_nf = a_nf_new - acc[nf]
            a_new_i = min(follow_accel(e, s, v, v0, nl, ego, traf, c, vs_e), lane_end_accel(s, v, v0, new, lane_end, c))
            if not have_gain_of:
                have_gain_of = True
                if old_f >= 0:
                    sf, vf = _pos_speed(e, old_f, ego, traf, vs_e)
                    v0f = desired_speed(e, old_f, traf, speed_grid, gs) if old_f < V else grid_value(speed_grid, gs, sf)
                    gain_of = follow_accel(e, sf, vf, v0f, old_l, ego, traf, c, vs_e) - acc[old_f]
            incentive = a_new_i - a_i + politeness * (gain_nf + gain_of)
            incentive += bias if side == 0 else -bias
            if forced:
                incentive += 10.0
            if incentive > best and not _target_taken(e, i, new, traf, speed_grid, c, b_safe):
                best = incentive
                best_lane = new
        if best_lane >= 0:
            traf[e, T_TARGET, i] = best_lane


@numba.njit(cache=True, _nrt=False, inline="always")
def integrate_traffic(e, traf, P, acc):
    """Advance every traffic vehicle by one step: speed by its IDM acceleration (never below 0), lateral
    position towards its target lane at ``lane_width / lc_time`` m/s."""
    V = traf.shape[2]
    dt = P[P_DT]
    lw = P[P_LANE_W]
    lat_speed = lw / P[P_LC_TIME]
    for i in range(V):
        v = traf[e, T_V, i]
        v_new = max(v + acc[i] * dt, 0.0)
        # exact distance under constant deceleration when the vehicle stops within the step
        if v_new == 0.0 and acc[i] < 0.0:
            ds = v * v / (-2.0 * acc[i])
        else:
            ds = 0.5 * (v + v_new) * dt
        traf[e, T_S, i] += ds
        traf[e, T_V, i] = v_new
        target = traf[e, T_TARGET, i]
        err = target * lw - traf[e, T_D, i]
        step = lat_speed * dt
        if abs(err) <= step:
            traf[e, T_D, i] = target * lw
            traf[e, T_LANE, i] = target
            traf[e, T_VD, i] = err / dt
        else:
            sign = 1.0 if err > 0 else -1.0
            traf[e, T_D, i] += sign * step
            traf[e, T_VD, i] = sign * lat_speed


@numba.njit(cache=True, _nrt=False, inline="always")
def sort_order(e, traf, order):
    """Insertion sort of ``order[e]`` by ``s``: O(V) when the order barely changed since the last step."""
    V = traf.shape[2]
    for k in range(1, V):
        i = order[e, k]
        s = traf[e, T_S, i]
        m = k - 1
        while m >= 0 and traf[e, T_S, order[e, m]] > s:
            order[e, m + 1] = order[e, m]
            m -= 1
        order[e, m + 1] = i


@numba.njit(cache=True, _nrt=False)
def spawn_speeds(e, s, lane, skip, ego, traf, P, gap, n_placed=-1):
    """Speeds ``(v_lo, v_hi)`` at which a vehicle can appear at ``(s, lane)``; ``v_lo > v_hi`` when it cannot.

    Every vehicle overlapping or entering that lane (traffic other than ``skip``, and the active ego) must
    be at least ``gap`` away (centre to centre, 10 m more for the ego), and no one may need to brake
    harder than IDM's comfortable ``b`` to avoid the newcomer: the speed is at most ``v_ahead + sqrt(2 b
    (gap_ahead - 10))`` and at least ``v_behind - sqrt(2 b (gap_behind - 10))`` for the nearest vehicles.
    With ``n_placed >= 0`` only traffic ``0 .. n_placed - 1`` (and the ego) is checked: while a reset places
    the vehicles in turn, the others wait far behind and cannot be in the way."""
    V = traf.shape[2]
    n_check = V if n_placed < 0 else min(n_placed, V)
    lw = P[P_LANE_W]
    d = lane * lw
    reach = 0.5 * (lw + P[P_VEH_WID])
    b2 = 2.0 * P[P_IDM_B]
    v_lo = 0.0
    v_hi = 1e9
    for j in range(n_check + 1):  # j == n_check stands for the ego
        if j < n_check:
            if j == skip:
                continue
            # a vehicle changing into the lane counts as in it already
            if not (abs(traf[e, T_D, j] - d) < reach or traf[e, T_TARGET, j] == lane):
                continue
            sj = traf[e, T_S, j]
            vj = traf[e, T_V, j]
            need = gap
        else:
            if P[P_EGO_ACTIVE] < 0.5 or abs(ego[e, E_D] - d) >= reach + 0.5 * P[P_VEH_LEN]:
                continue
            sj = ego[e, E_S]
            vj = ego[e, E_V] * math.cos(ego[e, E_PSI])
            need = gap + 10.0
        ds = sj - s
        if abs(ds) < need:
            return 1.0, 0.0
        if ds > 0:
            v_hi = min(v_hi, vj + math.sqrt(b2 * max(ds - 10.0, 0.0)))
        else:
            v_lo = max(v_lo, vj - math.sqrt(b2 * max(-ds - 10.0, 0.0)))
    return v_lo, v_hi


@numba.njit(cache=True, _nrt=False)
def place_vehicle(e, i, s, rng, ego, traf, P, speed_grid, lane_start, lane_end, n_placed=-1):
    """Put vehicle ``i`` at ``s`` in a random lane that exists there and has room (:func:`spawn_speeds`;
    tries each lane once from a random start), at its desired speed clipped to the safe range.
    Returns whether it found room; the vehicle is untouched otherwise. ``n_placed``: see :func:`spawn_speeds`."""
    n_lanes = int(P[P_N_LANES])
    first = int(rand_uniform(rng, e) * n_lanes)
    for k in range(n_lanes):
        lane = (first + k) % n_lanes
        if not lane_exists(lane_start, lane_end, n_lanes, lane, s) or lane_end[lane] - s < 150.0:
            continue
        v_lo, v_hi = spawn_speeds(e, s, lane, i, ego, traf, P, P[P_SPAWN_GAP], n_placed)
        if v_lo > v_hi:
            continue
        f = P[P_TF_LO] + (P[P_TF_HI] - P[P_TF_LO]) * rand_uniform(rng, e)
        traf[e, T_S, i] = s
        traf[e, T_D, i] = lane * P[P_LANE_W]
        traf[e, T_VD, i] = 0.0
        traf[e, T_V0F, i] = f
        traf[e, T_V, i] = min(max(f * grid_value(speed_grid, P[P_GRID_STEP], s), v_lo), v_hi)
        traf[e, T_LANE, i] = lane
        traf[e, T_TARGET, i] = lane
        return True
    return False


@numba.njit(cache=True, _nrt=False, inline="always")
def recycle(e, step, rng, ego, traf, P, speed_grid, lane_start, lane_end):
    """Keep traffic around the ego: a vehicle more than ``P_BACK`` behind it reappears ahead (beyond
    ``P_FRONT``), one more than ``P_FRONT + 100`` ahead reappears behind. Each vehicle is considered every
    4th step only (staggered by index): when the spawn area is full, retrying every step was a fifth
    of the step's cost."""
    V = traf.shape[2]
    s_e = ego[e, E_S]
    back = P[P_BACK]
    ahead = P[P_FRONT]
    for i in range((step & 3), V, 4):
        s = traf[e, T_S, i]
        if s < s_e - back:
            place_vehicle(e, i, s_e + ahead + 40.0 * rand_uniform(rng, e), rng, ego, traf, P, speed_grid,
                          lane_start, lane_end)
        elif s > s_e + ahead + 100.0:
            place_vehicle(e, i, s_e - back + 10.0 * rand_uniform(rng, e), rng, ego, traf, P, speed_grid,
                          lane_start, lane_end)
