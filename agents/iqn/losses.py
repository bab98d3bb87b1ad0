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

>>> import torch as th
>>> current = th.zeros(1, 1)                     # one sample, one online quantile at 0
>>> target = th.tensor([[2.0]])                  # one target sample at 2
>>> taus = th.tensor([[0.25]])
>>> float(quantile_huber_loss(current, target, taus))   # |0.25 - 0| * (1 * (2 - 0.5)) / 1
0.375
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F

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
    if taus.shape[-1] != n or taus.dim() != 2:
        raise ValueError(f"taus {tuple(taus.shape)} must be [B, {n}] or [{n}] to match current {tuple(current.shape)}")
    target = target.detach()
    batch, heads = current.shape[0], current.shape[2:]
    # Heads first, quantiles last: delta[b, h, i, j] = y_j - Z(tau_i). Keeping the target axis
    # innermost (contiguous, length N') lets the elementwise kernels vectorise; with the heads
    # innermost they ran 3-4x slower on CPU.
    cur = current.reshape(batch, n, -1).transpose(1, 2)  # [B, H, N]
    tgt = target.reshape(batch, target.shape[1], -1).transpose(1, 2)  # [B, H, N']
    delta = tgt.unsqueeze(2) - cur.unsqueeze(3)  # [B, H, N, N']
    # huber_kappa(delta) in one fused op (forward and backward); kappa = 0 is the pinball loss.
    zero = th.zeros((), dtype=delta.dtype, device=delta.device).expand_as(delta)
    if kappa > 0:
        huber = F.huber_loss(delta, zero, reduction="none", delta=kappa)
        scale = 1.0 / kappa
    else:
        huber = F.l1_loss(delta, zero, reduction="none")
        scale = 1.0
    # |tau_i - 1{delta_ij < 0}| / kappa; the indicator is a constant of the loss (detached sign).
    tau_w = taus.to(current.dtype).unsqueeze(1).unsqueeze(3)  # [B or 1, 1, N, 1]
    weight = th.where(delta.detach() < 0, (1.0 - tau_w) * scale, tau_w * scale)
    per_sample = (weight * huber).sum(dim=(2, 3)) / delta.shape[3]  # sum over i, mean over j: [B, H]
    per_sample = per_sample.reshape((batch,) + tuple(heads))
    return per_sample.mean(dim=0) if reduction == "mean" else per_sample
