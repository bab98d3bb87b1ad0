"""CaRL's simple reward as a Gymnasium wrapper (Jaeger et al. 2025, arXiv 2504.17838, §3).

``r_t = RC_t · Π_i p_t,i + T``: the route completion gained this step, in percent (the whole route
holds 100), multiplied by soft penalty factors in [0, 1]; ``T = −1`` when the episode ends by a
collision or a red light, 0 otherwise; hard infractions end the episode. The factors, as in the
authors' release code (``shared/research/carl-driving.md`` §1.2), each switchable:

- speeding: ``max(0, 1 − (v − v_limit) / speeding_tolerance)``, tolerance 2.23 m/s;
- outside the route lanes: factor 0 on that step;
- time-to-collision: ×``ttc_factor`` (0.5) while a TTC violation happened within the last
  ``ttc_hold_steps`` steps (the authors hold it for 500 ticks at 10 Hz);
- comfort: ``1 − 0.5·k/6`` for k of 6 comfort metrics out of bounds (the env reports it);
- lane centre: ``1 − clip(|d| / (w/2), 0, 1)`` (the env reports it).

The wrapper reads the quantities the env reports in ``info`` (``envs.driving.objectives.CARL_KEYS``
and the event keys ``speed``, ``speed_limit``, ``ttc_violation``, ``collision``, ``red_light``), so
any env reporting them works unchanged: the built-in simulator, the highway-env and CARLA adapters.
The env's objective vector stays in ``info["vector_reward"]`` for per-objective logging.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = ["CaRLReward"]


class CaRLReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace the reward by CaRL's ``RC · Π p + T``.

    :param env: an env reporting the CaRL quantities in ``info``.
    :param speeding: apply the speeding factor.
    :param speeding_tolerance: m/s over the limit at which the speeding factor reaches 0.
    :param outside_lanes: apply the outside-route-lanes factor.
    :param ttc: apply the TTC factor.
    :param ttc_factor: the factor while a TTC violation is held.
    :param ttc_hold_steps: steps a violation is held; ``None`` uses the env's own held factor.
    :param comfort: apply the comfort factor.
    :param lane_center: apply the lane-centre factor.
    :param terminal_penalty: ``T`` for an episode ended by a collision or a red light (CaRL: −1).
    :param terminate_on_hard: end the episode on a hard infraction (collision, off-road, red light).
    """

    def __init__(self, env: gym.Env, speeding: bool = True, speeding_tolerance: float = 2.23,
                 outside_lanes: bool = True, ttc: bool = True, ttc_factor: float = 0.5,
                 ttc_hold_steps: int | None = None, comfort: bool = True, lane_center: bool = True,
                 terminal_penalty: float = -1.0, terminate_on_hard: bool = True):
        gym.utils.RecordConstructorArgs.__init__(
            self, speeding=speeding, speeding_tolerance=speeding_tolerance, outside_lanes=outside_lanes, ttc=ttc,
            ttc_factor=ttc_factor, ttc_hold_steps=ttc_hold_steps, comfort=comfort, lane_center=lane_center,
            terminal_penalty=terminal_penalty, terminate_on_hard=terminate_on_hard)
        super().__init__(env)
        if speeding_tolerance <= 0:
            raise ValueError(f"speeding_tolerance must be > 0, got {speeding_tolerance!r}")
        if not 0.0 <= ttc_factor <= 1.0:
            raise ValueError(f"ttc_factor must be in [0, 1], got {ttc_factor!r}")
        if ttc_hold_steps is not None and ttc_hold_steps < 1:
            raise ValueError(f"ttc_hold_steps must be >= 1 or None, got {ttc_hold_steps!r}")
        self.speeding, self.speeding_tolerance = speeding, float(speeding_tolerance)
        self.outside_lanes, self.ttc, self.ttc_factor = outside_lanes, ttc, float(ttc_factor)
        self.ttc_hold_steps, self.comfort, self.lane_center = ttc_hold_steps, comfort, lane_center
        self.terminal_penalty, self.terminate_on_hard = float(terminal_penalty), terminate_on_hard
        self._since_ttc = None

    def reset(self, **kwargs):
        self._since_ttc = None
        return self.env.reset(**kwargs)

    @staticmethod
    def _get(info, key):
        try:
            return float(info[key])
        except KeyError:
            raise KeyError(f"CaRLReward needs info[{key!r}]: the env must report the CaRL quantities "
                           "(envs.driving.objectives.CARL_KEYS)") from None

    def factors(self, info) -> dict[str, float]:
        """The soft factors of one step, each 1.0 when switched off."""
        f = dict.fromkeys(("speeding", "outside_lanes", "ttc", "comfort", "lane_center"), 1.0)
        if self.speeding:
            excess = (self._get(info, "speed") - self._get(info, "speed_limit")) / self.speeding_tolerance
            f["speeding"] = 1.0 - min(max(excess, 0.0), 1.0)
        if self.outside_lanes:
            f["outside_lanes"] = self._get(info, "carl_outside_lanes_factor")
        if self.ttc:
            if self.ttc_hold_steps is None:
                f["ttc"] = self._get(info, "carl_ttc_factor")
            else:
                if self._get(info, "ttc_violation"):
                    self._since_ttc = 0
                elif self._since_ttc is not None:
                    self._since_ttc += 1
                held = self._since_ttc is not None and self._since_ttc < self.ttc_hold_steps
                f["ttc"] = self.ttc_factor if held else 1.0
        if self.comfort:
            f["comfort"] = self._get(info, "carl_comfort_factor")
        if self.lane_center:
            f["lane_center"] = self._get(info, "carl_lane_center_factor")
        return f

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if np.ndim(reward) == 1:
            info["vector_reward"] = np.asarray(reward, dtype=np.float32)
        factors = self.factors(info)
        rc = self._get(info, "carl_route_completion_delta")
        hard = bool(self._get(info, "carl_hard_infraction"))
        ends_badly = bool(info.get("collision", False)) or bool(info.get("red_light", False))
        if hard and self.terminate_on_hard:
            terminated = True
        r = rc * float(np.prod(list(factors.values())))
        if terminated and ends_badly:
            r += self.terminal_penalty
        info["carl_factors"] = factors
        return obs, float(r), terminated, truncated, info
