"""PPO's update (Schulman et al. 2017, arXiv 1707.06347), shared by the project's PPO agents.

An agent computes its advantages and value loss its own way (one critic, or one per objective) and
hands them to :func:`ppo_loss`, which adds the clipped surrogate of eq. (7) and the entropy term;
:func:`ppo_epochs` runs SB3's ``n_epochs`` passes over the rollout buffer with such a minibatch loss:
target-KL early stopping as SB3 (``approx_kl > 1.5 · target_kl``), gradient-norm clipping, and the
means of the losses logged under SB3's keys.
"""

from __future__ import annotations

from collections.abc import Callable

import torch as th

__all__ = ["STAT_KEYS", "ppo_epochs", "ppo_loss"]

#: the minibatch statistics :func:`ppo_loss` returns, in order, as SB3 logs them under ``train/``
STAT_KEYS = ("policy_gradient_loss", "value_loss", "entropy_loss", "clip_fraction", "approx_kl")


def ppo_loss(advantages: th.Tensor, log_prob: th.Tensor, old_log_prob: th.Tensor, entropy: th.Tensor | None,
             value_loss: th.Tensor, clip_range: float, ent_coef: float, vf_coef: float) -> tuple[th.Tensor, th.Tensor]:
    """PPO's loss on one minibatch: ``−L^CLIP + ent_coef · L^ent + vf_coef · value_loss``.

    :param advantages: the minibatch's (already normalised, if so chosen) advantages, shape ``(batch,)``.
    :param entropy: the policy's entropy per sample, or ``None`` (then ``mean(log_prob)`` stands in, as in SB3).
    :return: ``(loss, stats)`` with ``stats`` the detached :data:`STAT_KEYS` values, on the device.
    """
    # clipped surrogate objective (Schulman et al. 2017, eq. 7)
    log_ratio = log_prob - old_log_prob
    ratio = th.exp(log_ratio)
    policy_loss = -th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
    entropy_loss = -th.mean(entropy) if entropy is not None else th.mean(log_prob)
    loss = policy_loss + ent_coef * entropy_loss + vf_coef * value_loss
    with th.no_grad():
        approx_kl = th.mean((ratio - 1) - log_ratio)
        clip_fraction = th.mean((th.abs(ratio - 1) > clip_range).float())
        stats = th.stack([policy_loss.detach(), value_loss.detach(), entropy_loss.detach(), clip_fraction, approx_kl])
    return loss, stats


def ppo_epochs(algo, minibatch_loss: Callable[[object], tuple[th.Tensor, th.Tensor]]) -> None:
    """``algo.n_epochs`` passes of minibatches of ``algo.batch_size`` over ``algo.rollout_buffer``.

    :param algo: an SB3 ``OnPolicyAlgorithm`` (its policy, optimizer, ``target_kl``, ``max_grad_norm``, logger).
    :param minibatch_loss: a rollout-buffer sample -> ``(loss, stats)`` as :func:`ppo_loss` returns.
    """
    sums = th.zeros(len(STAT_KEYS), device=algo.device)
    n_batches, continue_training = 0, True
    for _ in range(algo.n_epochs):
        for batch in algo.rollout_buffer.get(algo.batch_size):
            loss, stats = minibatch_loss(batch)
            sums += stats
            n_batches += 1
            if algo.target_kl is not None and stats[4].item() > 1.5 * algo.target_kl:
                continue_training = False
                break
            algo.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(algo.policy.parameters(), algo.max_grad_norm)
            algo.policy.optimizer.step()
        algo._n_updates += 1
        if not continue_training:
            break
    means = (sums / max(n_batches, 1)).cpu().numpy()
    for key, value in zip(STAT_KEYS, means):
        algo.logger.record(f"train/{key}", float(value))
