"""Stage A-2 of D2OC: finite-horizon optimal tracking of the local OT target, in closed form.

Per agent and step the controller solves (D2OC / arXiv 2511.18579 eqs. 5-11, with the authors' MATLAB
cost of ``Main_D2OC.m``)::

    min_{u_0..u_{H-1}}  sum_{h=1}^{H} 1/2 [ w ||C x_h - x_g||^2 + x_h' Q x_h + u_{h-1}' R u_{h-1} ]
    s.t.                x_h = A x_{h-1} + B u_{h-1},   x_0 = x(k)

and applies ``u_0`` (receding horizon). Condensing the dynamics (``X = S_x x_0 + S_u U``) gives the
unconstrained strictly convex QP ``min 1/2 U' H U + f' U`` with ``H = S_u' Qbar S_u + Rbar`` and
``f = S_u' (Qbar S_x x_0 - w Cbar' G x_g)``, so ``U* = -H^-1 f`` (Thm. 1 of arXiv 2511.18579). It is
linear in ``(x_0, x_g)``: ``u_0 = K_x x_0 + K_g x_g``, with both gains precomputed once, which makes the
control of all agents one matrix product. :func:`kkt_solution` solves the same problem from its full
KKT system (states kept as variables, as the authors' ``A_aug``) and is the reference of the tests.
"""

from __future__ import annotations

import numpy as np

__all__ = ["condensed_matrices", "tracking_gains", "kkt_solution", "check_weights"]


def check_weights(n: int, m: int, Q=None, R=None) -> tuple[np.ndarray, np.ndarray]:
    """``Q`` (``(n, n)`` PSD, default 0) and ``R`` (``(m, m)`` positive definite, default identity)."""
    Q = np.zeros((n, n)) if Q is None else np.atleast_2d(np.asarray(Q, dtype=np.float64))
    R = np.eye(m) if R is None else np.atleast_2d(np.asarray(R, dtype=np.float64))
    if Q.ndim == 2 and Q.shape == (1, n):  # a diagonal given as a vector
        Q = np.diag(Q[0])
    if R.ndim == 2 and R.shape == (1, m) and m > 1:
        R = np.diag(R[0])
    if Q.shape != (n, n) or not np.all(np.isfinite(Q)):
        raise ValueError(f"Q must be a finite ({n}, {n}) matrix or a length-{n} diagonal, got shape {Q.shape}")
    if R.shape != (m, m) or not np.all(np.isfinite(R)):
        raise ValueError(f"R must be a finite ({m}, {m}) matrix or a length-{m} diagonal, got shape {R.shape}")
    Q, R = 0.5 * (Q + Q.T), 0.5 * (R + R.T)
    if np.min(np.linalg.eigvalsh(Q)) < -1e-12:
        raise ValueError("Q must be positive semi-definite")
    if np.min(np.linalg.eigvalsh(R)) <= 0:
        raise ValueError("R must be positive definite (the QP is then strictly convex)")
    return Q, R


def condensed_matrices(A: np.ndarray, B: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``S_x`` ``(H n, n)`` and ``S_u`` ``(H n, H m)`` with ``[x_1; ...; x_H] = S_x x_0 + S_u [u_0; ...; u_{H-1}]``."""
    n, m = B.shape
    Sx = np.zeros((horizon * n, n))
    Su = np.zeros((horizon * n, horizon * m))
    power = np.eye(n)
    powers = []
    for h in range(horizon):
        powers.append(power)  # A^h
        power = A @ power
        Sx[h * n:(h + 1) * n] = power  # A^{h+1}
    for h in range(horizon):  # block (h, s) = A^{h-s} B for s <= h
        for s in range(h + 1):
            Su[h * n:(h + 1) * n, s * m:(s + 1) * m] = powers[h - s] @ B
    return Sx, Su


def tracking_gains(A, B, C, horizon: int, tracking_weight: float, Q=None, R=None) -> tuple[np.ndarray, np.ndarray]:
    """Gains ``(K_x, K_g)`` of the first input ``u_0 = K_x x_0 + K_g x_g`` of the QP above.

    :param A: ``(n, n)``; :param B: ``(n, m)``; :param C: ``(2, n)``.
    :param horizon: H >= 1.
    :param tracking_weight: ``w > 0``, the weight of ``||C x_h - x_g||^2`` (the transported mass in D2OC).
    :param Q: state weight ``(n, n)`` (default 0); :param R: input weight ``(m, m)`` (default I).
    """
    A, B, C = (np.asarray(M_, dtype=np.float64) for M_ in (A, B, C))
    n, m = B.shape
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    if not (np.isfinite(tracking_weight) and tracking_weight > 0):
        raise ValueError(f"tracking_weight must be positive, got {tracking_weight!r}")
    Q, R = check_weights(n, m, Q, R)
    Sx, Su = condensed_matrices(A, B, horizon)
    Qbar = np.kron(np.eye(horizon), tracking_weight * C.T @ C + Q)
    Rbar = np.kron(np.eye(horizon), R)
    G = np.kron(np.ones((horizon, 1)), np.eye(2))  # the same x_g at every horizon step, as the authors
    Cbar = np.kron(np.eye(horizon), C)
    Hm = Su.T @ Qbar @ Su + Rbar
    # U* = -H^-1 S_u' Qbar S_x x_0 + w H^-1 S_u' Cbar' G x_g; keep the first m rows (u_0).
    rhs = np.hstack([-Su.T @ Qbar @ Sx, tracking_weight * Su.T @ Cbar.T @ G])
    sol = np.linalg.solve(Hm, rhs)[:m]
    return np.ascontiguousarray(sol[:, :n]), np.ascontiguousarray(sol[:, n:])


def kkt_solution(A, B, C, horizon: int, tracking_weight: float, x0, xg, Q=None, R=None) -> np.ndarray:
    """All inputs ``(H, m)`` of the QP above from its KKT system (reference for the condensed gains)."""
    A, B, C = (np.asarray(M_, dtype=np.float64) for M_ in (A, B, C))
    n, m = B.shape
    Q, R = check_weights(n, m, Q, R)
    H = horizon
    nz = H * n + H * m  # z = [x_1..x_H, u_0..u_{H-1}]
    P = np.zeros((nz, nz))
    q = np.zeros(nz)
    Wx = tracking_weight * C.T @ C + Q
    for h in range(H):
        P[h * n:(h + 1) * n, h * n:(h + 1) * n] = Wx
        q[h * n:(h + 1) * n] = -tracking_weight * C.T @ np.asarray(xg, float)
        P[H * n + h * m:H * n + (h + 1) * m, H * n + h * m:H * n + (h + 1) * m] = R
    E = np.zeros((H * n, nz))  # x_h - A x_{h-1} - B u_{h-1} = (A x_0 if h = 1 else 0)
    e = np.zeros(H * n)
    for h in range(H):
        E[h * n:(h + 1) * n, h * n:(h + 1) * n] = np.eye(n)
        if h > 0:
            E[h * n:(h + 1) * n, (h - 1) * n:h * n] = -A
        E[h * n:(h + 1) * n, H * n + h * m:H * n + (h + 1) * m] = -B
    e[:n] = A @ np.asarray(x0, float)
    K = np.block([[P, E.T], [E, np.zeros((H * n, H * n))]])
    z = np.linalg.solve(K, np.concatenate([-q, e]))
    return z[H * n:nz].reshape(H, m)
