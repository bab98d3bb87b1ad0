"""Discrete-time linear time-invariant agent models for the swarm coverage task.

Every agent follows ``x(k+1) = A x(k) + B u(k)`` with planar position output ``y(k) = C x(k)``
(D2OC, arXiv 2511.12756; the connectivity letter arXiv 2511.18579 eq. 1). Three models are built in:

- ``single_integrator``: ``x = [x, y]``, ``u`` = velocity;
- ``double_integrator``: ``x = [x, y, vx, vy]``, ``u`` = acceleration (exact zero-order hold);
- ``quadrotor``: the authors' 8-state linearised quadrotor (MATLAB ``Main_D2OC.m``),
  ``x = [x, vx, theta, theta_rate, y, vy, phi, phi_rate]``, ``u = [torque_1, torque_2]``, with
  ``g = 9.81`` and ``I_x = I_y = 0.0075``; torque 2 tilts about the x-axis, torque 1 about the y-axis.

:class:`LinearDynamics` validates the matrices and rejects malformed shapes, non-finite entries,
open-loop unstable ``A`` (spectral radius above one) and uncontrollable pairs, with a message naming
the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LinearDynamics", "single_integrator", "double_integrator", "quadrotor", "make_dynamics", "DYNAMICS"]


@dataclass(frozen=True)
class LinearDynamics:
    """``x(k+1) = A x(k) + B u(k)``, ``y(k) = C x(k)`` (``y`` is the planar position).

    :param A: state matrix ``(n, n)``.
    :param B: input matrix ``(n, m)``.
    :param C: output matrix ``(2, n)`` picking the position.
    :param dt: sampling time in seconds (informative; the matrices are already discrete).
    :param name: a label.
    :param allow_unstable: accept an open-loop unstable ``A`` (spectral radius > 1).
    :raises ValueError: naming the matrix when a shape, value, stability or controllability check fails.
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    dt: float = 0.1
    name: str = "custom"
    allow_unstable: bool = False

    def __post_init__(self):
        mats = {}
        for key in ("A", "B", "C"):
            raw = getattr(self, key)
            try:
                mat = np.array(raw, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"dynamics matrix {key} is not numeric: {raw!r}") from None
            if mat.ndim != 2:
                raise ValueError(f"dynamics matrix {key} must be 2-D, got shape {mat.shape}")
            if not np.all(np.isfinite(mat)):
                raise ValueError(f"dynamics matrix {key} has non-finite entries")
            mat.setflags(write=False)
            mats[key] = mat
        A, B, C = mats["A"], mats["B"], mats["C"]
        n = A.shape[0]
        if A.shape != (n, n) or n < 1:
            raise ValueError(f"dynamics matrix A must be square, got shape {A.shape}")
        if B.shape[0] != n or B.shape[1] < 1:
            raise ValueError(f"dynamics matrix B must have shape ({n}, m>=1), got {B.shape}")
        if C.shape != (2, n):
            raise ValueError(f"dynamics matrix C must have shape (2, {n}) (planar position output), got {C.shape}")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dynamics dt must be a positive number, got {self.dt!r}")
        radius = float(np.max(np.abs(np.linalg.eigvals(A))))
        if radius > 1.0 + 1e-9 and not self.allow_unstable:
            raise ValueError(f"dynamics matrix A is open-loop unstable (spectral radius {radius:.6g} > 1); "
                             "pass allow_unstable=True to accept it")
        ctrb = np.hstack([np.linalg.matrix_power(A, k) @ B for k in range(n)])
        rank = int(np.linalg.matrix_rank(ctrb))
        if rank < n:
            raise ValueError(f"dynamics pair (A, B) is not controllable (controllability matrix rank {rank} < {n})")
        for key, mat in mats.items():
            object.__setattr__(self, key, mat)
        object.__setattr__(self, "dt", float(self.dt))

    @property
    def n_states(self) -> int:
        return self.A.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.B.shape[1]

    def position_indices(self) -> tuple[int, int]:
        """State indices that ``C`` reads as ``(x, y)`` (``C`` must be a selector for this)."""
        idx = [int(np.flatnonzero(row)[0]) for row in self.C]
        for row, i in zip(self.C, idx):
            if np.count_nonzero(row) != 1 or row[i] != 1.0:
                raise ValueError("C is not a position selector (one 1 per row)")
        return idx[0], idx[1]

    def state_from_position(self, positions: np.ndarray) -> np.ndarray:
        """States at rest (all non-position entries zero) at the given ``(N, 2)`` positions."""
        ix, iy = self.position_indices()
        x = np.zeros((len(positions), self.n_states))
        x[:, ix], x[:, iy] = positions[:, 0], positions[:, 1]
        return x

    def to_dict(self) -> dict:
        return {"A": self.A.tolist(), "B": self.B.tolist(), "C": self.C.tolist(), "dt": self.dt, "name": self.name,
                "allow_unstable": self.allow_unstable}


def single_integrator(dt: float = 0.1) -> LinearDynamics:
    """``p(k+1) = p(k) + dt u(k)``."""
    return LinearDynamics(np.eye(2), dt * np.eye(2), np.eye(2), dt, "single_integrator")


def double_integrator(dt: float = 0.1) -> LinearDynamics:
    """State ``[x, y, vx, vy]``, input acceleration, exact zero-order hold."""
    A = np.eye(4)
    A[0, 2] = A[1, 3] = dt
    B = np.zeros((4, 2))
    B[0, 0] = B[1, 1] = 0.5 * dt * dt
    B[2, 0] = B[3, 1] = dt
    C = np.zeros((2, 4))
    C[0, 0] = C[1, 1] = 1.0
    return LinearDynamics(A, B, C, dt, "double_integrator")


def quadrotor(dt: float = 0.1, g: float = 9.81, inertia_x: float = 0.0075, inertia_y: float = 0.0075) -> LinearDynamics:
    """The authors' 8-state linearised quadrotor (Euler-discretised, as in their ``Main_D2OC.m``)."""
    def axis(sign: float) -> np.ndarray:
        return np.array([[1, dt, 0, 0], [0, 1, sign * dt * g, 0], [0, 0, 1, dt], [0, 0, 0, 1]], dtype=float)

    A = np.zeros((8, 8))
    A[:4, :4], A[4:, 4:] = axis(-1.0), axis(+1.0)
    B = np.zeros((8, 2))
    B[3, 1] = dt / inertia_y  # torque 2 drives the x-axis tilt
    B[7, 0] = dt / inertia_x  # torque 1 drives the y-axis tilt
    C = np.zeros((2, 8))
    C[0, 0] = C[1, 4] = 1.0
    return LinearDynamics(A, B, C, dt, "quadrotor")


DYNAMICS = {"single_integrator": single_integrator, "double_integrator": double_integrator, "quadrotor": quadrotor}


def make_dynamics(spec, dt: float = 0.1) -> LinearDynamics:
    """A :class:`LinearDynamics` from a name in :data:`DYNAMICS`, a mapping with ``A, B, C`` or an instance."""
    if isinstance(spec, LinearDynamics):
        return spec
    if isinstance(spec, str):
        if spec not in DYNAMICS:
            raise ValueError(f"unknown dynamics {spec!r} (known: {', '.join(DYNAMICS)}, or a mapping with A, B, C)")
        return DYNAMICS[spec](dt)
    if isinstance(spec, dict):
        missing = [k for k in ("A", "B", "C") if k not in spec]
        if missing:
            raise ValueError(f"dynamics mapping is missing {', '.join(missing)}")
        extra = set(spec) - {"A", "B", "C", "dt", "name", "allow_unstable"}
        if extra:
            raise ValueError(f"dynamics mapping has unknown keys {sorted(extra)}")
        return LinearDynamics(spec["A"], spec["B"], spec["C"], spec.get("dt", dt), spec.get("name", "custom"),
                              bool(spec.get("allow_unstable", False)))
    raise ValueError(f"dynamics must be a name, a mapping or LinearDynamics, got {type(spec).__name__}")
