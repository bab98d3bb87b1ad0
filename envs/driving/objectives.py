"""Driving objectives: names, default preorder, event keys and the per-step reward vector.

This module is the contract between every driving simulator in :mod:`morl.envs.driving` (the built-in
numba simulator, the highway-env adapter, the CARLA adapter). It knows nothing about any simulator:
each one measures the same plain quantities (collision, off-road, time-to-collision, speed, speed
limit, distance gained along the route, jerk, steering rate, lateral offset from the lane centre, ...)
and calls the functions below, so all of them give the same reward vector and the same ``info``.

The functions are ``numba.njit`` scalar functions: they can be called from numba kernels and from
plain Python (with Python floats/bools) alike.

**Reward vector** (objective order :data:`OBJECTIVES`, every component signed so larger is better,
every component in ``[-1, 1]`` per step so quantile-dominance margins mean the same on each):

``safety``
    ``-1`` on a hard infraction (collision or off-road; the episode ends there), otherwise
    ``-w_ttc * clip(1 - ttc / ttc_threshold, 0, 1)``: a small shaping term that grows as the
    time-to-collision with the vehicle ahead falls below ``ttc_threshold``. Range ``[-1, 0]``.
``rules``
    ``-(w_speeding * clip((v - v_limit) / speeding_tolerance, 0, 1)
    + w_outside_lanes * outside_route_lanes)``, with ``w_speeding + w_outside_lanes = 1``.
    The speeding term is ``1 - f_speed`` of CaRL's speeding factor (``speeding_tolerance`` = 2.23 m/s,
    i.e. 5 mph, as in CaRL). Range ``[-1, 0]``.
``progress``
    ``clip(delta_s / (v_ref * dt), -1, 1)``: the distance gained along the route this step, in units
    of the distance driven in one step at the reference speed ``v_ref`` (the route's speed limit by
    default). Driving at the limit gives about ``+1`` per step, standing still gives ``0``, and the
    sum over an episode is bounded by ``route_length / (v_ref * dt)`` (finite, like CaRL's 100 %
    route completion; urgency comes only from the discount). Range ``[-1, 1]``.
``comfort``
    ``-(w_jerk * clip(|jerk| / jerk_max, 0, 1) + w_steer_rate * clip(|steer_rate| / steer_rate_max, 0, 1)
    + w_lane_center * clip(|lane_offset| / (lane_width / 2), 0, 1))``, weights summing to 1.
    Range ``[-1, 0]``.

The scaling constants are kept in a float64 array (:func:`make_scales` with keyword arguments, indices
``S_*``) so that kernels receive them as one argument.

**CaRL quantities** (Jaeger et al. 2025, "CaRL: Learning Scalable Planning Policies with Simple
Rewards", arXiv 2504.17838, §3; thresholds of the authors' release code):
the CaRL reward is ``r_t = RC_t * prod_i p_t,i + T`` with ``RC_t`` the route completion gained this step in
percent, the soft factors ``p`` below, and ``T = -1`` when the episode ends by a collision (or red light).
:func:`carl_reward` computes it from the ``info`` quantities (:data:`CARL_KEYS`), so the CaRL agent needs no change to
an env.

- ``carl_route_completion_delta``: ``100 * delta_s / route_length`` (percent of the route this step).
- ``carl_speeding_factor``: ``max(0, 1 - (v - v_limit) / 2.23)``, 1 when not speeding.
- ``carl_outside_lanes_factor``: 0 when the ego is outside the route lanes, else 1.
- ``carl_ttc_factor``: 0.5 while a TTC violation happened within the last ``ttc_penalty_ticks`` steps, else 1.
- ``carl_comfort_factor``: ``1 - 0.5 * k / 6`` with ``k`` of the 6 comfort metrics out of bounds
  (:func:`count_comfort_violations`, nuPlan bounds as in CaRL's early config).
- ``carl_lane_center_factor``: ``1 - clip(|lane_offset| / (lane_width / 2), 0, 1)``.
- ``carl_hard_infraction``: 1 when the step ended the episode by a collision, off-road or red light.
- ``carl_terminal_penalty``: ``-1`` for a collision / red light (CaRL's ``T``), else 0.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "OBJECTIVES",
    "DEFAULT_PREORDER",
    "EVENT_KEYS",
    "CARL_KEYS",
    "INFO_KEYS",
    "DEFAULT_SCALARIZATION",
    "make_scales",
    "safety_reward",
    "rules_reward",
    "progress_reward",
    "comfort_reward",
    "reward_vector",
    "fill_reward_vector",
    "speeding_factor",
    "lane_center_factor",
    "comfort_factor",
    "count_comfort_violations",
    "carl_reward",
    "carl_reward_from_info",
]

# Kernels are compiled with `_nrt=False` (no reference counting: they never allocate). Called from the
# batched step, a non-inlined call that passes arrays otherwise pays an atomic incref/decref per array
# argument, which measured several times slower in the per-vehicle loops. They work from Python as usual.

#: Objective names, in the order of the reward vector.
OBJECTIVES: tuple[str, ...] = ("safety", "rules", "progress", "comfort")
#: Default precedence, parsed with :meth:`morl.preorder.Preorder.parse`.
DEFAULT_PREORDER: str = "safety > rules > progress > comfort"

#: Event keys of ``info`` (the same for every driving backend) and what they hold, all per step:
#: ``collision`` (bool) the ego's box overlaps another vehicle's; ``off_road`` (bool) the ego's box left
#: the drivable area; ``red_light`` (bool) ran a red light (always False where there are no lights);
#: ``speeding`` (bool) speed above the limit; ``success`` (bool) the route was completed;
#: ``route_completion`` (float in [0, 1]) fraction of the route done so far; ``cost`` (float) the
#: safety-gymnasium cost, 1.0 on a hard infraction else 0.0; ``ttc`` (float, s) time-to-collision with
#: the vehicle ahead (large when none); ``ttc_violation`` (bool) ``ttc < ttc_threshold``;
#: ``outside_route_lanes`` (bool) the ego's centre is outside the route's lanes; ``speed`` (m/s);
#: ``speed_limit`` (m/s).
EVENT_KEYS: tuple[str, ...] = (
    "collision",
    "off_road",
    "red_light",
    "speeding",
    "success",
    "route_completion",
    "cost",
    "ttc",
    "ttc_violation",
    "outside_route_lanes",
    "speed",
    "speed_limit",
)

#: CaRL quantities in ``info`` (module docstring gives their definitions).
CARL_KEYS: tuple[str, ...] = (
    "carl_route_completion_delta",
    "carl_speeding_factor",
    "carl_outside_lanes_factor",
    "carl_ttc_factor",
    "carl_comfort_factor",
    "carl_lane_center_factor",
    "carl_hard_infraction",
    "carl_terminal_penalty",
)

#: Every per-step quantity an env puts in ``info`` besides ``vector_reward``.
INFO_KEYS: tuple[str, ...] = EVENT_KEYS + CARL_KEYS

#: Default weights for a scalar reward ``dot(w, vector)`` handed to SB3 (a Roach-style weighted sum:
#: a collision costs about as much as 10 steps of progress at the speed limit).
DEFAULT_SCALARIZATION: tuple[float, ...] = (10.0, 1.0, 1.0, 0.2)

# Indices of the scaling-constant array (see make_scales).
S_TTC_THRESHOLD = 0
S_W_TTC = 1
S_SPEEDING_TOLERANCE = 2
S_W_SPEEDING = 3
S_W_OUTSIDE_LANES = 4
S_JERK_MAX = 5
S_STEER_RATE_MAX = 6
S_W_JERK = 7
S_W_STEER_RATE = 8
S_W_LANE_CENTER = 9
N_SCALES = 10


def make_scales(
    ttc_threshold: float = 2.0,
    w_ttc: float = 0.2,
    speeding_tolerance: float = 2.23,
    w_speeding: float = 0.5,
    w_outside_lanes: float = 0.5,
    jerk_max: float = 10.0,
    steer_rate_max: float = 0.5,
    w_jerk: float = 0.4,
    w_steer_rate: float = 0.3,
    w_lane_center: float = 0.3,
) -> np.ndarray:
    """Scaling constants of the reward vector, as the float64 array the kernels take.

    :param ttc_threshold: time-to-collision (s) below which ``safety`` is shaped and a TTC violation is
        counted. CaRL's box-extrapolation check looks 0.9 s ahead; 2 s is the usual car-following margin.
    :param w_ttc: size of the TTC shaping term of ``safety`` at ``ttc = 0`` (a collision gives -1).
    :param speeding_tolerance: m/s above the limit at which the speeding penalty is full (CaRL: 2.23).
    :param w_speeding: weight of speeding in ``rules``.
    :param w_outside_lanes: weight of driving outside the route lanes in ``rules``.
    :param jerk_max: longitudinal jerk (m/s^3) at which the jerk penalty is full.
    :param steer_rate_max: steering rate (rad/s) at which the steering-rate penalty is full.
    :param w_jerk: weight of jerk in ``comfort``.
    :param w_steer_rate: weight of steering rate in ``comfort``.
    :param w_lane_center: weight of the lane-centre offset in ``comfort``.
    """
    values = dict(locals())
    for name, value in values.items():
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"make_scales: {name} must be finite and >= 0, got {value!r}")
    for name in ("ttc_threshold", "speeding_tolerance", "jerk_max", "steer_rate_max"):
        if values[name] <= 0:
            raise ValueError(f"make_scales: {name} must be > 0, got {values[name]!r}")
    if w_ttc > 1:
        raise ValueError(f"make_scales: w_ttc must be <= 1 to keep safety in [-1, 0], got {w_ttc!r}")
    if abs(w_speeding + w_outside_lanes - 1.0) > 1e-9:
        raise ValueError("make_scales: w_speeding + w_outside_lanes must sum to 1, got "
                         f"{w_speeding} + {w_outside_lanes}")
    if abs(w_jerk + w_steer_rate + w_lane_center - 1.0) > 1e-9:
        raise ValueError("make_scales: w_jerk + w_steer_rate + w_lane_center must sum to 1, got "
                         f"{w_jerk} + {w_steer_rate} + {w_lane_center}")
    out = np.empty(N_SCALES, dtype=np.float64)
    out[S_TTC_THRESHOLD] = ttc_threshold
    out[S_W_TTC] = w_ttc
    out[S_SPEEDING_TOLERANCE] = speeding_tolerance
    out[S_W_SPEEDING] = w_speeding
    out[S_W_OUTSIDE_LANES] = w_outside_lanes
    out[S_JERK_MAX] = jerk_max
    out[S_STEER_RATE_MAX] = steer_rate_max
    out[S_W_JERK] = w_jerk
    out[S_W_STEER_RATE] = w_steer_rate
    out[S_W_LANE_CENTER] = w_lane_center
    return out


@numba.njit(cache=True, _nrt=False)
def _clip01(x):
    if x < 0.0:
        return 0.0
    if x > 1.0:
        return 1.0
    return x


@numba.njit(cache=True, _nrt=False)
def safety_reward(collision, off_road, ttc, scales):
    """``safety``: -1 on collision/off-road, else the TTC shaping term (module docstring)."""
    if collision or off_road:
        return -1.0
    return -scales[S_W_TTC] * _clip01(1.0 - ttc / scales[S_TTC_THRESHOLD])


@numba.njit(cache=True, _nrt=False)
def rules_reward(speed, speed_limit, outside_route_lanes, scales):
    """``rules``: speeding above ``speed_limit`` and driving outside the route lanes."""
    speeding = _clip01((speed - speed_limit) / scales[S_SPEEDING_TOLERANCE])
    outside = 1.0 if outside_route_lanes else 0.0
    return -(scales[S_W_SPEEDING] * speeding + scales[S_W_OUTSIDE_LANES] * outside)


@numba.njit(cache=True, _nrt=False)
def progress_reward(delta_s, step_distance_ref):
    """``progress``: ``clip(delta_s / step_distance_ref, -1, 1)``; ``step_distance_ref = v_ref * dt``."""
    x = delta_s / step_distance_ref
    if x > 1.0:
        return 1.0
    if x < -1.0:
        return -1.0
    return x


@numba.njit(cache=True, _nrt=False)
def comfort_reward(jerk, steer_rate, lane_offset, lane_width, scales):
    """``comfort``: jerk, steering rate and distance from the lane centre."""
    pj = _clip01(abs(jerk) / scales[S_JERK_MAX])
    ps = _clip01(abs(steer_rate) / scales[S_STEER_RATE_MAX])
    pc = _clip01(abs(lane_offset) / (0.5 * lane_width))
    return -(scales[S_W_JERK] * pj + scales[S_W_STEER_RATE] * ps + scales[S_W_LANE_CENTER] * pc)


@numba.njit(cache=True, _nrt=False)
def reward_vector(collision, off_road, ttc, speed, speed_limit, outside_route_lanes, delta_s,
                  step_distance_ref, jerk, steer_rate, lane_offset, lane_width, scales):
    """The four objectives as a tuple ``(safety, rules, progress, comfort)``.

    :param collision: the ego collided this step.
    :param off_road: the ego's box left the drivable area this step.
    :param ttc: time-to-collision with the vehicle ahead (s); a large number when none.
    :param speed: ego speed (m/s).
    :param speed_limit: speed limit where the ego is (m/s).
    :param outside_route_lanes: the ego's centre is outside the route's lanes.
    :param delta_s: distance gained along the route this step (m, negative when going back).
    :param step_distance_ref: ``v_ref * dt`` (m), the progress that counts as 1.
    :param jerk: longitudinal jerk (m/s^3).
    :param steer_rate: steering-angle rate (rad/s).
    :param lane_offset: lateral distance from the nearest lane centre (m).
    :param lane_width: lane width (m).
    :param scales: array from :func:`make_scales`.
    """
    return (
        safety_reward(collision, off_road, ttc, scales),
        rules_reward(speed, speed_limit, outside_route_lanes, scales),
        progress_reward(delta_s, step_distance_ref),
        comfort_reward(jerk, steer_rate, lane_offset, lane_width, scales),
    )


@numba.njit(cache=True, _nrt=False, inline="always")
def fill_reward_vector(out, collision, off_road, ttc, speed, speed_limit, outside_route_lanes, delta_s,
                       step_distance_ref, jerk, steer_rate, lane_offset, lane_width, scales):
    """:func:`reward_vector` written into ``out[0:4]`` (a row of a batch array)."""
    r = reward_vector(collision, off_road, ttc, speed, speed_limit, outside_route_lanes, delta_s,
                      step_distance_ref, jerk, steer_rate, lane_offset, lane_width, scales)
    out[0] = r[0]
    out[1] = r[1]
    out[2] = r[2]
    out[3] = r[3]


# ----------------------------------------------------------------------------- CaRL quantities

#: nuPlan comfort bounds used by CaRL's early config: lon acc [-4.05, 2.40] m/s^2, |lat acc| 4.89,
#: |jerk| 8.37, |lon jerk| 4.13 m/s^3, |yaw rate| 0.95 rad/s, |yaw acc| 1.93 rad/s^2.
COMFORT_BOUNDS = (-4.05, 2.40, 4.89, 8.37, 4.13, 0.95, 1.93)


@numba.njit(cache=True, _nrt=False)
def speeding_factor(speed, speed_limit):
    """CaRL's speeding factor ``max(0, 1 - (v - v_limit) / 2.23)`` capped at 1 (m/s)."""
    return 1.0 - _clip01((speed - speed_limit) / 2.23)


@numba.njit(cache=True, _nrt=False)
def lane_center_factor(lane_offset, lane_width):
    """CaRL's lane-centre factor ``1 - clip(|d| / (w / 2), 0, 1)``."""
    return 1.0 - _clip01(abs(lane_offset) / (0.5 * lane_width))


@numba.njit(cache=True, _nrt=False)
def count_comfort_violations(lon_acc, lat_acc, jerk, lon_jerk, yaw_rate, yaw_acc):
    """How many of CaRL's 6 comfort metrics are out of the nuPlan bounds (:data:`COMFORT_BOUNDS`)."""
    k = 0
    if lon_acc < -4.05 or lon_acc > 2.40:
        k += 1
    if abs(lat_acc) > 4.89:
        k += 1
    if abs(jerk) > 8.37:
        k += 1
    if abs(lon_jerk) > 4.13:
        k += 1
    if abs(yaw_rate) > 0.95:
        k += 1
    if abs(yaw_acc) > 1.93:
        k += 1
    return k


@numba.njit(cache=True, _nrt=False)
def comfort_factor(n_violated):
    """CaRL's comfort factor ``1 - 0.5 * k / 6``."""
    return 1.0 - 0.5 * n_violated / 6.0


@numba.njit(cache=True, _nrt=False)
def carl_reward(rc_delta_pct, speeding_f, outside_lanes_f, ttc_f, comfort_f, lane_center_f, terminal_penalty):
    """CaRL's reward ``RC_t * prod(p) + T`` (paper §3); ``terminal_penalty`` is ``T`` (-1 or 0)."""
    return rc_delta_pct * speeding_f * outside_lanes_f * ttc_f * comfort_f * lane_center_f + terminal_penalty


def carl_reward_from_info(info) -> float:
    """CaRL's reward from one step's ``info`` mapping (keys :data:`CARL_KEYS`)."""
    return float(carl_reward(
        float(info["carl_route_completion_delta"]), float(info["carl_speeding_factor"]),
        float(info["carl_outside_lanes_factor"]), float(info["carl_ttc_factor"]),
        float(info["carl_comfort_factor"]), float(info["carl_lane_center_factor"]),
        float(info["carl_terminal_penalty"]),
    ))


# Guard against silent drift between the docstring's bounds and the kernel's literals.
assert math.isclose(COMFORT_BOUNDS[0], -4.05) and len(COMFORT_BOUNDS) == 7
