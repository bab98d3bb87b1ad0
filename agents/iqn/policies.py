"""Implicit quantile networks and the SB3 policies that act with them.

One network class serves the three agents of this package. It maps an observation and a set of
quantile fractions ``tau`` to quantiles ``Z(s, a; tau)`` for ``H`` heads and ``|A|`` actions, shape
``[B, N, H, A]``:

- :class:`~morl.agents.iqn.IQN`: ``H = 1`` (the scalarised return);
- :class:`~morl.agents.iqn.QDIQN`: ``H = m``, one head per objective on a shared trunk (its policy, which acts
  on the preorder's optimal subset, is in :mod:`morl.agents.iqn.qd_policies`);
- :class:`~morl.agents.iqn.EnsembleIQN`: ``H = E`` ensemble members on a shared trunk (Bootstrapped DQN
  layout, Osband et al. 2016).

Architecture (IQN, Dabney et al. 2018, Eq. 4)::

    psi(s)     = act(W_psi f(s))                                   f: SB3 features extractor
    phi(tau)   = ReLU(W_phi [cos(pi i tau)]_{i=1..n_cos} + b_phi)   cosine embedding, i from 1 as in
                                                                   Dopamine and fqf-iqn-qrdqn
    Z(s,.;tau) = MLP(psi(s) * phi(tau))  -> H x |A|                 Hadamard product, then the head

``net_arch[0]`` is the embedding width ``d`` of ``psi`` and ``phi``; ``net_arch[1:]`` are the hidden
layers after the product, so ``net_arch=[64, 64]`` costs about what QR-DQN's ``[64, 64]`` costs.
"""

from __future__ import annotations

import math
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

__all__ = [
    "CnnPolicy",
    "CosineTauEmbedding",
    "IQNPolicy",
    "ImplicitQuantileNetwork",
    "MlpPolicy",
    "MultiInputPolicy",
    "tau_grid",
]


def tau_grid(k: int, device: th.device | str = "cpu") -> th.Tensor:
    """The deterministic fractions ``(j + 0.5) / k``, ``j = 0..k-1`` (mid-points, sorted)."""
    if k < 1:
        raise ValueError(f"the number of quantile fractions must be >= 1, got {k}")
    return (th.arange(k, device=device, dtype=th.float32) + 0.5) / k


class CosineTauEmbedding(nn.Module):
    """``phi(tau) = ReLU(Linear(cos(pi * i * tau)))`` for ``i = 1..n_cos`` (IQN Eq. 4).

    :param n_cos: number of cosine features.
    :param out_dim: embedding width (must equal the state embedding width).
    """

    def __init__(self, n_cos: int, out_dim: int):
        super().__init__()
        if n_cos < 1:
            raise ValueError(f"n_cos must be >= 1, got {n_cos}")
        self.n_cos = n_cos
        # Not persistent: a constant, rebuilt on load, keeps the state dict to learned weights.
        self.register_buffer("freqs", math.pi * th.arange(1, n_cos + 1, dtype=th.float32), persistent=False)
        self.linear = nn.Linear(n_cos, out_dim)

    def forward(self, taus: th.Tensor) -> th.Tensor:
        """:param taus: fractions ``[..., N]``. :return: embeddings ``[..., N, out_dim]``."""
        return th.relu(self.linear(th.cos(taus.unsqueeze(-1) * self.freqs)))

    def constant(self, taus: th.Tensor) -> th.Tensor:
        """``forward(taus)`` for a fraction set that rarely changes (the acting grid), reused on CPU outside
        autograd while the fractions and the weights keep their values, so acting and the target's action
        selection skip the cosine layer between updates. Values are compared, not version counters:
        SB3's target update writes through ``.data``, which leaves the version counters alone. On other
        devices the comparison would wait for the device at every call, so there is no cache there."""
        if th.is_grad_enabled() or th.is_inference_mode_enabled() or taus.device.type != "cpu":
            return self(taus)
        w, b = self.linear.weight, self.linear.bias
        cache = self.__dict__.get("_constant_cache")
        if cache is None or not (cache[0].shape == taus.shape and cache[1].dtype == w.dtype == taus.dtype
                                 and th.equal(cache[0], taus) and th.equal(cache[1], w) and th.equal(cache[2], b)):
            cache = (taus.clone(), w.detach().clone(), b.detach().clone(), self(taus))
            self.__dict__["_constant_cache"] = cache
        return cache[3]


class ImplicitQuantileNetwork(BasePolicy):
    """Quantiles ``Z(s, a; tau)`` for ``n_heads`` heads, on a shared trunk or one trunk per head.

    :param observation_space: observation space.
    :param action_space: discrete action space.
    :param features_extractor: SB3 features extractor.
    :param features_dim: its output width.
    :param n_heads: output heads (1 for IQN, m objectives for QD-IQN, E members for the ensemble).
    :param net_arch: ``[d, hidden...]``: embedding width, then hidden layers after the product.
    :param n_cos: cosine features of the tau embedding (64 in IQN).
    :param activation_fn: activation of the trunk and the head.
    :param normalize_images: divide image observations by 255.
    :param separate_trunks: one state embedding, tau embedding and hidden layers per head (``psi``, ``phi``
        and ``head`` become lists), so no head's loss shapes another's features; the features extractor
        stays shared. ``False`` (default): one trunk, the heads are the last layer's outputs.
    """

    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        n_heads: int = 1,
        net_arch: list[int] | None = None,
        n_cos: int = 64,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        separate_trunks: bool = False,
    ):
        super().__init__(observation_space, action_space, features_extractor=features_extractor,
                         normalize_images=normalize_images)
        net_arch = [64, 64] if net_arch is None else list(net_arch)
        if not net_arch or any(int(w) < 1 for w in net_arch):
            raise ValueError(f"net_arch must be a non-empty list of positive widths, got {net_arch}")
        if n_heads < 1:
            raise ValueError(f"n_heads must be >= 1, got {n_heads}")
        self.net_arch = net_arch
        self.n_cos = n_cos
        self.n_heads = n_heads
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        self.n_actions = int(action_space.n)
        d = net_arch[0]
        self.separate_trunks = bool(separate_trunks)

        def trunk(n_out: int):
            return (nn.Sequential(nn.Linear(features_dim, d), activation_fn()), CosineTauEmbedding(n_cos, d),
                    nn.Sequential(*create_mlp(d, n_out, net_arch[1:], activation_fn)))

        if self.separate_trunks:
            psi, phi, head = zip(*(trunk(self.n_actions) for _ in range(n_heads)))
            self.psi, self.phi, self.head = nn.ModuleList(psi), nn.ModuleList(phi), nn.ModuleList(head)
        else:
            self.psi, self.phi, self.head = trunk(n_heads * self.n_actions)

    def embed(self, obs: PyTorchObs) -> th.Tensor:
        """State embedding ``psi(s)``, ``[B, d]`` (``[B, H, d]`` with separate trunks); reuse it for several
        tau sets."""
        features = self.extract_features(obs, self.features_extractor)
        if self.separate_trunks:
            return th.stack([psi(features) for psi in self.psi], dim=1)
        return self.psi(features)

    def quantiles(self, psi: th.Tensor, *taus: th.Tensor) -> th.Tensor:
        """Quantiles at one or several fraction sets, concatenated along the fraction axis.

        :param psi: state embedding ``[B, d]`` (``[B, H, d]`` with separate trunks).
        :param taus: fraction sets, each ``[N]`` (shared by the batch: embedded once) or ``[B, N]``.
        :return: ``[B, sum N, H, A]``; several sets go through the head in one pass.
        """
        if self.separate_trunks:
            return th.stack([self._product_head(psi[:, k], self.phi[k], self.head[k], taus)
                             for k in range(self.n_heads)], dim=2)
        out = self._product_head(psi, self.phi, self.head, taus)
        return out.view(psi.shape[0], out.shape[1], self.n_heads, self.n_actions)

    @staticmethod
    def _product_head(psi: th.Tensor, phi_net: CosineTauEmbedding, head: nn.Module, taus) -> th.Tensor:
        """``head(psi(s) * phi(tau))`` for one trunk: ``[B, sum N, outputs]``."""
        phis = [phi_net.constant(t) if t.dim() == 1 else phi_net(t) for t in taus]
        phis = [phi.unsqueeze(0) if phi.dim() == 2 else phi for phi in phis]
        if len(phis) == 1:
            h = psi.unsqueeze(1) * phis[0]
        elif th.is_grad_enabled():
            h = th.cat([psi.unsqueeze(1) * phi for phi in phis], dim=1)
        else:  # each product written in place into one buffer, without the copy of th.cat
            h = psi.new_empty(psi.shape[0], sum(phi.shape[1] for phi in phis), psi.shape[1])
            start = 0
            for phi in phis:
                th.mul(psi.unsqueeze(1), phi, out=h[:, start:start + phi.shape[1]])
                start += phi.shape[1]
        return head(h)

    def forward(self, obs: PyTorchObs, taus: th.Tensor) -> th.Tensor:
        return self.quantiles(self.embed(obs), taus)

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        raise NotImplementedError("act through IQNPolicy, which owns the acting rule")

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update({"net_arch": self.net_arch, "features_dim": self.features_dim, "n_heads": self.n_heads,
                         "n_cos": self.n_cos, "activation_fn": self.activation_fn,
                         "features_extractor": self.features_extractor, "separate_trunks": self.separate_trunks})
        return data

class IQNPolicy(BasePolicy):
    """Online and target implicit quantile networks; acts greedily on the mean over heads and taus.

    Acting uses the deterministic grid of ``n_quantiles_act`` mid-point fractions (not fresh samples),
    so ``predict(deterministic=True)`` is a function of the observation. With ``n_heads > 1`` the
    action maximises the mean over heads (the ensemble mean for :class:`~morl.agents.iqn.EnsembleIQN`).

    :param observation_space: observation space.
    :param action_space: discrete action space.
    :param lr_schedule: learning-rate schedule.
    :param n_heads: output heads.
    :param n_quantiles_act: K, fractions of the acting grid.
    :param risk_eta: the acting grid covers ``(0, risk_eta]``: ``(k + 0.5) / K * risk_eta``. ``1`` is
        risk-neutral (the mean); ``< 1`` acts on the lower tail, i.e. CVaR at level ``risk_eta``
        (IQN paper Sec. 3.1, risk-sensitive policies by distorting the fractions).
    :param net_arch: ``[d, hidden...]`` (see :class:`ImplicitQuantileNetwork`).
    :param n_cos: cosine features of the tau embedding.
    :param activation_fn: activation function.
    :param features_extractor_class: SB3 features extractor.
    :param features_extractor_kwargs: its keyword arguments.
    :param normalize_images: divide image observations by 255.
    :param optimizer_class: optimiser (Adam).
    :param optimizer_kwargs: optimiser keyword arguments, learning rate excluded.
    :param separate_trunks: one trunk per head (see :class:`ImplicitQuantileNetwork`; default shared).
    :param acting_average: ``0`` (default): act with the online network. ``alpha`` in ``(0, 1)``: act with an
        exponential moving average of the online weights, ``w_act <- (1 - alpha) w_act + alpha w`` after every
        gradient step (the agent's ``train``), so the policy that acts and is evaluated moves with the drift of
        the online weights rather than with each minibatch's step. Averaging the iterates of stochastic
        gradient descent is Polyak and Juditsky's (1992); Nikishin et al. (2018, "Improving Stability in Deep
        Reinforcement Learning with Weight Averaging") show that averaged weights keep deep RL agents from
        forgetting a well-rewarded policy. The training targets do not use it.
    """

    quantile_net: ImplicitQuantileNetwork
    quantile_net_target: ImplicitQuantileNetwork
    quantile_net_acting: ImplicitQuantileNetwork | None

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        n_heads: int = 1,
        n_quantiles_act: int = 32,
        risk_eta: float = 1.0,
        net_arch: list[int] | None = None,
        n_cos: int = 64,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        separate_trunks: bool = False,
        acting_average: float = 0.0,
    ):
        super().__init__(observation_space, action_space, features_extractor_class, features_extractor_kwargs,
                         optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs,
                         normalize_images=normalize_images)
        if not isinstance(action_space, spaces.Discrete):
            raise TypeError(f"IQN policies need a Discrete action space, got {action_space}")
        if net_arch is None:
            net_arch = [512] if features_extractor_class == NatureCNN else [64, 64]
        self.n_heads = n_heads
        if not 0.0 < float(risk_eta) <= 1.0:
            raise ValueError(f"risk_eta must be in (0, 1], got {risk_eta}")
        if not 0.0 <= float(acting_average) < 1.0:
            raise ValueError(f"acting_average must be in [0, 1), got {acting_average}")
        self.acting_average = float(acting_average)
        self.n_quantiles_act = n_quantiles_act
        self.risk_eta = float(risk_eta)
        self.net_arch = net_arch
        self.n_cos = n_cos
        self.activation_fn = activation_fn
        self.separate_trunks = bool(separate_trunks)
        self.net_args = {"observation_space": self.observation_space, "action_space": self.action_space,
                             "n_heads": n_heads, "net_arch": net_arch, "n_cos": n_cos, "activation_fn": activation_fn,
                             "normalize_images": normalize_images, "separate_trunks": self.separate_trunks}
        self._set_acting_grid((self.risk_eta,))
        self._build(lr_schedule)

    def _set_acting_grid(self, levels) -> None:
        """The acting (and target-selection) grid: one block of ``K`` mid-point fractions on ``(0, eta]`` per CVaR
        level ``eta``; ``act_etas`` holds each fraction's level, so sampled fractions take the same layout."""
        k = self.n_quantiles_act
        etas = th.cat([th.full((k,), float(eta)) for eta in levels])
        self.register_buffer("act_etas", etas, persistent=False)
        self.register_buffer("act_taus", tau_grid(k).repeat(len(levels)) * etas, persistent=False)

    def _build(self, lr_schedule: Schedule) -> None:
        self.quantile_net = self.make_quantile_net()
        self.quantile_net_target = self.make_quantile_net()
        self.quantile_net_target.load_state_dict(self.quantile_net.state_dict())
        self.quantile_net_target.set_training_mode(False)
        self.quantile_net_acting = None
        if self.acting_average:
            self.quantile_net_acting = self.make_quantile_net()
            self.quantile_net_acting.load_state_dict(self.quantile_net.state_dict())
            self.quantile_net_acting.set_training_mode(False)
        self.optimizer = self.optimizer_class(self.quantile_net.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)

    def make_quantile_net(self) -> ImplicitQuantileNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return ImplicitQuantileNetwork(**net_args).to(self.device)

    def act_quantiles(self, obs: PyTorchObs) -> th.Tensor:
        """Quantiles on the acting grid, ``[B, K, H, A]``: of the online network, or of its average when
        ``acting_average`` is set."""
        net = self.quantile_net if self.quantile_net_acting is None else self.quantile_net_acting
        return net(obs, self.act_taus)

    def forward(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self.act_quantiles(obs).mean(dim=(1, 2)).argmax(dim=1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update({"n_heads": self.n_heads, "n_quantiles_act": self.n_quantiles_act, "risk_eta": self.risk_eta,
                         "net_arch": self.net_arch,
                         "n_cos": self.n_cos, "activation_fn": self.activation_fn, "lr_schedule": self._dummy_schedule,
                         "separate_trunks": self.separate_trunks, "acting_average": self.acting_average,
                         "optimizer_class": self.optimizer_class, "optimizer_kwargs": self.optimizer_kwargs,
                         "features_extractor_class": self.features_extractor_class,
                         "features_extractor_kwargs": self.features_extractor_kwargs})
        return data

    def set_training_mode(self, mode: bool) -> None:
        """``train(mode)`` on the online network (the target network stays in eval mode).

        SB3 switches the mode twice per rollout/train cycle, and ``nn.Module.train`` (a recursion through
        ``__setattr__``) costs about as much as a forward pass of these small networks. Where no module
        overrides ``train`` all it changes is each module's ``training`` flag, so the flags are set in one
        loop over the modules, listed at the first call.
        """
        modules = self.__dict__.get("_mode_modules")
        if modules is None:
            modules = list(self.quantile_net.modules())
            if any(type(module).train is not nn.Module.train for module in modules):
                modules = []  # a module with its own train(): always go through it
            self.__dict__["_mode_modules"] = modules
        if modules:
            for module in modules:
                module.__dict__["training"] = mode
        else:
            self.quantile_net.set_training_mode(mode)
        self.training = mode

    @property
    def device(self) -> th.device:
        """The device of the parameters. SB3 finds it by walking the parameters at every call, i.e. at every
        ``predict``; here it is kept until the policy moves (``to``, ``cuda``, ``cpu``: :meth:`_apply`)."""
        device = self.__dict__.get("_device")
        if device is None:
            device = self.__dict__["_device"] = super().device
        return device

    def _apply(self, *args, **kwargs):
        self.__dict__.pop("_device", None)
        return super()._apply(*args, **kwargs)


class CnnPolicy(IQNPolicy):
    """:class:`IQNPolicy` with the Nature CNN features extractor (image observations)."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputPolicy(IQNPolicy):
    """:class:`IQNPolicy` for dict observations."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


MlpPolicy = IQNPolicy
