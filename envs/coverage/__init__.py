"""SubRL grid worlds with submodular objectives (Prajapat et al., "Submodular RL", arXiv 2307.13372).

Importing this package registers the Gymnasium ids below; each returns a :class:`CoverageEnv` whose
reward is the marginal gain ``F(s_{t+1} | tau_{0:t})`` and whose ``info["F"]`` is ``F(tau)``.
The batched :class:`CoverageVecEnv` (SB3 ``VecEnv``) is what the agents train on.

=============================  =============================================================
id                             scenario
=============================  =============================================================
``morl/Coverage-v0``           30 x 30, unit-weight coverage (2 x 2 footprint), horizon 79
``morl/CoverageBimodal-v0``    30 x 30, coverage weighted by the bimodal density, horizon 39
``morl/CoverageGorilla-v0``    30 x 30, coverage weighted by the gorilla-nest-like density, horizon 39
``morl/ExperimentDesign-v0``   30 x 30, GP information gain ``1/2 logdet(I + K_SS / noise)``, horizon 39
``morl/ItemCollection-v0``     7 x 15, ``sum_k min(count_k, D_k)``, 6 item types, horizon 39
``morl/TwoRooms-v0``           7 x 14 two rooms joined by a corridor, unit coverage, horizon 39
``morl/PointCoverage-v0``      MuJoCo point robot, reward = newly covered area (m^2), 200 steps
``morl/AntCoverage-v0``        MuJoCo Ant-v5, newly covered 0.4 m cells / 10 (the authors' task), 400 steps
=============================  =============================================================

The continuous tasks live in :mod:`morl.envs.coverage.continuous` (imported lazily, it loads MuJoCo).
"""

from gymnasium.envs.registration import register, registry

from morl.envs.coverage.greedy import beam_plan, greedy_rollout, oracle_plan
from morl.envs.coverage.maps import GridMap, make_map
from morl.envs.coverage.objectives import OBJECTIVES, Objective, make_objective
from morl.envs.coverage.vec_env import SCENARIOS, CoverageEnv, CoverageVecEnv, make_vec

__all__ = ["CoverageEnv", "CoverageVecEnv", "make_vec", "SCENARIOS", "ENV_IDS", "CONTINUOUS_IDS", "OBJECTIVES", "Objective",
           "make_objective", "GridMap", "make_map", "greedy_rollout", "beam_plan", "oracle_plan"]

#: Gymnasium id -> scenario name.
ENV_IDS = {
    "morl/Coverage-v0": "coverage",
    "morl/CoverageBimodal-v0": "bimodal",
    "morl/CoverageGorilla-v0": "gorilla",
    "morl/ExperimentDesign-v0": "experiment_design",
    "morl/ItemCollection-v0": "item_collection",
    "morl/TwoRooms-v0": "two_rooms",
}

for _id, _scenario in ENV_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point="morl.envs.coverage.vec_env:CoverageEnv", kwargs=dict(SCENARIOS[_scenario]))

#: Continuous-control coverage ids (reward = marginal covered area).
CONTINUOUS_IDS = {
    "morl/PointCoverage-v0": "morl.envs.coverage.continuous:make_point_coverage",
    "morl/AntCoverage-v0": "morl.envs.coverage.continuous:make_ant_coverage",
}
for _id, _entry in CONTINUOUS_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)
