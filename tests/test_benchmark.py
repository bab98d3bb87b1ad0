"""morl benchmark: a tiny suite end to end, killed half-way and resumed; the statistics on hand-computed cases."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from morl.benchmark import load_suite, results_markdown, run_benchmark
from morl.config import ConfigError
from morl.metrics import iqm, performance_profile, probability_of_improvement

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.total_timesteps=1024", "train.n_envs=4", "agent.n_steps=64", "agent.batch_size=128",
        "agent.policy_kwargs={net_arch: [16, 16]}", "eval.interval=512", "eval.last_k=2"]


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps({
        "name": "tiny", "seeds": [0, 1], "episodes": 4,
        "tasks": {"route": {"CaRL": {"config": str(ROOT / "configs/carl_route.yaml"), "set": TINY},
                            "Gate": {"config": str(ROOT / "configs/gate_route.yaml"), "set": TINY}}},
        "compare": [["Gate", "CaRL"]], "metrics": ["success_rate", "collision_rate", "route_completion"]}))
    return path


def _scores(out: Path) -> dict:
    runs = json.loads((out / "results.json").read_text())["runs"]
    return {(r["agent"], r["seed"]): r["metrics"] for r in runs}


def test_killed_benchmark_resumes_to_the_uninterrupted_result(tmp_path):
    suite = _suite(tmp_path)
    whole = run_benchmark(suite, out=tmp_path / "whole", progress=False)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "morl.cli", "benchmark", str(suite), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "runs" / "route" / "CaRL" / "seed0" / "eval.json"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first run should have finished before the kill"
    kept = first.stat().st_mtime_ns
    assert not (killed / "results.json").exists(), "killed before the end: no report yet"
    run_benchmark(suite, out=killed, progress=False)
    assert first.stat().st_mtime_ns == kept, "a finished run was redone"
    a, b = _scores(whole), _scores(killed)
    assert set(a) == {("CaRL", 0), ("CaRL", 1), ("Gate", 0), ("Gate", 1)} == set(b)
    for key in a:
        for metric in ("success_rate", "collision_rate", "route_completion"):
            assert a[key][metric] == pytest.approx(b[key][metric], abs=1e-12), (key, metric)
    results = json.loads((killed / "results.json").read_text())
    assert {p["metric"] for p in results["probability_of_improvement"]} == {"success_rate", "collision_rate",
                                                                            "route_completion"}
    md = (killed / "results.md").read_text()
    assert "## route" in md and "| CaRL | 2 |" in md and "| Gate | CaRL | collision_rate |" in md
    for name in ("route_metrics.png", "route_profiles.png", "route_curves_steps.png", "route_curves_wallclock.png",
                 "probability_of_improvement.png"):
        assert (killed / "plots" / name).read_bytes()[:4] == b"\x89PNG", name
    # the table's mean is the mean over seeds of each run's score
    row = results["tables"]["route"]["CaRL"]["collision_rate"]
    assert row["mean"] == pytest.approx(np.mean([b[("CaRL", s)]["collision_rate"] for s in (0, 1)]))


def test_probability_of_improvement_hand_cases():
    assert probability_of_improvement([1, 2, 3], [0, 0, 0])["value"] == 1.0
    assert probability_of_improvement([0, 0], [1, 1])["value"] == 0.0
    assert probability_of_improvement([1, 1], [1, 1])["value"] == 0.5  # ties count half
    # x = (3, 1), y = (2, 2): pairs 3>2, 3>2, 1<2, 1<2 -> 0.5
    assert probability_of_improvement([3, 1], [2, 2])["value"] == 0.5
    res = probability_of_improvement([5, 6, 7], [1, 2, 3])
    assert res["lo"] == res["hi"] == 1.0


def test_iqm_and_performance_profile_hand_cases():
    # 8 scores: drop 2 from each end, mean of the middle 4
    assert iqm([10, 1, 2, 3, 4, 5, 6, -10]) == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert performance_profile([0.1, 0.4, 0.4, 0.9], [0.0, 0.4, 0.5]).tolist() == [1.0, 0.25, 0.25]


def test_suite_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nseeds: 0\ntasks: {route: {A: {config: configs/carl_route.yaml}}}\n")
    with pytest.raises(ConfigError, match="seeds"):
        load_suite(bad)
    bad.write_text("tasks: {route: {A: {config: nowhere.yaml}}}\n")
    with pytest.raises(ConfigError, match="tasks.route.A.config: nowhere.yaml: no such file"):
        load_suite(bad)
    bad.write_text(f"tasks: {{route: {{A: {{config: {ROOT / 'configs/carl_route.yaml'}}}}}}}\ncompare: [[A, B]]\n")
    with pytest.raises(ConfigError, match="compare.0"):
        load_suite(bad)


def test_results_markdown_formats_a_table():
    res = {"suite": "s", "date": "d", "commit": "c", "machine": "m", "seeds": [0], "metrics": ["success_rate"],
           "tables": {"t": {"A": {"seeds": 1, "success_rate": {"mean": 0.5, "std": 0.0, "lo": 0.5, "hi": 0.5,
                                                                "iqm": 0.5, "iqm_lo": 0.5, "iqm_hi": 0.5}}}},
           "probability_of_improvement": []}
    assert "| A | 1 | 0.500 ± 0.000 [0.500, 0.500]; IQM 0.500 [0.500, 0.500] |" in results_markdown(res)


@pytest.mark.parametrize("name", ["driving", "mujoco"])
def test_shipped_suites_load_and_every_run_config_validates(name, tmp_path):
    from morl.benchmark import _runs

    suite = load_suite(ROOT / "configs" / "benchmarks" / f"{name}.yaml")
    assert len(suite["seeds"]) == 10
    specs = _runs(suite, tmp_path)  # loads (validates) the config of every run
    assert len(specs) == 10 * sum(len(agents) for agents in suite["tasks"].values())
