"""Reproducibility: the same seed on CPU gives the same trained agent; save/load keeps ``predict`` exact.

For every agent class the ``agents`` package exports (and the SB3 baselines PPO and DQN the configs
use), two trainings with the same config and seed on a tiny budget must end with bit-identical
parameters (the torch ``state_dict`` of the policy, optimizer included, via ``get_parameters``) and
bit-identical deterministic actions on a fixed batch of observations; a third training with another
seed must differ (for learners), so the comparison is not vacuous. Then the model is saved and loaded
and ``predict`` must give the same actions and, for Q-learners, the same values.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from morl import experiment, registry
from morl.config import config_from_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CARTPOLE_ENV = {"factory": "morl.registry:two_objective_cartpole", "kwargs": {"max_episode_steps": 50},
                "preorder": "balance > centred", "weights": {"balance": 1.0, "centred": 0.5}}
IQN_TINY = {"learning_starts": 32, "batch_size": 16, "train_freq": 4, "target_update_interval": 50,
            "buffer_size": 1000, "policy_kwargs": {"net_arch": [16]}}
Q_TINY = {"n_quantiles": 8, "n_target_quantiles": 8, "n_quantiles_act": 8}


def _cartpole(agent: dict, steps: int) -> tuple[dict, int]:
    return {"name": f"repro_{agent['name']}", "env": CARTPOLE_ENV, "agent": agent,
            "train": {"total_timesteps": steps, "seed": 0, "device": "cpu"}}, steps


def _from_file(name: str, steps: int, **changes) -> tuple[dict, int]:
    data = yaml.safe_load((CONFIGS / name).read_text())
    for section, values in changes.items():
        data[section].update(values)
    data["train"].update(total_timesteps=steps, device="cpu", seed=0)
    data.pop("sweep", None)
    return data, steps


SWARM_TINY = {"kwargs": {"n_agents": 3, "dynamics": "quadrotor", "density": "gmm", "n_samples": 200, "max_steps": 20,
                         "comm_radius": 25.0}}
CASES = {
    "DQN": lambda: _cartpole({"name": "DQN", "learning_starts": 32, "batch_size": 16, "train_freq": 4,
                              "target_update_interval": 50, "buffer_size": 1000,
                              "policy_kwargs": {"net_arch": [16]}}, 120),
    "PPO": lambda: _cartpole({"name": "PPO", "n_steps": 32, "batch_size": 16, "n_epochs": 2,
                              "policy_kwargs": {"net_arch": [16]}}, 64),
    "CaRLPPO": lambda: _cartpole({"name": "CaRLPPO", "n_steps": 32, "batch_size": 16, "n_epochs": 2,
                                  "policy_kwargs": {"net_arch": [16]}}, 64),
    "LexPPO": lambda: _cartpole({"name": "LexPPO", "n_steps": 32, "batch_size": 16, "n_epochs": 2, "slacks": 0.1,
                                 "policy_kwargs": {"net_arch": [16]}}, 64),
    "IQN": lambda: _cartpole({"name": "IQN", **IQN_TINY, **Q_TINY}, 120),
    "QDIQN": lambda: _cartpole({"name": "QDIQN", **IQN_TINY, **Q_TINY}, 120),
    "EnsembleIQN": lambda: _cartpole({"name": "EnsembleIQN", "n_ensemble": 2, **IQN_TINY, **Q_TINY}, 120),
    "SubPO": lambda: _from_file("coverage_subpo.yaml", 2 * 2 * 79, train={"n_envs": 2}),
    "ModPO": lambda: _from_file("coverage_modpo.yaml", 2 * 2 * 79, train={"n_envs": 2}),
    "D2OC": lambda: _from_file("swarm_d2oc.yaml", 20, env=SWARM_TINY),
    "Lloyd": lambda: _from_file("swarm_lloyd.yaml", 20, env=SWARM_TINY),
    "SMC": lambda: _from_file("swarm_smc.yaml", 20, env=SWARM_TINY),
}


def _agent_names() -> list[str]:
    """Every algorithm class the ``agents`` package exports, plus the SB3 baselines of the configs."""
    import morl.agents

    names = [n for n in agents.__all__ if registry._is_algorithm(getattr(agents, n))]
    import morl.agents.iqn as iqn

    names += [n for n in iqn.__all__ if registry._is_algorithm(getattr(iqn, n)) and n not in names]
    return names + ["PPO", "DQN"]


def test_every_exported_agent_has_a_reproducibility_case():
    missing = [n for n in _agent_names() if n not in CASES]
    assert not missing, f"agents without a reproducibility case: {missing}"


def _observations(cfg, n: int = 8):
    """A fixed batch of observations from seeded resets (the same for every model compared)."""
    venv = experiment.make_vec_env(cfg, 1, seed=None, monitor=False)
    batch = []
    for i in range(n):
        venv.seed(1000 + i)
        batch.append(venv.reset())
    venv.close()
    if isinstance(batch[0], dict):
        return {k: np.concatenate([b[k] for b in batch]) for k in batch[0]}
    return np.concatenate(batch)


def _predict(model, obs):
    # one observation at a time: controllers may act on a single env's state only
    if isinstance(obs, dict):
        rows = [{k: v[i : i + 1] for k, v in obs.items()} for i in range(len(next(iter(obs.values()))))]
    else:
        rows = [obs[i : i + 1] for i in range(len(obs))]
    # each observation is the first of an episode (controllers keep per-episode memory, not saved)
    start = np.ones(1, dtype=bool)
    return np.concatenate([np.asarray(model.predict(o, episode_start=start, deterministic=True)[0]).reshape(1, -1)
                           for o in rows])


def _train(data: dict, steps: int, seed: int = 0):
    data = {**data, "train": {**data["train"], "seed": seed}}
    cfg = config_from_dict(data, "repro")
    venv = experiment.make_vec_env(cfg, cfg.train.n_envs, seed=seed)
    model = experiment.build_agent(cfg, venv, "repro")
    model.learn(steps)
    return cfg, model


def _flat_parameters(model) -> dict[str, np.ndarray]:
    out = {}
    for obj_name, state in model.get_parameters().items():
        if not isinstance(state, dict):  # controllers may hold plain values
            state = {"": state}
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                out[f"{obj_name}.{key}"] = value.detach().cpu().numpy().copy()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_training_and_save_load_keeps_predict(name, tmp_path):
    registry.resolve_agent(name)  # an agent that does not resolve is a failure, not a skip
    data, steps = CASES[name]()
    cfg, a = _train(data, steps)
    _, b = _train(data, steps)
    path = tmp_path / "model.zip"
    a.save(path)
    loaded = type(a).load(path, env=a.get_env(), device="cpu")  # controllers read their task from the env
    obs = _observations(cfg)
    pa, pb, pl = _flat_parameters(a), _flat_parameters(b), _flat_parameters(loaded)
    assert pa.keys() == pb.keys() == pl.keys()
    for key in pa:
        assert np.array_equal(pa[key], pb[key]), f"{name}: {key} differs between two trainings with seed 0"
        assert np.array_equal(pa[key], pl[key]), f"{name}: {key} changed after save/load"
    actions = _predict(a, obs)
    assert np.array_equal(actions, _predict(b, obs)), f"{name}: predict differs with the same seed"
    assert np.array_equal(actions, _predict(loaded, obs)), f"{name}: predict changed after save/load"
    assert a.num_timesteps == b.num_timesteps == loaded.num_timesteps >= steps
    if pa:  # a learner: another seed gives other parameters, so the equality above is not vacuous
        _, c = _train(data, steps, seed=1)
        pc = _flat_parameters(c)
        assert any(not np.array_equal(pa[k], pc[k]) for k in pa), f"{name}: seed 1 trained the same parameters"
