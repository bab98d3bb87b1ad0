"""Planners that know F and the dynamics: the oracle references of the reproduction.

- :func:`greedy_rollout`: at every step, enumerate all action sequences of length ``lookahead``
  (5**lookahead of them), score each by ``F(tau + path) - F(tau)`` with a small bonus for gaining
  early, and play the first action of the best one (receding horizon). When no sequence gains
  anything (the neighbourhood is exhausted) walk the shortest path to the nearest cell whose visit has
  a positive marginal gain.
- :func:`beam_plan`: beam search over whole trajectories, keeping the ``width`` partial paths with the
  largest F at every depth (width 1 is plain greedy on marginal gains).
- :func:`oracle_plan`: the better of the two.

The dynamics are deterministic, so an open-loop plan is also a closed-loop policy. Both are heuristics
for submodular orienteering, not optima; the reproduction normalises every method by the oracle's F.
"""

from __future__ import annotations

import itertools
from collections import deque


from morl.envs.coverage.objectives import Objective

__all__ = ["greedy_rollout", "beam_plan", "oracle_plan"]


def _first_step_towards_gain(obj: Objective, visited: set[int], s: int) -> int | None:
    """First action of a shortest path from ``s`` to the nearest cell with a positive marginal gain."""
    trans = obj.grid.transitions
    base = obj.value(visited)
    first = {s: None}
    queue = deque([s])
    while queue:
        u = queue.popleft()
        if u != s and obj.value(visited | {u}) > base + 1e-12:
            return first[u]
        for a in range(1, trans.shape[1]):
            v = int(trans[u, a])
            if v not in first:
                first[v] = a if u == s else first[u]
                queue.append(v)
    return None


def greedy_rollout(obj: Objective, start: int, horizon: int, lookahead: int = 3) -> tuple[float, list[int]]:
    """Roll the receding-horizon greedy planner out for ``horizon`` actions from cell ``start``.

    :param obj: the objective (knows the map and F).
    :param start: start cell.
    :param horizon: number of actions.
    :param lookahead: length of the enumerated action sequences (>= 1).
    :return: ``(F(tau), tau)`` with ``tau`` the ``horizon + 1`` visited cells.
    """
    if lookahead < 1:
        raise ValueError(f"lookahead must be >= 1, got {lookahead}")
    trans = obj.grid.transitions
    s, traj = int(start), [int(start)]
    visited = {s}
    for t in range(horizon):
        depth = min(lookahead, horizon - t)
        base = obj.value(visited)
        best, best_a = 0.0, None
        seen: dict[tuple[int, ...], float] = {}
        for seq in itertools.product(range(5), repeat=depth):
            u, path = s, []
            for a in seq:
                u = int(trans[u, a])
                path.append(u)
            key = tuple(path)
            if key not in seen:
                # total gain plus a tie-break that prefers collecting earlier
                gains = [obj.value(visited.union(path[: i + 1])) for i in range(depth)]
                seen[key] = gains[-1] - base + 1e-6 * sum(g - base for g in gains)
            if seen[key] > best + 1e-12:
                best, best_a = seen[key], seq[0]
        if best_a is None:
            best_a = _first_step_towards_gain(obj, visited, s)
            if best_a is None:
                best_a = 0  # nothing left to gain anywhere
        s = int(trans[s, best_a])
        traj.append(s)
        visited.add(s)
    return obj.value(visited), traj


def beam_plan(obj: Objective, start: int, horizon: int, width: int = 32) -> tuple[float, list[int]]:
    """Beam search over trajectories of ``horizon`` actions, ranked by F of the visited set.

    :param obj: the objective.
    :param start: start cell.
    :param horizon: number of actions.
    :param width: paths kept per depth (>= 1).
    :return: ``(F(tau), tau)`` of the best path found.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    trans = obj.grid.transitions
    beam = [(obj.value({start}), [int(start)], frozenset({int(start)}))]
    for _ in range(horizon):
        candidates = {}
        for value, path, vis in beam:
            for a in range(trans.shape[1]):
                u = int(trans[path[-1], a])
                new_vis = vis | {u}
                key = (u, new_vis)
                if key not in candidates:
                    new_value = value if u in vis else obj.value(new_vis)
                    candidates[key] = (new_value, path + [u], new_vis)
        ranked = sorted(candidates.values(), key=lambda c: (-c[0], len(c[2])))
        beam = ranked[:width]
    value, path, _ = beam[0]
    return float(value), path


def oracle_plan(obj: Objective, start: int, horizon: int, lookahead: int = 3, width: int = 32):
    """The better of :func:`greedy_rollout` and :func:`beam_plan`: ``(F, tau, name)``."""
    g = greedy_rollout(obj, start, horizon, lookahead)
    b = beam_plan(obj, start, horizon, width)
    return (*g, "greedy") if g[0] >= b[0] else (*b, "beam")
