"""bench_learning.py: the quick run writes its table and figure, stops at the threshold, and resumes."""

import json


def test_quick_run_table_figure_and_resume(tmp_path, capsys, load_script):
    module = load_script("bench_learning")
    out = tmp_path / "bench"
    assert module.main(["--quick", "--agents", "IQN", "CaRLPPO", "--out", str(out)]) == 0
    records = json.loads((out / "results.json").read_text())
    assert [(r["agent"], r["seed"]) for r in records] == [("IQN", 0), ("CaRLPPO", 0)]
    for r in records:
        assert r["env_steps_per_s"] > 0 and r["simulator_steps_per_s"] > r["env_steps_per_s"]
        assert r["steps"] == 1024 and [e["step"] for e in r["evaluations"]] == [512, 1024]
    table = (out / "results.md").read_text()
    assert "| IQN | `configs/driving_iqn.yaml` | 1 |" in table and "| CaRLPPO |" in table
    # the rule-based reference on the first evaluation's 4 held-out episodes (it succeeds in all 4)
    assert "`RuleDriver` (hand-written rules on the same observation) on the 4 held-out episodes" in table
    assert "success 1.000, collision 0.000" in table
    assert (out / "learning.png").read_bytes()[:4] == b"\x89PNG"
    # a second call finds both runs done and redoes neither
    assert module.main(["--quick", "--agents", "IQN", "CaRLPPO", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("done earlier, kept") == 2
    assert json.loads((out / "results.json").read_text()) == records


def test_a_met_threshold_stops_the_run_at_that_evaluation(tmp_path, load_script):
    module = load_script("bench_learning")
    out = tmp_path / "bench"
    # success >= 0 and collision <= 1 hold at the first evaluation: the run ends there, not at the budget
    assert module.main(["--quick", "--agents", "CaRLPPO", "--success", "0", "--collision", "1",
                        "--out", str(out)]) == 0
    (rec,) = json.loads((out / "results.json").read_text())
    assert rec["reached"] and rec["steps_to_threshold"] == 512 and rec["steps"] == 512
    assert 0 < rec["time_to_threshold_s"] == rec["train_seconds"]
