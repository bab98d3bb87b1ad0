"""Implicit Quantile Networks (IQN) as a stable-baselines3 off-policy algorithm.

Dabney, Ostrovski, Silver, Munos, "Implicit Quantile Networks for Distributional Reinforcement
Learning", ICML 2018 (arXiv 1806.06923). The structure follows sb3-contrib's QR-DQN (policy aliases,
``_setup_model`` / ``train`` / ``predict`` / ``_on_step``); the network samples its quantile fractions
instead of fixing them, so the loss is :func:`morl.agents.iqn.losses.quantile_huber_loss`.

:class:`IQN` is also the base of :class:`~morl.agents.iqn.QDIQN` and :class:`~morl.agents.iqn.EnsembleIQN`:
the training step is written once over ``H`` heads, and the subclasses change only how the next
action is chosen for the target (:meth:`IQN._next_actions`), which rewards feed the heads
(:meth:`IQN._rewards`), how the per-head losses combine (:meth:`IQN._combine_losses`) and how a
minibatch is drawn (:meth:`IQN._sample`).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import (
    LinearSchedule,
    get_parameters_by_name,
    polyak_update,
)

from morl.agents.iqn.losses import quantile_huber_loss
from morl.agents.iqn.policies import CnnPolicy, IQNPolicy, MlpPolicy, MultiInputPolicy
from morl.agent_env import FitsVectorEnvOnLoad, agent_env
from morl.buffers import update_info_buffer_at_ends
from morl.replay import DeviceReplayBuffer
from morl.evaluate import with_objective_logger

__all__ = ["IQN"]

SelfIQN = TypeVar("SelfIQN", bound="IQN")


def _fused_adam_supported(device: th.device) -> bool:
    """Whether ``torch.optim.Adam(fused=True)`` runs on ``device``: CUDA, and CPU from torch 2.4 on."""
    if th.device(device).type == "cuda":
        return True
    major, minor = (int(x) for x in th.__version__.split("+")[0].split(".")[:2])
    return th.device(device).type == "cpu" and (major, minor) >= (2, 4)


class IQN(FitsVectorEnvOnLoad, OffPolicyAlgorithm):
    """Implicit Quantile Network agent on a scalar reward.

    Training step (IQN paper, Sec. 3 and the loss under Eq. 3): draw ``tau_i ~ U(0,1)``, ``i = 1..N``
    for the online quantiles and ``tau'_j``, ``j = 1..N'`` for the target; pick the next action
    ``a* = argmax_a mean_k Z(s', a; tau_k)`` over ``K`` fractions; target samples
    ``y_j = r + gamma (1 - done) Z_target(s', a*; tau'_j)``; minimise the quantile Huber loss.

    Choices the IQN paper leaves to the implementation, each a parameter:

    - ``select_taus``: the ``K`` fractions used to pick ``a*`` (and to act) are the deterministic
      mid-point grid ``(k + 0.5) / K`` by default ("grid"; deterministic acting, lower-variance
      targets) or fresh uniform samples per state as in Dopamine ("sample"). Acting always uses the grid.
    - ``double_q``: pick ``a*`` with the online network and evaluate it with the target network
      (double DQN); off by default, as in Dopamine's IQN.
    - exploration is epsilon-greedy, drawn per environment when several run in parallel.
    - Adam with ``eps = 0.01 / batch_size`` (the QR-DQN / IQN convention; ``fused`` update where the torch
      version has it for the device: CUDA, and CPU from torch 2.4) unless ``policy_kwargs`` names an optimizer;
      keys the caller gives in ``policy_kwargs["optimizer_kwargs"]`` are kept and win over these.

    :param policy: policy class or alias ("MlpPolicy", "CnnPolicy", "MultiInputPolicy").
    :param env: the environment (scalar reward), or its registered id.
    :param learning_rate: learning rate or schedule of the remaining progress (1 to 0).
    :param learning_rate_final: when given, the learning rate decays linearly from ``learning_rate`` (a
        number) to this value over the whole of training (``None``: constant, or the caller's schedule).
        A decay to (near) zero lets the greedy policy settle late in training instead of switching between
        near-tied actions as each new minibatch moves the quantiles.
    :param buffer_size: replay buffer size.
    :param learning_starts: steps collected before learning starts.
    :param batch_size: minibatch size.
    :param tau: Polyak coefficient of the target update (1 = hard copy).
    :param gamma: discount factor.
    :param train_freq: train every ``train_freq`` steps (or ``(n, "episode")``).
    :param gradient_steps: gradient steps per training call (``-1``: as many as env steps collected).
    :param replay_buffer_class: replay buffer class (``None``: SB3's choice).
    :param replay_buffer_kwargs: its keyword arguments.
    :param optimize_memory_usage: SB3's memory-efficient replay buffer.
    :param n_steps: n-step returns when > 1, sampled by the replay buffer (:class:`morl.replay.DeviceReplayBuffer`
        and its subclasses; a replay buffer class of another kind gets SB3's treatment).
    :param target_update_interval: environment steps between target-network updates.
    :param exploration_fraction: fraction of training over which epsilon decays.
    :param exploration_initial_eps: initial epsilon.
    :param exploration_final_eps: final epsilon.
    :param n_quantiles: N, online fractions per sample in the loss.
    :param n_target_quantiles: N', target fractions per sample.
    :param n_quantiles_act: K, fractions used to select actions (acting and the target's ``a*``).
    :param risk_eta: the selection grid covers ``(0, risk_eta]`` (CVaR at level ``risk_eta``, IQN paper
        Sec. 3.1); ``1`` (default) is risk-neutral. With ``select_taus="sample"`` the samples are
        ``U(0, risk_eta)``.
    :param kappa: Huber threshold of the quantile loss (0 = plain quantile loss).
    :param double_q: select ``a*`` with the online network (double DQN).
    :param select_taus: ``"grid"`` or ``"sample"`` (see above).
    :param max_grad_norm: gradient clipping norm (``None``: no clipping).
    :param acting_average: act (and be evaluated) with an exponential moving average of the online weights,
        updated by this fraction after every gradient step (``0``: the online network; see
        :class:`~morl.agents.iqn.policies.IQNPolicy`).
    :param stats_window_size: episodes averaged in the rollout logs.
    :param tensorboard_log: TensorBoard log directory.
    :param policy_kwargs: policy keyword arguments (``net_arch``, ``n_cos``, ...).
    :param verbose: verbosity level.
    :param seed: random seed.
    :param device: torch device, ``"auto"`` picks CUDA when present.
    :param _init_setup_model: build the networks now.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    exploration_schedule: Schedule
    policy: IQNPolicy
    #: learns from the scalar SB3 sees (QDIQN learns from the reward vector)
    trains_on_scalar_reward: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[IQNPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 5e-5,
        learning_rate_final: float | None = None,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        target_update_interval: int = 10_000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.01,
        n_quantiles: int = 32,
        n_target_quantiles: int = 32,
        n_quantiles_act: int = 32,
        risk_eta: float = 1.0,
        kappa: float = 1.0,
        double_q: bool = False,
        select_taus: str = "grid",
        max_grad_norm: float | None = None,
        acting_average: float = 0.0,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        # A vector-reward Gymnasium env is scalarised here (or refused, naming the wrapper to use).
        env = agent_env(env, type(self).__name__, weights_needed=self.trains_on_scalar_reward)
        if learning_rate_final is not None:
            if callable(learning_rate) or not 0.0 <= float(learning_rate_final) <= float(learning_rate):
                raise ValueError(f"learning_rate_final must be in [0, learning_rate] with a numeric learning_rate, "
                                 f"got learning_rate={learning_rate!r}, learning_rate_final={learning_rate_final!r}")
            learning_rate = LinearSchedule(float(learning_rate), float(learning_rate_final), 1.0)
        super().__init__(
            policy, env, learning_rate, buffer_size, learning_starts, batch_size, tau, gamma, train_freq,
            gradient_steps, action_noise=None, replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs, optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps, policy_kwargs=policy_kwargs, stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log, verbose=verbose, device=device, seed=seed, sde_support=False,
            supported_action_spaces=(spaces.Discrete,), support_multi_env=True,
        )
        for name, value in (("n_quantiles", n_quantiles), ("n_target_quantiles", n_target_quantiles),
                            ("n_quantiles_act", n_quantiles_act)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 < float(risk_eta) <= 1.0:
            raise ValueError(f"risk_eta must be in (0, 1], got {risk_eta}")
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        if select_taus not in ("grid", "sample"):
            raise ValueError(f"select_taus must be 'grid' or 'sample', got {select_taus!r}")
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.exploration_fraction = exploration_fraction
        self.target_update_interval = target_update_interval
        self.n_quantiles = int(n_quantiles)
        self.n_target_quantiles = int(n_target_quantiles)
        self.n_quantiles_act = int(n_quantiles_act)
        self.risk_eta = float(risk_eta)
        self.kappa = float(kappa)
        self.double_q = bool(double_q)
        self.select_taus = select_taus
        self._n_calls = 0
        self.max_grad_norm = max_grad_norm
        self.exploration_rate = 0.0
        # SB3 keeps the caller's dict; copy it before adding our keys so that one dict can build several models.
        self.policy_kwargs = dict(self.policy_kwargs)
        self.policy_kwargs["n_quantiles_act"] = self.n_quantiles_act
        self.policy_kwargs["risk_eta"] = self.risk_eta
        if acting_average:
            self.policy_kwargs["acting_average"] = float(acting_average)
        self.acting_average = float(acting_average)
        if "optimizer_class" not in self.policy_kwargs:
            self.policy_kwargs["optimizer_class"] = th.optim.Adam
            # fused: one kernel updates every parameter, about 3x faster than "foreach", which on CPU loops over
            # the parameters and reads the step count back per parameter. The caller's keys win over ours.
            ours = {"eps": 0.01 / batch_size, "fused": _fused_adam_supported(self.device)}
            self.policy_kwargs["optimizer_kwargs"] = {**ours, **(self.policy_kwargs.get("optimizer_kwargs") or {})}
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ setup
    def _setup_model(self) -> None:
        if self.replay_buffer_class is None and not isinstance(self.observation_space, spaces.Dict):
            self.replay_buffer_class = DeviceReplayBuffer  # SB3's ReplayBuffer, with a device copy on CUDA
        n_steps = self.n_steps
        if isinstance(self.replay_buffer_class, type) and issubclass(self.replay_buffer_class, DeviceReplayBuffer):
            kwargs = self.replay_buffer_kwargs = dict(self.replay_buffer_kwargs)  # the caller's dict stays as it was
            # On CUDA the buffer keeps a copy on the device and samples there (no copy per minibatch);
            # "auto" is resolved by the buffer, so a model saved on one device and loaded on another follows.
            kwargs.setdefault("device_storage", "auto")
            ours = self._n_step_kwargs()
            for key, value in ours.items():
                if key in kwargs and kwargs[key] != value and (key == "n_steps" or n_steps > 1):
                    raise ValueError(f"replay_buffer_kwargs[{key!r}] = {kwargs[key]!r} disagrees with "
                                     f"{type(self).__name__}'s {key} = {value!r}: set it once, on the agent")
            if n_steps > 1:
                kwargs.update(ours)
                self.n_steps = 1  # the buffer does the n-step returns; SB3 would otherwise warn it ignores them
        super()._setup_model()
        self.n_steps = n_steps
        self._create_aliases()
        self.batch_norm_stats = get_parameters_by_name(self.quantile_net, ["running_"])
        self.batch_norm_stats_target = get_parameters_by_name(self.quantile_net_target, ["running_"])
        acting = self.policy.quantile_net_acting
        self.batch_norm_stats_acting = None if acting is None else get_parameters_by_name(acting, ["running_"])
        self.exploration_schedule = LinearSchedule(
            self.exploration_initial_eps, self.exploration_final_eps, self.exploration_fraction
        )
        if self.n_envs > 1 and self.n_envs > self.target_update_interval:
            warnings.warn(
                f"n_envs ({self.n_envs}) > target_update_interval ({self.target_update_interval}): "
                f"the target network is updated at every env.step(), i.e. every {self.n_envs} transitions."
            )

    def _create_aliases(self) -> None:
        self.quantile_net = self.policy.quantile_net
        self.quantile_net_target = self.policy.quantile_net_target

    def _on_step(self) -> None:
        """Target update every ``target_update_interval`` transitions and the epsilon schedule."""
        self._n_calls += 1
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.quantile_net.parameters(), self.quantile_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
        self.exploration_rate = self.exploration_schedule(self._current_progress_remaining)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    # ------------------------------------------------------------------ training
    def _sample(self, batch_size: int) -> tuple[Any, th.Tensor | None]:
        """A minibatch and an optional per-sample, per-head weight mask ``[B, H]``."""
        return self.replay_buffer.sample(batch_size, env=self._vec_normalize_env), None  # type: ignore[union-attr]

    def _rewards(self, replay_data) -> th.Tensor:
        """Rewards ``[B, 1]`` (scalar) or ``[B, H]`` that the heads regress."""
        return replay_data.rewards

    def _next_actions(self, z_select: th.Tensor) -> th.Tensor:
        """Next actions ``[B, H]`` from quantiles ``z_select [B, K, H, A]``: greedy in the mean, per head."""
        return z_select.mean(dim=1).argmax(dim=-1)

    def _combine_losses(self, per_head: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
        """Scalar loss from per-sample, per-head losses ``[B, H]``."""
        return per_head.sum(dim=1).mean()

    def _select_taus(self, batch_size: int) -> th.Tensor:
        """The acting grid ``[K]``, shared by the batch (embedded once), or ``[B, K]`` samples on its CVaR levels."""
        if self.select_taus == "grid":
            return self.policy.act_taus
        etas = self.policy.act_etas
        return th.rand(batch_size, etas.shape[0], device=self.device) * etas

    def _target_quantiles(self, next_obs, rewards: th.Tensor, dones: th.Tensor, discounts,
                          tau_next: th.Tensor) -> th.Tensor:
        """Target samples ``y [B, N', H] = r + gamma (1 - done) Z_target(s', a*; tau')``.

        :param next_obs: next observations.
        :param rewards: ``[B, 1]`` or ``[B, H]``.
        :param dones: ``[B, 1]`` termination flags (timeouts excluded by the buffer).
        :param discounts: ``gamma``, ``[B, 1]`` or ``[B, H]`` (n-step buffers: ``gamma ** L``, per head with
            :class:`morl.replay.MOReplayBuffer`) or ``[1, 1, H]`` (one per head, see :meth:`_discounts`).
        :param tau_next: target fractions ``[B, N']``.
        """
        batch = dones.shape[0]
        tau_select = self._select_taus(batch)
        k = tau_select.shape[-1]
        psi_target = self.quantile_net_target.embed(next_obs)
        if self.double_q:
            z_select = self.quantile_net.quantiles(self.quantile_net.embed(next_obs), tau_select)
            z_next = self.quantile_net_target.quantiles(psi_target, tau_next)
        else:
            # One pass of the target head over both fraction sets: selection (K) and evaluation (N').
            z_all = self.quantile_net_target.quantiles(psi_target, tau_select, tau_next)
            z_select, z_next = z_all[:, :k], z_all[:, k:]
        a_star = self._next_actions(z_select)  # [B, H]
        n_next, n_heads = z_next.shape[1], z_next.shape[2]
        index = a_star.view(batch, 1, n_heads, 1).expand(batch, n_next, n_heads, 1)
        z_next = z_next.gather(3, index).squeeze(3)  # [B, N', H]
        if isinstance(discounts, th.Tensor) and discounts.dim() == 2:
            discounts = discounts.view(batch, 1, -1)
        return rewards.view(batch, 1, -1) + (1.0 - dones.view(batch, 1, 1)) * discounts * z_next

    def _n_step_kwargs(self) -> dict[str, Any]:
        """What the replay buffer (:class:`morl.replay.DeviceReplayBuffer`) needs for this agent's n-step returns."""
        return {"n_steps": self.n_steps, "gamma": self.gamma}

    def _discounts(self, replay_data):
        """The discount of the Bellman target: ``gamma``, or the n-step buffer's ``[B, 1]`` ``gamma ** n``."""
        discounts = getattr(replay_data, "discounts", None)
        return self.gamma if discounts is None else discounts

    def _loss(self, replay_data, weights: th.Tensor | None = None, tau_next: th.Tensor | None = None,
              taus: th.Tensor | None = None) -> th.Tensor:
        """The training loss on one minibatch (a scalar tensor on the device; nothing is read back).

        :param replay_data: a minibatch of the replay buffer.
        :param weights: per-sample, per-head weights ``[B, H]`` (see :meth:`_sample`).
        :param tau_next: target fractions ``[B, N']``; ``None`` draws them.
        :param taus: online fractions ``[B, N]``; ``None`` draws them (after the target, as ``train`` does).
        """
        discounts = self._discounts(replay_data)
        batch = replay_data.dones.shape[0]
        with th.no_grad():
            if tau_next is None:
                tau_next = th.rand(batch, self.n_target_quantiles, device=self.device)
            target = self._target_quantiles(replay_data.next_observations, self._rewards(replay_data),
                                            replay_data.dones, discounts, tau_next)
        if taus is None:
            taus = th.rand(batch, self.n_quantiles, device=self.device)
        z = self.quantile_net(replay_data.observations, taus)  # [B, N, H, A]
        n_quantiles, n_heads = z.shape[1], z.shape[2]
        index = replay_data.actions.long().view(batch, 1, 1, 1).expand(batch, n_quantiles, n_heads, 1)
        z_taken = z.gather(3, index).squeeze(3)  # [B, N, H]
        per_head = quantile_huber_loss(z_taken, target, taus, self.kappa, reduction="none")  # [B, H]
        return self._combine_losses(per_head, weights)

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        # Losses stay on the device and are read back once per call: no host-device sync per step.
        losses = []
        for _ in range(gradient_steps):
            replay_data, weights = self._sample(batch_size)
            loss = self._loss(replay_data, weights)
            self.policy.optimizer.zero_grad()
            loss.backward()
            if self.max_grad_norm is not None:
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            if self.batch_norm_stats_acting is not None:  # the acting network's average, as the target's update
                polyak_update(self.quantile_net.parameters(), self.policy.quantile_net_acting.parameters(),
                              self.acting_average)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_acting, 1.0)
            losses.append(loss.detach())
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if losses:
            self.logger.record("train/loss", th.stack(losses).mean().item())
        self._record_train_stats()

    def _record_train_stats(self) -> None:
        """Hook for subclasses' extra train logs (called once per ``train``)."""

    # ------------------------------------------------------------------ acting
    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Epsilon-greedy action(s): with probability ``exploration_rate`` (per env) a uniform action.

        The greedy branch is skipped entirely when every env explores, so warm-up steps cost no
        network call.
        """
        eps = self.exploration_rate
        if deterministic or eps <= 0.0:
            return self._greedy(observation), state
        vectorized = self.policy.is_vectorized_observation(observation)
        if vectorized:
            first = observation[next(iter(observation))] if isinstance(observation, dict) else observation
            n = first.shape[0]
        else:
            n = 1
        explore = np.random.rand(n) < eps
        n_actions = int(self.action_space.n)  # type: ignore[attr-defined]
        if explore.all():
            action = np.random.randint(n_actions, size=n)
        else:
            action = self._greedy(observation).reshape(n)
            if explore.any():
                action = np.where(explore, np.random.randint(n_actions, size=n), action)
        return (action if vectorized else action[0]), state

    def _greedy(self, observation) -> np.ndarray:
        """``policy.predict`` without its per-call ``set_training_mode`` (a walk over every module, about
        as costly as the forward pass of these small nets): the mode is switched only when needed."""
        if self.policy.training:
            self.policy.set_training_mode(False)
        obs_tensor, vectorized = self.policy.obs_to_tensor(observation)
        with th.no_grad():
            actions = self.policy._predict(obs_tensor, deterministic=True)
        actions = actions.cpu().numpy()
        return actions if vectorized else actions.squeeze(axis=0)

    def _update_info_buffer(self, infos, dones=None) -> None:
        update_info_buffer_at_ends(self, infos, dones)  # SB3's, reading the ended envs' infos only

    def learn(  # noqa: PYI019 - typing.Self needs Python 3.11; the package supports 3.10
        self: SelfIQN,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "IQN",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfIQN:
        # rollout/return_<objective> is logged by default when the env has objectives
        callback = with_objective_logger(callback, self.env)
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)

    # ------------------------------------------------------------------ save / load
    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "quantile_net", "quantile_net_target"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.optimizer"], []
