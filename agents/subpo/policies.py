"""Softmax policies of SubPO / ModPO over the grid worlds' dict observations.

Feature modes (the policy's input, built from ``{"cell", "t", "visited"}`` observations):

- ``"visited"`` (default): one-hot cell, ``t / horizon`` and the visited-cell bitmap: a time-augmented
  state plus the set the marginal gains depend on (the non-Markovian SubPO input, as a bitmap);
- ``"markov"``: one-hot cell and ``t / horizon`` (the time-augmented Markovian SubPO-M / ModPO input);
- ``"repo"``: ``[cell index, t]`` as raw floats, exactly the authors' SubPO-M input (parity runs).

Any other observation space (a ``Box``) is flattened as is.
"""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from torch import nn

__all__ = ["SubPOPolicy", "FEATURE_MODES"]

FEATURE_MODES = ("visited", "markov", "repo")


class SubPOPolicy(BasePolicy):
    """MLP with a softmax over the discrete actions.

    :param observation_space: a ``Dict`` with ``cell`` (Discrete N), ``t`` (Discrete H+1) and
        ``visited`` (MultiBinary N), or a ``Box``.
    :param action_space: ``Discrete``.
    :param lr_schedule: learning-rate schedule (SB3 convention).
    :param features: feature mode, see the module docstring.
    :param net_arch: hidden layer sizes (the authors use 64, 32 with tanh).
    :param activation_fn: hidden activation.
    :param optimizer_class: torch optimiser (Adam, as the authors).
    :param optimizer_kwargs: its extra arguments.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule,
                 features: str = "visited", net_arch=(64, 64), activation_fn: type[nn.Module] = nn.Tanh,
                 optimizer_class: type[th.optim.Optimizer] = th.optim.Adam, optimizer_kwargs: dict | None = None):
        super().__init__(observation_space, action_space, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs)
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"SubPOPolicy needs a Discrete action space, got {action_space}")
        self.features = features
        self.net_arch = list(net_arch)
        self.activation_fn = activation_fn
        self.is_grid = isinstance(observation_space, spaces.Dict) and {"cell", "t", "visited"} <= set(
            observation_space.spaces)
        if self.is_grid:
            if features not in FEATURE_MODES:
                raise ValueError(f"unknown features {features!r}; expected one of {FEATURE_MODES}")
            self.n_cells = int(observation_space["cell"].n)
            self.horizon = max(int(observation_space["t"].n) - 1, 1)
            in_dim = {"visited": 2 * self.n_cells + 1, "markov": self.n_cells + 1, "repo": 2}[features]
        elif isinstance(observation_space, spaces.Box):
            in_dim = int(th.tensor(observation_space.shape).prod())
        else:
            raise ValueError(f"SubPOPolicy needs the grid worlds' Dict observations or a Box, got {observation_space}")
        layers, last = [], in_dim
        for width in self.net_arch:
            layers += [nn.Linear(last, width), activation_fn()]
            last = width
        layers.append(nn.Linear(last, int(action_space.n)))
        self.net = nn.Sequential(*layers)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data.update(features=self.features, net_arch=self.net_arch, activation_fn=self.activation_fn)
        return data

    def featurize(self, obs) -> th.Tensor:
        """Policy input ``[batch, in_dim]`` from a (tensor) observation batch."""
        if not self.is_grid:
            return obs.float().reshape(obs.shape[0], -1)
        cell = obs["cell"].long().reshape(-1)
        t = obs["t"].float().reshape(-1, 1)
        if self.features == "repo":
            return th.cat([cell.float().unsqueeze(1), t], dim=1)
        onehot = nn.functional.one_hot(cell, self.n_cells).float()
        parts = [onehot, t / self.horizon]
        if self.features == "visited":
            parts.append(obs["visited"].float().reshape(cell.shape[0], -1))
        return th.cat(parts, dim=1)

    def distribution(self, obs) -> th.distributions.Categorical:
        return th.distributions.Categorical(logits=self.net(self.featurize(obs)))

    def forward(self, obs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic)

    def _predict(self, observation, deterministic: bool = False) -> th.Tensor:
        dist = self.distribution(observation)
        return dist.probs.argmax(dim=1) if deterministic else dist.sample()
