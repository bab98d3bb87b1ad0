import csv


def test_train_mujoco_runs_every_method_end_to_end(tmp_path, load_script):
    out = tmp_path / "mj"
    # QDIQN's config starts learning at 5,000 steps: the budget passes it (the gate and LexPPO: the quick test)
    assert load_script("train_mujoco").main(["--seeds", "1", "--timesteps", "5200", "--episodes", "1", "--out", str(out),
                               "--methods", "qdiqn", "--set", "env.kwargs.max_episode_steps=50"]) == 0
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["QDIQN (preordered)", "PPO (scalarised)"]
    for r in rows:
        assert 0.0 <= float(r["cost_rate"]) <= 1.0
    table = (out / "table.md").read_text()
    assert "QDIQN (preordered): cost rate" in table
    assert (out / "cost_vs_return.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every sweep wrote real runs through the experiment layer
    assert len(list(out.rglob("model.zip"))) == 2


def test_train_mujoco_quick_runs_lexppo_gate_and_scalarised_with_the_same_budget(tmp_path, load_script):
    import yaml

    out = tmp_path / "quick"
    assert load_script("train_mujoco").main(["--quick", "--side-by-side", "--out", str(out)]) == 0
    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["LexPPO (lexicographic)", "PPO (preorder gate)", "PPO (scalarised)"]
    assert "LexPPO (lexicographic): cost rate / scalarised" in (out / "table.md").read_text()
    configs = [yaml.safe_load(p.read_text()) for p in sorted(out.rglob("runs/**/config.yaml"))]
    assert sorted(c["agent"]["name"] for c in configs) == ["CaRLPPO", "CaRLPPO", "LexPPO"]
    for c in configs:  # the same budget, seed and rollout size for every method
        assert (c["train"]["total_timesteps"], c["train"]["seed"], c["train"]["n_envs"]) == (256, 0, 4)
        assert c["agent"]["n_steps"] == 64 and c["env"]["kwargs"]["max_episode_steps"] == 50
