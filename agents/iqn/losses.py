"""Quantile Huber loss for implicit quantile networks (sampled quantile fractions).

IQN (Dabney et al. 2018, arXiv 1806.06923, Eq. 3 and the loss under it) regresses the quantiles
``Z(s, a; tau_i)`` at fractions ``tau_i ~ U(0, 1)`` drawn afresh for every sample, towards the
target samples ``y_j = r + gamma * Z'(s', a*; tau'_j)``. With ``delta_ij = y_j - Z(s, a; tau_i)``::

    huber_kappa(d) = 0.5 d^2               if |d| <= kappa
                   = kappa (|d| - kappa/2)  otherwise
    rho_tau(d)     = |tau - 1{d < 0}| * huber_kappa(d) / kappa
    loss           = mean_batch  sum_i  mean_j  rho_{tau_i}(delta_ij)

sb3-contrib's ``quantile_huber_loss`` fixes the fractions to the mid-points ``(i + 0.5) / N`` of
QR-DQN, so it cannot take IQN's per-sample fractions; this one takes them as an argument.

On CPU the per-sample losses and their gradient come from one fused numba kernel
(``_quantile_huber_kernel``, 4-5x faster than the tensor code for four heads, which dispatches a
dozen ops over ``[B, H, N, N']`` temporaries); other devices run the tensor code
(``_per_sample_torch``), and the tests hold the two to the same values.

>>> import torch as th
>>> current = th.zeros(1, 1)                     # one sample, one online quantile at 0
>>> target = th.tensor([[2.0]])                  # one target sample at 2
>>> taus = th.tensor([[0.25]])
>>> float(quantile_huber_loss(current, target, taus))   # |0.25 - 0| * (1 * (2 - 0.5)) / 1
0.375
"""

from __future__ import annotations

import numba
import numpy as np
import torch as th
from torch.autograd.function import once_differentiable

__all__ = ["quantile_huber_loss"]


def quantile_huber_loss(
    current: th.Tensor,
    target: th.Tensor,
    taus: th.Tensor,
    kappa: float = 1.0,
    reduction: str = "mean",
) -> th.Tensor:
    """Quantile Huber loss between online quantiles at sampled fractions and target samples.

    Trailing dimensions after the quantile axis (heads: objectives or ensemble members) are kept
    apart: each head gets its own loss.

    :param current: online quantiles ``[B, N, *H]`` at fractions ``taus``.
    :param target: target samples ``[B, N', *H]`` (no gradient flows into them).
    :param taus: fractions of ``current``, ``[B, N]`` (or ``[N]`` shared by the batch), in ``[0, 1]``.
    :param kappa: Huber threshold; ``0`` gives the plain quantile (pinball) loss.
    :param reduction: ``"mean"`` over the batch (shape ``[*H]``) or ``"none"`` (shape ``[B, *H]``).
    :return: the loss, summed over the online fractions and averaged over the target samples.
    """
    if current.dim() < 2 or target.dim() != current.dim():
        raise ValueError(
            f"current {tuple(current.shape)} and target {tuple(target.shape)} must both be [B, N, *heads] "
            "with the same number of dimensions"
        )
    if current.shape[0] != target.shape[0] or current.shape[2:] != target.shape[2:]:
        raise ValueError(f"current {tuple(current.shape)} and target {tuple(target.shape)} differ in batch or heads")
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    n = current.shape[1]
    if taus.dim() == 1:
        taus = taus.unsqueeze(0)
    if taus.dim() != 2 or taus.shape[-1] != n or taus.shape[0] not in (1, current.shape[0]):
        # Checked before either path runs: the CPU kernel would read past the end of a shorter taus.
        raise ValueError(f"taus {tuple(taus.shape)} must be [B, {n}] or [{n}] to match current {tuple(current.shape)}")
    target = target.detach()
    if current.device.type == "cpu" and current.dtype in (th.float32, th.float64) and target.dtype == current.dtype:
        per_sample = _QuantileHuberCPU.apply(current, target, taus, float(kappa))  # [B, *H], numba
    else:
        per_sample = _per_sample_torch(current, target, taus, float(kappa))
    return per_sample.mean(dim=0) if reduction == "mean" else per_sample


def _per_sample_torch(current: th.Tensor, target: th.Tensor, taus: th.Tensor, kappa: float) -> th.Tensor:
    """Per-sample losses ``[B, *H]`` as tensor operations (any device; the CPU kernel's reference)."""
    batch, n, heads = current.shape[0], current.shape[1], current.shape[2:]
    # Heads first, quantiles last: delta[b, h, i, j] = y_j - Z(tau_i). Keeping the target axis
    # innermost (contiguous, length N') lets the elementwise kernels vectorise; with the heads
    # innermost they ran 3-4x slower on CPU.
    # Contiguous copies (small) so that the [B, H, N, N'] kernels below read unit strides.
    cur = current.reshape(batch, n, -1).transpose(1, 2).contiguous()  # [B, H, N]
    tgt = target.reshape(batch, target.shape[1], -1).transpose(1, 2).contiguous()  # [B, H, N']
    tau_w = taus.to(current.dtype).unsqueeze(1).unsqueeze(3)  # [B or 1, 1, N, 1]
    per_sample = _QuantileHuber.apply(cur, tgt, tau_w, kappa)  # [B, H]
    return per_sample.reshape((batch,) + tuple(heads))


class _QuantileHuber(th.autograd.Function):
    """Per-sample loss ``[B, H]`` of :func:`quantile_huber_loss` and its gradient, in one pass over the
    ``[B, H, N, N']`` pairs.

    With ``c = clamp(delta, -kappa, kappa)`` (``sign(delta)`` when ``kappa = 0``) and
    ``w = |tau - 1{delta < 0}| / kappa`` (``/ 1`` when ``kappa = 0``), the element loss is
    ``w * huber_kappa(delta) / kappa = g * (delta - c / 2)`` with ``g = w * c`` (``g * delta`` when
    ``kappa = 0``), and ``g`` is its derivative in ``delta``: so the forward pass keeps
    ``dL/dZ(tau_i) = -mean_j g_ij`` and the backward pass only scales it. Autograd through
    ``F.huber_loss`` spent more time in its backward kernel than in all the forward ones.
    """

    @staticmethod
    def forward(ctx, cur: th.Tensor, tgt: th.Tensor, tau_w: th.Tensor, kappa: float) -> th.Tensor:
        delta = tgt.unsqueeze(2) - cur.unsqueeze(3)  # [B, H, N, N']
        n_target = delta.shape[3]
        c = delta.clamp(-kappa, kappa) if kappa > 0 else delta.sign()  # huber' (|.|' when kappa = 0)
        scale = 1.0 / kappa if kappa > 0 else 1.0
        # g = w * c without a three-way `where` (not vectorised on CPU; it cost 3x all of the rest):
        # w = tau where c > 0 and 1 - tau where c < 0, so g = tau * c + (1 - 2 tau) * min(c, 0).
        tau_s = tau_w * scale
        g = th.addcmul(c * tau_s, c.clamp(max=0), scale - 2.0 * tau_s)
        ctx.save_for_backward(g.sum(dim=3).div_(-n_target))  # dL/dcur [B, H, N]
        element = (delta.sub_(c, alpha=0.5) if kappa > 0 else delta).mul_(g)  # delta is not needed after this
        return element.sum(dim=(2, 3)).div_(n_target)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: th.Tensor):
        (grad_cur,) = ctx.saved_tensors
        return grad_cur * grad_out.unsqueeze(2), None, None, None


@numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _quantile_huber_kernel(cur, tgt, taus, consts):
    """Loss ``[B, H]`` and its gradient in ``cur`` ``[B, N, H]``, one fused pass over the ``(i, j)`` pairs of
    each sample and head: :class:`_QuantileHuber`'s arithmetic (``g = tau c + (1 - 2 tau) min(c, 0)``, element
    ``g (delta - c / 2)``), without its ``[B, H, N, N']`` temporaries.

    :param cur: online quantiles ``[B, N, H]`` (any strides).
    :param tgt: target samples ``[B, N', H]``.
    :param taus: fractions ``[B, N]`` or ``[1, N]``, in the dtype of ``cur``.
    :param consts: ``[kappa, 1 / kappa (1 when kappa = 0), 0, 1]`` in the dtype of ``cur``, so that no
        float64 constant widens the float32 arithmetic. ``fastmath`` reassociates the sums over ``j`` so that they
        vectorise (they may differ from the torch code's in the last bits); NaN and inf keep IEEE semantics.
    """
    n_b, n, n_h = cur.shape
    n_t = tgt.shape[1]
    kappa, scale, zero, one = consts[0], consts[1], consts[2], consts[3]
    half = one / (one + one) if kappa > zero else zero
    inv_t = one / n_t
    loss = np.empty((n_b, n_h), dtype=cur.dtype)
    grad = np.empty((n_b, n, n_h), dtype=cur.dtype)
    y = np.empty(n_t, dtype=cur.dtype)
    for b in range(n_b):
        tb = b if taus.shape[0] > 1 else 0
        for h in range(n_h):
            for j in range(n_t):  # the target row, contiguous, so the inner loop vectorises
                y[j] = tgt[b, j, h]
            total = zero
            for i in range(n):
                z = cur[b, i, h]
                tau = taus[tb, i] * scale
                low = scale - (tau + tau)
                s_loss = zero
                s_g = zero
                if kappa > zero:
                    for j in range(n_t):
                        d = y[j] - z
                        c = min(max(d, -kappa), kappa)
                        g = tau * c + low * min(c, zero)
                        s_g += g
                        s_loss += g * (d - half * c)
                else:
                    for j in range(n_t):
                        d = y[j] - z
                        c = one if d > zero else (-one if d < zero else zero)  # sign(d), as torch.sign
                        g = tau * c + low * min(c, zero)
                        s_g += g
                        s_loss += g * d
                total += s_loss
                grad[b, i, h] = -s_g * inv_t
            loss[b, h] = total * inv_t
    return loss, grad


class _QuantileHuberCPU(th.autograd.Function):
    """:class:`_QuantileHuber` on CPU through :func:`_quantile_huber_kernel`: ``[B, N, *H]`` quantiles in,
    ``[B, *H]`` per-sample losses out, the gradient kept from the forward pass."""

    @staticmethod
    def forward(ctx, current: th.Tensor, target: th.Tensor, taus: th.Tensor, kappa: float) -> th.Tensor:
        batch, n = current.shape[:2]
        heads = current.shape[2:]
        cur = current.detach().reshape(batch, n, -1).numpy()
        tgt = target.detach().reshape(batch, target.shape[1], -1).numpy()
        tau = taus.detach().to(current.dtype).numpy()
        consts = np.array([kappa, 1.0 / kappa if kappa > 0 else 1.0, 0.0, 1.0], dtype=cur.dtype)
        loss, grad = _quantile_huber_kernel(cur, tgt, tau, consts)
        ctx.save_for_backward(th.from_numpy(grad).view(current.shape))
        return th.from_numpy(loss).view((batch,) + tuple(heads))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: th.Tensor):
        (grad_cur,) = ctx.saved_tensors
        return grad_cur * grad_out.unsqueeze(1), None, None, None
