"""Beta-distribution actor-critic policy for CaRL PPO.

CaRL (Jaeger et al. 2025, arXiv 2504.17838; the authors' ``distributions.py``) samples each action
dimension from a Beta distribution on [0, 1] with ``α = softplus(x_α) + 1`` and ``β = softplus(x_β) + 1``
(both ≥ 1, so the density is unimodal and bounded) and rescales it to the action bounds. Evaluation
acts on the distribution's *mean* (the paper reports +1 DS over the mode).

Here the Beta variable ``u ∈ [0, 1]`` is mapped to ``x = 2u − 1 ∈ [−1, 1]`` and the policy sets SB3's
``squash_output``, so SB3 rescales ``x`` to the env's ``Box`` bounds, as it does for squashed policies.
"""

from __future__ import annotations

import math

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

__all__ = ["BetaDistribution", "BetaPolicy"]

_EPS = 1e-6
_LOG2 = math.log(2.0)


class BetaDistribution(Distribution):
    """Independent Beta distributions, one per action dimension, on ``[-1, 1]``.

    :param action_dim: number of action dimensions.
    :param min_concentration: the ``+ c`` added to softplus for α and β (CaRL: 1.0).
    """

    def __init__(self, action_dim: int, min_concentration: float = 1.0):
        super().__init__()
        self.action_dim = action_dim
        self.min_concentration = min_concentration

    def proba_distribution_net(self, latent_dim: int) -> nn.Module:
        return nn.Linear(latent_dim, 2 * self.action_dim)

    def proba_distribution(self, params: th.Tensor) -> BetaDistribution:
        a, b = params.chunk(2, dim=-1)
        alpha = F.softplus(a) + self.min_concentration
        beta = F.softplus(b) + self.min_concentration
        # No argument validation: it checks the parameters and every log_prob sample with a Python
        # ``if`` on a tensor, a host-device synchronisation per minibatch on CUDA. alpha, beta >= c > 0
        # by construction and log_prob clamps its samples into (0, 1); NaN parameters are caught by
        # the run's divergence guard.
        self.distribution = th.distributions.Beta(alpha, beta, validate_args=False)
        return self

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        u = ((actions + 1.0) * 0.5).clamp(_EPS, 1.0 - _EPS)
        # change of variables x = 2u - 1: p_x(x) = p_u(u) / 2 per dimension
        return (self.distribution.log_prob(u) - _LOG2).sum(dim=-1)

    def entropy(self) -> th.Tensor:
        return (self.distribution.entropy() + _LOG2).sum(dim=-1)

    def sample(self) -> th.Tensor:
        return 2.0 * self.distribution.rsample().clamp(_EPS, 1.0 - _EPS) - 1.0

    def mode(self) -> th.Tensor:
        """The mean, which CaRL uses for deterministic actions (not the density's mode)."""
        return 2.0 * self.distribution.mean - 1.0

    def actions_from_params(self, params: th.Tensor, deterministic: bool = False) -> th.Tensor:
        self.proba_distribution(params)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, params: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(params)
        return actions, self.log_prob(actions)


class BetaPolicy(ActorCriticPolicy):
    """SB3 ``ActorCriticPolicy`` with a :class:`BetaDistribution` head for ``Box`` actions.

    Defaults follow CaRL's heads: ReLU, two 256-unit layers for the policy and for the value.

    :param min_concentration: the ``+ c`` after softplus for α and β.
    Other parameters are SB3's ``ActorCriticPolicy``'s.
    """

    def __init__(self, observation_space, action_space, lr_schedule, net_arch=None, activation_fn=nn.ReLU,
                 min_concentration: float = 1.0, **kwargs):
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"BetaPolicy needs a Box action space, got {action_space}")
        if kwargs.get("use_sde"):
            raise ValueError("BetaPolicy does not support use_sde")
        self.min_concentration = min_concentration
        kwargs.pop("squash_output", None)
        net_arch = dict(pi=[256, 256], vf=[256, 256]) if net_arch is None else net_arch
        super().__init__(observation_space, action_space, lr_schedule, net_arch=net_arch,
                         activation_fn=activation_fn, **kwargs)
        # Actions live in [-1, 1]; SB3 rescales squashed actions to the Box bounds. SB3 ties the
        # constructor flag to gSDE, so it is set after construction.
        self._squash_output = True

    def _build(self, lr_schedule) -> None:
        self._build_mlp_extractor()
        self.action_dist = BetaDistribution(int(spaces.flatdim(self.action_space)), self.min_concentration)
        self.action_net = self.action_dist.proba_distribution_net(self.mlp_extractor.latent_dim_pi)
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            # Orthogonal initialisation as in SB3/CleanRL; a small gain on the head keeps α ≈ β at
            # the start, so the first policy is close to uniform-ish around the middle of the range.
            gains = {self.mlp_extractor: math.sqrt(2), self.action_net: 0.01, self.value_net: 1.0}
            if self.share_features_extractor:
                gains[self.features_extractor] = math.sqrt(2)
            else:
                gains[self.pi_features_extractor] = math.sqrt(2)
                gains[self.vf_features_extractor] = math.sqrt(2)
            for module, gain in gains.items():
                module.apply(lambda m, g=gain: self.init_weights(m, gain=g))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> BetaDistribution:
        return self.action_dist.proba_distribution(self.action_net(latent_pi))

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data.update(min_concentration=self.min_concentration)
        data.pop("squash_output", None)
        return data
