"""morl's environments (installed as ``morl.envs``); importing this package registers every Gymnasium id.

Gymnasium 1.x loads no plugin entry points, so an id such as ``morl/Route-v0`` is known once ``morl.envs`` is
imported. ``gym.make("morl.envs:morl/Route-v0")`` does that import itself (Gymnasium's ``module:id`` form); after
``import morl.envs``, ``gym.make("morl/Route-v0")`` works. The ids:

- driving (:mod:`morl.envs.driving`): ``morl/Highway-v0``, ``morl/Route-v0``, ``morl/HighwayEnvAdapter-v0``,
  ``morl/Carla-v0``;
- MuJoCo with safety objectives (:mod:`morl.envs.mujoco`): ``morl/HalfCheetah-v5``, ``morl/Hopper-v5``,
  ``morl/Walker2d-v5``, ``morl/Ant-v5``;
- submodular coverage (:mod:`morl.envs.coverage`) and swarm density coverage (:mod:`morl.envs.swarm`).

Each env has ``objectives``, ``reward_space`` and ``preorder``, reachable on what ``gym.make`` returns through
``env.get_wrapper_attr("objectives")`` (and likewise the others).
"""

from morl.envs import coverage, driving, mujoco, swarm  # noqa: F401 (each registers its ids)
