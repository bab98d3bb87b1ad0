"""Top-down frames of the driving simulator, drawn with numpy only (no display, no pygame).

The view is centred on the ego and rotated so the road at the ego points up. Road surface, lane
markings and vehicle boxes are drawn by splatting densely sampled points into the image, which needs no
polygon rasteriser and costs a few milliseconds per frame.
"""

from __future__ import annotations

import numpy as np

from morl.envs.driving.sim import E_D, E_PSI, E_S
from morl.envs.driving.traffic import P_VEH_LEN, P_VEH_WID, T_D, T_S, T_V, T_VD

__all__ = ["render_frame"]

_GRASS = np.array([60, 110, 60], np.uint8)
_ROAD = np.array([90, 90, 90], np.uint8)
_MARK = np.array([230, 230, 230], np.uint8)
_EGO = np.array([40, 140, 240], np.uint8)
_CAR = np.array([240, 200, 40], np.uint8)
_END = np.array([200, 40, 40], np.uint8)


def _splat(img, x, y, color, cx, cy, heading, px_per_m):
    # world -> image: rotate by (pi/2 - heading) so the road direction points up
    h, w = img.shape[:2]
    c, s = np.cos(np.pi / 2 - heading), np.sin(np.pi / 2 - heading)
    dx, dy = x - cx, y - cy
    u = (c * dx - s * dy) * px_per_m + w / 2
    v = -(s * dx + c * dy) * px_per_m + h * 0.7
    ui = np.round(u).astype(np.int64)
    vi = np.round(v).astype(np.int64)
    ok = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    img[vi[ok], ui[ok]] = color


def _box_points(s, d, heading, length, width, step):
    # sample points filling a box of the Frenet frame (centre (s, d), heading relative to the road)
    ls = np.arange(-length / 2, length / 2 + 1e-9, step)
    ws = np.arange(-width / 2, width / 2 + 1e-9, step)
    gl, gw = np.meshgrid(ls, ws)
    gl, gw = gl.ravel(), gw.ravel()
    c, sn = np.cos(heading), np.sin(heading)
    return s + gl * c - gw * sn, d + gl * sn + gw * c


def render_frame(road, ego_row, traf_e, P, width: int = 300, height: int = 400, px_per_m: float = 3.0) -> np.ndarray:
    """An ``(height, width, 3)`` uint8 top-down frame around the ego.

    :param road: the :class:`~morl.envs.driving.road.Road`.
    :param ego_row: the env's ego state (``ego[e]``).
    :param traf_e: the env's traffic state (``traf[e]``).
    :param P: the kernels' parameter vector.
    :param width: image width (px).
    :param height: image height (px).
    :param px_per_m: scale.
    """
    img = np.empty((height, width, 3), np.uint8)
    img[:] = _GRASS
    s_e, d_e = float(ego_row[E_S]), float(ego_row[E_D])
    view = max(width, height) / px_per_m
    step = 0.5 / px_per_m
    cx, cy, ch = road.frenet_to_xy(np.array([s_e]), np.array([d_e]))
    cx, cy, ch = float(cx[0]), float(cy[0]), float(ch[0])
    # road surface and markings, lane by lane where each lane exists
    ss = np.arange(s_e - 0.4 * view, s_e + 0.8 * view, step)
    lw = road.lane_width
    for lane in range(road.n_lanes):
        live = (ss >= road.lane_start[lane]) & (ss < road.lane_end[lane])
        if not live.any():
            continue
        sl = ss[live]
        for off in np.arange(-lw / 2, lw / 2 + 1e-9, step):
            x, y, _ = road.frenet_to_xy(sl, np.full_like(sl, lane * lw + off))
            _splat(img, x, y, _ROAD, cx, cy, ch, px_per_m)
        for edge in (-lw / 2, lw / 2):
            dashed = (np.floor(sl / 3.0) % 2 == 0) if (lane + (1 if edge > 0 else -1)) in range(road.n_lanes) else True
            se = sl[dashed] if not isinstance(dashed, bool) else sl
            x, y, _ = road.frenet_to_xy(se, np.full_like(se, lane * lw + edge))
            _splat(img, x, y, _MARK, cx, cy, ch, px_per_m)
        end = road.lane_end[lane]
        if ss[0] <= end <= ss[-1]:  # lane end: a red bar
            dd = np.arange(lane * lw - lw / 2, lane * lw + lw / 2, step)
            x, y, _ = road.frenet_to_xy(np.full_like(dd, end), dd)
            _splat(img, x, y, _END, cx, cy, ch, px_per_m)
    length, wid = float(P[P_VEH_LEN]), float(P[P_VEH_WID])
    for i in range(traf_e.shape[1]):
        s, d = float(traf_e[T_S, i]), float(traf_e[T_D, i])
        if abs(s - s_e) > view:
            continue
        h = float(np.arctan2(traf_e[T_VD, i], max(float(traf_e[T_V, i]), 1e-3)))
        ps, pd = _box_points(s, d, h, length, wid, step)
        x, y, _ = road.frenet_to_xy(ps, pd)
        _splat(img, x, y, _CAR, cx, cy, ch, px_per_m)
    ps, pd = _box_points(s_e, d_e, float(ego_row[E_PSI]), length, wid, step)
    x, y, _ = road.frenet_to_xy(ps, pd)
    _splat(img, x, y, _EGO, cx, cy, ch, px_per_m)
    return img
