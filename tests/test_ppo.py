"""morl.ppo: PPO's minibatch loss against eq. (7) of Schulman et al. (2017), written out sample by sample."""

import numpy as np
import torch as th

from morl.ppo import STAT_KEYS, ppo_loss


def _reference(adv, log_prob, old_log_prob, entropy, value_loss, eps, ent_coef, vf_coef):
    terms = []
    for a, lp, old in zip(adv, log_prob, old_log_prob):
        r = np.exp(lp - old)
        terms.append(min(r * a, min(max(r, 1 - eps), 1 + eps) * a))
    policy_loss = -np.mean(terms)
    entropy_loss = -np.mean(entropy) if entropy is not None else np.mean(log_prob)
    return policy_loss + ent_coef * entropy_loss + vf_coef * value_loss, policy_loss, entropy_loss


def test_ppo_loss_clips_the_ratio_on_both_sides_and_reports_its_statistics():
    # ratios e^0.5 ≈ 1.65 and e^-0.5 ≈ 0.61 fall outside [0.8, 1.2]; e^0.05 inside
    adv = np.array([1.0, -1.0, 1.0, -2.0, 0.5])
    log_prob = np.array([0.5, 0.5, -0.5, -0.5, 0.05])
    old = np.zeros(5)
    entropy = np.array([0.3, 0.1, 0.2, 0.4, 0.0])
    t = lambda x: th.as_tensor(x, dtype=th.float64)  # noqa: E731
    for ent in (entropy, None):
        loss, stats = ppo_loss(t(adv), t(log_prob), t(old), None if ent is None else t(ent), t(0.7), 0.2, 0.01, 0.5)
        expected, policy_loss, entropy_loss = _reference(adv, log_prob, old, ent, 0.7, 0.2, 0.01, 0.5)
        assert abs(float(loss) - expected) < 1e-12
        got = dict(zip(STAT_KEYS, stats.tolist()))
        assert abs(got["policy_gradient_loss"] - policy_loss) < 1e-12
        assert abs(got["entropy_loss"] - entropy_loss) < 1e-12 and got["value_loss"] == 0.7
        assert abs(got["clip_fraction"] - 0.8) < 1e-6  # 4 of the 5 ratios outside [1 - eps, 1 + eps]
        ratio = np.exp(log_prob - old)
        assert abs(got["approx_kl"] - np.mean(ratio - 1 - (log_prob - old))) < 1e-12
    assert not stats.requires_grad
