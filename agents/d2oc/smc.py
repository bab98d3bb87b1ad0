"""Spectral multiscale coverage (SMC) ergodic control baseline (Mathew & Mezic, Physica D 240, 2011).

With the cosine basis ``f_k(x) = cos(k_1 pi (x - lo) / L) cos(k_2 pi (y - lo) / L)``, ``k`` in
``{0..K-1}^2`` (RCFS ``ergodic_control_SMC_2D.py`` uses K = 10 and omits the ``h_k`` normalisation, as
here), the reference coefficients are ``phi_k = sum_j beta_j f_k(q_j)`` and the running trajectory
coefficients ``c_k(t) = (1 / (N t)) sum_{tau <= t} sum_i f_k(x_i(tau))`` (all agents together). The
ergodic metric is ``E = sum_k Lambda_k (c_k - phi_k)^2`` with ``Lambda_k = (1 + ||k||^2)^{-3/2}``; each
agent moves along ``-B_i / (||B_i|| + eps)``, ``B_i = sum_k Lambda_k (c_k - phi_k) grad f_k(x_i)``, the
SMC feedback law. For the general linear agents here the direction becomes a target
``x_g = x_i + step_length * direction`` tracked with the same gains as D2OC (for a single integrator
this is SMC's bounded-speed law). SMC is centralised: every agent needs the global ``c_k``.
"""

from __future__ import annotations

import numpy as np

from morl.agents.d2oc.base import CoverageController

__all__ = ["SMC", "smc_basis", "smc_coefficients", "smc_weights"]


def smc_basis(points, n_basis: int, domain) -> tuple[np.ndarray, np.ndarray]:
    """``f_k`` at ``points`` ``(P, K*K)`` and their gradients ``(P, K*K, 2)``; ``k = (k_1, k_2)`` row-major."""
    lo, hi = domain
    scale = np.pi / (hi - lo)
    k = np.arange(n_basis) * scale
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2) - lo
    ax, ay = k[None, :] * p[:, :1], k[None, :] * p[:, 1:]
    cx, cy, sx, sy = np.cos(ax), np.cos(ay), np.sin(ax), np.sin(ay)
    f = (cx[:, :, None] * cy[:, None, :]).reshape(len(p), -1)
    gx = (-k[None, :, None] * sx[:, :, None] * cy[:, None, :]).reshape(len(p), -1)
    gy = (-k[None, None, :] * cx[:, :, None] * sy[:, None, :]).reshape(len(p), -1)
    return f, np.stack([gx, gy], axis=-1)


def smc_coefficients(points, weights, n_basis: int, domain) -> np.ndarray:
    """``sum_j w_j f_k(q_j)`` for every ``k`` (``w`` normalised to sum 1)."""
    w = np.asarray(weights, dtype=np.float64)
    f, _ = smc_basis(points, n_basis, domain)
    return (w / w.sum()) @ f


def smc_weights(n_basis: int, dim: int = 2) -> np.ndarray:
    """``Lambda_k = (1 + ||k||^2)^{-(d + 1) / 2}``."""
    k1, k2 = np.meshgrid(np.arange(n_basis), np.arange(n_basis), indexing="ij")
    return ((1.0 + k1 ** 2 + k2 ** 2) ** (-(dim + 1) / 2.0)).ravel()


class SMC(CoverageController):
    """Spectral multiscale coverage (ergodic control) for N linear agents.

    :param n_basis: basis functions per axis K.
    :param step_length: distance of the per-step target along the descent direction (metres).
    :param eps: regulariser of the direction's norm (RCFS uses 0.1 ... small values give bang-bang speed).
    Other parameters as :class:`~morl.agents.d2oc.base.CoverageController`.
    """

    _params = CoverageController._params + ("n_basis", "step_length", "eps")

    def __init__(self, env=None, task=None, n_basis: int = 10, step_length: float = 20.0, eps: float = 1e-3,
                 horizon: int = 15, tracking_weight: float | None = None, Q=None, R=None, u_max: float | None = None,
                 seed: int | None = None, verbose: int = 0, device: str = "auto"):
        if not isinstance(n_basis, (int, np.integer)) or n_basis < 1:
            raise ValueError(f"n_basis must be an integer >= 1, got {n_basis!r}")
        if not step_length > 0 or not eps > 0:
            raise ValueError(f"step_length and eps must be positive, got {step_length!r}, {eps!r}")
        self.n_basis, self.step_length, self.eps = int(n_basis), float(step_length), float(eps)
        super().__init__(env=env, task=task, horizon=horizon, tracking_weight=tracking_weight, Q=Q, R=R, u_max=u_max,
                         seed=seed, verbose=verbose, device=device)

    def _reset_memory(self, k: int, states: np.ndarray) -> dict:
        d = self.task.density
        return {"t": 0, "phi": smc_coefficients(d.samples, d.weights, self.n_basis, d.domain),
                "lam": smc_weights(self.n_basis), "sum": np.zeros(self.n_basis ** 2), "count": 0}

    def _targets(self, mem: dict, states: np.ndarray) -> np.ndarray:
        pos = self.positions(states)
        f, grad = smc_basis(pos, self.n_basis, self.task.density.domain)
        if mem["t"] >= 1:  # the coverage measure counts the positions after each move (steps 1..T)
            mem["sum"] += f.sum(axis=0)
            mem["count"] += len(pos)
        c = mem["sum"] / max(mem["count"], 1)
        b = np.einsum("k,pkd->pd", mem["lam"] * (c - mem["phi"]), grad)
        direction = -b / (np.linalg.norm(b, axis=1, keepdims=True) + self.eps)
        return pos + self.step_length * direction
