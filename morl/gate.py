"""The preorder gate: a scalar reward in which an objective pays only while the objectives above it are met.

``r_t = sum_i w_i r_t,i g_t,i``, with the gate ``g_t,i = prod_j (1 if r_t,j >= tau_j else factor)`` over the
objectives ``j`` strictly above ``i`` that have a threshold ``tau_j``. With ``factor = 0`` a step that
violates a higher objective earns nothing from the objectives below it, so no amount of progress pays for a
violation. This is CaRL's multiplicative soft penalty (route completion times penalty factors, Jaeger et al.
2025, arXiv 2504.17838) generalised to a preorder. :class:`morl.wrappers.PreorderGate` applies it to one
Gymnasium env, :class:`morl.vec_wrappers.PreorderVecGate` to a VecEnv in one array computation.

>>> gate = GateTerms(("safe", "fast"), {"safe": 0.0}, preorder="safe > fast")
>>> gate.reward(np.array([[-1.0, 2.0], [0.0, 2.0]], np.float32)).tolist()   # 'safe' violated in row 0
[-1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from morl.preorder import Preorder

__all__ = ["GateTerms"]


class GateTerms:
    """The gate's weights, thresholds and precedence for objectives in vector order.

    :param objectives: objective names, in the reward vector's order.
    :param thresholds: per objective name, the value at or above which it counts as met
        (e.g. ``{"safety": 0.0}`` for a reward that is ``-cost``). Objectives without one gate nothing.
    :param weights: per objective name (default 1 for every objective).
    :param factor: the gate's value on a violating step, in ``[0, 1]``.
    :param preorder: the precedence to follow (a :class:`~morl.preorder.Preorder` or its text).
    :param who: the name used in error messages.
    """

    def __init__(self, objectives: Sequence[str], thresholds: Mapping[str, float],
                 weights: Mapping[str, float] | None = None, factor: float = 0.0, preorder=None,
                 who: str = "PreorderGate"):
        objectives = tuple(objectives)
        for what, mapping in (("thresholds", thresholds), ("weights", weights or {})):
            unknown = [k for k in mapping if k not in objectives]
            if unknown:
                raise ValueError(f"{who} {what} name unknown objective {unknown[0]!r} (objectives: {objectives})")
        if not 0.0 <= float(factor) <= 1.0:
            raise ValueError(f"{who} factor must be in [0, 1], got {factor!r}")
        order = Preorder.parse(preorder).reindexed(objectives)
        self.objectives = objectives
        self.weights = np.array([float((weights or {}).get(o, 1.0)) for o in objectives], dtype=np.float32)
        self.thresholds = np.array([float(thresholds.get(o, -np.inf)) for o in objectives], dtype=np.float32)
        self.gated = np.array([o in thresholds for o in objectives])
        # above[j, i]: j gates i (strictly higher precedence and has a threshold)
        self.above = order.strictly_above & self.gated[:, None]
        self.factor = float(factor)

    def gate(self, vec: np.ndarray) -> np.ndarray:
        """Per-objective gates ``g_i`` of reward vectors ``(..., m)``."""
        missed = np.asarray(vec) < self.thresholds  # objectives without a threshold never miss
        n_missed = (missed[..., :, None] & self.above).sum(axis=-2)
        return np.power(self.factor, n_missed).astype(np.float32)

    def reward(self, vec: np.ndarray) -> np.ndarray:
        """The gated scalar rewards of reward vectors ``(..., m)``: shape ``(...)``, float32."""
        vec = np.asarray(vec, dtype=np.float32)
        return np.sum(self.weights * vec * self.gate(vec), axis=-1, dtype=np.float32)
