"""Multi-objective MuJoCo locomotion with a velocity limit: objectives ``("safety", "progress", "energy")``.

Built on Gymnasium's own v5 MuJoCo environments (not copies): the wrapper reads the terms Gymnasium
already reports in ``info`` and splits the scalar reward into three objectives, larger is better:

- ``safety = -(cost + fall)``: ``cost = 1[speed > v_max]`` is Safety-Gymnasium's velocity-task cost
  (speed = forward velocity, planar speed for Ant; the thresholds below are Safety-Gymnasium's v1
  values), and ``fall = 1`` on the step where a robot that can fall terminates unhealthy;
- ``progress = reward_forward + reward_survive``: forward velocity (times Gymnasium's
  ``forward_reward_weight``) plus the alive bonus, which Gymnasium pays for staying up;
- ``energy = reward_ctrl + reward_contact``: minus the control cost (plus Ant's contact cost).

With weights ``safety: 0, progress: 1, energy: 1`` the vector sums to Gymnasium's scalar reward
exactly (:data:`GYMNASIUM_WEIGHTS`). ``info["cost"]`` carries the velocity cost (the
safety-gymnasium convention), ``info["fall"]`` the fall flag.

>>> import gymnasium as gym, morl.envs.mujoco
>>> env = gym.make("morl/HalfCheetah-v5")
>>> env.get_wrapper_attr("objectives")
('safety', 'progress', 'energy')
>>> str(env.get_wrapper_attr("preorder"))
'safety > progress > energy'
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from morl.preorder import Preorder

__all__ = ["VELOCITY_THRESHOLDS", "GYMNASIUM_WEIGHTS", "OBJECTIVES", "SafeVelocity", "make_safe_velocity"]

#: Safety-Gymnasium v1 velocity thresholds (``Safety<Robot>Velocity-v1``), in m/s.
VELOCITY_THRESHOLDS = {"HalfCheetah": 3.2096, "Hopper": 0.7402, "Walker2d": 2.3415, "Ant": 2.6222}
OBJECTIVES = ("safety", "progress", "energy")
DEFAULT_PREORDER = "safety > progress > energy"
#: Weights under which the vector sums to Gymnasium's scalar reward.
GYMNASIUM_WEIGHTS = {"safety": 0.0, "progress": 1.0, "energy": 1.0}


class SafeVelocity(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Split a Gymnasium v5 locomotion env's reward into safety, progress and energy.

    :param env: a Gymnasium ``HalfCheetah-v5``, ``Hopper-v5``, ``Walker2d-v5`` or ``Ant-v5`` env.
    :param velocity_threshold: speed limit in m/s; default Safety-Gymnasium's for the robot.
    :param fall_penalty: subtracted from ``safety`` on the step a robot terminates unhealthy.
    :param preorder: precedence over the objectives.
    """

    def __init__(self, env: gym.Env, velocity_threshold: float | None = None, fall_penalty: float = 1.0,
                 preorder=DEFAULT_PREORDER):
        gym.utils.RecordConstructorArgs.__init__(self, velocity_threshold=velocity_threshold,
                                                 fall_penalty=fall_penalty, preorder=str(preorder))
        super().__init__(env)
        robot = type(env.unwrapped).__name__.removesuffix("Env")
        if robot not in VELOCITY_THRESHOLDS:
            raise ValueError(f"SafeVelocity supports {sorted(VELOCITY_THRESHOLDS)}, got an env of type {robot!r}")
        self.robot = robot
        self.velocity_threshold = float(VELOCITY_THRESHOLDS[robot] if velocity_threshold is None else velocity_threshold)
        if not self.velocity_threshold > 0:
            raise ValueError(f"velocity_threshold must be > 0, got {velocity_threshold!r}")
        self.fall_penalty = float(fall_penalty)
        self.can_fall = hasattr(env.unwrapped, "is_healthy")
        self.objectives = OBJECTIVES
        self.reward_space = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.preorder = Preorder.parse(preorder).reindexed(OBJECTIVES)

    def speed(self, info) -> float:
        """The speed the limit applies to: planar for Ant, forward for the planar robots."""
        if self.robot == "Ant":
            return float(np.hypot(info["x_velocity"], info["y_velocity"]))
        return float(info["x_velocity"])

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        cost = float(self.speed(info) > self.velocity_threshold)
        fall = float(bool(terminated) and self.can_fall and not self.env.unwrapped.is_healthy)
        progress = info["reward_forward"] + info.get("reward_survive", 0.0)
        energy = info["reward_ctrl"] + info.get("reward_contact", 0.0)
        info["cost"] = cost
        info["fall"] = fall
        vec = np.array([-(cost + self.fall_penalty * fall), progress, energy], dtype=np.float32)
        return obs, vec, terminated, truncated, info


def make_safe_velocity(robot: str, velocity_threshold: float | None = None, fall_penalty: float = 1.0,
                       preorder=DEFAULT_PREORDER, **gym_kwargs) -> SafeVelocity:
    """Entry point of the ``morl/<Robot>-v5`` ids: ``gym.make("<Robot>-v5", **gym_kwargs)`` wrapped."""
    if robot not in VELOCITY_THRESHOLDS:
        raise ValueError(f"unknown robot {robot!r}; choose one of {sorted(VELOCITY_THRESHOLDS)}")
    return SafeVelocity(gym.make(f"{robot}-v5", **gym_kwargs), velocity_threshold, fall_penalty, preorder)
