"""Multi-agent density coverage (D2OC's task): linear agents, a reference density, W2 coverage metric.

Importing this package registers ``morl/Swarm-v0`` with Gymnasium and the swarm domain figure with
:mod:`morl.plots`.
"""

from gymnasium.envs.registration import register, registry

from morl.envs.swarm.density import (ReferenceDensity, gmm_density, image_density, load_density_image, make_density,
                                random_gmm_density)
from morl.envs.swarm.dynamics import LinearDynamics, double_integrator, make_dynamics, quadrotor, single_integrator
from morl.envs.swarm.env import SwarmEnv, SwarmTask
from morl.envs.swarm.metrics import coverage_w2, greedy_transport_cost

__all__ = ["SwarmEnv", "SwarmTask", "LinearDynamics", "ReferenceDensity", "single_integrator", "double_integrator",
           "quadrotor", "make_dynamics", "make_density", "gmm_density", "random_gmm_density", "image_density",
           "load_density_image", "coverage_w2", "greedy_transport_cost"]

if "morl/Swarm-v0" not in registry:
    register(id="morl/Swarm-v0", entry_point="morl.envs.swarm.env:SwarmEnv")

from morl.envs.swarm import figures as _figures  # noqa: E402,F401  (registers the domain figure)
