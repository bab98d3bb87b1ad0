"""numba kernels for rollout statistics over vector rewards.

Every array is laid out ``(T, n_envs, m)``: time outermost, the contiguous ``(env, objective)``
block innermost. The backward recursions below walk time in the outer loop and the contiguous
block in the inner loops, so each step reads one contiguous row (faster than looping over envs
outermost). The kernels are single-threaded: the pass is memory-bound, so a ``numba.prange`` over
chunks of envs gains nothing (timings in the documentation's results page).

Contents

- :func:`discounted_returns`: per-objective discounted reward-to-go, cut at episode starts.
- :func:`gae`: Generalized Advantage Estimation per objective (Schulman et al. 2016,
  "High-Dimensional Continuous Control Using Generalized Advantage Estimation", eq. 11-16), with the
  same conventions as stable-baselines3's ``RolloutBuffer.compute_returns_and_advantage``.
- :func:`episode_statistics`: per-finished-episode vector returns (undiscounted and discounted) and
  lengths, with a carry so that episodes spanning several rollouts are counted whole.

Conventions (the SB3 ones, so that our buffers can hand their arrays over unchanged)

- ``episode_starts[t, i]`` is 1 when the observation at step ``t`` of env ``i`` is the first of an
  episode, i.e. step ``t - 1`` ended an episode. The step after the rollout is described by
  ``last_dones`` (1 when the last step of the rollout ended an episode) and ``last_values``.
- Truncation (time limit): the episode did not end, so its value should be bootstrapped. SB3 adds
  ``gamma * V(terminal_obs)`` to the reward of the truncated step in ``collect_rollouts``; a caller
  that did so already passes nothing more. Otherwise pass ``truncation_values`` (``V(terminal_obs)``
  on the truncated steps, zero elsewhere) and the kernels add ``gamma * truncation_values`` to the
  rewards, which is the same thing.

>>> import numpy as np
>>> r = np.ones((3, 1, 1), dtype=np.float32)
>>> starts = np.array([[1.0], [0.0], [1.0]], dtype=np.float32)  # a new episode begins at t = 2
>>> discounted_returns(r, starts, last_dones=np.zeros(1), gamma=0.5)[:, 0, 0].tolist()
[1.5, 1.0, 1.0]
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "EpisodeCarry",
    "EpisodeStatistics",
    "discounted_returns",
    "episode_statistics",
    "gae",
]


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _gae_kernel(rewards, values, episode_starts, last_values, last_dones, gamma, gae_lambda, advantages, returns):
    """GAE on 2-D ``(T, n_envs * m)`` views; writes ``advantages`` and ``returns`` in place.

    The per-step factors ``gamma * (1 - done)`` are first expanded over the (env, objective) row so
    that the inner loop is a plain elementwise pass over contiguous memory, which LLVM vectorizes
    (about 2x faster than nesting the objective loop inside the env loop). Scratch arrays are
    allocated with ``np.zeros(width, dtype)``: a ``zeros_like`` of a row slice is typed with layout 'A'
    and defeats that vectorization.
    """
    n_steps, width = rewards.shape
    n_envs = episode_starts.shape[1]
    m = width // n_envs
    # scalars of the input dtype: float32 inputs are computed in float32, as SB3 does
    consts = np.empty(3, dtype=rewards.dtype)
    consts[0] = gamma
    consts[1] = gamma * gae_lambda
    consts[2] = 1.0
    g, gl, one = consts[0], consts[1], consts[2]
    last_gae = np.zeros(width, dtype=rewards.dtype)
    g_nt = np.empty(width, dtype=rewards.dtype)
    gl_nt = np.empty(width, dtype=rewards.dtype)
    t = n_steps - 1
    # last step: the successor is the first observation after the rollout
    for k in range(width):
        # eq. 11: TD residual delta_t = r_t + gamma V(s_{t+1}) - V(s_t), cut at episode ends
        a = rewards[t, k] + g * last_values[k] * (one - last_dones[k // m]) - values[t, k]
        last_gae[k] = a
        advantages[t, k] = a
        returns[t, k] = a + values[t, k]
    for t in range(n_steps - 2, -1, -1):
        for i in range(n_envs):
            nonterminal = one - episode_starts[t + 1, i]
            for j in range(m):
                g_nt[i * m + j] = g * nonterminal
                gl_nt[i * m + j] = gl * nonterminal
        for k in range(width):
            v = values[t, k]
            # eq. 16 written backwards: A_t = delta_t + gamma lambda A_{t+1}
            a = rewards[t, k] + g_nt[k] * values[t + 1, k] - v + gl_nt[k] * last_gae[k]
            last_gae[k] = a
            advantages[t, k] = a
            # TD(lambda) return: A^GAE + V telescopes to the lambda-return
            returns[t, k] = a + v


@numba.njit(cache=True)
def _returns_kernel(rewards, episode_starts, last_values, last_dones, gamma, out):
    """Reward-to-go G_t = r_t + gamma (1 - done_t) G_{t+1} on 2-D ``(T, n_envs * m)`` views.

    Same layout and vectorization scheme as :func:`_gae_kernel`.
    """
    n_steps, width = rewards.shape
    n_envs = episode_starts.shape[1]
    m = width // n_envs
    consts = np.empty(2, dtype=rewards.dtype)
    consts[0] = gamma
    consts[1] = 1.0
    g, one = consts[0], consts[1]
    g_nt = np.empty(width, dtype=rewards.dtype)
    t = n_steps - 1
    for k in range(width):
        out[t, k] = rewards[t, k] + g * last_values[k] * (one - last_dones[k // m])
    for t in range(n_steps - 2, -1, -1):
        for i in range(n_envs):
            nonterminal = one - episode_starts[t + 1, i]
            for j in range(m):
                g_nt[i * m + j] = g * nonterminal
        for k in range(width):
            out[t, k] = rewards[t, k] + g_nt[k] * out[t + 1, k]


@numba.njit(cache=True)
def _episode_kernel(
    rewards, dones, gamma, carry_ret, carry_disc_ret, carry_len, carry_discount,
    out_ret, out_disc_ret, out_len, out_env, out_step,
):
    """Accumulate per-env running sums and emit one row per episode end, in (step, env) order."""
    n_steps, n_envs, m = rewards.shape
    k = 0
    for t in range(n_steps):
        for i in range(n_envs):
            w = carry_discount[i]
            for j in range(m):
                r = rewards[t, i, j]
                carry_ret[i, j] += r
                carry_disc_ret[i, j] += w * r
            carry_len[i] += 1
            carry_discount[i] = w * gamma
            if dones[t, i]:
                for j in range(m):
                    out_ret[k, j] = carry_ret[i, j]
                    out_disc_ret[k, j] = carry_disc_ret[i, j]
                    carry_ret[i, j] = 0.0
                    carry_disc_ret[i, j] = 0.0
                out_len[k] = carry_len[i]
                out_env[k] = i
                out_step[k] = t
                carry_len[i] = 0
                carry_discount[i] = 1.0
                k += 1


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------
def _float_array(name: str, x, dtype=None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if dtype is None:
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_ndim(name: str, arr: np.ndarray, ndim: int, what: str) -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have shape {what}, got shape {arr.shape}")


def _check_shape(name: str, arr: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {what} = {shape}, got shape {arr.shape}")


def _check_discount(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def _rollout_inputs(rewards, episode_starts, last_values, last_dones, truncation_values, gamma, dtype=None):
    """Validate the inputs common to GAE and returns; return them as contiguous arrays."""
    rewards = _float_array("rewards", rewards, dtype)
    _check_ndim("rewards", rewards, 3, "(T, n_envs, m)")
    n_steps, n_envs, m = rewards.shape
    if n_steps == 0 or n_envs == 0 or m == 0:
        raise ValueError(f"rewards must be non-empty in every dimension, got shape {rewards.shape}")
    dtype = rewards.dtype
    episode_starts = _float_array("episode_starts", episode_starts, dtype)
    _check_shape("episode_starts", episode_starts, (n_steps, n_envs), "(T, n_envs)")
    last_dones = _float_array("last_dones", last_dones, dtype)
    _check_shape("last_dones", last_dones, (n_envs,), "(n_envs,)")
    if last_values is None:
        last_values = np.zeros((n_envs, m), dtype=dtype)
    else:
        last_values = _float_array("last_values", last_values, dtype)
        _check_shape("last_values", last_values, (n_envs, m), "(n_envs, m)")
    if truncation_values is not None:
        truncation_values = _float_array("truncation_values", truncation_values, dtype)
        _check_shape("truncation_values", truncation_values, rewards.shape, "(T, n_envs, m)")
        # SB3's timeout handling: r_t += gamma * V(terminal_obs) on truncated steps
        rewards = rewards + dtype.type(gamma) * truncation_values
    return rewards, episode_starts, last_values, last_dones


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    episode_starts: np.ndarray,
    last_values: np.ndarray,
    last_dones: np.ndarray,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
    truncation_values: np.ndarray | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Generalized Advantage Estimation per objective (Schulman et al. 2016, eq. 11-16).

    ``delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t`` (eq. 11) and
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}`` (eq. 16 written backwards);
    ``returns = A + V`` is the TD(lambda) return. With ``m = 1`` this equals SB3's
    ``RolloutBuffer.compute_returns_and_advantage`` on the same data.

    :param rewards: rewards, shape ``(T, n_envs, m)``; float32 stays float32, anything else is float64
    :param values: value estimates ``V(s_t)`` per objective, shape ``(T, n_envs, m)``
    :param episode_starts: 1 where the observation at step t begins an episode, shape ``(T, n_envs)``
    :param last_values: ``V`` of the observation after the last step, shape ``(n_envs, m)``
    :param last_dones: 1 where the last step of the rollout ended an episode, shape ``(n_envs,)``
    :param gamma: discount factor in [0, 1]
    :param gae_lambda: GAE lambda in [0, 1] (1: Monte-Carlo advantage with bootstrap, 0: TD(0))
    :param truncation_values: optional ``V(terminal_obs)`` on steps that ended by truncation (zero
        elsewhere), shape ``(T, n_envs, m)``; ``gamma *`` it is added to the rewards. Leave ``None``
        when the rewards already carry the bootstrap, as SB3's ``collect_rollouts`` does.
    :param out: optional ``(advantages, returns)`` C-contiguous arrays shaped like ``rewards``, of
        the computation dtype, to write into (a buffer passes its own arrays and saves two allocations)
    :return: ``(advantages, returns)``, each shaped like ``rewards``
    """
    gamma = _check_discount("gamma", gamma)
    gae_lambda = _check_discount("gae_lambda", gae_lambda)
    rewards, episode_starts, last_values, last_dones = _rollout_inputs(
        rewards, episode_starts, last_values, last_dones, truncation_values, gamma
    )
    values = _float_array("values", values, rewards.dtype)
    _check_shape("values", values, rewards.shape, "(T, n_envs, m)")
    if out is None:
        advantages = np.empty_like(rewards)
        returns = np.empty_like(rewards)
    else:
        advantages, returns = out
        for name, arr in (("out[0]", advantages), ("out[1]", returns)):
            if not isinstance(arr, np.ndarray) or arr.dtype != rewards.dtype or not arr.flags.c_contiguous:
                raise ValueError(f"{name} must be a C-contiguous {rewards.dtype} numpy array")
            _check_shape(name, arr, rewards.shape, "(T, n_envs, m)")
    n_steps = rewards.shape[0]
    # 2-D (T, n_envs * m) views of the contiguous arrays: no copy
    flat = (
        rewards.reshape(n_steps, -1),
        values.reshape(n_steps, -1),
        episode_starts,
        last_values.reshape(-1),
        last_dones,
        gamma,
        gae_lambda,
        advantages.reshape(n_steps, -1),
        returns.reshape(n_steps, -1),
    )
    _gae_kernel(*flat)
    return advantages, returns


def discounted_returns(
    rewards: np.ndarray,
    episode_starts: np.ndarray,
    last_dones: np.ndarray | None = None,
    gamma: float = 0.99,
    last_values: np.ndarray | None = None,
    truncation_values: np.ndarray | None = None,
) -> np.ndarray:
    """
    Per-objective discounted reward-to-go ``G_t = r_t + gamma * (1 - done_t) * G_{t+1}``.

    The sum restarts at every episode start. After the last step it continues with
    ``last_values`` (zero by default: the return is then cut at the end of the rollout) unless
    ``last_dones`` says the episode ended there.

    :param rewards: rewards, shape ``(T, n_envs, m)``
    :param episode_starts: 1 where the observation at step t begins an episode, shape ``(T, n_envs)``
    :param last_dones: 1 where the last step ended an episode, shape ``(n_envs,)``; default all 1
    :param gamma: discount factor in [0, 1]
    :param last_values: bootstrap value after the last step, shape ``(n_envs, m)``; default zeros
    :param truncation_values: optional ``V(terminal_obs)`` on truncated steps, shape ``(T, n_envs, m)``
    :return: discounted returns, shaped like ``rewards``
    """
    gamma = _check_discount("gamma", gamma)
    if last_dones is None:
        arr = np.asarray(rewards)
        if arr.ndim < 2:
            raise ValueError(f"rewards must have shape (T, n_envs, m), got shape {arr.shape}")
        last_dones = np.ones(arr.shape[1])
    rewards, episode_starts, last_values, last_dones = _rollout_inputs(
        rewards, episode_starts, last_values, last_dones, truncation_values, gamma
    )
    out = np.empty_like(rewards)
    n_steps = rewards.shape[0]
    _returns_kernel(
        rewards.reshape(n_steps, -1), episode_starts, last_values.reshape(-1), last_dones, gamma, out.reshape(n_steps, -1)
    )
    return out


class EpisodeCarry(NamedTuple):
    """Running per-env sums of episodes not finished at the end of a rollout.

    Pass it to the next :func:`episode_statistics` call so that an episode spanning two rollouts
    is counted once, whole.
    """

    returns: np.ndarray  #: (n_envs, m) undiscounted sum so far
    discounted_returns: np.ndarray  #: (n_envs, m) discounted sum so far
    lengths: np.ndarray  #: (n_envs,) int64 steps so far
    discounts: np.ndarray  #: (n_envs,) gamma ** lengths, the weight of the next reward

    @classmethod
    def zeros(cls, n_envs: int, m: int) -> EpisodeCarry:
        """Carry for envs that all start a fresh episode."""
        return cls(np.zeros((n_envs, m)), np.zeros((n_envs, m)), np.zeros(n_envs, dtype=np.int64), np.ones(n_envs))


class EpisodeStatistics(NamedTuple):
    """One row per episode that ended in the rollout, ordered by (end step, env)."""

    returns: np.ndarray  #: (E, m) float64 undiscounted vector return
    discounted_returns: np.ndarray  #: (E, m) float64 discounted vector return (gamma ** k weights)
    lengths: np.ndarray  #: (E,) int64 episode lengths
    env_indices: np.ndarray  #: (E,) int64 env of each episode
    end_steps: np.ndarray  #: (E,) int64 step index (in this rollout) of each episode's last step
    carry: EpisodeCarry  #: the unfinished episodes, for the next call


def episode_statistics(
    rewards: np.ndarray,
    dones: np.ndarray,
    gamma: float = 1.0,
    carry: EpisodeCarry | None = None,
) -> EpisodeStatistics:
    """
    Vector returns and lengths of the episodes that end inside a rollout.

    :param rewards: per-step vector rewards, shape ``(T, n_envs, m)``
    :param dones: 1 where step t ended the episode of env i (terminated or truncated), shape ``(T, n_envs)``
    :param gamma: discount for ``discounted_returns`` (``sum_k gamma**k r_k`` from the episode's start)
    :param carry: unfinished episodes from the previous rollout; ``None`` means every env starts a
        fresh episode at step 0
    :return: an :class:`EpisodeStatistics`; its ``carry`` feeds the next call (the input carry is not modified)
    """
    gamma = _check_discount("gamma", gamma)
    rewards = _float_array("rewards", rewards)
    _check_ndim("rewards", rewards, 3, "(T, n_envs, m)")
    n_steps, n_envs, m = rewards.shape
    dones_arr = np.asarray(dones)
    if dones_arr.dtype.kind not in "fiub":
        raise TypeError(f"dones must be a boolean or numeric array, got dtype {dones_arr.dtype}")
    _check_shape("dones", dones_arr, (n_steps, n_envs), "(T, n_envs)")
    dones_arr = np.ascontiguousarray(dones_arr != 0)
    if carry is None:
        carry = EpisodeCarry.zeros(n_envs, m)
    elif not isinstance(carry, EpisodeCarry):
        raise TypeError(f"carry must be an EpisodeCarry or None, got {type(carry).__name__}")
    # copies: the caller's carry stays as it was
    c_ret = _float_array("carry.returns", carry.returns, np.float64).copy()
    c_disc = _float_array("carry.discounted_returns", carry.discounted_returns, np.float64).copy()
    c_len = np.array(carry.lengths, dtype=np.int64)
    c_w = _float_array("carry.discounts", carry.discounts, np.float64).copy()
    _check_shape("carry.returns", c_ret, (n_envs, m), "(n_envs, m)")
    _check_shape("carry.discounted_returns", c_disc, (n_envs, m), "(n_envs, m)")
    _check_shape("carry.lengths", c_len, (n_envs,), "(n_envs,)")
    _check_shape("carry.discounts", c_w, (n_envs,), "(n_envs,)")
    n_episodes = int(np.count_nonzero(dones_arr))
    out_ret = np.empty((n_episodes, m))
    out_disc = np.empty((n_episodes, m))
    out_len = np.empty(n_episodes, dtype=np.int64)
    out_env = np.empty(n_episodes, dtype=np.int64)
    out_step = np.empty(n_episodes, dtype=np.int64)
    _episode_kernel(rewards, dones_arr, gamma, c_ret, c_disc, c_len, c_w, out_ret, out_disc, out_len, out_env, out_step)
    return EpisodeStatistics(out_ret, out_disc, out_len, out_env, out_step, EpisodeCarry(c_ret, c_disc, c_len, c_w))
