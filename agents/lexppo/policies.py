"""Actor-critic policies with a vector value head: one critic output per objective.

The policy is SB3's ``ActorCriticPolicy`` (or its CNN variant) whose ``value_net`` has ``n_objectives``
outputs instead of one, so ``forward``, ``evaluate_actions`` and ``predict_values`` return values of shape
``(batch, n_objectives)``. The actor and the critic trunk are SB3's (separate ``pi`` / ``vf`` layers by
default). With ``n_objectives=1`` the policy is SB3's, parameter for parameter.

:func:`vector_value_policy` gives any other ``ActorCriticPolicy`` subclass (for instance a Beta-distribution
actor, ``"morl.agents.carl.policies:BetaPolicy"`` in a config) the same vector value head, so LexPPO can be
compared with a scalar PPO that uses the same actor.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy
from torch import nn

__all__ = ["LexActorCriticCnnPolicy", "LexActorCriticPolicy", "vector_value_policy"]


class _VectorValueHead:
    """Mixin for an SB3 actor-critic policy: ``value_net`` with ``n_objectives`` outputs.

    :param n_objectives: number of critic outputs m (one per objective).
    """

    def __init__(self, *args, n_objectives: int = 1, **kwargs):
        if isinstance(n_objectives, bool) or int(n_objectives) != n_objectives or n_objectives < 1:
            raise ValueError(f"n_objectives must be a positive integer, got {n_objectives!r}")
        self.n_objectives = int(n_objectives)  # before super().__init__, which calls _build
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        if self.n_objectives == 1:
            return  # SB3's value head as it is, so one objective is SB3's policy exactly
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, self.n_objectives)
        if self.ortho_init:
            self.value_net.apply(partial(self.init_weights, gain=1.0))  # SB3's gain for the value head
        # the optimizer must hold the new head's parameters
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def predict_values(self, obs) -> np.ndarray:
        """Per-objective values ``(batch, m)`` as a NumPy array: SB3's rollout loop adds ``gamma *`` the value
        of a truncated episode's last observation to the step's NumPy reward row (here a vector), which a
        tensor cannot join in place. The rollout buffer takes either."""
        return super().predict_values(obs).detach().cpu().numpy()

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data.update(n_objectives=self.n_objectives)
        return data


class LexActorCriticPolicy(_VectorValueHead, ActorCriticPolicy):
    """SB3's ``MlpPolicy`` with one value output per objective (see the module docstring)."""


class LexActorCriticCnnPolicy(_VectorValueHead, ActorCriticCnnPolicy):
    """SB3's ``CnnPolicy`` with one value output per objective (see the module docstring)."""


_VECTOR_POLICIES: dict[type, type] = {}


def vector_value_policy(base: type) -> type:
    """``base`` (an ``ActorCriticPolicy`` subclass) with a value head of ``n_objectives`` outputs.

    The class is built once per ``base``; one that already has the vector head is returned as it is.

    :raises ValueError: naming ``base`` when it is not an ``ActorCriticPolicy`` subclass.
    """
    if not (isinstance(base, type) and issubclass(base, ActorCriticPolicy)):
        raise ValueError(f"policy {base!r} is not an ActorCriticPolicy subclass (LexPPO needs an actor-critic policy)")
    if issubclass(base, _VectorValueHead):
        return base
    if base not in _VECTOR_POLICIES:
        _VECTOR_POLICIES[base] = type(f"Vector{base.__name__}", (_VectorValueHead, base),
                                      {"__doc__": f"{base.__name__} with one value output per objective.",
                                       "__module__": __name__})
    return _VECTOR_POLICIES[base]
