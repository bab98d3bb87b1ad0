"""stable-baselines3 replay buffers: a device copy of the storage, the reward vector, and n-step returns on it.

- :class:`DeviceReplayBuffer`: SB3's ``ReplayBuffer`` that can mirror its arrays on the device and draw
  and gather minibatches there (no host-device copy per CUDA training step), and sample n-step returns
  (``n_steps > 1``) on either path.
- :class:`MOReplayBuffer`: also keeps ``info["vector_reward"]`` (SB3 passes ``infos`` to ``add``) and, with
  ``n_steps > 1``, samples n-step returns of the vector with one discount per objective. Use
  ``DQN(..., replay_buffer_class=MOReplayBuffer, replay_buffer_kwargs=dict(reward_dim=m))``.

Vector rewards are never normalised by ``VecNormalize`` (it only knows the scalar).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from morl.buffers import check_reward_dim, vector_rewards_from_infos

__all__ = ["DeviceReplayBuffer", "MOReplayBuffer", "MOReplayBufferSamples", "n_step_sum", "n_step_window"]


class MOReplayBufferSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` with vector rewards.

    ``rewards`` is what the algorithm trains on: the vector ``(batch, m)`` by default, the scalar
    ``(batch, 1)`` when the buffer was built with ``sample_scalar_rewards=True``. ``vector_rewards``
    and ``scalar_rewards`` are always both there.
    """

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor | None = None
    vector_rewards: th.Tensor | None = None
    scalar_rewards: th.Tensor | None = None


def n_step_window(dones, rows, envs, steps, pos: int, size: int):
    """The n-step window of each sampled transition: which of the next ``n`` stored rows it sums over.

    A window starting at row ``r`` ends at the first of its rows whose episode ended (``dones``: terminated
    or truncated), at the newest stored row (``pos - 1``: the rows after it belong to an older episode or
    are empty), or after ``n`` rows. Works on NumPy arrays and on torch tensors alike.

    :param dones: ``(size, n_envs)`` end flags of the stored transitions.
    :param rows: ``[B]`` start rows; ``envs``: ``[B]`` env indices.
    :param steps: ``0 .. n - 1`` (``np.arange`` or ``th.arange`` on the arrays' device).
    :param pos: the buffer's write position; ``size``: its number of rows.
    :return: ``(idx, last, mask)``: ``idx [B, n]`` the rows of each window (circular), ``last [B]`` the
        offset of its last row, ``mask [B, n]`` true on the rows it sums over (offsets ``0 .. last``).
    """
    idx = (rows[:, None] + steps[None, :]) % size
    ends = (dones[idx, envs[:, None]] > 0) | (steps[None, :] >= ((pos - 1 - rows) % size)[:, None])
    ends[:, -1] = True
    last = (ends * 1).argmax(1)  # the first end (argmax returns the first maximum)
    return idx, last, steps[None, :] <= last[:, None]


def n_step_sum(values, mask, powers):
    """``sum_{i <= last} powers[i] * values[:, i]``: ``values [B, n]`` or ``[B, n, w]``, ``mask [B, n]`` (of
    :func:`n_step_window`), ``powers [n+1, w]`` -> ``[B, w]``. NumPy arrays or torch tensors."""
    b, n = mask.shape
    return (values.reshape(b, n, -1) * (mask[:, :, None] * powers[None, :n])).sum(1)


class DeviceReplayBuffer(ReplayBuffer):
    """
    SB3's ``ReplayBuffer`` that can also keep its arrays on the device and sample there, and sample n-step returns.

    With ``device_storage=False`` (default) and ``n_steps=1`` it samples as SB3's buffer. With
    ``device_storage=True`` the stored arrays are mirrored as torch tensors on ``device``: the rows added since the
    last sample are copied at the next :meth:`sample` (one copy per field), and minibatch indices are drawn and
    gathered on the device, so a CUDA training step makes no host-device copy. The mirror costs the buffer's size
    again in device memory (a copy on the CPU too, where it runs the same code). Indices come from torch's RNG
    instead of NumPy's, so the minibatches differ from ``device_storage=False`` for one seed; for the same indices
    they are equal (:meth:`samples_at`). With a ``VecNormalize`` env (``sample(..., env=...)``) sampling falls back
    to the NumPy path, which normalises on the host.

    With ``n_steps = n > 1`` a sampled transition ``t`` carries ``R = sum_{i < L} gamma^i r_{t+i}`` and the
    discount ``gamma^L`` of its bootstrap from the observation after row ``t + L - 1`` (``samples.discounts``,
    ``[B, 1]``), where ``L <= n`` stops at the end of the episode (a termination does not bootstrap, a truncation
    does) and at the newest stored row (Sutton and Barto, *Reinforcement Learning: An Introduction*, 2nd ed.,
    eq. 7.1). With ``n_steps = 1``, ``samples.discounts`` is ``None`` and the algorithm applies its own ``gamma``.

    :param device_storage: keep a device copy and sample there (see above); ``"auto"``: when ``device``
        is a CUDA device.
    :param n_steps: length n of the returns (1: one-step transitions, as SB3's buffer); not with
        ``optimize_memory_usage``.
    :param gamma: the discount of the n-step returns.
    Other parameters are SB3's ``ReplayBuffer``'s.
    """

    #: the type of a sampled minibatch
    samples_type: type = ReplayBufferSamples

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 device: th.device | str = "auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True, device_storage: bool | str = False, n_steps: int = 1,
                 gamma: float = 0.99):
        if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if n_steps > 1 and optimize_memory_usage:
            raise ValueError("n_steps > 1 cannot be combined with optimize_memory_usage=True (the n-step window reads "
                             "next_observations, which that option does not store)")
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        super().__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination)
        if device_storage == "auto":
            device_storage = self.device.type == "cuda"
        if not isinstance(device_storage, (bool, np.bool_)):
            raise ValueError(f"device_storage must be True, False or 'auto', got {device_storage!r}")
        self.device_storage = bool(device_storage)
        self.n_steps, self.gamma = int(n_steps), float(gamma)
        self._powers_cache: dict = {}  # see _powers
        self._mirror: dict[str, th.Tensor] | None = None  # device copies of the arrays
        self._rows_since_mirror = 0  # rows written since the mirror was last brought up to date

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        super().add(obs, next_obs, action, reward, done, infos)
        self._rows_since_mirror = min(self._rows_since_mirror + 1, self.buffer_size)

    def _check_not_empty(self) -> None:
        if self.pos == 0 and not self.full:
            raise RuntimeError(f"{type(self).__name__} is empty: add transitions before sampling")

    def sample_indices(self, batch_size: int) -> tuple[th.Tensor, th.Tensor]:
        """Row and env indices of a minibatch, drawn on the device over SB3's ranges (``device_storage``)."""
        self._check_not_empty()
        device = self.device
        if self.optimize_memory_usage and self.full:
            # row `pos` holds a next observation that is not this row's: never sample it
            rows = (th.randint(1, self.buffer_size, (batch_size,), device=device) + self.pos) % self.buffer_size
        else:
            rows = th.randint(0, self.buffer_size if self.full else self.pos, (batch_size,), device=device)
        return rows, th.randint(0, self.n_envs, (batch_size,), device=device)

    def sample(self, batch_size: int, env: VecNormalize | None = None):
        if not self.device_storage or env is not None:
            return super().sample(batch_size, env=env)
        return self._device_samples(*self.sample_indices(batch_size))

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None):
        # SB3's draw of one env per sampled row, then our fields (n-step returns when n_steps > 1)
        env_inds = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        return self.samples_at(batch_inds, env_inds, env)

    def samples_at(self, batch_inds, env_inds, env: VecNormalize | None = None):
        """The minibatch of rows ``batch_inds`` and envs ``env_inds``: index tensors read the device copy
        (``device_storage``), NumPy indices the arrays as SB3's ``sample`` does (normalised by ``env``). Both give
        the same tensors."""
        self._check_not_empty()
        if isinstance(batch_inds, th.Tensor):
            if not self.device_storage:
                raise ValueError("samples_at with torch indices needs device_storage=True")
            if env is not None:
                raise ValueError("samples_at with torch indices cannot normalise with a VecNormalize env")
            return self._device_samples(batch_inds, env_inds)
        arrays = {name: getattr(self, name) for name in self._mirrored_names()}
        return self._samples(arrays, batch_inds, env_inds, env, on_device=False)

    def _device_samples(self, batch_inds: th.Tensor, env_inds: th.Tensor):
        return self._samples(self._device_arrays(), batch_inds, env_inds, None, on_device=True)

    def _samples(self, a: dict, rows, envs, env, on_device: bool):
        """One minibatch from the storage arrays ``a`` (NumPy, or their torch mirror on the device)."""
        if self.n_steps == 1:
            window = None
        else:
            steps = th.arange(self.n_steps, device=self.device) if on_device else np.arange(self.n_steps)
            window = n_step_window(a["dones"], rows, envs, steps, self.pos, self.buffer_size)
        fields = self._fields(a, rows, envs, env, window, on_device)
        return self.samples_type(**{k: v if v is None or on_device else self.to_torch(v) for k, v in fields.items()})

    def _powers(self, gammas, on_device: bool):
        """``gamma^i`` for ``i = 0 .. n``, ``[n+1, len(gammas)]``: the reward weights of a window and the discount
        of its bootstrap (float32, NumPy or on the device)."""
        key = (tuple(gammas), on_device)  # built once: on the device, one copy instead of one per minibatch
        if key not in self._powers_cache:
            powers = (np.asarray(gammas, dtype=np.float64)[None, :] ** np.arange(self.n_steps + 1)[:, None])
            powers = powers.astype(np.float32)
            self._powers_cache[key] = th.as_tensor(powers, device=self.device) if on_device else powers
        return self._powers_cache[key]

    def _fields(self, a: dict, rows, envs, env, window, on_device: bool) -> dict:
        """SB3's sample fields (same values, dtypes and shapes as its NumPy path), not yet tensors on the host;
        ``window``: :func:`n_step_window`'s, or ``None`` for one-step transitions."""
        if window is None:
            last_rows, discounts = rows, None
            rewards = self._normalize_reward(a["rewards"][rows, envs].reshape(-1, 1), env)
        else:
            idx, last, mask = window
            last_rows = (rows + last) % self.buffer_size
            powers = self._powers((self.gamma,), on_device)
            rewards = n_step_sum(self._normalize_reward(a["rewards"][idx, envs[:, None]], env), mask, powers)
            discounts = powers[last + 1]
        if self.optimize_memory_usage:
            next_obs = a["observations"][(rows + 1) % self.buffer_size, envs]
        else:
            next_obs = a["next_observations"][last_rows, envs]
        # a timeout is not a termination: the target still bootstraps (SB3 issue 284)
        dones = a["dones"][last_rows, envs] * (1.0 - a["timeouts"][last_rows, envs])
        return {"observations": self._normalize_obs(a["observations"][rows, envs], env),
                "actions": a["actions"][rows, envs], "next_observations": self._normalize_obs(next_obs, env),
                "dones": dones.reshape(-1, 1), "rewards": rewards, "discounts": discounts}

    def _mirrored_names(self) -> tuple[str, ...]:
        names = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
        return tuple(n for n in names if getattr(self, n, None) is not None)

    def _device_arrays(self) -> dict[str, th.Tensor]:
        """The device mirror of the storage arrays, brought up to date (rows added since the last call)."""
        if self._mirror is None:
            self._mirror = {n: th.tensor(getattr(self, n), device=self.device) for n in self._mirrored_names()}
            self._rows_since_mirror = 0
        elif self._rows_since_mirror:
            # add() wrote rows pos - n .. pos - 1 (circularly); with optimize_memory_usage also row pos
            # (the next observation of the last transition).
            n = min(self._rows_since_mirror + (1 if self.optimize_memory_usage else 0), self.buffer_size)
            start = (self.pos - self._rows_since_mirror) % self.buffer_size
            spans = [(start, min(start + n, self.buffer_size))]
            if start + n > self.buffer_size:
                spans.append((0, start + n - self.buffer_size))
            for name, tensor in self._mirror.items():
                array = getattr(self, name)
                for a, b in spans:
                    tensor[a:b].copy_(th.from_numpy(array[a:b]))
            self._rows_since_mirror = 0
        return self._mirror

    def __getstate__(self) -> dict[str, Any]:
        # The mirror is rebuilt from the arrays after loading (save_replay_buffer pickles the buffer).
        state = self.__dict__.copy()
        state["_mirror"] = None
        state["_rows_since_mirror"] = 0
        state.pop("_powers_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("device_storage", False)  # buffers pickled before the option existed
        state.setdefault("_mirror", None)
        state.setdefault("_rows_since_mirror", 0)
        state.setdefault("_powers_cache", {})
        state.setdefault("n_steps", 1)  # buffers pickled before n-step returns existed: one-step transitions
        state.setdefault("gamma", 0.99)
        self.__dict__.update(state)


class MOReplayBuffer(DeviceReplayBuffer):
    """
    Replay buffer that also keeps ``info["vector_reward"]``, shape ``(buffer_size, n_envs, m)``, and can
    sample n-step returns of it with one discount per objective.

    With ``n_steps = n > 1`` each objective ``k`` gets the n-step return of :class:`DeviceReplayBuffer` over the
    same window as the scalar reward, with its own discount: ``R_k = sum_{i < L} gamma_k^i r_{t+i,k}`` and the
    bootstrap discount ``gamma_k^L`` (each objective of a Pr-MOMDP may have its own horizon).
    ``samples.discounts`` is then ``[B, m]`` (``[B, 1]``, the scalar's, with ``sample_scalar_rewards``); with
    ``n_steps = 1`` it is ``None`` and the algorithm applies its own ``gamma``.

    :param buffer_size: max number of transitions (over all envs)
    :param observation_space: observation space
    :param action_space: action space
    :param device: torch device of the sampled tensors
    :param n_envs: number of parallel envs
    :param optimize_memory_usage: SB3's memory-efficient variant (next obs not stored twice); not with
        ``n_steps > 1``
    :param handle_timeout_termination: keep timeouts apart from terminations, as SB3 does
    :param reward_dim: m; ``None`` infers it at the first ``add``
    :param sample_scalar_rewards: put the scalar reward in ``samples.rewards`` (for unmodified SB3
        algorithms such as DQN, whose targets expect ``(batch, 1)``); the vector is still in
        ``samples.vector_rewards``
    :param device_storage: keep a copy on the device and sample there (:class:`DeviceReplayBuffer`);
        the vector rewards are mirrored too.
    :param n_steps: length n of the returns (1: one-step transitions, as SB3's buffer).
    :param gamma: discount of the scalar reward, and of every objective unless ``objective_gammas`` is given.
    :param objective_gammas: one discount per objective, in [0, 1].
    """

    vector_rewards: np.ndarray | None
    samples_type = MOReplayBufferSamples

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        reward_dim: int | None = None,
        sample_scalar_rewards: bool = False,
        device_storage: bool | str = False,
        n_steps: int = 1,
        gamma: float = 0.99,
        objective_gammas: Sequence[float] | None = None,
    ):
        if objective_gammas is not None and not all(0.0 <= float(g) <= 1.0 for g in objective_gammas):
            raise ValueError(f"objective_gammas must be discounts in [0, 1], got {objective_gammas!r}")
        super().__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs,
                         optimize_memory_usage=optimize_memory_usage,
                         handle_timeout_termination=handle_timeout_termination, device_storage=device_storage,
                         n_steps=n_steps, gamma=gamma)
        self.reward_dim = check_reward_dim(reward_dim)
        self.sample_scalar_rewards = bool(sample_scalar_rewards)
        self.objective_gammas = None if objective_gammas is None else tuple(float(g) for g in objective_gammas)
        self.vector_rewards = None
        if self.reward_dim is not None:
            self._allocate(self.reward_dim)

    def _allocate(self, reward_dim: int) -> None:
        if self.objective_gammas is not None and len(self.objective_gammas) != reward_dim:
            raise ValueError(f"objective_gammas has {len(self.objective_gammas)} entries for reward vectors of "
                             f"length {reward_dim}")
        self.reward_dim = reward_dim
        self.vector_rewards = np.zeros((self.buffer_size, self.n_envs, reward_dim), dtype=np.float32)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        # read (and validate) first, so a bad step leaves the buffer unchanged
        vec = vector_rewards_from_infos(infos, self.n_envs, self.reward_dim)
        if self.vector_rewards is None:
            self._allocate(vec.shape[1])
        pos = self.pos
        super().add(obs, next_obs, action, reward, done, infos)
        self.vector_rewards[pos] = vec  # type: ignore[index]

    def _check_not_empty(self) -> None:
        if self.vector_rewards is None:
            raise RuntimeError("MOReplayBuffer is empty: add transitions before sampling")
        super()._check_not_empty()

    def _mirrored_names(self) -> tuple[str, ...]:
        return (*super()._mirrored_names(), "vector_rewards")

    def _fields(self, a: dict, rows, envs, env, window, on_device: bool) -> dict:
        fields = super()._fields(a, rows, envs, env, window, on_device)  # the scalar reward and its discount
        if window is None:
            vector, discounts = a["vector_rewards"][rows, envs], None
        else:
            idx, last, mask = window
            powers = self._powers(self.objective_gammas or (self.gamma,) * self.reward_dim, on_device)
            vector, discounts = n_step_sum(a["vector_rewards"][idx, envs[:, None]], mask, powers), powers[last + 1]
        fields["scalar_rewards"], fields["vector_rewards"] = fields["rewards"], vector
        if not self.sample_scalar_rewards:  # the algorithm trains on the vector
            fields["rewards"], fields["discounts"] = vector, discounts
        return fields

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("objective_gammas", None)  # buffers pickled before n-step returns existed
        super().__setstate__(state)
