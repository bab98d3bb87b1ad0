"""stable-baselines3 rollout buffers that keep the reward vector, and the helpers both buffer kinds share.

SB3 sees a scalar reward (a declared scalarisation, e.g. ``morl.wrappers.Scalarize``); the vector
travels in ``info["vector_reward"]`` (the MO-Gymnasium channel). These buffers store it
next to everything SB3 stores. The off-policy buffers are in :mod:`morl.replay`.

- :class:`MORolloutBuffer`: on-policy. SB3's ``RolloutBuffer.add`` gets no ``infos``; with an
  unmodified SB3 algorithm add :class:`VectorRewardCallback`, whose ``_on_step`` runs after
  ``env.step`` and before ``rollout_buffer.add`` and hands the step's ``infos`` to the buffer:
  ``PPO(..., rollout_buffer_class=MORolloutBuffer).learn(n, callback=VectorRewardCallback())``.
  Our own agents may instead pass ``vector_reward=`` (and per-objective ``vector_value=``) to ``add``.
  Returns and advantages, scalar and per objective, come from the :func:`morl.stats.gae` kernel.

Vector rewards are never normalised by ``VecNormalize`` (it only knows the scalar).

**Devices.** SB3's rollout buffer copies every minibatch field to the device, each copy a host-device
synchronisation on CUDA. :class:`DeviceRolloutBuffer` (and :class:`MORolloutBuffer`, built on it) moves
the rollout to the device once per :meth:`~DeviceRolloutBuffer.get` and cuts minibatches there, with the
same permutation as SB3's, so on the CPU they give SB3's minibatches exactly.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper, VecNormalize

from morl.stats import EpisodeStatistics, discounted_returns, episode_statistics, gae

__all__ = [
    "DeviceRolloutBuffer",
    "MORolloutBuffer",
    "MORolloutBufferSamples",
    "VectorRewardCallback",
    "VectorRewardError",
    "log_vector_returns",
    "step_vector_rewards",
    "update_info_buffer_at_ends",
    "vector_rewards_from_infos",
    "vector_reward_array_env",
]


class VectorRewardError(ValueError):
    """A step's ``info`` has no usable ``"vector_reward"``."""


def vector_rewards_from_infos(infos: Sequence[dict[str, Any]], n_envs: int, reward_dim: int | None = None) -> np.ndarray:
    """
    Stack ``info["vector_reward"]`` of every env of one vectorised step.

    :param infos: the ``infos`` list of a ``VecEnv.step``
    :param n_envs: number of envs expected
    :param reward_dim: expected length m of each vector; ``None`` takes it from the first env
    :return: float32 array of shape ``(n_envs, m)``
    """
    if len(infos) != n_envs:
        raise VectorRewardError(f"expected infos for {n_envs} envs, got {len(infos)}")
    rows = []
    for i, info in enumerate(infos):
        if "vector_reward" not in info:
            raise VectorRewardError(
                f"infos[{i}] (env index {i}) has no 'vector_reward': the env must be wrapped with "
                "morl.wrappers.Scalarize (or be an env that sets info['vector_reward'])"
            )
        vec = np.asarray(info["vector_reward"], dtype=np.float32)
        if vec.ndim != 1:
            raise VectorRewardError(f"infos[{i}]['vector_reward'] must be a 1-D vector, got shape {vec.shape}")
        if reward_dim is None:
            reward_dim = vec.shape[0]
        if vec.shape[0] != reward_dim:
            raise VectorRewardError(f"infos[{i}]['vector_reward'] has length {vec.shape[0]}, expected reward_dim={reward_dim}")
        rows.append(vec)
    return np.stack(rows)


def check_reward_dim(reward_dim: int | None) -> int | None:
    """``reward_dim`` as an int (``None`` stays ``None``: inferred at the first step), or a ValueError naming it."""
    if reward_dim is not None and (int(reward_dim) != reward_dim or reward_dim < 1):
        raise ValueError(f"reward_dim must be a positive integer or None, got {reward_dim!r}")
    return None if reward_dim is None else int(reward_dim)


# ----------------------------------------------------------------------------------------------
# on-policy
# ----------------------------------------------------------------------------------------------
class MORolloutBufferSamples(NamedTuple):
    """SB3's ``RolloutBufferSamples`` plus the per-objective fields, each ``(batch, m)``."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    vector_rewards: th.Tensor
    vector_values: th.Tensor
    vector_advantages: th.Tensor
    vector_returns: th.Tensor


_VECTOR_FIELDS = ("vector_rewards", "vector_values", "vector_advantages", "vector_returns")


class DeviceRolloutBuffer(RolloutBuffer):
    """SB3's ``RolloutBuffer`` that moves the rollout to the device once per :meth:`get`.

    SB3 copies six NumPy slices to the device for every minibatch. Here the flattened rollout is
    copied once (on the CPU the tensors share the NumPy memory) and minibatches are gathered on the
    device, cut from the same ``np.random.permutation`` as SB3's: the same minibatches, in the same
    order, with the same dtypes and shapes.
    """

    def reset(self) -> None:
        super().reset()
        self._device_fields: list[th.Tensor] | None = None

    def _flat_arrays(self) -> list[np.ndarray]:
        """The flattened fields of one minibatch, in the order of the samples' fields."""
        return [self.observations, self.actions.astype(np.float32, copy=False), self.values.reshape(-1),
                self.log_probs.reshape(-1), self.advantages.reshape(-1), self.returns.reshape(-1)]

    def _samples(self, fields: list[th.Tensor]) -> RolloutBufferSamples:
        return RolloutBufferSamples(*fields)

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        if not self.full:
            raise RuntimeError("the rollout buffer is not full: collect a rollout before get()")
        n = self.buffer_size * self.n_envs
        indices = np.random.permutation(n)  # as SB3 draws it, so the minibatches are SB3's
        if not self.generator_ready:
            for name in ("observations", "actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True
            self._device_fields = None
        if self._device_fields is None:
            self._device_fields = [th.as_tensor(a, device=self.device) for a in self._flat_arrays()]
        batch_size = n if batch_size is None else batch_size
        order = th.as_tensor(indices, device=self.device)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            yield self._samples([field.index_select(0, rows) for field in self._device_fields])  # 3x [rows] on CPU


class MORolloutBuffer(DeviceRolloutBuffer):
    """
    Rollout buffer with vector rewards ``(T, n_envs, m)`` and per-objective GAE.

    Both the scalar path (what SB3's PPO/A2C train on) and the vector path go through
    :func:`morl.stats.gae`; the scalar one equals SB3's ``RolloutBuffer``.

    Getting the vectors in: either pass ``vector_reward=`` (shape ``(n_envs, m)``) to :meth:`add`, or
    call :meth:`stage_vector_rewards` with the step's ``infos`` before ``add`` (what
    :class:`VectorRewardCallback` does for unmodified SB3 algorithms).

    Per-objective values and truncation: with a per-objective critic, pass ``vector_value=`` to
    ``add`` (or ``vector_values=`` to :meth:`stage_vector_rewards`), ``last_vector_values=`` to
    :meth:`compute_returns_and_advantage` and, on truncated steps, ``truncation_values=V(terminal_obs)``
    to :meth:`stage_vector_rewards` (it adds ``gamma * V(terminal_obs)`` to the vector reward, as SB3
    does for the scalar); ``vector_advantages`` / ``vector_returns`` are then GAE(lambda) and the
    TD(lambda) return per objective. Without one (plain PPO + callback: no per-objective value was
    ever given in the rollout) the per-objective values are zero, and GAE(lambda) with zero values
    would weight rewards by ``(gamma * lambda) ** k``; so ``vector_returns`` is then the plain
    discounted reward-to-go (:func:`morl.stats.discounted_returns`), cut at episode ends, at
    truncations (nothing to bootstrap with) and at the end of the rollout (unless
    ``last_vector_values`` is given), and ``vector_advantages`` equals it (``G - 0``).

    :param buffer_size: steps per env in a rollout (``n_steps``)
    :param observation_space: observation space
    :param action_space: action space
    :param device: torch device of the sampled tensors
    :param gae_lambda: GAE lambda
    :param gamma: discount factor
    :param n_envs: number of parallel envs
    :param reward_dim: m; ``None`` infers it from the first vector reward
    :param sample_vectors: minibatches from :meth:`get` carry the ``vector_*`` fields
        (:class:`MORolloutBufferSamples`); ``False`` gives SB3's ``RolloutBufferSamples``, for an agent
        that only logs the vectors (gathering four unused fields per minibatch is not free)
    """

    vector_rewards: np.ndarray
    vector_values: np.ndarray
    vector_advantages: np.ndarray
    vector_returns: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        reward_dim: int | None = None,
        sample_vectors: bool = True,
    ):
        # set before super().__init__, which calls reset()
        self.reward_dim = check_reward_dim(reward_dim)
        self.sample_vectors = bool(sample_vectors)
        super().__init__(
            buffer_size, observation_space, action_space, device, gae_lambda=gae_lambda, gamma=gamma, n_envs=n_envs
        )

    vector_source = None  # a VecEnv whose ``vector_rewards`` array add() reads when nothing was staged

    def read_vector_rewards_from(self, venv) -> bool:
        """Let :meth:`add` take each step's vector rewards from ``venv``'s own ``(n_envs, m)`` array when
        nothing was staged (see :func:`vector_reward_array_env`), so an algorithm needs no per-step callback.

        :return: whether ``venv`` keeps such an array (if not, a source set before is dropped and the vectors must be
            staged)
        """
        source = vector_reward_array_env(venv)
        if source is not None:
            self._as_vector("vector_rewards of " + type(source).__name__, source.vector_rewards)  # checks (n_envs, m)
        self.vector_source = source
        return source is not None

    def reset(self) -> None:
        super().reset()
        self._staged_reward: np.ndarray | None = None
        self._staged_value: np.ndarray | None = None
        self._has_vector_values = False
        self.last_dones: np.ndarray | None = None
        self._flat: dict[str, np.ndarray] = {}
        if self.reward_dim is not None:
            self._allocate(self.reward_dim)

    def _allocate(self, reward_dim: int) -> None:
        self.reward_dim = reward_dim
        shape = (self.buffer_size, self.n_envs, reward_dim)
        for name in _VECTOR_FIELDS:
            setattr(self, name, np.zeros(shape, dtype=np.float32))

    def _as_vector(self, name: str, x) -> np.ndarray:
        arr = x.detach().cpu().numpy() if isinstance(x, th.Tensor) else np.asarray(x)
        arr = np.asarray(arr, dtype=np.float32)
        if self.reward_dim is None:
            if arr.ndim != 2 or arr.shape[0] != self.n_envs:
                raise ValueError(f"{name} must have shape (n_envs, m) = ({self.n_envs}, m), got {arr.shape}")
            self._allocate(arr.shape[1])
        if arr.shape != (self.n_envs, self.reward_dim):
            raise ValueError(f"{name} must have shape (n_envs, m) = ({self.n_envs}, {self.reward_dim}), got {arr.shape}")
        return arr

    def stage_vector_rewards(
        self,
        infos: Sequence[dict[str, Any]],
        vector_values: np.ndarray | th.Tensor | None = None,
        truncation_values: np.ndarray | th.Tensor | None = None,
    ) -> None:
        """
        Hold the vector rewards of the coming :meth:`add` (read from ``infos[i]["vector_reward"]``).

        :param infos: the ``infos`` of the ``VecEnv.step`` whose transition is added next
        :param vector_values: optional per-objective values of the observations of that step, ``(n_envs, m)``
        :param truncation_values: optional ``V(terminal_obs)`` per objective, ``(n_envs, m)``, nonzero
            only on envs whose episode was truncated at that step; ``gamma *`` it is added to the reward
        """
        vec = self._as_vector("vector_reward", vector_rewards_from_infos(infos, self.n_envs, self.reward_dim))
        if truncation_values is not None:
            vec = vec + np.float32(self.gamma) * self._as_vector("truncation_values", truncation_values)
        self._staged_reward = vec
        self._staged_value = None if vector_values is None else self._as_vector("vector_values", vector_values)

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
        vector_reward: np.ndarray | th.Tensor | None = None,
        vector_value: np.ndarray | th.Tensor | None = None,
    ) -> None:
        """
        SB3's ``RolloutBuffer.add`` plus the vector reward (and optional per-objective value).

        :param vector_reward: ``(n_envs, m)``; ``None`` takes the one staged by :meth:`stage_vector_rewards`,
            else the ``vector_source``'s array (:meth:`read_vector_rewards_from`)
        :param vector_value: ``(n_envs, m)`` per-objective values; ``None`` takes the staged ones, else zeros
        """
        if vector_reward is not None:
            vec = self._as_vector("vector_reward", vector_reward)
        elif self._staged_reward is not None:
            vec = self._staged_reward
        elif self.vector_source is not None:
            vec = self.vector_source.vector_rewards  # copied into the row below
        else:
            raise RuntimeError(
                f"MORolloutBuffer.add got no vector reward for step {self.pos}: pass vector_reward=..., "
                "or train the SB3 algorithm with callback=morl.buffers.VectorRewardCallback()"
            )
        if vector_value is not None:
            val = self._as_vector("vector_value", vector_value)
        else:
            val = self._staged_value
        pos = self.pos
        super().add(obs, action, reward, episode_start, value, log_prob)
        self.vector_rewards[pos] = vec
        if val is None:
            self.vector_values[pos] = 0.0
        else:
            self.vector_values[pos] = val
            self._has_vector_values = True
        self._staged_reward = None
        self._staged_value = None

    def compute_returns_and_advantage(
        self, last_values: th.Tensor, dones: np.ndarray, last_vector_values: np.ndarray | th.Tensor | None = None
    ) -> None:
        """
        GAE and TD(lambda) returns, scalar (SB3's fields) and per objective (``vector_*`` fields).

        :param last_values: scalar value of the observation after the rollout, one per env
        :param dones: whether the last step of the rollout ended an episode, one per env
        :param last_vector_values: per-objective values of that observation, ``(n_envs, m)``; zeros if ``None``
        """
        last = last_values.detach().cpu().numpy().reshape(self.n_envs, 1).astype(np.float32)
        dones = np.asarray(dones).reshape(self.n_envs)
        self.last_dones = dones.astype(bool)
        # scalar path: m = 1 views of SB3's (T, n_envs) arrays, results written in place
        gae(
            self.rewards[..., None],
            self.values[..., None],
            self.episode_starts,
            last,
            dones,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            out=(self.advantages[..., None], self.returns[..., None]),
        )
        if self.reward_dim is None:
            return  # no vector was ever added (empty rollout)
        if last_vector_values is None:
            last_vec = np.zeros((self.n_envs, self.reward_dim), dtype=np.float32)
        else:
            last_vec = self._as_vector("last_vector_values", last_vector_values)
        if self._has_vector_values:
            gae(
                self.vector_rewards,
                self.vector_values,
                self.episode_starts,
                last_vec,
                dones,
                gamma=self.gamma,
                gae_lambda=self.gae_lambda,
                out=(self.vector_advantages, self.vector_returns),
            )
        else:
            # no per-objective critic: Monte-Carlo return inside the rollout, advantage G - 0
            self.vector_returns[:] = discounted_returns(
                self.vector_rewards, self.episode_starts, dones, gamma=self.gamma, last_values=last_vec
            )
            self.vector_advantages[:] = self.vector_returns

    def mean_vector_return(self) -> np.ndarray:
        """Per-objective mean of ``vector_returns`` over the rollout's (step, env) cells, shape ``(m,)``, for logging."""
        if self.reward_dim is None:
            raise RuntimeError("MORolloutBuffer holds no vector rewards yet")
        return self.vector_returns.mean(axis=(0, 1), dtype=np.float64)

    def rollout_episode_statistics(self, gamma: float = 1.0, carry=None) -> EpisodeStatistics:
        """
        Vector returns of the episodes that ended in this rollout (see :func:`morl.stats.episode_statistics`).

        Call after :meth:`compute_returns_and_advantage` (it needs the last ``dones``). Pass the
        previous call's ``carry`` so that episodes spanning rollouts are counted whole.
        """
        if self.reward_dim is None or self.last_dones is None:
            raise RuntimeError("call compute_returns_and_advantage before rollout_episode_statistics")
        # SB3 stores episode starts; step t ended an episode when step t + 1 starts one
        dones = np.empty((self.buffer_size, self.n_envs), dtype=bool)
        dones[:-1] = self.episode_starts[1:] != 0
        dones[-1] = self.last_dones
        return episode_statistics(self.vector_rewards, dones, gamma=gamma, carry=carry)

    def get(self, batch_size: int | None = None) -> Generator[MORolloutBufferSamples, None, None]:
        if not self.generator_ready and self.sample_vectors:
            # flattened copies for sampling; the (T, n_envs, m) arrays stay as they are for logging
            self._flat = {name: self.swap_and_flatten(getattr(self, name)) for name in _VECTOR_FIELDS}
        yield from super().get(batch_size)  # type: ignore[misc]

    def _flat_arrays(self) -> list[np.ndarray]:
        base = super()._flat_arrays()
        return [*base, *(self._flat[name] for name in _VECTOR_FIELDS)] if self.sample_vectors else base

    def _samples(self, fields: list[th.Tensor]) -> MORolloutBufferSamples:
        return MORolloutBufferSamples(*fields) if self.sample_vectors else super()._samples(fields)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> MORolloutBufferSamples:
        base = super()._get_samples(batch_inds, env)
        if not self.sample_vectors:
            return base
        extra = tuple(self.to_torch(self._flat[name][batch_inds]) for name in _VECTOR_FIELDS)
        return MORolloutBufferSamples(*base, *extra)


def vector_reward_array_env(venv):
    """The VecEnv under ``venv``'s wrappers when it keeps each step's vector rewards in one array
    ``vector_rewards`` of shape ``(n_envs, m)``, the array its ``info["vector_reward"]`` entries are read
    from (the batched simulators do, e.g. ``morl.envs.driving.DrivingVecEnv``); otherwise None."""
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    rewards = getattr(venv, "vector_rewards", None)
    ok = isinstance(rewards, np.ndarray) and rewards.ndim == 2 and rewards.shape[0] == getattr(venv, "num_envs", -1)
    return venv if ok else None


def step_vector_rewards(array_env, infos: Sequence[dict[str, Any]], n_envs: int,
                        reward_dim: int | None = None) -> np.ndarray:
    """One step's reward vectors ``(n_envs, m)``: ``array_env.vector_rewards`` itself (not a copy) when a batched
    env keeps them (``array_env`` from :func:`vector_reward_array_env`, or None), else stacked from ``infos``
    (:func:`vector_rewards_from_infos`)."""
    if array_env is not None:
        return array_env.vector_rewards
    return vector_rewards_from_infos(infos, n_envs, reward_dim)


def update_info_buffer_at_ends(model, infos: Sequence[dict[str, Any]], dones: np.ndarray | None = None) -> None:
    """SB3's ``BaseAlgorithm._update_info_buffer`` that reads only the infos of the envs whose episode ended.

    SB3 looks up ``"episode"`` and ``"is_success"`` in every env's info at every step; ``Monitor`` and
    ``VecMonitor`` put ``"episode"`` only into the info of an ended episode, and SB3 counts ``"is_success"``
    only there, so with ``dones`` given this keeps the same episodes and skips ``n_envs`` dict reads per step
    (with 64 envs, about 1 % of a PPO rollout on the batched simulator). ``dones=None`` reads every info, as SB3 does.
    """
    ended = range(len(infos)) if dones is None else np.flatnonzero(dones)
    for idx in ended:
        info = infos[idx]
        ep_info = info.get("episode")
        if ep_info is not None:
            model.ep_info_buffer.append(ep_info)
        is_success = info.get("is_success")
        if is_success is not None and dones is not None:
            model.ep_success_buffer.append(is_success)


class VectorRewardCallback(BaseCallback):
    """
    Feed ``info["vector_reward"]`` to a :class:`MORolloutBuffer` under an unmodified SB3 algorithm.

    SB3's ``collect_rollouts`` calls ``callback.on_step()`` after ``env.step`` and before
    ``rollout_buffer.add``, with the step's ``infos`` in ``self.locals``; this callback stages them in
    the buffer. When the VecEnv keeps the vectors in its own array (:func:`vector_reward_array_env`), the
    buffer reads that array itself (:meth:`MORolloutBuffer.read_vector_rewards_from`) and nothing is staged.
    At the end of each rollout it logs, per objective,

    - ``rollout/vector_return/<objective>``: the mean of ``vector_returns`` over the rollout's
      (step, env) cells (:meth:`MORolloutBuffer.mean_vector_return`);
    - ``rollout/ep_vector_return/<objective>``: the mean undiscounted return of the episodes that
      ended in the rollout, counted whole across rollouts (a carry is kept), when any ended.

    :param objectives: names for the logged keys (default ``0, 1, ...``)
    :param verbose: verbosity
    """

    def __init__(self, objectives: Sequence[str] | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.objectives = None if objectives is None else tuple(objectives)
        self._carry = None

    def _buffer(self) -> MORolloutBuffer:
        buffer = getattr(self.model, "rollout_buffer", None)
        if not isinstance(buffer, MORolloutBuffer):
            raise TypeError(
                "VectorRewardCallback needs an on-policy algorithm built with rollout_buffer_class=MORolloutBuffer, "
                f"got rollout_buffer={type(buffer).__name__}"
            )
        return buffer

    def _on_training_start(self) -> None:
        self._carry = None
        self._reads_array = self._buffer().read_vector_rewards_from(self.training_env)

    def _on_step(self) -> bool:
        if not self._reads_array:
            self._buffer().stage_vector_rewards(self.locals["infos"])
        return True

    def _on_rollout_end(self) -> None:
        self._carry = log_vector_returns(self._buffer(), self.logger, self.objectives, self._carry)


def log_vector_returns(buffer: MORolloutBuffer, logger, objectives: Sequence[str] | None = None, carry=None):
    """Log a finished rollout's per-objective returns (the keys :class:`VectorRewardCallback` documents).

    :param buffer: the rollout, after ``compute_returns_and_advantage``
    :param logger: an SB3 logger
    :param objectives: names for the keys (default ``0, 1, ...``)
    :param carry: the previous rollout's carry (episodes spanning rollouts are counted whole)
    :return: the carry for the next rollout
    """
    if buffer.reward_dim is None:
        return carry
    means = buffer.mean_vector_return()
    names = tuple(objectives) if objectives else tuple(str(j) for j in range(len(means)))
    if len(names) != len(means):
        raise ValueError(f"objectives has {len(names)} names but the reward vector has {len(means)} components")
    for name, value in zip(names, means):
        logger.record(f"rollout/vector_return/{name}", float(value))
    stats = buffer.rollout_episode_statistics(carry=carry)
    if len(stats.lengths):
        for name, value in zip(names, stats.returns.mean(axis=0)):
            logger.record(f"rollout/ep_vector_return/{name}", float(value))
    return stats.carry
