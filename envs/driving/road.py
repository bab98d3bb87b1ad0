"""Roads of the built-in driving simulator: a route polyline with curvature, lanes and speed limits.

The simulator works in the route's Frenet frame: ``s`` is the arc length along the route's reference
line (the centre of lane 0, the rightmost lane) and ``d`` the lateral offset, positive to the left.
Lane ``l`` is centred on ``d = l * lane_width``. A lane exists on ``[lane_start[l], lane_end[l])``,
which is how a lane drop (or a merge: the merging lane ends) is written. Curvature and speed limit are
sampled on a grid of spacing ``grid_step`` along ``s``; the Cartesian reference line (for rendering) is
the integral of the curvature.

A :class:`Road` is plain data; the kernels of :mod:`morl.envs.driving.sim` receive its arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Road", "MAX_LANES", "build_road", "highway_road", "route_road"]

#: Upper bound on lanes (kernels keep per-lane scratch of this size).
MAX_LANES = 6
_FAR = 1e9


@dataclass(frozen=True)
class Road:
    """A route with its lanes.

    :param length: route length (m); the route is complete at ``s >= length``.
    :param lane_width: lane width (m).
    :param n_lanes: number of lanes (some may start late or end early).
    :param grid_step: spacing (m) of the curvature / speed-limit grids.
    :param curvature: curvature (1/m, positive = turning left) at ``s = i * grid_step``.
    :param speed_limit: speed limit (m/s) at ``s = i * grid_step``.
    :param lane_start: ``(MAX_LANES,)`` where each lane begins (m); unused lanes never exist.
    :param lane_end: ``(MAX_LANES,)`` where each lane ends (m).
    :param shoulder: drivable margin (m) outside the outer lane edges; leaving it is off-road.
    """

    length: float
    lane_width: float
    n_lanes: int
    grid_step: float
    curvature: np.ndarray
    speed_limit: np.ndarray
    lane_start: np.ndarray
    lane_end: np.ndarray
    shoulder: float = 0.5

    def reference_line(self):
        """Cartesian ``(x, y, heading)`` of the reference line at the grid points (for drawing)."""
        h = np.concatenate([[0.0], np.cumsum(self.curvature[:-1] * self.grid_step)])
        # midpoint heading per segment keeps arcs closed to second order
        hm = h + 0.5 * self.curvature * self.grid_step
        x = np.concatenate([[0.0], np.cumsum(np.cos(hm[:-1]) * self.grid_step)])
        y = np.concatenate([[0.0], np.cumsum(np.sin(hm[:-1]) * self.grid_step)])
        return x, y, h

    def frenet_to_xy(self, s, d):
        """Cartesian coordinates of Frenet points ``(s, d)`` (arrays), by interpolation on the grid."""
        x, y, h = self._line
        grid = np.arange(len(x)) * self.grid_step
        s = np.asarray(s, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        xs = np.interp(s, grid, x)
        ys = np.interp(s, grid, y)
        hs = np.interp(s, grid, h)
        # beyond the grid's end keep going straight
        over = np.maximum(s - grid[-1], 0.0)
        xs = xs + over * np.cos(h[-1])
        ys = ys + over * np.sin(h[-1])
        return xs - d * np.sin(hs), ys + d * np.cos(hs), hs

    @property
    def _line(self):
        cached = self.__dict__.get("_line_cache")
        if cached is None:
            cached = self.reference_line()
            object.__setattr__(self, "_line_cache", cached)
        return cached

    def lane_exists(self, lane: int, s: float) -> bool:
        """Whether lane ``lane`` exists at ``s``."""
        return 0 <= lane < self.n_lanes and self.lane_start[lane] <= s < self.lane_end[lane]

    def speed_limit_at(self, s: float) -> float:
        i = int(np.clip(s / self.grid_step, 0, len(self.speed_limit) - 1))
        return float(self.speed_limit[i])


def _check_lanes(lanes) -> int:
    if isinstance(lanes, bool) or not isinstance(lanes, (int, np.integer)):
        raise TypeError(f"lanes must be an int, got {lanes!r}")
    if lanes < 1 or lanes > MAX_LANES:
        raise ValueError(f"lanes must be in [1, {MAX_LANES}], got {lanes}")
    return int(lanes)


def _check_positive(name, value):
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _lanes_arrays(n_lanes, drops=()):
    start = np.full(MAX_LANES, _FAR)
    end = np.full(MAX_LANES, -_FAR)
    start[:n_lanes] = 0.0
    end[:n_lanes] = _FAR
    for lane, s_end in drops:
        end[lane] = s_end
    return start, end


def highway_road(lanes: int = 4, length: float = 1000.0, speed_limit: float = 30.0,
                 lane_width: float = 4.0, grid_step: float = 2.0) -> Road:
    """A straight multi-lane highway with one speed limit.

    :param lanes: number of lanes.
    :param length: route length (m).
    :param speed_limit: speed limit (m/s).
    :param lane_width: lane width (m).
    :param grid_step: spacing of the road grids (m).
    """
    lanes = _check_lanes(lanes)
    length = _check_positive("length", length)
    speed_limit = _check_positive("speed_limit", speed_limit)
    n = int(np.ceil(length / grid_step)) + 2
    start, end = _lanes_arrays(lanes)
    return Road(length, _check_positive("lane_width", lane_width), lanes, grid_step,
                np.zeros(n), np.full(n, speed_limit), start, end)


def route_road(lanes: int = 3, length: float = 1000.0, speed_limits=(25.0, 16.7, 22.0),
               curvature: float = 1.0 / 150.0, lane_width: float = 4.0, lane_drop: bool = True,
               grid_step: float = 2.0) -> Road:
    """A route with curves, speed-limit changes and a lane drop.

    The route alternates straights and arcs (left, then right) of curvature ``curvature``; the speed
    limit changes at equal thirds of the route (``speed_limits``); with ``lane_drop`` and at least 2
    lanes the leftmost lane ends at 55 % of the route, so its traffic has to merge.

    :param lanes: number of lanes.
    :param length: route length (m).
    :param speed_limits: speed limits (m/s) of consecutive equal-length sections.
    :param curvature: magnitude of the arcs' curvature (1/m); ``lanes * lane_width * curvature`` must
        stay below 1 so the Frenet frame is defined.
    :param lane_width: lane width (m).
    :param lane_drop: whether the leftmost lane ends part-way.
    :param grid_step: spacing of the road grids (m).
    """
    lanes = _check_lanes(lanes)
    length = _check_positive("length", length)
    lane_width = _check_positive("lane_width", lane_width)
    if not np.isfinite(curvature) or abs(curvature) * (lanes + 1) * lane_width >= 0.5:
        raise ValueError(f"curvature {curvature!r} is too sharp for {lanes} lanes of {lane_width} m")
    limits = [_check_positive("speed_limits", v) for v in speed_limits]
    if not limits:
        raise ValueError("speed_limits must hold at least one value")
    n = int(np.ceil(length / grid_step)) + 2
    s = np.arange(n) * grid_step
    # section pattern over each sixth of the route: straight, left arc, straight, right arc, ...
    phase = np.floor(s / (length / 6.0)).astype(int)
    curv = np.where(phase % 2 == 1, curvature, 0.0) * np.where(phase % 4 == 3, -1.0, 1.0)
    curv[s >= length] = 0.0
    sec = np.minimum((s / (length / len(limits))).astype(int), len(limits) - 1)
    vlim = np.asarray(limits)[sec]
    drops = [(lanes - 1, 0.55 * length)] if (lane_drop and lanes >= 2) else []
    start, end = _lanes_arrays(lanes, drops)
    return Road(length, lane_width, lanes, grid_step, curv, vlim, start, end)


def build_road(scenario: str, **kwargs) -> Road:
    """The road of a scenario (``"highway"`` or ``"route"``) with keyword overrides."""
    if scenario == "highway":
        return highway_road(**kwargs)
    if scenario == "route":
        return route_road(**kwargs)
    raise ValueError(f"unknown scenario {scenario!r}; expected 'highway' or 'route'")
