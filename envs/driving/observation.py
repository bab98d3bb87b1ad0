"""The driving observation every backend gives: the built-in simulator, highway-env and CARLA.

One vector, built by the functions of this module from quantities each backend measures in its own state.
Everything is in the road's frame with the driver's conventions: ``s`` along the road, lateral offsets
and headings positive to the **left**, curvature positive when the road turns left (the built-in
simulator's Frenet frame; highway-env and CARLA have left-handed frames, ``y`` to the driver's right, so
their adapters flip the sign of lateral quantities). Values are clipped to ``[-1, 1]`` and float32.

Ego (:data:`N_EGO_OBS` = 10): speed / v_max, heading error / (pi/2), offset from the lane centre / (w/2),
position across the road (0 on its centre line, +-1 at its edges), (speed - limit) / 10, limit / v_max,
steering / max_steer, acceleration / acc_max, target speed / v_max and offset of the target lane's centre /
2w (meta-action control; 0 with continuous actions).
Route (:data:`N_ROUTE_OBS` = 8): a lane to the left exists, a lane to the right exists, distance to the end
of the current lane / 200, curvature x 50 at 0, 20 and 50 m ahead, speed limit 50 m ahead / v_max, route
left (1 - completion).
Vehicles (K x :data:`N_VEH_OBS` = 5, like highway-env's ``Kinematics``): presence, ds / 60, dd / 10,
relative longitudinal and lateral speed / 20, the K nearest first (Euclidean in ``(ds, dd)``, ties to the
lower index) among those within :data:`WINDOW` metres along the road; absent rows are zero.

The numba functions are inlined into the built-in simulator's step (:func:`morl.envs.driving.sim.write_obs_cs`);
:func:`build_observation` gives the adapters the same arithmetic from Python.

>>> ego = EgoScene(speed=25.0, speed_limit=30.0, lane_width=4.0, road_half_width=6.0, left_lane=True)
>>> obs = build_observation(ego, [[20.0, 4.0, 20.0, 0.0]], k_vehicles=2)
>>> obs.shape, obs.dtype, float(obs[0]), [round(float(x), 3) for x in obs[18:23]], obs[23:].tolist()
((28,), dtype('float32'), 0.625, [1.0, 0.333, 0.4, -0.25, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from gymnasium import spaces

__all__ = ["EgoScene", "build_observation", "observation_space", "obs_size", "N_EGO_OBS", "N_ROUTE_OBS",
           "N_VEH_OBS", "WINDOW", "ROUTE_AHEAD", "V_MAX", "ACC_MAX", "MAX_STEER", "K_VEHICLES"]

N_EGO_OBS = 10
N_ROUTE_OBS = 8
N_VEH_OBS = 5
#: vehicles farther than this along the road (m) are not observed
WINDOW = 60.0
#: distances ahead (m) of the curvature samples
ROUTE_AHEAD = (0.0, 20.0, 50.0)
#: the built-in simulator's defaults of the normalisers (``morl.envs.driving.batch.default_params``), which the
#: adapters use too: speed (m/s), acceleration (m/s^2) and steering angle (rad) at 1; observed vehicles
V_MAX, ACC_MAX, MAX_STEER, K_VEHICLES = 40.0, 5.0, 0.2, 6


def obs_size(k_vehicles: int) -> int:
    """Length of the observation vector with ``k_vehicles`` observed vehicles."""
    return N_EGO_OBS + N_ROUTE_OBS + N_VEH_OBS * k_vehicles


def observation_space(k_vehicles: int = K_VEHICLES) -> spaces.Box:
    """``Box(-1, 1, (obs_size(k_vehicles),), float32)``."""
    return spaces.Box(-1.0, 1.0, (obs_size(k_vehicles),), np.float32)


@numba.njit(cache=True, _nrt=False, inline="always")
def _clip1(x):
    if x < -1.0:
        return -1.0
    if x > 1.0:
        return 1.0
    return x


@numba.njit(cache=True, _nrt=False, inline="always")
def write_ego_route(out, v, heading, lane_offset, lane_width, road_offset, road_half_width, limit, steer, accel,
                    target_speed, target_lane_offset, continuous, v_max, max_steer, acc_max, left_lane, right_lane,
                    lane_end_distance, curv0, curv20, curv50, limit_ahead, route_left):
    """The ego and route entries ``out[0:18]`` (module docstring). Each value is clipped before it is rounded to
    float32, which gives the bits of clipping after, as the rounding is monotone and keeps +-1.

    Lengths in m, speeds in m/s, angles in rad, all left-positive: ``lane_offset`` from the lane centre,
    ``road_offset`` from the road's centre line, whose half width is ``road_half_width``; ``target_lane_offset``
    the target lane's centre relative to the ego; ``steer`` and ``accel`` the last steering angle and
    acceleration; ``curv*`` the curvature (1/m) 0, 20 and 50 m ahead; ``route_left`` 1 - route completion.
    """
    out[0] = _clip1(v / v_max)
    out[1] = _clip1(heading / (0.5 * math.pi))
    out[2] = _clip1(lane_offset / (0.5 * lane_width))
    out[3] = _clip1(road_offset / road_half_width)
    out[4] = _clip1((v - limit) / 10.0)
    out[5] = _clip1(limit / v_max)
    out[6] = _clip1(steer / max_steer)
    out[7] = _clip1(accel / acc_max)
    out[8] = _clip1(0.0 if continuous else target_speed / v_max)
    out[9] = _clip1(0.0 if continuous else target_lane_offset / (2.0 * lane_width))
    o = N_EGO_OBS
    out[o + 0] = 1.0 if left_lane else 0.0
    out[o + 1] = 1.0 if right_lane else 0.0
    out[o + 2] = _clip1(lane_end_distance / 200.0)
    out[o + 3] = _clip1(50.0 * curv0)
    out[o + 4] = _clip1(50.0 * curv20)
    out[o + 5] = _clip1(50.0 * curv50)
    out[o + 6] = _clip1(limit_ahead / v_max)
    out[o + 7] = _clip1(route_left)


@numba.njit(cache=True, _nrt=False, inline="always")
def insert_nearest(dist, nearest, n, k, d2, i):
    """Offer candidate ``i`` at squared distance ``d2`` to the ``n`` nearest so far, kept sorted in
    ``dist[0:n]`` / ``nearest[0:n]`` (at most ``k``); returns the new ``n``. Ties go to the lower index, so the
    result is the ``k`` smallest ``(d2, i)`` pairs whatever order the candidates come in."""
    if n == k and not (d2 < dist[k - 1] or (d2 == dist[k - 1] and i < nearest[k - 1])):
        return n
    m = n if n < k else k - 1  # insertion point, shifting farther ones back
    while m > 0 and (dist[m - 1] > d2 or (dist[m - 1] == d2 and nearest[m - 1] > i)):
        dist[m] = dist[m - 1]
        nearest[m] = nearest[m - 1]
        m -= 1
    dist[m] = d2
    nearest[m] = i
    return n + 1 if n < k else n


@numba.njit(cache=True, _nrt=False, inline="always")
def write_vehicle_row(out, r, ds, dd, dvs, dvd):
    """Row ``r`` of the vehicle block: presence, position ``(ds, dd)`` and velocity ``(dvs, dvd)`` relative to
    the ego in the road frame."""
    row = N_EGO_OBS + N_ROUTE_OBS + r * N_VEH_OBS
    out[row + 0] = 1.0
    out[row + 1] = _clip1(ds / WINDOW)
    out[row + 2] = _clip1(dd / 10.0)
    out[row + 3] = _clip1(dvs / 20.0)
    out[row + 4] = _clip1(dvd / 20.0)


@numba.njit(cache=True, _nrt=False, inline="always")
def clear_vehicle_rows(out, n, k):
    """Zero the absent rows ``n .. k-1`` of the vehicle block."""
    o = N_EGO_OBS + N_ROUTE_OBS
    for r in range(o + n * N_VEH_OBS, o + k * N_VEH_OBS):
        out[r] = 0.0


@numba.njit(cache=True, _nrt=False)
def _write_vehicles(out, nb, k, v, heading, dist, nearest):
    """The vehicle block from ``nb[j] = (ds, dd, vs, vd)``, positions relative to the ego and absolute speeds
    along and across the road, in any order."""
    vs_e = v * math.cos(heading)
    vd_e = v * math.sin(heading)
    n = 0
    for j in range(nb.shape[0] if k > 0 else 0):
        ds = nb[j, 0]
        if not (ds > -WINDOW and ds < WINDOW):
            continue
        dd = nb[j, 1]
        n = insert_nearest(dist, nearest, n, k, ds * ds + dd * dd, j)
    for r in range(n):
        j = nearest[r]
        write_vehicle_row(out, r, nb[j, 0], nb[j, 1], nb[j, 2] - vs_e, nb[j, 3] - vd_e)
    clear_vehicle_rows(out, n, k)


@numba.njit(cache=True, _nrt=False)
def _build(out, f, continuous, nb, k, dist, nearest):
    write_ego_route(out, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], continuous, f[11], f[12],
                    f[13], f[14] > 0.5, f[15] > 0.5, f[16], f[17], f[18], f[19], f[20], f[21])
    _write_vehicles(out, nb, k, f[0], f[1], dist, nearest)


@dataclass
class EgoScene:
    """What a backend measures of the ego and the road ahead (SI units, road frame, left-positive).

    :param speed: ego speed (m/s).
    :param heading: heading error, the ego's heading minus the road's (rad).
    :param lane_offset: ego offset from its lane's centre (m).
    :param lane_width: width of the ego's lane (m).
    :param road_offset: ego offset from the centre line of the road's lanes (m).
    :param road_half_width: half the width of the road's lanes (m).
    :param speed_limit: speed limit where the ego is (m/s).
    :param steer: last steering angle (rad).
    :param accel: last acceleration (m/s^2).
    :param target_speed: the meta-action controller's target speed (m/s).
    :param target_lane_offset: the target lane's centre relative to the ego (m).
    :param left_lane: a lane in the driving direction exists to the left.
    :param right_lane: a lane in the driving direction exists to the right.
    :param lane_end_distance: distance to the end of the ego's lane (m); ``inf`` when it does not end.
    :param curvature: road curvature (1/m) at :data:`ROUTE_AHEAD` metres ahead.
    :param speed_limit_ahead: speed limit 50 m ahead (m/s).
    :param route_left: 1 - route completion.
    """

    speed: float = 0.0
    heading: float = 0.0
    lane_offset: float = 0.0
    lane_width: float = 4.0
    road_offset: float = 0.0
    road_half_width: float = 2.0
    speed_limit: float = 30.0
    steer: float = 0.0
    accel: float = 0.0
    target_speed: float = 0.0
    target_lane_offset: float = 0.0
    left_lane: bool = False
    right_lane: bool = False
    lane_end_distance: float = math.inf
    curvature: tuple = (0.0, 0.0, 0.0)
    speed_limit_ahead: float | None = None
    route_left: float = 1.0


def build_observation(ego: EgoScene, neighbours=(), k_vehicles: int = K_VEHICLES, continuous: bool = False,
                      v_max: float = V_MAX, max_steer: float = MAX_STEER, acc_max: float = ACC_MAX,
                      out: np.ndarray | None = None) -> np.ndarray:
    """The observation of a scene (module docstring), the built-in simulator's arithmetic.

    :param ego: the ego and road quantities.
    :param neighbours: ``(N, 4)`` rows ``(ds, dd, vs, vd)`` of the other vehicles: position relative to the ego
        along and across the road (m, left-positive) and their absolute speeds along and across it (m/s).
    :param k_vehicles: vehicles in the observation.
    :param continuous: continuous actions (the target entries are 0).
    :param v_max: speed normaliser (m/s); ``max_steer`` (rad) and ``acc_max`` (m/s^2): steering and
        acceleration normalisers.
    :param out: float32 array of length ``obs_size(k_vehicles)`` to write into; None: a new one.
    """
    nb = np.asarray(neighbours, dtype=np.float64).reshape(-1, 4)
    if not np.all(np.isfinite(nb)):
        raise ValueError(f"neighbours contain NaN or infinite values: {nb!r}")
    if int(k_vehicles) < 0:
        raise ValueError(f"k_vehicles must be >= 0, got {k_vehicles!r}")
    k = int(k_vehicles)
    limit_ahead = ego.speed_limit if ego.speed_limit_ahead is None else ego.speed_limit_ahead
    half = max(float(ego.road_half_width), 0.5 * float(ego.lane_width))
    feats = np.array([ego.speed, ego.heading, ego.lane_offset, ego.lane_width, ego.road_offset, half,
                      ego.speed_limit, ego.steer, ego.accel, ego.target_speed, ego.target_lane_offset, v_max,
                      max_steer, acc_max, float(bool(ego.left_lane)), float(bool(ego.right_lane)),
                      min(float(ego.lane_end_distance), 1e9), *[float(c) for c in ego.curvature], limit_ahead,
                      ego.route_left], dtype=np.float64)
    if feats.shape != (22,):
        raise ValueError(f"curvature must hold {len(ROUTE_AHEAD)} values, got {ego.curvature!r}")
    bad = [name for name, value in zip(("speed", "heading", "lane_offset", "lane_width", "road_offset"), feats)
           if not math.isfinite(value)]
    if bad or not np.all(np.isfinite(feats)):
        raise ValueError(f"EgoScene has NaN or infinite values: {bad or ego!r}")
    if out is None:
        out = np.empty(obs_size(k), np.float32)
    elif out.shape != (obs_size(k),) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape ({obs_size(k)},), got {out.dtype} {out.shape}")
    _build(out, feats, bool(continuous), nb, k, np.empty(max(k, 1)), np.empty(max(k, 1), np.int64))
    return out
