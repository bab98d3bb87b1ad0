"""Kernels of the built-in driving simulator against plain Python references."""

import math
import os
import pickle
import signal
import sys
import threading

import numba
import numpy as np
import pytest

from morl.envs.driving import objectives as ob
from morl.envs.driving.batch import BatchSim, default_params
from morl.envs.driving.geometry import (bicycle_step, box_off_road, box_off_road_cs, boxes_overlap, idm_accel,
                                   rand_uniform, seed_state)
from morl.envs.driving.road import build_road
from morl.envs.driving.sim import (N_EGO_OBS, N_ROUTE_OBS, N_VEH_OBS, _ego_checks, _fetch_add,
                              batch_step, batch_step_shared)
from morl.envs.driving.traffic import (P_K, P_LANE_W, P_N_LANES, P_VEH_WID, T_D, T_LANE, T_S, T_TARGET, T_V,
                                  ego_half_width, follow_sweep, neighbours, spawn_speeds, traffic_accels)

# ----------------------------------------------------------------------------- references


def ref_bicycle(s, d, psi, v, accel, steer, wheelbase, dt):
    """Cartesian kinematic bicycle (centre of gravity midway), one Euler step (straight road)."""
    beta = math.atan(math.tan(steer) / 2)
    x = s + v * math.cos(psi + beta) * dt
    y = d + v * math.sin(psi + beta) * dt
    psi = psi + v * math.sin(beta) / (wheelbase / 2) * dt
    return x, y, psi, min(max(v + accel * dt, 0.0), 40.0)


def ref_idm(v, v0, gap, v_lead, a=2.0, b=3.0, s0=3.0, T=1.5, delta=4.0):
    s_star = s0 + max(0.0, v * T + v * (v - v_lead) / (2 * math.sqrt(a * b)))
    return a * (1 - (v / v0) ** delta - (s_star / gap) ** 2)


def ref_corners(x, y, h, length, width):
    c, s = math.cos(h), math.sin(h)
    pts = []
    for fl, fw in ((1, 1), (1, -1), (-1, -1), (-1, 1)):
        pts.append((x + fl * length / 2 * c - fw * width / 2 * s, y + fl * length / 2 * s + fw * width / 2 * c))
    return np.array(pts)


def ref_overlap(b1, b2):
    """Separating-axis test on explicit corners: project all 8 corners on the 4 edge normals."""
    p1, p2 = ref_corners(*b1), ref_corners(*b2)
    for poly in (p1, p2):
        for k in range(2):
            edge = poly[k + 1] - poly[k]
            axis = np.array([-edge[1], edge[0]])
            a, b = p1 @ axis, p2 @ axis
            if a.max() < b.min() or b.max() < a.min():
                return False
    return True


# ----------------------------------------------------------------------------- kinematics


def test_bicycle_straight_line():
    s, d, psi, v = 0.0, 2.0, 0.0, 10.0
    for _ in range(50):
        s, d, psi, v, yaw_rate = bicycle_step(s, d, psi, v, 0.0, 0.0, 0.0, 2.8, 40.0, 0.1)
        assert yaw_rate == 0.0
    assert s == pytest.approx(50.0)
    assert d == 2.0 and psi == 0.0


def test_bicycle_matches_reference_and_turning_radius():
    wheelbase, steer, v, dt = 2.8, 0.2, 8.0, 0.001
    state = (0.0, 0.0, 0.0, v)
    ref = state
    xs, ys = [], []
    for _ in range(4000):
        s, d, psi, vv, _ = bicycle_step(*state, 0.0, steer, 0.0, wheelbase, 40.0, dt)
        ref = ref_bicycle(*ref, 0.0, steer, wheelbase, dt)
        state = (s, d, psi, vv)
        xs.append(s)
        ys.append(d)
    np.testing.assert_allclose(state, ref, rtol=1e-9, atol=1e-9)
    # circle through the trajectory: centre on the left at (0, R), R = (L/2) / sin(beta)
    beta = math.atan(math.tan(steer) / 2)
    radius = wheelbase / 2 / math.sin(beta)
    xs, ys = np.array(xs), np.array(ys)
    # centre of the path: the yaw turns about a point R away, perpendicular to the velocity at start
    cx, cy = -radius * math.sin(beta), radius * math.cos(beta)
    dist = np.hypot(xs - cx, ys - cy)
    np.testing.assert_allclose(dist, radius, rtol=5e-3)


def test_bicycle_speed_clipped():
    *_, v, _ = bicycle_step(0.0, 0.0, 0.0, 1.0, -5.0, 0.0, 0.0, 2.8, 40.0, 1.0)
    assert v == 0.0
    *_, v, _ = bicycle_step(0.0, 0.0, 0.0, 39.0, 5.0, 0.0, 0.0, 2.8, 40.0, 1.0)
    assert v == 40.0


def test_idm_matches_reference():
    rng = np.random.default_rng(0)
    for _ in range(200):
        v, v0, gap, vl = rng.uniform(0, 35), rng.uniform(10, 35), rng.uniform(0.5, 150), rng.uniform(0, 35)
        assert idm_accel(v, v0, gap, vl, 2.0, 3.0, 3.0, 1.5, 4.0) == pytest.approx(ref_idm(v, v0, gap, vl), rel=1e-9)
    # free road: (1 - (v/v0)^4) a
    assert idm_accel(10.0, 20.0, 1e9, 0.0, 2.0, 3.0, 3.0, 1.5, 4.0) == pytest.approx(2.0 * (1 - 0.5 ** 4))


# ----------------------------------------------------------------------------- boxes


def test_boxes_overlap_constructed_cases():
    assert boxes_overlap(0, 0, 0, 5, 2, 4.9, 0, 0, 5, 2)        # rear-end touch
    assert not boxes_overlap(0, 0, 0, 5, 2, 5.1, 0, 0, 5, 2)    # just apart
    assert not boxes_overlap(0, 0, 0, 5, 2, 0, 2.1, 0, 5, 2)    # side by side, apart
    assert boxes_overlap(0, 0, 0, 5, 2, 0, 1.9, 0, 5, 2)
    # rotated corner: axis-aligned bounding boxes overlap, the oriented boxes do not
    h = math.pi / 4
    assert not boxes_overlap(0, 0, h, 5, 2, 2.6, -2.6, h, 5, 2)
    assert ref_overlap((0, 0, h, 5, 2), (2.6, -2.6, h, 5, 2)) is False
    # crossing at 90 degrees
    assert boxes_overlap(0, 0, 0, 5, 2, 0, 0, math.pi / 2, 5, 2)


def test_boxes_overlap_matches_reference_random():
    rng = np.random.default_rng(1)
    agree = 0
    for _ in range(2000):
        b1 = (0.0, 0.0, rng.uniform(-np.pi, np.pi), rng.uniform(2, 6), rng.uniform(1, 3))
        b2 = (rng.uniform(-7, 7), rng.uniform(-7, 7), rng.uniform(-np.pi, np.pi), rng.uniform(2, 6),
              rng.uniform(1, 3))
        agree += boxes_overlap(*b1, *b2) == ref_overlap(b1, b2)
    assert agree == 2000


def test_off_road_constructed_cases():
    road = build_road("route", lanes=2, length=500.0, lane_drop=True)  # left lane ends at 275 m
    args = (road.lane_start, road.lane_end, road.n_lanes, road.lane_width, road.shoulder)
    assert not box_off_road(100.0, 0.0, 0.0, 5.0, 2.0, *args)           # lane 0 centre
    assert not box_off_road(100.0, 4.0, 0.0, 5.0, 2.0, *args)           # lane 1 centre
    assert box_off_road(100.0, 6.4, 0.0, 5.0, 2.0, *args)               # half a car over the edge
    assert box_off_road(100.0, 6.0, 0.0, 5.0, 2.0, *args)               # left edge 6 m + 0.5 shoulder
    assert box_off_road(100.0, -1.6, 0.0, 5.0, 2.0, *args)              # right corner at -2.6
    assert box_off_road(300.0, 4.0, 0.0, 5.0, 2.0, *args)               # dropped lane, past its end
    assert box_off_road(274.0, 4.0, 0.0, 5.0, 2.0, *args)               # front corners past the end
    assert box_off_road(100.0, 2.0, math.pi / 2, 5.0, 2.0, *args) is False  # across 2 lanes: fits
    one = build_road("highway", lanes=1)
    assert box_off_road(100.0, 0.0, math.pi / 2, 5.0, 2.0, one.lane_start, one.lane_end, 1, 4.0, 0.4)


# ----------------------------------------------------------------------------- rng, neighbours


def test_rng_deterministic_and_uniform():
    rng = np.array([seed_state(7), seed_state(7), seed_state(8)], dtype=np.uint64)
    a = [rand_uniform(rng, 0) for _ in range(2000)]
    b = [rand_uniform(rng, 1) for _ in range(2000)]
    c = [rand_uniform(rng, 2) for _ in range(2000)]
    assert a == b and a != c
    assert 0.0 <= min(a) and max(a) < 1.0 and abs(np.mean(a) - 0.5) < 0.03


def _sim(scenario="highway", n_envs=4, n_vehicles=20, seed=0, **kw):
    road = build_road(scenario)
    sim = BatchSim(road, n_envs, n_vehicles, ob.make_scales(), default_params(road, **kw))
    sim.seed(np.arange(n_envs) + seed)
    sim.reset()
    return sim


def test_neighbours_match_brute_force():
    sim = _sim(n_envs=3)
    for _ in range(30):
        sim.step(np.full(3, 1, dtype=np.int64), auto_reset=True)
    V = sim.n_vehicles
    P = sim.P
    lw, n_lanes = P[P_LANE_W], int(P[P_N_LANES])
    leader = np.empty((V + 1, 6), np.int64)
    follower = np.empty((V + 1, 6), np.int64)
    front = np.empty(6, np.int64)
    for e in range(3):
        neighbours(e, sim.ego, sim.traf, sim.order, P, leader, follower, front)
        s = np.append(sim.traf[e, T_S], sim.ego[e, 0])
        d = np.append(sim.traf[e, T_D], sim.ego[e, 1])
        hw = np.full(V + 1, P[P_VEH_WID] / 2)
        hw[V] = ego_half_width(sim.ego[e, 2], P)
        lanes = [set(range(max(int(np.floor((d[j] - hw[j]) / lw + 0.5)), 0),
                           min(int(np.floor((d[j] + hw[j]) / lw + 0.5)), n_lanes - 1) + 1)) for j in range(V + 1)]
        for j in range(V):  # a vehicle changing lanes also counts in its target lane
            lanes[j].add(int(sim.traf[e, T_TARGET, j]))
        for i in range(V + 1):
            for lane in range(n_lanes):
                ahead = [j for j in range(V + 1) if j != i and lane in lanes[j] and s[j] > s[i]]
                behind = [j for j in range(V + 1) if j != i and lane in lanes[j] and s[j] < s[i]]
                want_l = min(ahead, key=lambda j: s[j]) if ahead else -1
                want_f = max(behind, key=lambda j: s[j]) if behind else -1
                assert leader[i, lane] == want_l
                assert follower[i, lane] == want_f


def test_follow_sweep_matches_tables_and_idm_reference():
    sim = _sim("route", n_envs=3)
    for _ in range(40):
        sim.step(np.full(3, 3, dtype=np.int64), auto_reset=True)
    V = sim.n_vehicles
    leader = np.empty((V + 1, 6), np.int64)
    follower = np.empty((V + 1, 6), np.int64)
    front = np.empty(6, np.int64)
    a_tab, a_sweep = np.empty(V + 1), np.empty(V + 1)
    curv, speed, start, end = sim._road_args
    for e in range(3):
        neighbours(e, sim.ego, sim.traf, sim.order, sim.P, leader, follower, front, True)
        traffic_accels(e, sim.ego, sim.traf, sim.P, speed, end, leader, a_tab)
        follow_sweep(e, sim.ego, sim.traf, sim.order, sim.P, speed, end, front.reshape(1, 6), a_sweep)
        np.testing.assert_array_equal(a_tab[:V], a_sweep[:V])
        # a vehicle alone in its lane, not changing lanes, far from a lane end: plain IDM behind its leader
        for i in range(V):
            lane = int(sim.traf[e, T_LANE, i])
            if sim.traf[e, T_TARGET, i] != lane or abs(sim.traf[e, T_D, i] - 4.0 * lane) > 1e-9:
                continue
            if end[lane] - sim.traf[e, T_S, i] < 500:
                continue
            v0 = sim.traf[e, 4, i] * speed[min(int(sim.traf[e, T_S, i] / 2.0), len(speed) - 1)]
            j = leader[i, lane]
            if j < 0:
                want = 2.0 * (1 - (sim.traf[e, T_V, i] / v0) ** 4)
            else:
                s_j = sim.ego[e, 0] if j == V else sim.traf[e, T_S, j]
                v_j = sim.ego[e, 3] * np.cos(sim.ego[e, 2]) if j == V else sim.traf[e, T_V, j]
                want = ref_idm(sim.traf[e, T_V, i], v0, s_j - sim.traf[e, T_S, i] - 5.0, v_j)
            assert a_sweep[i] == pytest.approx(max(want, -9.0), rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------- traffic only


def _traffic_overlaps(sim):
    """Pairs of traffic boxes that overlap (plain reference SAT on the candidates near each other)."""
    S, D = sim.traf[:, T_S], sim.traf[:, T_D]
    near = (np.abs(S[:, :, None] - S[:, None, :]) < 5.5) & (np.abs(D[:, :, None] - D[:, None, :]) < 2.6)
    bad = []
    for e, i, j in np.argwhere(near):
        if i < j:
            tr = sim.traf[e]
            h = np.arctan2(tr[3], np.maximum(tr[T_V], 1e-3))
            if ref_overlap((tr[T_S, i], tr[T_D, i], h[i], 5.0, 2.0), (tr[T_S, j], tr[T_D, j], h[j], 5.0, 2.0)):
                bad.append((e, i, j))
    return bad


@pytest.mark.parametrize("scenario", ["highway", "route"])
def test_idm_mobil_traffic_never_collides_without_ego(scenario):
    sim = _sim(scenario, n_envs=16, ego_active=False)
    lw = sim.road.lane_width
    lane_changes = 0
    for _ in range(500):
        before = sim.traf[:, T_TARGET].copy()
        sim.step(np.full(16, 1, dtype=np.int64), auto_reset=False)
        lane_changes += int((sim.traf[:, T_TARGET] != before).sum())
        assert _traffic_overlaps(sim) == []
        # nobody drives on past the end of a dropped lane
        lane = np.clip(np.round(sim.traf[:, T_D] / lw).astype(int), 0, sim.road.n_lanes - 1)
        assert np.all(sim.traf[:, T_S] < sim.road.lane_end[lane] + 0.5)
    assert lane_changes > 0  # MOBIL did act
    assert np.all(sim.traf[:, T_LANE] >= 0)


@pytest.mark.parametrize("scenario", ["highway", "route"])
def test_traffic_never_collides_among_itself_around_a_random_ego(scenario):
    """Respawning and lane changes stay safe for the traffic whatever the ego does (the ego may crash)."""
    sim = _sim(scenario, n_envs=16, seed=100)
    actions = np.random.default_rng(0).integers(0, 5, (500, 16))
    ends = 0
    for t in range(500):
        sim.step(actions[t], auto_reset=True)
        ends += int((sim.terminated | sim.truncated).sum())
        assert _traffic_overlaps(sim) == []
    assert ends > 16  # the ego did crash and reset along the way


def test_reward_vector_in_bounds_and_signed():
    s = ob.make_scales()
    best = ob.reward_vector(False, False, 100.0, 20.0, 25.0, False, 5.0, 5.0, 0.0, 0.0, 0.0, 4.0, s)
    assert best == (0.0, 0.0, 1.0, 0.0)
    worst = ob.reward_vector(True, True, 0.0, 40.0, 10.0, True, -9.0, 5.0, 99.0, 9.0, 9.0, 4.0, s)
    assert worst == (-1.0, -1.0, -1.0, -1.0)
    # TTC shaping grows as ttc falls below the threshold
    assert ob.safety_reward(False, False, 0.5, s) < ob.safety_reward(False, False, 1.5, s) < 0.0
    assert ob.speeding_factor(25.0 + 2.23, 25.0) == pytest.approx(0.0)
    assert ob.comfort_factor(6) == 0.5
    assert ob.carl_reward(0.4, 1.0, 1.0, 0.5, 1.0, 0.5, 0.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="w_jerk"):
        ob.make_scales(w_jerk=0.9)


# ----------------------------------------------------------------------------- kernels rewritten for speed


def test_idm_integer_exponents_and_delta_validation():
    """idm_accel takes ``x ** delta`` as repeated multiplication (no pow call): any whole exponent still
    matches the reference; a fractional one is refused up front, naming the argument."""
    rng = np.random.default_rng(3)
    for delta in (1, 2, 3, 4, 5, 8):
        for _ in range(50):
            v, v0, gap, vl = rng.uniform(0, 35), rng.uniform(10, 35), rng.uniform(0.5, 150), rng.uniform(0, 35)
            got = idm_accel(v, v0, gap, vl, 2.0, 3.0, 3.0, 1.5, float(delta))
            assert got == pytest.approx(ref_idm(v, v0, gap, vl, delta=delta), rel=1e-9, abs=1e-12)
    road = build_road("highway")
    for bad in (3.5, 0.0, float("nan")):
        with pytest.raises(ValueError, match="idm_delta"):
            default_params(road, idm_delta=bad)


def test_box_off_road_from_cos_sin_matches():
    road = build_road("route", lanes=3, lane_drop=True)
    args = (road.lane_start, road.lane_end, road.n_lanes, road.lane_width, road.shoulder)
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(500):
        s, d, psi = rng.uniform(0, 1000), rng.uniform(-4, 12), rng.uniform(-np.pi, np.pi)
        want = box_off_road(s, d, psi, 5.0, 2.0, *args)
        assert box_off_road_cs(s, d, math.cos(psi), math.sin(psi), 5.0, 2.0, *args) == want
        hits += want
    assert 0 < hits < 500


@pytest.mark.parametrize("scenario", ["highway", "route"])
def test_box_off_road_matches_per_corner_lookup(scenario):
    """box_off_road_cs looks the road edges up once where every lane exists: against a reference that finds,
    for each corner, the lanes existing at its s (poses past both ends of the road and the lane drop too)."""
    road = build_road(scenario, lanes=3, **({"lane_drop": True} if scenario == "route" else {}))
    lw, sh = road.lane_width, road.shoulder
    args = (road.lane_start, road.lane_end, road.n_lanes, lw, sh)

    def ref(s, d, psi, length, width):
        for fl in (0.5 * length, -0.5 * length):
            for fw in (0.5 * width, -0.5 * width):
                cs = s + fl * math.cos(psi) - fw * math.sin(psi)
                cd = d + fl * math.sin(psi) + fw * math.cos(psi)
                lanes = [k for k in range(road.n_lanes) if road.lane_start[k] <= cs < road.lane_end[k]]
                if not lanes:
                    return True
                if cd < min(lanes) * lw - 0.5 * lw - sh or cd > max(lanes) * lw + 0.5 * lw + sh:
                    return True
        return False

    rng = np.random.default_rng(11)
    hits = 0
    ends = [0.0, road.length, *road.lane_end[road.lane_end < road.length]]
    for n in range(1500):
        s = rng.choice(ends) + rng.uniform(-8, 8) if n % 2 else rng.uniform(-10, road.length + 10)
        d, psi = rng.uniform(-4, 12), rng.uniform(-np.pi, np.pi) if n % 3 == 0 else rng.normal(0, 0.1)
        got = box_off_road_cs(s, d, math.cos(psi), math.sin(psi), 5.0, 2.0, *args)
        assert got == ref(s, d, psi, 5.0, 2.0), (s, d, psi)
        hits += got
    assert 100 < hits < 1400


@pytest.mark.parametrize("scenario", ["highway", "route"])
def test_ego_checks_in_s_order_match_index_order(scenario):
    """The step's ego checks walk the traffic in s order and stop behind the ego: same collision flag, off-road
    flag and time to collision (bit for bit) as the plain loop over every vehicle, also with vehicles moved
    next to the ego (collisions) and right behind it."""
    sim = _sim(scenario, n_envs=4, seed=3)
    actions = np.random.default_rng(2).integers(0, 5, (40, 4))
    for t in range(40):
        sim.step(actions[t], auto_reset=True)
    rng = np.random.default_rng(9)
    V = sim.n_vehicles
    collisions = finite_ttc = 0
    for trial in range(200):
        e = trial % 4
        ego, traf = sim.ego.copy(), sim.traf.copy()
        for _ in range(trial % 4):  # move some vehicles close to the ego
            j = rng.integers(V)
            traf[e, T_S, j] = ego[e, 0] + rng.uniform(-12, 12)
            traf[e, T_D, j] = ego[e, 1] + rng.uniform(-5, 5)
        order = np.argsort(traf[:, T_S], axis=1, kind="stable").astype(np.int64)
        psi = ego[e, 2]
        index_order = np.tile(np.arange(V, dtype=np.int64), (traf.shape[0], 1))
        want = _ego_checks(e, ego, traf, index_order, sim.P, *sim._road_args[2:], math.cos(psi), math.sin(psi),
                           stop_behind=False)
        got = _ego_checks(e, ego, traf, order, sim.P, *sim._road_args[2:], math.cos(psi), math.sin(psi))
        assert got[0] == want[0] and got[1] == want[1]
        assert np.float64(got[2]).tobytes() == np.float64(want[2]).tobytes()
        collisions += want[0]
        finite_ttc += want[2] < 100.0
    assert collisions > 10 and finite_ttc > 50


@pytest.mark.parametrize("scenario", ["highway", "route"])
def test_observed_vehicles_are_the_k_nearest(scenario):
    """The one-pass K-nearest selection of write_obs against a brute-force sort (nearest first, ties to
    the lower index, only vehicles within 60 m along the road)."""
    sim = _sim(scenario, n_envs=4, seed=7)
    actions = np.random.default_rng(5).integers(0, 5, (60, 4))
    K = int(sim.P[P_K])
    o = N_EGO_OBS + N_ROUTE_OBS
    checked = 0
    for t in range(60):
        sim.step(actions[t], auto_reset=True)
        for e in range(4):
            s, d, psi, v = sim.ego[e, 0], sim.ego[e, 1], sim.ego[e, 2], sim.ego[e, 3]
            ds = sim.traf[e, T_S] - s
            dd = sim.traf[e, T_D] - d
            near = [i for i in np.argsort(ds * ds + dd * dd, kind="stable") if -60.0 < ds[i] < 60.0][:K]
            rows = sim.obs[e, o:o + K * N_VEH_OBS].reshape(K, N_VEH_OBS)
            for r in range(K):
                if r >= len(near):
                    assert np.all(rows[r] == 0.0)
                    continue
                i = near[r]
                want = [1.0, ds[i] / 60.0, dd[i] / 10.0, (sim.traf[e, T_V, i] - v * np.cos(psi)) / 20.0,
                        (sim.traf[e, 3, i] - v * np.sin(psi)) / 20.0]
                np.testing.assert_allclose(rows[r], np.clip(want, -1, 1), rtol=1e-6, atol=1e-6)
                checked += 1
    assert checked > 100


def test_spawn_check_of_placed_vehicles_only_is_exact_during_reset():
    """While a reset places vehicles in turn the unplaced ones wait far behind: checking only the placed
    ones (``n_placed``) must give the same speed range as checking all of them."""
    sim = _sim("route", n_envs=1, seed=9)
    curv, speed, start, end = sim._road_args
    for n_placed in (0, 5, 12):
        traf = sim.traf.copy()
        traf[0, T_S, n_placed:] = -1e6 - 100.0 * np.arange(sim.n_vehicles - n_placed)
        traf[0, T_D, n_placed:] = -1e3
        traf[0, T_V, n_placed:] = 0.0
        for s in np.linspace(-20.0, 300.0, 41):
            for lane in range(sim.road.n_lanes):
                full = spawn_speeds(0, s, lane, n_placed, sim.ego, traf, sim.P, 18.0)
                part = spawn_speeds(0, s, lane, n_placed, sim.ego, traf, sim.P, 18.0, n_placed)
                assert full == part


# ----------------------------------------------------------------------------- threaded stepping

_STATE = ("ego", "traf", "order", "rng", "obs", "rew", "info", "terminated", "truncated", "terminal_obs")


def _assert_same_state(a, b):
    for name in _STATE:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x.view(np.uint8), y.view(np.uint8)), name


@numba.njit(nogil=True)
def _claim_many(counter, out):
    for k in range(out.shape[0]):
        out[k] = _fetch_add(counter, 1)


def test_fetch_add_is_atomic():
    """Two threads claiming from one counter never get the same value (a plain read-add-write does, whenever
    the threads run at the same moment), and it returns the value before the add."""
    counter = np.zeros(1, dtype=np.int64)
    assert numba.njit(lambda c, v: _fetch_add(c, v))(counter, 5) == 0 and counter[0] == 5
    _claim_many(counter, np.empty(2, dtype=np.int64))  # compile outside the threads
    counter[0] = 0
    n = 1_000_000
    outs = [np.empty(n, dtype=np.int64) for _ in range(2)]
    threads = [threading.Thread(target=_claim_many, args=(counter, out)) for out in outs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert counter[0] == 2 * n
    assert np.array_equal(np.sort(np.concatenate(outs)), np.arange(2 * n))


@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_shared_counter_step_claims_every_env_once(chunk):
    """``batch_step_shared`` on one thread, in chunks, and a second call that finds nothing left, equals
    ``batch_step`` bit for bit, over enough steps for auto-resets and lane-change decisions."""
    a, b = _sim("route", n_envs=7, seed=4), _sim("route", n_envs=7, seed=4)
    actions = np.random.default_rng(0).integers(0, 5, (120, 7))
    counter = np.zeros(1, dtype=np.int64)
    ended = 0
    for t in range(120):
        batch_step(actions[t], a._no_c, a.ego, a.traf, a.order, a.rng, a.P, *a._road_args, a.scales, a.obs, a.rew,
                   a.info, a.terminated, a.truncated, a.terminal_obs, True)
        counter[0] = 0
        for _ in range(2):
            batch_step_shared(counter, chunk, actions[t], b._no_c, b.ego, b.traf, b.order, b.rng, b.P,
                              *b._road_args, b.scales, b.obs, b.rew, b.info, b.terminated, b.truncated,
                              b.terminal_obs, True)
        assert counter[0] >= 7
        ended += int(np.sum(a.terminated | a.truncated))
        _assert_same_state(a, b)
    assert ended > 0


@pytest.mark.parametrize("continuous", [False, True])
def test_threaded_step_equals_serial_and_survives_pickling(continuous):
    """``parallel`` stepping on 3 threads (11 envs: chunks of 1 claimed by whichever thread is free) gives
    the serial result bit for bit; a pickled copy (its worker threads and array views are rebuilt) goes on
    identically, and ``close`` stops the workers."""
    road = build_road("highway")
    P = default_params(road, continuous=continuous)
    serial = BatchSim(road, 11, 20, ob.make_scales(), P)
    threaded = BatchSim(road, 11, 20, ob.make_scales(), P, parallel=True, n_threads=3)
    for sim in (serial, threaded):
        sim.seed(np.arange(11) + 8)
        sim.reset()
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (80, 11, 2)) if continuous else rng.integers(0, 5, (80, 11))
    ended = 0
    for t in range(80):
        serial.step(actions[t], auto_reset=True)
        threaded.step(actions[t], auto_reset=True)
        ended += int(np.sum(serial.terminated | serial.truncated))
        _assert_same_state(serial, threaded)
        if t == 40:
            threaded = pickle.loads(pickle.dumps(threaded))
    assert ended > 0
    workers = [w._thread for w in threaded._pool]
    threaded.close()
    assert threaded._pool is None and not any(th.is_alive() for th in workers)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_threaded_step_works_in_a_forked_child():
    """Worker threads do not survive ``fork``: a child that steps a sim whose workers started in the parent
    starts its own (it would wait forever on the parent's) and still matches the serial step."""
    road = build_road("highway")
    serial = BatchSim(road, 6, 20, ob.make_scales(), default_params(road))
    threaded = BatchSim(road, 6, 20, ob.make_scales(), default_params(road), parallel=True, n_threads=2)
    for sim in (serial, threaded):
        sim.seed(np.arange(6))
        sim.reset()
    actions = np.random.default_rng(2).integers(0, 5, (20, 6))
    serial.step(actions[0], auto_reset=True)
    threaded.step(actions[0], auto_reset=True)
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            signal.alarm(60)  # a hang ends the child with a failure
            for t in range(1, 20):
                serial.step(actions[t], auto_reset=True)
                threaded.step(actions[t], auto_reset=True)
            _assert_same_state(serial, threaded)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    threaded.close()
