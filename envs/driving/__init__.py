"""Driving environments with a vector reward over ``("safety", "rules", "progress", "comfort")``.

- :mod:`morl.envs.driving.objectives`: objective names, default preorder, event keys, the reward-vector formula
  and the CaRL quantities, shared by every driving simulator (built-in, highway-env, CARLA).
- The built-in batched numba simulator: :mod:`~morl.envs.driving.road`, :mod:`~morl.envs.driving.geometry`,
  :mod:`~morl.envs.driving.traffic`, :mod:`~morl.envs.driving.sim`; Gymnasium envs in :mod:`~morl.envs.driving.env`
  (registered as ``morl/Highway-v0`` and ``morl/Route-v0`` when this package is imported), the SB3
  ``VecEnv`` in :mod:`~morl.envs.driving.vec_env` (:func:`make_vec`), frames in :mod:`~morl.envs.driving.render`.
- Adapters with the same objectives, events, CaRL quantities, observation (:mod:`~morl.envs.driving.observation`,
  built once and fed by each backend's state) and action meaning, so a policy trained in the built-in
  simulator runs on them unchanged: :class:`HighwayEnvAdapter` for any highway-env scenario
  (``morl/HighwayEnvAdapter-v0``) and :class:`CarlaEnv` for a CARLA 0.9 server (``morl/Carla-v0``; needs
  ``pip install morl[carla]``).
- :class:`RuleDriver` (:mod:`~morl.envs.driving.rule_driver`): a rule-based meta-action driver on that observation,
  the no-learning reference of the benchmarks.
"""

from gymnasium.envs.registration import register, registry

from morl.envs.driving.env import SCENARIOS, DrivingEnv, HighwayEnv, RouteEnv
from morl.envs.driving.objectives import DEFAULT_PREORDER, EVENT_KEYS, OBJECTIVES

__all__ = ["DrivingEnv", "HighwayEnv", "RouteEnv", "DrivingVecEnv", "StepInfo", "make_vec", "SCENARIOS",
           "OBJECTIVES", "DEFAULT_PREORDER", "EVENT_KEYS", "HighwayEnvAdapter", "CarlaEnv", "RuleDriver"]

# Loaded on first use: the SB3 VecEnv imports stable-baselines3 (and torch), the highway-env adapter
# imports highway-env (and pygame).
_LAZY = {"make_vec": "vec_env", "DrivingVecEnv": "vec_env", "StepInfo": "vec_env",
         "HighwayEnvAdapter": "highway_adapter", "CarlaEnv": "carla_env", "RuleDriver": "rule_driver"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"morl.envs.driving.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'morl.envs.driving' has no attribute {name!r}")


# the env checks its own reward vector; gymnasium's passive checker would warn about a non-scalar reward
for _id, _entry, _kwargs in (
    ("morl/Highway-v0", "env:HighwayEnv", {}),
    ("morl/Route-v0", "env:RouteEnv", {}),
    ("morl/HighwayEnvAdapter-v0", "highway_adapter:HighwayEnvAdapter", {"env": "highway-fast-v0"}),
    ("morl/Carla-v0", "carla_env:CarlaEnv", {}),
):
    if _id not in registry:
        register(id=_id, entry_point=f"morl.envs.driving.{_entry}", kwargs=_kwargs, disable_env_checker=True)
