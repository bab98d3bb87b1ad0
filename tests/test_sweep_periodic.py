"""A sweep of runs evaluated during training reports their last-k means and how much they move late in training."""

import csv
from pathlib import Path

import numpy as np
import pytest

from morl.config import load_config
from morl.periodic import read_evaluations
from morl.sweep import run_sweep, stability

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_stability_of_hand_made_rows():
    rows = [{"step": s, "collision_rate": c} for s, c in [(100, 0.9), (200, 0.5), (300, 0.2), (400, 0.3), (600, 0.1)]]
    # the last third of 600 steps starts at 400: values 0.3 and 0.1
    got = stability(rows)
    assert got["n"] == 2 and got["mean"] == pytest.approx(0.2)
    assert got["range"] == pytest.approx(0.2) and got["max_deviation"] == pytest.approx(0.1)


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_reports_last_k_means_over_seeds_and_the_late_movement(tmp_path):
    cfg = load_config(CONFIGS / "carl_route.yaml", overrides=[
        "train.total_timesteps=1024", "train.n_envs=4", "agent.n_steps=64", "agent.batch_size=128",
        "eval.interval=256", "eval.interval_episodes=4", "eval.episodes=2", "eval.last_k=2",
        "agent.policy_kwargs={net_arch: [16, 16]}"])
    sweep = run_sweep(cfg, seeds=[0, 1], sweep_dir=tmp_path / "sweep", progress=False)
    runs = sorted(p.parent for p in sweep.rglob("evaluations.csv"))
    assert len(runs) == 2
    per_run = [read_evaluations(r) for r in runs]
    (row,) = _csv(sweep / "summary_last_k.csv")
    assert int(row["runs"]) == 2 and int(row["last_k"]) == 2
    expected = np.mean([np.mean([r["collision_rate"] for r in rows[-2:]]) for rows in per_run])
    assert float(row["collision_rate"]) == pytest.approx(expected)
    assert float(row["collision_rate lo"]) <= expected <= float(row["collision_rate hi"])
    (srow,) = _csv(sweep / "stability.csv")
    spread = np.std([np.mean([r["collision_rate"] for r in rows[-2:]]) for rows in per_run])
    assert float(srow["collision_rate std over seeds"]) == pytest.approx(spread)
    worst = max(stability(rows)["max_deviation"] for rows in per_run)
    assert float(srow["collision_rate max deviation in the last third (worst seed)"]) == pytest.approx(worst)
    assert (sweep / "plots" / "evaluations.png").read_bytes()[:4] == b"\x89PNG"
