"""Implicit quantile networks and the SB3 policies that act with them.

One network class serves the three agents of this package. It maps an observation and a set of
quantile fractions ``tau`` to quantiles ``Z(s, a; tau)`` for ``H`` heads and ``|A|`` actions, shape
``[B, N, H, A]``:

- :class:`~morl.agents.iqn.IQN`: ``H = 1`` (the scalarised return);
- :class:`~morl.agents.iqn.QDIQN`: ``H = m``, one head per objective on a shared trunk;
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

import numba
import numpy as np
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

from morl.dominance import check_rule, optimal_subset
from morl.dominance_kernels import check_kernel_nan, kernel_constants, subset_kernel
from morl.preorder import Preorder

__all__ = [
    "TIE_BREAKS",
    "CnnPolicy",
    "CosineTauEmbedding",
    "IQNPolicy",
    "ImplicitQuantileNetwork",
    "MlpPolicy",
    "MultiInputPolicy",
    "QDCnnPolicy",
    "QDIQNPolicy",
    "QDMlpPolicy",
    "QDMultiInputPolicy",
    "masked_argmax",
    "tau_grid",
    "tie_break_scores",
]

TIE_BREAKS = ("lowest_mean", "sum_mean", "random")


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


def masked_argmax(scores: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Argmax of ``scores [B, A]`` over the actions where ``mask [B, A]`` is True (never empty)."""
    return scores.masked_fill(~mask, -math.inf).argmax(dim=-1)


def tie_break_scores(mean_z: th.Tensor, mode: str, last_level: th.Tensor) -> th.Tensor:
    """Scores ``[B, A]`` used to pick one action inside an optimal subset.

    :param mean_z: per-objective means ``[B, m, A]``.
    :param mode: ``"lowest_mean"`` (mean of the lowest-precedence level, summed over its objectives),
        ``"sum_mean"`` (sum of all objectives' means) or ``"random"`` (uniform within the subset).
    :param last_level: indices of the objectives in the lowest-precedence level.
    """
    if mode == "lowest_mean":
        return mean_z.index_select(1, last_level).sum(dim=1)
    if mode == "sum_mean":
        return mean_z.sum(dim=1)
    if mode == "random":
        return th.rand(mean_z.shape[0], mean_z.shape[2], device=mean_z.device)
    raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {mode!r}")


@numba.njit(cache=True)
def _masked_argmax_kernel(mean_z, score_objs, mask):
    """``masked_argmax(tie_break_scores(mean_z, mode, ...), mask)`` of the mean modes in one call, row by row:
    an action's score is its means summed over ``score_objs`` in order, an action outside ``mask`` scores
    -inf, the first maximum wins and a NaN beats every number, as with ``torch.argmax``."""
    n_b, _, n_a = mean_z.shape
    out = np.zeros(n_b, dtype=np.int64)
    for b in range(n_b):
        best = -np.inf
        for a in range(n_a):
            if mask[b, a]:
                s = mean_z[b, score_objs[0], a]
                for t in range(1, score_objs.shape[0]):
                    s = s + mean_z[b, score_objs[t], a]
                if s != s:
                    out[b] = a
                    break
                if s > best:
                    best = s
                    out[b] = a
    return out


@numba.njit(cache=True)
def _select_kernel(z, caps, d, plan, need, tol, rulebook, score_objs):
    """:meth:`QDIQNPolicy.select` of the mean tie-breaks in one call: from quantiles ``z [B, K, m, A]``, the
    optimal subset of ``min(z, caps)`` (``morl.dominance.subset_kernel`` under ``rulebook`` or staged, its
    fallback on the capped means) and the masked argmax of the uncapped means (``_masked_argmax_kernel``).
    ``caps [m]`` is ``inf`` where an objective has no threshold; a NaN quantile stays NaN, as under
    ``torch.minimum``, and is reported in ``bad`` (see ``subset_kernel``).

    :return: ``(actions [B], subset mask [B, A], bad)``.
    """
    n_b, n_k, m, n_a = z.shape
    zc = np.empty((n_b, m, n_a, n_k), dtype=z.dtype)  # the layout subset_kernel reads
    means_c = np.empty((n_b, m, n_a), dtype=z.dtype)
    means = np.empty((n_b, m, n_a), dtype=z.dtype)
    zero = np.zeros(1, dtype=z.dtype)[0]
    for b in range(n_b):
        for k in range(m):
            cap = caps[k]
            for a in range(n_a):
                s = zero
                s_c = zero
                for q in range(n_k):
                    v = z[b, q, k, a]
                    v_c = cap if v > cap else v
                    zc[b, k, a, q] = v_c
                    s += v
                    s_c += v_c
                means[b, k, a] = s / n_k
                means_c[b, k, a] = s_c / n_k
    valid = np.ones((n_b, n_a), dtype=np.bool_)
    mask, bad = subset_kernel(zc, d, means_c, plan, need, valid, tol, rulebook)
    return _masked_argmax_kernel(means, score_objs, mask), mask, bad


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
    """

    quantile_net: ImplicitQuantileNetwork
    quantile_net_target: ImplicitQuantileNetwork

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
        self.optimizer = self.optimizer_class(self.quantile_net.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)

    def make_quantile_net(self) -> ImplicitQuantileNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return ImplicitQuantileNetwork(**net_args).to(self.device)

    def act_quantiles(self, obs: PyTorchObs) -> th.Tensor:
        """Online quantiles on the acting grid, ``[B, K, H, A]``."""
        return self.quantile_net(obs, self.act_taus)

    def forward(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self.act_quantiles(obs).mean(dim=(1, 2)).argmax(dim=1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update({"n_heads": self.n_heads, "n_quantiles_act": self.n_quantiles_act, "risk_eta": self.risk_eta,
                         "net_arch": self.net_arch,
                         "n_cos": self.n_cos, "activation_fn": self.activation_fn, "lr_schedule": self._dummy_schedule,
                         "separate_trunks": self.separate_trunks,
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


def check_thresholds(thresholds, preorder: Preorder) -> tuple[float | None, ...] | None:
    """``thresholds`` as a tuple of ``m`` floats or ``None`` (all ``None`` gives ``None``), or a ValueError."""
    if thresholds is None:
        return None
    thresholds = tuple(thresholds)
    if len(thresholds) != preorder.m:
        raise ValueError(f"thresholds needs one entry per objective ({preorder.m}: {', '.join(preorder.objectives)}; "
                         f"null for none), got {list(thresholds)}")
    out = []
    for name, t in zip(preorder.objectives, thresholds):
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t)):
            raise ValueError(f"thresholds: the entry of {name!r} must be a finite number or null, got {t!r}")
        out.append(None if t is None else float(t))
    return tuple(out) if any(t is not None for t in out) else None


class QDIQNPolicy(IQNPolicy):
    """Multi-head IQN policy that acts on the preorder's optimal subset (quantile dominance).

    The greedy action is ``tie_break(optimal_subset(Z(s, .; tau_grid)))``: the quantiles of every
    objective on the deterministic acting grid go through :func:`morl.dominance.optimal_subset`
    under ``preorder``, and one action is picked inside the subset by ``tie_break``.

    :param preorder: the preorder over the objectives, objectives in head order.
    :param theta: quantile-dominance threshold.
    :param delta: per-objective indifference margins (``m`` floats).
    :param thresholds: per-objective satisfaction thresholds (``m`` floats or ``None``; ``None`` = no
        threshold): quantile dominance compares ``min(Z_k, thresholds[k])``, see :class:`~morl.agents.iqn.QDIQN`.
    :param tie_break: one of :data:`TIE_BREAKS`.
    :param subset_rule: ``"staged"`` (default) or ``"rulebook"``: which optimal subset
        (:func:`morl.dominance.optimal_subset`'s ``rule``).
    :param objective_risk_etas: one CVaR level per objective (``None``: ``risk_eta`` for all). The acting grid
        is then one block of ``K`` fractions on ``(0, eta]`` per distinct level, and objective ``k`` is read
        on its own block (:meth:`objective_grid`).
    :param kwargs: the :class:`IQNPolicy` parameters (``n_heads`` is set to ``m``).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule,
                 preorder: Preorder | str | None = None, theta: float = 0.75, delta: tuple[float, ...] | None = None,
                 tie_break: str = "lowest_mean", thresholds: tuple[float | None, ...] | None = None,
                 objective_risk_etas: tuple[float, ...] | None = None, subset_rule: str = "staged", **kwargs):
        if preorder is None:
            raise ValueError("QDIQNPolicy needs a preorder")
        preorder = Preorder.parse(preorder)
        m = preorder.m
        kwargs["n_heads"] = m
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        delta = tuple(float(x) for x in ((0.0,) * m if delta is None else delta))
        if len(delta) != m or not all(x >= 0 for x in delta):
            raise ValueError(f"delta needs one margin >= 0 per objective ({m}: {preorder.objectives}), got {delta}")
        self.preorder = preorder
        self.theta = float(theta)
        self.delta = delta
        self.tie_break = tie_break
        self.subset_rule = check_rule(subset_rule)
        self.register_buffer("delta_t", th.tensor(delta, dtype=th.float32), persistent=False)
        self.thresholds = check_thresholds(thresholds, preorder)
        # [1, 1, m, 1] against z [B, K, m, A]; None while no objective has a threshold (nothing to clip).
        # A buffer, like delta_t, so it moves with the policy to its device.
        self.register_buffer("thresholds_t", None if self.thresholds is None else th.tensor(
            [np.inf if t is None else t for t in self.thresholds], dtype=th.float32).view(1, 1, m, 1), persistent=False)
        self.register_buffer("last_level", th.tensor(preorder.level_indices[-1], dtype=th.long), persistent=False)
        # The objectives whose means score the actions inside the subset (the mean tie-breaks), for the CPU kernel.
        self._score_objs = np.array(preorder.level_indices[-1] if tie_break == "lowest_mean" else range(m), dtype=np.int64)
        self._kernel_cache: dict = {}
        self.objective_risk_etas = None if objective_risk_etas is None else tuple(float(e) for e in objective_risk_etas)
        self.register_buffer("grid_index", None, persistent=False)
        if self.objective_risk_etas is not None:
            etas = self.objective_risk_etas
            if len(etas) != m or not all(0.0 < e <= 1.0 for e in etas):
                raise ValueError(f"objective_risk_etas needs {m} levels in (0, 1] ({', '.join(preorder.objectives)}), "
                                 f"got {list(objective_risk_etas)}")
            levels = sorted(set(etas))
            k = self.n_quantiles_act
            self._set_acting_grid(levels)
            # grid_index[q, j]: the fraction of the acting grid where objective j reads its q-th quantile.
            self.grid_index = th.tensor([[levels.index(e) * k + q for e in etas] for q in range(k)], dtype=th.long)
        # Running sum of acting-subset sizes (a tensor on devices other than the CPU: no sync in the acting loop).
        self.subset_size_sum: float | th.Tensor = 0.0
        self.subset_size_count = 0

    def objective_grid(self, z: th.Tensor) -> th.Tensor:
        """Quantiles ``[B, K, m, A]`` on each objective's own grid, from ``z`` on the acting grid (``[B, L K, m, A]``
        with ``L`` distinct ``objective_risk_etas``); ``z`` itself with one level for all."""
        if self.grid_index is None:
            return z
        b, _, m, a = z.shape
        return z.gather(1, self.grid_index.view(1, -1, m, 1).expand(b, -1, m, a))

    def dominance_quantiles(self, z: th.Tensor) -> th.Tensor:
        """What quantile dominance compares: ``z [B, K, m, A]`` capped at the thresholds (``z`` itself when none)."""
        if self.thresholds_t is None:
            return z
        return th.minimum(z, self.thresholds_t)

    def subset(self, z: th.Tensor) -> th.Tensor:
        """Optimal subset ``[B, A]`` from quantiles ``z`` laid out ``[B, K, m, A]``."""
        return optimal_subset(self.dominance_quantiles(z).permute(0, 2, 3, 1), self.preorder, self.theta, self.delta_t,
                              rule=self.subset_rule)

    def select(self, z: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """One action per state from ``z [B, K, m, A]``: ``(actions [B], subset mask [B, A])``."""
        if self.tie_break != "random" and z.device.type == "cpu" and z.dtype in (th.float32, th.float64):
            # One numba call instead of about twenty small tensor operations (acting calls this at every env
            # step); the tests check it against the tensor code below.
            actions, mask, bad = _select_kernel(z.detach().numpy(), *self._kernel_args(z.shape[1], z.dtype),
                                                self.subset_rule == "rulebook", self._score_objs)
            check_kernel_nan(bad, self.preorder)
            return th.from_numpy(actions), th.from_numpy(mask)
        mask = self.subset(z)
        mean_z = z.detach().mean(dim=1)
        return masked_argmax(tie_break_scores(mean_z, self.tie_break, self.last_level), mask), mask

    def _kernel_args(self, k: int, dtype: th.dtype) -> tuple:
        """``(caps, delta, plan, need, tol)`` of :func:`_select_kernel` for ``k`` quantiles of ``dtype``."""
        key = (k, dtype)
        if key not in self._kernel_cache:
            consts = kernel_constants(self.preorder, self.theta, k, dtype)
            tol = consts[-1]
            caps = np.array([np.inf if t is None else t for t in (self.thresholds or (None,) * self.preorder.m)],
                            dtype=tol.dtype)
            self._kernel_cache[key] = (caps, np.array(self.delta, dtype=tol.dtype), *consts)
        return self._kernel_cache[key]

    @staticmethod
    def mean_size(mask: th.Tensor) -> float | th.Tensor:
        """Mean subset size of ``mask [B, A]``: a float on CPU, a tensor elsewhere (no device sync)."""
        if mask.device.type == "cpu":
            return float(mask.numpy().sum()) / mask.shape[0]
        return mask.sum(dim=1).float().mean()

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        actions, mask = self.select(self.objective_grid(self.act_quantiles(obs)))
        self.subset_size_sum = self.subset_size_sum + self.mean_size(mask)
        self.subset_size_count += 1
        return actions

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.pop("n_heads", None)
        data.update({"preorder": self.preorder, "theta": self.theta, "delta": self.delta, "tie_break": self.tie_break,
                     "thresholds": self.thresholds, "objective_risk_etas": self.objective_risk_etas,
                     "subset_rule": self.subset_rule})
        return data


class CnnPolicy(IQNPolicy):
    """:class:`IQNPolicy` with the Nature CNN features extractor (image observations)."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class MultiInputPolicy(IQNPolicy):
    """:class:`IQNPolicy` for dict observations."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class QDCnnPolicy(QDIQNPolicy):
    """:class:`QDIQNPolicy` with the Nature CNN features extractor."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class QDMultiInputPolicy(QDIQNPolicy):
    """:class:`QDIQNPolicy` for dict observations."""

    def __init__(self, *args, features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor, **kwargs):
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


MlpPolicy = IQNPolicy
QDMlpPolicy = QDIQNPolicy
