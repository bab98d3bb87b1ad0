"""route_failures.py: outcomes by start lane, for a run directory and for the rule-based driver."""

import numpy as np
import pytest

from morl import experiment
from morl.config import load_config
from morl.envs.driving import RuleDriver, make_vec
from morl.envs.driving.sim import E_TLANE, IDLE, LANE_RIGHT


class NoMerge(RuleDriver):
    """The rule-based driver that never changes lane."""

    def act(self, obs):
        a = super().act(obs)
        return np.where(a == LANE_RIGHT, IDLE, a)


def test_a_driver_that_never_merges_fails_exactly_the_starts_in_the_dropped_lane(load_script):
    module = load_script("route_failures")
    venv = make_vec("route", 60)
    records = module.outcomes(NoMerge(), venv, first_seed=500)
    # the start lane is the one the env reset into (checked against a fresh reset of the same seeds)
    check = make_vec("route", 60)
    check.seed(500)
    check.reset()
    assert [r["start_lane"] for r in records] == check.sim.ego[:, E_TLANE].astype(int).tolist()
    dropped = [r for r in records if r["start_lane"] == 2]
    assert len(dropped) >= 10
    # never changing lane, it cannot pass the lane's end at 550 m: it waits there (or leaves the road), never
    # finishing; from the other lanes it finishes
    assert not any(r["outcome"] == "success" for r in dropped) and all(r["s"] < 551 for r in dropped)
    others = [r for r in records if r["start_lane"] != 2]
    assert np.mean([r["outcome"] == "success" for r in others]) >= 0.9
    table = module.table({"no merge": records})
    assert "| no merge | 2 | " in table and table.count("| no merge |") == 3


def test_main_prints_a_run_and_the_rule_driver(tmp_path, capsys, load_script):
    module = load_script("route_failures")
    cfg = load_config("configs/driving_iqn.yaml", ["train.total_timesteps=64", "agent.learning_starts=32",
                                                   "train.n_envs=2", "eval.interval=0"])
    run = experiment.train(cfg, run_dir=tmp_path / "run", evaluate_after=False)
    assert module.main([str(run), "--rule-driver", "--episodes", "30"]) == 0
    out = capsys.readouterr().out
    assert f"| IQN ({run}) | 0 |" in out and "| RuleDriver | 2 |" in out
    with pytest.raises(SystemExit):
        module.main([])
