"""Multi-objective MuJoCo tasks with a safety precedence; importing this registers ``morl/<Robot>-v5``."""

import gymnasium as gym

from morl.envs.mujoco.velocity import (
    GYMNASIUM_WEIGHTS,
    OBJECTIVES,
    VELOCITY_THRESHOLDS,
    SafeVelocity,
    make_safe_velocity,
)

__all__ = ["GYMNASIUM_WEIGHTS", "OBJECTIVES", "VELOCITY_THRESHOLDS", "SafeVelocity", "make_safe_velocity"]

for _robot in VELOCITY_THRESHOLDS:
    if f"morl/{_robot}-v5" not in gym.registry:
        gym.register(f"morl/{_robot}-v5", entry_point="morl.envs.mujoco.velocity:make_safe_velocity",
                     kwargs={"robot": _robot}, disable_env_checker=True)
