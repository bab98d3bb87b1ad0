"""Batched driving simulator: reset and step kernels over ``E`` environments x ``V`` traffic vehicles.

One call of :func:`batch_step` advances every environment by one step: the ego (kinematic bicycle, from a
discrete meta-action through a lane/speed controller or from a continuous ``(accel, steer)``), the
traffic (IDM + MOBIL, :mod:`morl.envs.driving.traffic`), the checks (oriented-box collision, off-road, time to
collision, route completion), the reward vector (:mod:`morl.envs.driving.objectives`), the ``info``
quantities, and optionally resets the environments whose episode ended (SB3's auto-reset).

Per-env state lives in three arrays (so a single env is the batch of size 1 and pickles as plain data):
``ego[e, E_*]`` (float64), ``traf[e, T_*, i]`` (float64), ``order[e, :]`` (int64), plus the RNG states
``rng[e]`` (uint64, xorshift64*), so env ``e`` evolves identically whatever the batch around it.

Collision and off-road are checked in the Frenet frame (``s`` along the route, ``d`` lateral). On the
straight highway this is exact; on the curves of ``route`` it bends boxes by at most
``kappa * d * length / 2`` (under 0.2 m for the defaults), which we accept for the speed it buys.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import cgutils, types
from numba.core.extending import intrinsic

from morl.envs.driving import objectives as ob
from morl.envs.driving.observation import (N_EGO_OBS, N_ROUTE_OBS, N_VEH_OBS, ROUTE_AHEAD, WINDOW,  # noqa: F401
                                      clear_vehicle_rows, insert_nearest, obs_size, write_ego_route,
                                      write_vehicle_row)
from morl.envs.driving.geometry import (bicycle_step, box_off_road_cs, boxes_overlap, grid_value, lane_exists, lane_of,
                                   rand_uniform, road_edges, seed_state)
from morl.envs.driving.road import MAX_LANES
from morl.envs.driving.traffic import (P_ACC_MAX, P_COMFORT_HOLD, P_CONTINUOUS, P_DT, P_EGO_ACTIVE, P_FRONT, P_GRID_STEP,
                                  P_INIT_SPEED_F, P_K, P_LANE_W, P_LENGTH, P_MAX_STEER, P_MAX_STEPS, P_MOBIL_PERIOD,
                                  P_N_LANES, P_RECYCLE, P_SHOULDER, P_SPEED_STEP, P_STEP_REF, P_TTC_HOLD, P_V_MAX,
                                  P_VEH_LEN, P_VEH_WID, P_WHEELBASE, T_D, T_S, T_V, T_VD, follow_sweep,
                                  integrate_traffic, mobil_decisions, neighbours, place_vehicle, recycle, sort_order,
                                  traffic_accels)

# ego fields
(E_S, E_D, E_PSI, E_V, E_STEER, E_ACC, E_TLANE, E_TSPEED, E_YAW_RATE, E_STEPS, E_RC, E_TTC_LAST,
 E_CV0, E_CV1, E_CV2, E_CV3, E_CV4, E_CV5, E_LAT_ACC, E_JERK) = range(20)
N_EGO_FIELDS = 20

# info columns: objectives.INFO_KEYS order
(I_COLLISION, I_OFF_ROAD, I_RED_LIGHT, I_SPEEDING, I_SUCCESS, I_ROUTE_COMPLETION, I_COST, I_TTC,
 I_TTC_VIOLATION, I_OUTSIDE_LANES, I_SPEED, I_SPEED_LIMIT, I_C_RC, I_C_SPEEDING, I_C_OUTSIDE, I_C_TTC,
 I_C_COMFORT, I_C_LANE_CENTER, I_C_HARD, I_C_TERMINAL) = range(20)
N_INFO = 20
assert N_INFO == len(ob.INFO_KEYS)

#: meta-actions, in highway-env's DiscreteMetaAction order
LANE_LEFT, IDLE, LANE_RIGHT, FASTER, SLOWER = 0, 1, 2, 3, 4
N_META_ACTIONS = 5

TTC_NONE = 100.0  # time-to-collision reported when nothing is closing in
_KP_LAT = 0.8     # lateral controller: desired lateral speed per metre of lane offset (1/s)
_KP_HEAD = 2.5    # heading controller gain (1/s); with dt 0.2 s the loop stays well damped
_KP_SPEED = 1.0   # speed controller gain (1/s)


@numba.njit(cache=True, _nrt=False)
def seed_envs(rng, seeds):
    """Seed each env's RNG state from an integer seed."""
    for e in range(rng.shape[0]):
        rng[e] = seed_state(seeds[e])


@numba.njit(cache=True, _nrt=False)
def _clip(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


# ----------------------------------------------------------------------------- reset

@numba.njit(cache=True, _nrt=False)
def reset_env(e, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start, lane_end):
    """New episode for env ``e``: ego at the route start in a random lane near the speed limit's
    ``P_INIT_SPEED_F``, traffic spread from 30 m behind to ``P_FRONT`` ahead with spacing
    ``>= P_SPAWN_GAP``."""
    V = traf.shape[2]
    n_lanes = int(P[P_N_LANES])
    s0 = 10.0
    lane = int(rand_uniform(rng, e) * n_lanes)
    for k in range(n_lanes):  # the first lane that exists at the start
        cand = (lane + k) % n_lanes
        if lane_exists(lane_start, lane_end, n_lanes, cand, s0):
            lane = cand
            break
    limit = grid_value(speed_grid, P[P_GRID_STEP], s0)
    v = P[P_INIT_SPEED_F] * limit
    for f in range(ego.shape[1]):
        ego[e, f] = 0.0
    ego[e, E_S] = s0
    ego[e, E_D] = lane * P[P_LANE_W]
    ego[e, E_V] = v
    ego[e, E_TLANE] = lane
    ego[e, E_TSPEED] = P[P_SPEED_STEP] * math.floor(v / P[P_SPEED_STEP] + 0.5)
    ego[e, E_TTC_LAST] = -1e9
    for f in range(E_CV0, E_CV5 + 1):
        ego[e, f] = -1e9
    # traffic: everybody far away first, so spot checks see only the vehicles already placed
    for i in range(V):
        traf[e, T_S, i] = -1e6 - 100.0 * i
        traf[e, T_D, i] = -1e3
        traf[e, T_V, i] = 0.0
    span = P[P_FRONT] + 30.0
    for i in range(V):
        ok = False
        for _ in range(30):
            if place_vehicle(e, i, s0 - 30.0 + span * rand_uniform(rng, e), rng, ego, traf, P, speed_grid,
                             lane_start, lane_end, i):
                ok = True
                break
        k = 1
        while not ok:  # crowded: queue it beyond the spawn window
            ok = place_vehicle(e, i, s0 + P[P_FRONT] + 20.0 * k, rng, ego, traf, P, speed_grid,
                               lane_start, lane_end, i)
            k += 1
    for i in range(V):
        order[e, i] = i
    sort_order(e, traf, order)


@numba.njit(cache=True)
def batch_reset(mask, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start, lane_end, scales, obs):
    """Reset the envs where ``mask`` is true and write their observations."""
    K = max(int(P[P_K]), 1)
    dist = np.empty(K)
    nearest = np.empty(K, dtype=np.int64)
    for e in range(ego.shape[0]):
        if mask[e]:
            reset_env(e, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start, lane_end)
            write_obs(e, ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, obs[e], dist, nearest)


# ----------------------------------------------------------------------------- observation

@numba.njit(cache=True, _nrt=False, inline="always")
def write_obs(e, ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, out, dist, nearest):
    """Observation of env ``e`` into ``out``: :func:`write_obs_cs` with the ego heading's cosine and sine."""
    psi = ego[e, E_PSI]
    write_obs_cs(e, ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, out, dist, nearest,
                 math.cos(psi), math.sin(psi))


@numba.njit(cache=True, _nrt=False, inline="always")
def write_obs_cs(e, ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, out, dist, nearest, cos_psi,
                 sin_psi):
    """Observation of env ``e`` into ``out``: the layout and normalisation of :mod:`morl.envs.driving.observation`,
    whose functions it feeds from the simulator's Frenet state (the target-lane entry is the offset of the
    target lane's centre; the road's centre line is that of the lanes existing at ``s``).

    ``dist`` (float64) and ``nearest`` (int64) are scratch of length ``>= K``; ``order[e]`` must hold the
    traffic sorted by ``s`` (:func:`~morl.envs.driving.traffic.sort_order`, as every step and reset leave it).
    ``cos_psi`` and ``sin_psi``: the cosine and sine of the ego's heading ``ego[e, E_PSI]`` (the step has them).
    """
    V = traf.shape[2]
    n_lanes = int(P[P_N_LANES])
    lw = P[P_LANE_W]
    gs = P[P_GRID_STEP]
    s = ego[e, E_S]
    d = ego[e, E_D]
    v = ego[e, E_V]
    lane = min(max(lane_of(d, lw), 0), n_lanes - 1)
    lo, hi = road_edges(lane_start, lane_end, n_lanes, lw, s)
    write_ego_route(out, v, ego[e, E_PSI], d - lane * lw, lw, d - 0.5 * (lo + hi), max(0.5 * (hi - lo), 0.5 * lw),
                    grid_value(speed_grid, gs, s), ego[e, E_STEER], ego[e, E_ACC], ego[e, E_TSPEED],
                    ego[e, E_TLANE] * lw - d, P[P_CONTINUOUS] > 0.5, P[P_V_MAX], P[P_MAX_STEER], P[P_ACC_MAX],
                    lane_exists(lane_start, lane_end, n_lanes, lane + 1, s),
                    lane_exists(lane_start, lane_end, n_lanes, lane - 1, s), lane_end[lane] - s,
                    grid_value(curv_grid, gs, s + ROUTE_AHEAD[0]), grid_value(curv_grid, gs, s + ROUTE_AHEAD[1]),
                    grid_value(curv_grid, gs, s + ROUTE_AHEAD[2]), grid_value(speed_grid, gs, s + 50.0),
                    1.0 - ego[e, E_RC])
    K = int(P[P_K])
    # The pass walks ``order`` (the traffic sorted by s, as every step and reset leave it), so it stops at the
    # end of the window; insert_nearest keeps the K smallest (d2, index) pairs whatever the order of the pass.
    n = 0
    for k in range(V if K > 0 else 0):
        i = order[e, k]
        ds = traf[e, T_S, i] - s
        if not ds > -WINDOW:
            continue
        if not ds < WINDOW:
            break
        dd = traf[e, T_D, i] - d
        n = insert_nearest(dist, nearest, n, K, ds * ds + dd * dd, i)
    vs = v * cos_psi
    vd_e = v * sin_psi
    for r in range(n):
        i = nearest[r]
        write_vehicle_row(out, r, traf[e, T_S, i] - s, traf[e, T_D, i] - d, traf[e, T_V, i] - vs,
                          traf[e, T_VD, i] - vd_e)
    clear_vehicle_rows(out, n, K)


@numba.njit(cache=True)
def batch_observe(ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, obs):
    """Write every env's observation of its current state (after the state was set by hand: the traffic
    order is sorted first)."""
    K = max(int(P[P_K]), 1)
    dist = np.empty(K)
    nearest = np.empty(K, dtype=np.int64)
    for e in range(ego.shape[0]):
        sort_order(e, traf, order)
        write_obs(e, ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, obs[e], dist, nearest)


# ----------------------------------------------------------------------------- ego control

@numba.njit(cache=True, _nrt=False, inline="always")
def meta_control(e, action, ego, P, curv_grid, lane_start, lane_end):
    """Apply a meta-action to env ``e``'s targets and return the controller's ``(accel, steer)``.

    Lane changes are ignored when the lane does not exist (highway-env's convention). The steering
    follows highway-env's cascade: lateral offset -> desired lateral speed -> heading reference ->
    yaw-rate command (plus the road's curvature as feed-forward) -> steering through the bicycle model.
    """
    n_lanes = int(P[P_N_LANES])
    lw = P[P_LANE_W]
    s = ego[e, E_S]
    v = ego[e, E_V]
    tl = int(ego[e, E_TLANE])
    if action == LANE_LEFT and lane_exists(lane_start, lane_end, n_lanes, tl + 1, s):
        tl += 1
    elif action == LANE_RIGHT and lane_exists(lane_start, lane_end, n_lanes, tl - 1, s):
        tl -= 1
    elif action == FASTER:
        ego[e, E_TSPEED] = min(ego[e, E_TSPEED] + P[P_SPEED_STEP], P[P_V_MAX])
    elif action == SLOWER:
        ego[e, E_TSPEED] = max(ego[e, E_TSPEED] - P[P_SPEED_STEP], 0.0)
    ego[e, E_TLANE] = tl
    accel = _clip(_KP_SPEED * (ego[e, E_TSPEED] - v), -P[P_ACC_MAX], P[P_ACC_MAX])
    vv = max(v, 1.0)
    lat_speed = _KP_LAT * (tl * lw - ego[e, E_D])
    psi_ref = math.asin(_clip(lat_speed / vv, -0.5, 0.5))
    kappa = grid_value(curv_grid, P[P_GRID_STEP], s)
    yaw_cmd = _KP_HEAD * (psi_ref - ego[e, E_PSI]) + kappa * v
    sb = _clip(yaw_cmd * 0.5 * P[P_WHEELBASE] / vv, -0.9, 0.9)
    steer = math.atan(2.0 * math.tan(math.asin(sb)))
    return accel, _clip(steer, -P[P_MAX_STEER], P[P_MAX_STEER])


# ----------------------------------------------------------------------------- step

@numba.njit(cache=True, _nrt=False, inline="always")
def _ego_checks(e, ego, traf, order, P, lane_start, lane_end, cos_psi, sin_psi, stop_behind=True):
    """``(collision, off_road, ttc)`` for the ego after the move, given the cosine and sine of its heading.

    Walks the traffic front to back in ``order`` (sorted by ``s``, as every step leaves it) and, with
    ``stop_behind``, stops at the first vehicle too far behind for either test. The result does not depend on
    the order (collision is an "or", the time to collision a minimum of non-negative numbers), so
    ``stop_behind=False`` over any order gives the same; in ``s`` order the ahead / behind test also stops
    being a coin flip for the branch predictor."""
    V = traf.shape[2]
    n_lanes = int(P[P_N_LANES])
    vl = P[P_VEH_LEN]
    vw = P[P_VEH_WID]
    s = ego[e, E_S]
    d = ego[e, E_D]
    psi = ego[e, E_PSI]
    vs = ego[e, E_V] * cos_psi
    hw = 0.5 * vl * abs(sin_psi) + 0.5 * vw * abs(cos_psi)
    collision = False
    ttc = TTC_NONE
    for k in range(V - 1, -1, -1):
        i = order[e, k]
        ds = traf[e, T_S, i] - s
        near = abs(ds) < vl + 1.0
        if not (ds > 0.0 or near):
            if stop_behind:
                break  # this vehicle and all behind it: neither ahead nor close enough to touch
            continue
        dd = traf[e, T_D, i] - d
        if near and abs(dd) < vl:
            h = math.atan2(traf[e, T_VD, i], max(traf[e, T_V, i], 1e-3))
            if boxes_overlap(s, d, psi, vl, vw, traf[e, T_S, i], traf[e, T_D, i], h, vl, vw):
                collision = True
        # time to collision with vehicles ahead that overlap the ego laterally (constant speeds)
        if ds > 0.0 and abs(dd) < hw + 0.5 * vw:
            closing = vs - traf[e, T_V, i]
            if closing > 1e-6:
                t = max(ds - vl, 0.0) / closing
                if t < ttc:
                    ttc = t
    off = box_off_road_cs(s, d, cos_psi, sin_psi, vl, vw, lane_start, lane_end, n_lanes, P[P_LANE_W], P[P_SHOULDER])
    return collision, off, ttc


@numba.njit(cache=True, _nrt=False)
def step_env(e, action_d, accel_c, steer_c, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start,
             lane_end, scales, leader, follower, front, front2, acc, rew, info):
    """Advance env ``e`` by one step; writes ``rew[e]`` and ``info[e]``; returns ``(terminated, truncated, cos_psi,
    sin_psi)``, the last two of the ego's new heading (for :func:`write_obs_cs`)."""
    V = traf.shape[2]
    dt = P[P_DT]
    n_lanes = int(P[P_N_LANES])
    lw = P[P_LANE_W]
    gs = P[P_GRID_STEP]
    step = int(ego[e, E_STEPS])
    active = P[P_EGO_ACTIVE] > 0.5
    # 1. ego command
    if P[P_CONTINUOUS] > 0.5:
        accel = accel_c * P[P_ACC_MAX]
        steer = steer_c * P[P_MAX_STEER]
    else:
        accel, steer = meta_control(e, action_d, ego, P, curv_grid, lane_start, lane_end)
    # 2. traffic decisions on the state before the move (synchronous update)
    if step % int(P[P_MOBIL_PERIOD]) == 0:  # lane-change decisions need every lane's leader and follower
        neighbours(e, ego, traf, order, P, leader, follower, front, True)
        traffic_accels(e, ego, traf, P, speed_grid, lane_end, leader, acc)
        mobil_decisions(e, step, ego, traf, P, speed_grid, lane_start, lane_end, leader, follower, acc)
    else:
        follow_sweep(e, ego, traf, order, P, speed_grid, lane_end, front2, acc)
    # 3. move
    integrate_traffic(e, traf, P, acc)
    s_old = ego[e, E_S]
    v_old = ego[e, E_V]
    if active:
        kappa = grid_value(curv_grid, gs, s_old)
        s1, d1, psi1, v1, yaw_rate = bicycle_step(s_old, ego[e, E_D], ego[e, E_PSI], v_old, accel, steer, kappa,
                                                  P[P_WHEELBASE], P[P_V_MAX], dt)
    else:  # no ego: a camera moving with constant speed keeps the traffic window going
        s1, d1, psi1, v1, yaw_rate = s_old + v_old * dt, ego[e, E_D], 0.0, v_old, 0.0
    a_real = (v1 - v_old) / dt
    jerk = (a_real - ego[e, E_ACC]) / dt
    steer_rate = (steer - ego[e, E_STEER]) / dt
    yaw_acc = (yaw_rate - ego[e, E_YAW_RATE]) / dt
    ego[e, E_S] = s1
    ego[e, E_D] = d1
    ego[e, E_PSI] = psi1
    ego[e, E_V] = v1
    ego[e, E_STEER] = steer
    ego[e, E_ACC] = a_real
    ego[e, E_YAW_RATE] = yaw_rate
    ego[e, E_LAT_ACC] = v1 * yaw_rate
    ego[e, E_JERK] = jerk
    step += 1
    ego[e, E_STEPS] = step
    if P[P_RECYCLE] > 0.5:
        recycle(e, step, rng, ego, traf, P, speed_grid, lane_start, lane_end)
    sort_order(e, traf, order)
    # 4. checks
    cos_psi = math.cos(psi1)
    sin_psi = math.sin(psi1)
    if active:
        collision, off_road, ttc = _ego_checks(e, ego, traf, order, P, lane_start, lane_end, cos_psi, sin_psi)
    else:
        collision, off_road, ttc = False, False, TTC_NONE
    length = P[P_LENGTH]
    delta_s = s1 - s_old
    rc_old = ego[e, E_RC]
    rc = max(rc_old, min(s1 / length, 1.0))  # completion only grows: going back never undoes it
    ego[e, E_RC] = rc
    success = s1 >= length and not (collision or off_road)
    limit = grid_value(speed_grid, gs, s1)
    lane = min(max(lane_of(d1, lw), 0), n_lanes - 1)
    lo, hi = road_edges(lane_start, lane_end, n_lanes, lw, s1)
    outside = d1 < lo or d1 > hi
    lane_offset = d1 - lane * lw
    ttc_violation = ttc < scales[ob.S_TTC_THRESHOLD]
    if ttc_violation:
        ego[e, E_TTC_LAST] = step
    # 5. reward vector (objectives.reward_vector) and info
    ob.fill_reward_vector(rew[e], collision, off_road, ttc, v1, limit, outside, delta_s, P[P_STEP_REF], jerk,
                          steer_rate, lane_offset, lw, scales)
    # CaRL comfort: each of the 6 metrics counts while violated within the last P_COMFORT_HOLD steps
    viol = (a_real < ob.COMFORT_BOUNDS[0] or a_real > ob.COMFORT_BOUNDS[1],
            abs(v1 * yaw_rate) > ob.COMFORT_BOUNDS[2], abs(jerk) > ob.COMFORT_BOUNDS[3],
            abs(jerk) > ob.COMFORT_BOUNDS[4], abs(yaw_rate) > ob.COMFORT_BOUNDS[5],
            abs(yaw_acc) > ob.COMFORT_BOUNDS[6])
    n_cv = 0
    for k in range(6):
        if viol[k]:
            ego[e, E_CV0 + k] = step
        if step - ego[e, E_CV0 + k] < P[P_COMFORT_HOLD]:
            n_cv += 1
    hard = collision or off_road
    terminated = hard or success
    truncated = (not terminated) and step >= int(P[P_MAX_STEPS])
    row = info[e]
    row[I_COLLISION] = collision
    row[I_OFF_ROAD] = off_road
    row[I_RED_LIGHT] = 0.0
    row[I_SPEEDING] = v1 > limit
    row[I_SUCCESS] = success
    row[I_ROUTE_COMPLETION] = rc
    row[I_COST] = 1.0 if hard else 0.0
    row[I_TTC] = ttc
    row[I_TTC_VIOLATION] = ttc_violation
    row[I_OUTSIDE_LANES] = outside
    row[I_SPEED] = v1
    row[I_SPEED_LIMIT] = limit
    row[I_C_RC] = 100.0 * (rc - rc_old)
    row[I_C_SPEEDING] = ob.speeding_factor(v1, limit)
    row[I_C_OUTSIDE] = 0.0 if outside else 1.0
    row[I_C_TTC] = 0.5 if step - ego[e, E_TTC_LAST] < P[P_TTC_HOLD] else 1.0
    row[I_C_COMFORT] = ob.comfort_factor(n_cv)
    row[I_C_LANE_CENTER] = ob.lane_center_factor(lane_offset, lw)
    row[I_C_HARD] = 1.0 if hard else 0.0
    row[I_C_TERMINAL] = -1.0 if collision else 0.0
    return terminated, truncated, cos_psi, sin_psi


@numba.njit(cache=True, nogil=True)
def batch_step(actions_d, actions_c, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start, lane_end,
               scales, obs, rew, info, terminated, truncated, terminal_obs, auto_reset):
    """Step every env of the batch.

    :param actions_d: ``(E,)`` int64 meta-actions (used when ``P[P_CONTINUOUS] == 0``).
    :param actions_c: ``(E, 2)`` float64 ``(accel, steer)`` in ``[-1, 1]`` (used when continuous).
    :param obs: ``(E, O)`` float32 output observations (after auto-reset: the new episode's first).
    :param rew: ``(E, 4)`` float32 output reward vectors.
    :param info: ``(E, N_INFO)`` float32 output info quantities (columns ``objectives.INFO_KEYS``).
    :param terminated: ``(E,)`` bool output.
    :param truncated: ``(E,)`` bool output.
    :param terminal_obs: ``(E, O)`` float32 output: the last observation of envs whose episode ended.
    :param auto_reset: reset ended envs in place (SB3 ``VecEnv`` semantics).

    Envs are independent (own RNG, own rows), so a batch may be split along its first axis and the
    parts stepped in separate threads (the kernel releases the GIL); :func:`batch_step_shared` lets the
    threads split it as they go, which :class:`~morl.envs.driving.batch.BatchSim` does with ``parallel=True``.
    """
    V = traf.shape[2]
    K = max(int(P[P_K]), 1)
    _step_range(0, ego.shape[0], actions_d, actions_c, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start,
                lane_end, scales, obs, rew, info, terminated, truncated, terminal_obs, auto_reset,
                np.empty((V + 1, MAX_LANES), dtype=np.int64), np.empty((V + 1, MAX_LANES), dtype=np.int64),
                np.empty((1, MAX_LANES), dtype=np.int64), np.empty(V + 1, dtype=np.float64), np.empty(K),
                np.empty(K, dtype=np.int64))


@intrinsic
def _fetch_add(typingctx, counter, value):
    """``counter[0] += value`` as one atomic instruction (sequentially consistent); returns the old value.
    ``counter``: a 1-d int64 array shared by the threads."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64 and counter.ndim == 1
            and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, [context.get_constant(types.intp, 0)])
        val = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return types.int64(counter, value), codegen


@numba.njit(cache=True, nogil=True)
def batch_step_shared(counter, chunk, actions_d, actions_c, ego, traf, order, rng, P, curv_grid, speed_grid,
                      lane_start, lane_end, scales, obs, rew, info, terminated, truncated, terminal_obs, auto_reset):
    """:func:`batch_step` for several threads calling it at once on the same batch: each call claims the next
    ``chunk`` envs from the shared ``counter`` (an ``(1,)`` int64 array, 0 at the start of the step) until none
    are left. Every env is stepped exactly once, by whichever thread claimed it, so the result is
    :func:`batch_step`'s bit for bit; a thread that starts late or meets expensive envs (resets, lane-change
    decisions) simply claims fewer chunks, so the threads finish together."""
    E = ego.shape[0]
    V = traf.shape[2]
    K = max(int(P[P_K]), 1)
    leader = np.empty((V + 1, MAX_LANES), dtype=np.int64)
    follower = np.empty((V + 1, MAX_LANES), dtype=np.int64)
    front2 = np.empty((1, MAX_LANES), dtype=np.int64)
    acc = np.empty(V + 1, dtype=np.float64)
    dist = np.empty(K)
    nearest = np.empty(K, dtype=np.int64)
    while True:
        e0 = _fetch_add(counter, chunk)
        if e0 >= E:
            break
        _step_range(e0, min(e0 + chunk, E), actions_d, actions_c, ego, traf, order, rng, P, curv_grid, speed_grid,
                    lane_start, lane_end, scales, obs, rew, info, terminated, truncated, terminal_obs, auto_reset,
                    leader, follower, front2, acc, dist, nearest)


# Every kernel below the entry points above is compiled without numba's reference counting
# (`_nrt=False`): none of them allocates, and a non-inlined call that passes arrays otherwise pays an
# atomic incref/decref per array argument, which measured ~4x slower in the per-vehicle loops.
@numba.njit(cache=True, _nrt=False)
def _step_range(e0, e1, actions_d, actions_c, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start, lane_end,
                scales, obs, rew, info, terminated, truncated, terminal_obs, auto_reset, leader, follower, front2, acc,
                dist, nearest):
    front = front2[0]
    for e in range(e0, e1):
        a_d = actions_d[e] if actions_d.shape[0] > 0 else 0
        a_c0 = actions_c[e, 0] if actions_c.shape[0] > 0 else 0.0
        a_c1 = actions_c[e, 1] if actions_c.shape[0] > 0 else 0.0
        term, trunc, cos_psi, sin_psi = step_env(e, a_d, a_c0, a_c1, ego, traf, order, rng, P, curv_grid, speed_grid,
                                                 lane_start, lane_end, scales, leader, follower, front, front2, acc,
                                                 rew, info)
        terminated[e] = term
        truncated[e] = trunc
        write_obs_cs(e, ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, obs[e], dist, nearest,
                     cos_psi, sin_psi)
        if auto_reset and (term or trunc):
            for r in range(obs.shape[1]):
                terminal_obs[e, r] = obs[e, r]
            reset_env(e, ego, traf, order, rng, P, curv_grid, speed_grid, lane_start, lane_end)
            write_obs(e, ego, traf, order, P, curv_grid, speed_grid, lane_start, lane_end, obs[e], dist, nearest)
