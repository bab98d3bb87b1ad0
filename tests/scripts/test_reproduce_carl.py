import csv


def test_reproduce_carl_trains_both_rewards_per_minibatch(tmp_path, load_script):
    module = load_script("reproduce_carl")
    out = tmp_path / "carl"
    assert module.main(["--minibatches", "32", "64", "--seeds", "1", "--timesteps", "256", "--n-envs", "2",
                        "--episodes", "1", "--max-workers", "1", "--out", str(out)]) == 0
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["reward"], r["minibatch"], r["rollout"]) for r in rows] == [
        ("CaRL reward", "32", "128"), ("CaRL reward", "64", "256"),
        ("shaped reward", "32", "128"), ("shaped reward", "64", "256")]
    for r in rows:
        assert 0.0 <= float(r["route_completion mean"]) <= 1.0
    # each configuration trained a real run with the rollout holding 4 minibatches
    configs = sorted(out.rglob("config.yaml"))
    assert len(configs) == 4
    assert "n_steps: 64" in (out / "carl_mb32" / "runs").rglob("config.yaml").__next__().read_text()
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
