"""CaRL's simple reward as a Gymnasium wrapper (Jaeger et al. 2025, arXiv 2504.17838, §3).

``r_t = RC_t · Π_i p_t,i + T``: the route completion gained this step, in percent (the whole route
holds 100), multiplied by soft penalty factors in [0, 1]; ``T = −1`` when the episode ends by a
collision or a red light, 0 for every other ending, off-road and timeouts included (paper §3: "We use
T = 1 for collisions and red light infractions, and T = 0 for everything else"); hard infractions end
the episode. The factors, as in the authors' release code, each switchable:

- speeding: ``max(0, 1 − (v − v_limit) / speeding_tolerance)``, tolerance 2.23 m/s;
- outside the route lanes: factor 0 on that step;
- time-to-collision: ×``ttc_factor`` (0.5) while a TTC violation happened within the last
  ``ttc_hold_steps`` steps (the authors hold it for 500 ticks at 10 Hz);
- comfort: ``1 − 0.5·k/6`` for k of 6 comfort metrics out of bounds (the env reports it);
- lane centre: ``1 − clip(|d| / (w/2), 0, 1)`` (the env reports it).

The wrapper reads the quantities the env reports in ``info`` (``morl.envs.driving.objectives.CARL_KEYS``),
so any env reporting them works unchanged: the built-in simulator, the highway-env and CARLA adapters.
With the default parameters every factor and ``T`` are the env's own (``carl_*`` keys): the reward is the
env's ``morl.envs.driving.objectives.carl_reward_from_info``, one definition. A parameter that changes a term
(``speeding_tolerance``, ``ttc_hold_steps``, ``terminal_penalty``) recomputes only that term, from
``speed`` / ``speed_limit``, ``ttc_violation`` and the env's ``carl_terminal_penalty`` (which endings pay ``T``).
The env's objective vector stays in ``info["vector_reward"]`` for per-objective logging.

:class:`CaRLVecReward` is the same reward on a VecEnv (e.g. the batched simulator, ``scenario: route``),
computed for all envs at once from the simulator's per-step array when it keeps one; both wrappers share
one computation (:meth:`_CaRLTerms.carl_terms`), so they give the same rewards.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

__all__ = ["CaRLReward", "CaRLVecReward"]

FACTORS = ("speeding", "outside_lanes", "ttc", "comfort", "lane_center")


class _CaRLTerms:
    """The parameters of CaRL's reward and its computation, for one env or a batch (arrays, one per env)."""

    def _set_terms(self, speeding: bool, speeding_tolerance: float | None, outside_lanes: bool, ttc: bool,
                   ttc_factor: float, ttc_hold_steps: int | None, comfort: bool, lane_center: bool,
                   terminal_penalty: float) -> None:
        if speeding_tolerance is not None and speeding_tolerance <= 0:
            raise ValueError(f"speeding_tolerance must be > 0, got {speeding_tolerance!r}")
        if not 0.0 <= ttc_factor <= 1.0:
            raise ValueError(f"ttc_factor must be in [0, 1], got {ttc_factor!r}")
        if ttc_hold_steps is not None and ttc_hold_steps < 1:
            raise ValueError(f"ttc_hold_steps must be >= 1 or None, got {ttc_hold_steps!r}")
        self.speeding = speeding
        self.speeding_tolerance = None if speeding_tolerance is None else float(speeding_tolerance)
        self.outside_lanes, self.ttc, self.ttc_factor = outside_lanes, ttc, float(ttc_factor)
        self.ttc_hold_steps, self.comfort, self.lane_center = ttc_hold_steps, comfort, lane_center
        self.terminal_penalty = float(terminal_penalty)

    def _quantity(self, info, key: str) -> float:
        """``info[key]`` as a float; a missing quantity is a ``KeyError`` naming it."""
        try:
            return float(info[key])
        except KeyError:
            raise KeyError(f"{type(self).__name__} needs info[{key!r}]: the env must report the CaRL quantities "
                           "(morl.envs.driving.objectives.CARL_KEYS)") from None

    def carl_terms(self, get: Callable[[str], np.ndarray], since_ttc: np.ndarray, ended: np.ndarray):
        """``(reward, factors, since_ttc)`` of one step.

        :param get: the step's quantity ``key`` as a float64 array (one entry per env, or 0-d)
        :param since_ttc: steps since each env's last TTC violation in this episode, -1 for none
        :param ended: whether the step ended the episode (terminated, not truncated); it pays ``T`` where the
            env's ``carl_terminal_penalty`` is non-zero (a collision or a red light)
        """
        one = np.ones_like(get("carl_route_completion_delta"))
        f = dict.fromkeys(FACTORS, one)
        if self.speeding:
            if self.speeding_tolerance is None:
                f["speeding"] = get("carl_speeding_factor")
            else:
                f["speeding"] = 1.0 - np.clip((get("speed") - get("speed_limit")) / self.speeding_tolerance, 0.0, 1.0)
        if self.outside_lanes:
            f["outside_lanes"] = get("carl_outside_lanes_factor")
        if self.ttc:
            if self.ttc_hold_steps is None:
                f["ttc"] = get("carl_ttc_factor")
            else:
                since_ttc = np.where(get("ttc_violation") != 0, 0, np.where(since_ttc >= 0, since_ttc + 1, -1))
                held = (since_ttc >= 0) & (since_ttc < self.ttc_hold_steps)
                f["ttc"] = np.where(held, self.ttc_factor, 1.0)
        if self.comfort:
            f["comfort"] = get("carl_comfort_factor")
        if self.lane_center:
            f["lane_center"] = get("carl_lane_center_factor")
        product = f["speeding"] * f["outside_lanes"] * f["ttc"] * f["comfort"] * f["lane_center"]
        penalised = ended & (get("carl_terminal_penalty") != 0)
        reward = get("carl_route_completion_delta") * product + np.where(penalised, self.terminal_penalty, 0.0)
        return reward, f, since_ttc


class CaRLReward(_CaRLTerms, gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace the reward by CaRL's ``RC · Π p + T``.

    :param env: an env reporting the CaRL quantities in ``info``.
    :param speeding: apply the speeding factor.
    :param speeding_tolerance: m/s over the limit at which the speeding factor reaches 0; ``None`` (default)
        uses the env's ``carl_speeding_factor`` (CaRL: 2.23 m/s).
    :param outside_lanes: apply the outside-route-lanes factor.
    :param ttc: apply the TTC factor.
    :param ttc_factor: the factor while a TTC violation is held.
    :param ttc_hold_steps: steps a violation is held; ``None`` uses the env's own held factor.
    :param comfort: apply the comfort factor.
    :param lane_center: apply the lane-centre factor.
    :param terminal_penalty: ``T`` for an episode ended where the env reports a non-zero
        ``carl_terminal_penalty`` (a collision or a red light; CaRL: −1).
    :param terminate_on_hard: end the episode on a hard infraction (collision, off-road, red light).
    """

    scalar_reward = True  # gives SB3 a scalar, the vector stays in info (morl.agent_env.is_scalarised)

    def __init__(self, env: gym.Env, speeding: bool = True, speeding_tolerance: float | None = None,
                 outside_lanes: bool = True, ttc: bool = True, ttc_factor: float = 0.5,
                 ttc_hold_steps: int | None = None, comfort: bool = True, lane_center: bool = True,
                 terminal_penalty: float = -1.0, terminate_on_hard: bool = True):
        gym.utils.RecordConstructorArgs.__init__(
            self, speeding=speeding, speeding_tolerance=speeding_tolerance, outside_lanes=outside_lanes, ttc=ttc,
            ttc_factor=ttc_factor, ttc_hold_steps=ttc_hold_steps, comfort=comfort, lane_center=lane_center,
            terminal_penalty=terminal_penalty, terminate_on_hard=terminate_on_hard)
        gym.Wrapper.__init__(self, env)
        self._set_terms(speeding, speeding_tolerance, outside_lanes, ttc, ttc_factor, ttc_hold_steps, comfort,
                        lane_center, terminal_penalty)
        self.terminate_on_hard = terminate_on_hard
        self._since_ttc = np.array(-1)

    def reset(self, **kwargs):
        self._since_ttc = np.array(-1)
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if np.ndim(reward) == 1:
            info["vector_reward"] = np.asarray(reward, dtype=np.float32)
        hard = bool(self._quantity(info, "carl_hard_infraction"))
        if hard and self.terminate_on_hard:
            terminated = True
        r, factors, self._since_ttc = self.carl_terms(lambda key: np.float64(self._quantity(info, key)), self._since_ttc,
                                                      np.bool_(terminated))
        info["carl_factors"] = {k: float(v) for k, v in factors.items()}
        return obs, float(r), terminated, truncated, info


class CaRLVecReward(_CaRLTerms, VecEnvWrapper):
    """:class:`CaRLReward` for a VecEnv: the same reward for all envs in one array computation.

    The quantities are read from the VecEnv's per-step array when it keeps one (the batched simulator's
    ``info_array``, columns ``info_columns``), else from each env's ``info``. The wrapped VecEnv must end an
    episode on every hard infraction itself (the batched simulator does): a VecEnv resets its envs on its own,
    so a wrapper cannot end one. ``info["carl_factors"]`` is not written (no per-env dict per step); the
    reward vector stays in the infos and in the simulator's ``vector_rewards`` array.

    :param venv: a VecEnv reporting the CaRL quantities.
    :param speeding: and the other parameters: as :class:`CaRLReward`.
    """

    def __init__(self, venv, speeding: bool = True, speeding_tolerance: float | None = None, outside_lanes: bool = True,
                 ttc: bool = True, ttc_factor: float = 0.5, ttc_hold_steps: int | None = None, comfort: bool = True,
                 lane_center: bool = True, terminal_penalty: float = -1.0):
        VecEnvWrapper.__init__(self, venv)
        self._set_terms(speeding, speeding_tolerance, outside_lanes, ttc, ttc_factor, ttc_hold_steps, comfort,
                        lane_center, terminal_penalty)
        base = venv.unwrapped
        columns = getattr(base, "info_columns", None)
        self._array_env = base if isinstance(columns, dict) and hasattr(base, "info_array") else None
        self._since_ttc = np.full(self.num_envs, -1)

    def reset(self):
        self._since_ttc = np.full(self.num_envs, -1)
        return self.venv.reset()

    def _getter(self, infos) -> Callable[[str], np.ndarray]:
        if self._array_env is not None:
            array, columns = self._array_env.info_array, self._array_env.info_columns
            return lambda key: array[:, columns[key]].astype(np.float64)
        return lambda key: np.array([self._quantity(info, key) for info in infos])

    def step_wait(self):
        obs, _, dones, infos = self.venv.step_wait()
        ended = np.zeros(self.num_envs, dtype=bool)
        for i in np.flatnonzero(dones):
            ended[i] = not infos[i].get("TimeLimit.truncated", False)
        return obs, self._rewards(infos, dones, ended), dones, infos

    def step_arrays(self, actions):
        """The array step (:mod:`morl.vec_arrays`) with CaRL's rewards."""
        step = self.venv.step_arrays(actions)
        return step._replace(rewards=self._rewards(step.infos, step.dones, step.dones & ~step.truncated))

    def _rewards(self, infos, dones: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """The step's rewards; ``ended``: the episode ended by termination (it may pay ``T``)."""
        get = self._getter(infos)
        hard = get("carl_hard_infraction") != 0
        if np.any(hard & ~dones):
            raise RuntimeError(f"CaRLVecReward: env {int(np.flatnonzero(hard & ~dones)[0])} reported a hard "
                               "infraction without ending its episode; the VecEnv must end episodes on hard infractions")
        reward, _, self._since_ttc = self.carl_terms(get, self._since_ttc, ended)
        self._since_ttc[dones] = -1  # the next step starts a new episode
        return reward.astype(np.float32)
