"""Sweeps: expansion of seeds x grid, and the local and Ray backends giving the same summary."""

import csv
import json
import re
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from morl import cli
from morl.config import ConfigError, load_config
from morl.sweep import expand, parse_grid, run_sweep

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_sweep.yaml"
FAST = ["train.total_timesteps=64", "eval.episodes=2"]


def test_parse_grid():
    assert parse_grid(["agent.name=PPO,A2C", "agent.learning_rate=1e-4,3e-4"]) == {
        "agent.name": ["PPO", "A2C"], "agent.learning_rate": [1e-4, 3e-4]}
    with pytest.raises(ValueError, match="key.path=v1,v2"):
        parse_grid(["agent.name"])


def test_expand_seeds_times_grid():
    cfg = load_config(CONFIG, ["train.seed=5"])
    specs = expand(cfg)  # from the config's sweep section: seeds 2, grid agent.name [PPO, A2C]
    assert [(s["group"], s["seed"]) for s in specs] == [("PPO", 5), ("PPO", 6), ("A2C", 5), ("A2C", 6)]
    assert [s["config"]["agent"]["name"] for s in specs] == ["PPO", "PPO", "A2C", "A2C"]
    assert all(s["config"]["sweep"] is None and s["config"]["train"]["seed"] == s["seed"] for s in specs)
    specs = expand(cfg, seeds=[1], grid={"agent.gamma": [0.9, 0.99]})  # merged over the config's grid
    assert [s["group"] for s in specs] == ["name=PPO, gamma=0.9", "name=PPO, gamma=0.99",
                                          "name=A2C, gamma=0.9", "name=A2C, gamma=0.99"]
    # Sweeping whole agent sections, each with its own arguments, labels groups by agent name.
    agents = [{"name": "PPO", "n_steps": 32}, {"name": "DQN", "learning_starts": 10}]
    specs = expand(cfg, seeds=1, grid={"agent.name": ["PPO"], "agent": agents})
    assert [s["group"] for s in specs] == ["name=PPO, agent=PPO", "name=PPO, agent=DQN"]
    assert specs[1]["config"]["agent"] == {"name": "DQN", "policy": "MlpPolicy", "learning_starts": 10}
    # Two variants of one agent get a group (and run directories) each.
    variants = [{"name": "PPO", "n_steps": 32}, {"name": "PPO", "n_steps": 64}, {"name": "A2C"}]
    specs = expand(cfg, seeds=[0, 1], grid={"agent.name": ["PPO"], "agent": variants})
    assert [s["group"] for s in specs] == ["name=PPO, agent=PPO-1"] * 2 + ["name=PPO, agent=PPO-2"] * 2 + \
        ["name=PPO, agent=A2C"] * 2
    assert [s["config"]["agent"].get("n_steps") for s in specs] == [32, 32, 64, 64, None, None]
    with pytest.raises(ConfigError, match=r"agent.gae_lambda: unknown argument of DQN "
                                          r"\(grid point agent.name=DQN, agent.gae_lambda=0.9\)"):
        expand(cfg, grid={"agent.name": ["DQN"], "agent.gae_lambda": [0.9]})


def test_overrides_hold_inside_swept_sections(tmp_path, capsys):
    # A grid of whole agent sections replaces the base's agent section; a --set inside that section must
    # still hold in every run (it used to vanish: the runs trained with the grid entry's value).
    agents = [{"name": "PPO", "n_steps": 32, "gamma": 0.9}, {"name": "A2C"}]
    cfg = load_config(CONFIG, ["agent.gamma=0.5", "sweep.seeds=1"])
    specs = expand(cfg, seeds=1, grid={"agent.name": ["PPO"], "agent": agents},
                   overrides=["agent.gamma=0.5", "sweep.seeds=1"])
    assert [s["config"]["agent"]["gamma"] for s in specs] == [0.5, 0.5]
    assert specs[0]["config"]["agent"]["n_steps"] == 32 and all(s["config"]["sweep"] is None for s in specs)
    # An override of a swept key itself is a conflict, named with both.
    with pytest.raises(ConfigError, match=r"agent.name: is set by --set agent.name and swept by the grid axis "
                                          r"agent.name: drop one of them"):
        expand(cfg, overrides=["agent.name=PPO"])
    with pytest.raises(ConfigError, match=r"agent: is set by --set agent and swept by the grid axis agent.name"):
        expand(cfg, overrides=[("agent", {"name": "PPO"})])
    # The CLI passes its --set to the sweep (the conflict is reported before anything runs).
    assert cli.main(["sweep", str(CONFIG), "--set", "agent.name=DQN", "--out", str(tmp_path / "s")]) == 2
    assert "is set by --set agent.name and swept by the grid axis agent.name" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_progress_line_counts_runs_steps_and_time_left(tmp_path, monkeypatch):
    import io

    from morl import sweep

    specs = [{"config": {"train": {"total_timesteps": 100}}, "steps_file": str(tmp_path / f"{i}.json")} for i in range(2)]
    (tmp_path / "0.json").write_text(json.dumps({"steps": 100, "total": 100, "done": True}))
    (tmp_path / "1.json").write_text(json.dumps({"steps": 50, "total": 100}))
    progress = sweep._Progress(specs, stream=io.StringIO())
    monkeypatch.setattr(sweep.time, "monotonic", lambda: progress.start + 90.0)
    # 150 of 200 steps in 90 s: 50 more take about 30 s
    assert progress.line() == "sweep: 1/2 runs done, 150/200 steps (75 %), 1:30 elapsed, about 0:30 left"


def _write_run(run_dir: Path, returns: list[tuple[float, float]]) -> None:
    """An ``eval.json`` with the given (balance, centred) episode returns."""
    run_dir.mkdir(parents=True)
    means = [sum(r[k] for r in returns) / len(returns) for k in range(2)]
    (run_dir / "eval.json").write_text(json.dumps({
        "num_timesteps": 64, "objectives": ["balance", "centred"],
        "metrics": {"return/balance": {"value": means[0]}, "return/centred": {"value": means[1]}},
        "episodes": [{"returns": {"balance": b, "centred": c}} for b, c in returns]}))


def test_summary_comparison_names_the_lexicographic_winner(tmp_path, monkeypatch):
    """Three groups whose lexicographic order under "balance > centred" is known by hand.

    Episode returns (two seeds of three episodes each per group):
      A: balance 9, 10, 11;   centred 0.9, 1.0, 1.1
      B: balance 4, 5, 6;     centred 2.9, 3.0, 3.1
      C: balance 9, 10, 11;   centred 1.9, 2.0, 2.1
    Any bootstrap mean of A's balance is >= 9 and of B's <= 6, so A beats B on balance with certainty;
    balance outranks centred, on which B is better, so A wins, decided by balance (likewise C over B).
    A and C have the same balance returns: their difference is symmetric about 0 and its interval holds 0;
    C's centred is higher in every resample (>= 1.9 against <= 1.1), so C wins, decided by centred.
    """
    from morl import plots, sweep

    monkeypatch.setattr(plots, "compare_runs", lambda *a, **k: [])  # the figures are tested elsewhere
    data = {"A": ([9, 10, 11], [0.9, 1.0, 1.1]), "B": ([4, 5, 6], [2.9, 3.0, 3.1]), "C": ([9, 10, 11], [1.9, 2.0, 2.1])}
    specs = []
    for group, (balance, centred) in data.items():
        for seed in (0, 1):
            run_dir = tmp_path / group / str(seed)
            _write_run(run_dir, list(zip(balance, centred)))
            specs.append({"run_dir": str(run_dir), "group": group, "seed": seed, "params": {}})
    sweep.summarize(tmp_path, specs, preorder="balance > centred", reps=500)
    cmp = json.loads((tmp_path / "comparison.json").read_text())
    got = [(c["a"], c["b"], c["winner"], c["decided_by"]) for c in cmp]
    assert got == [("A", "B", "A", ["balance"]), ("A", "C", "C", ["centred"]), ("B", "C", "C", ["balance"])]
    assert cmp[0]["diffs"]["balance"][0] == pytest.approx(5.0)
    assert cmp[1]["diffs"]["centred"][0] == pytest.approx(-1.0)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_local_and_ray_sweeps_give_the_same_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "local"
    assert cli.main(["sweep", str(CONFIG), "--seeds", "2", "--backend", "local", "--out", str(local),
                     *[a for s in FAST for a in ("--set", s)]]) == 0
    # Progress lines on stderr, also when it is not a terminal (here: captured): from none done to all done.
    lines = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"sweep: 0/4 runs done, 0/256 steps \(0 %\), 0:0\d elapsed", lines[0]), lines
    assert re.fullmatch(r"sweep: 4/4 runs done, 256/256 steps \(100 %\), \d+:\d\d elapsed", lines[-1]), lines
    assert not (local / "steps").exists()
    rows = _rows(local / "summary.csv")
    assert [(r["group"], r["seed"]) for r in rows] == [("PPO", "0"), ("PPO", "1"), ("A2C", "0"), ("A2C", "1")]
    assert all(r["num_timesteps"] == "64" for r in rows)
    for r in rows:
        ev = json.loads((local / r["run"] / "eval.json").read_text())
        assert float(r["return/balance"]) == pytest.approx(ev["metrics"]["return/balance"]["value"])
        assert (local / r["run"] / "model.zip").exists()
    groups = _rows(local / "summary_groups.csv")
    assert [g["group"] for g in groups] == ["PPO", "A2C"] and all(g["runs"] == "2" for g in groups)
    ppo = [float(r["return/balance"]) for r in rows if r["group"] == "PPO"]
    assert float(groups[0]["return/balance"]) == pytest.approx(sum(ppo) / 2)
    cmp = json.loads((local / "comparison.json").read_text())
    assert len(cmp) == 1 and cmp[0]["a"] == "PPO" and cmp[0]["b"] == "A2C"
    # The recorded difference is that of the groups' mean episode returns, and the winner follows from the
    # recorded intervals by the rulebook for "balance > centred" (written out: the higher objective decides
    # unless its interval holds 0).
    episodes = {g: [[ep["returns"][o] for o in ("balance", "centred")] for r in rows if r["group"] == g
                    for ep in json.loads((local / r["run"] / "eval.json").read_text())["episodes"]]
                for g in ("PPO", "A2C")}
    sign = {}
    for k, o in enumerate(("balance", "centred")):
        point, lo, hi = cmp[0]["diffs"][o]
        mean = {g: sum(e[k] for e in episodes[g]) / len(episodes[g]) for g in episodes}
        assert point == pytest.approx(mean["PPO"] - mean["A2C"])
        sign[o] = 1 if lo > 0 else -1 if hi < 0 else 0
    first = sign["balance"] or sign["centred"]
    assert cmp[0]["winner"] == {1: "PPO", -1: "A2C", 0: "tie"}[first]
    for name in ("safety_comparison.png", "learning_curves.png", "returns_comparison.png", "pareto.png"):
        img = mpimg.imread(local / "plots" / name)
        assert img.shape[0] > 150 and img[..., :3].std() > 0.01

    # Ray Tune on a local instance, for two of the same (grid point, seed) runs (two trials keep the
    # test short on two cores): their summary rows must equal the local backend's, value for value.
    cfg = load_config(CONFIG, FAST)
    ray_dir = run_sweep(cfg, seeds=[1], backend="ray", max_workers=2, sweep_dir=tmp_path / "ray", progress=False)
    ray_rows = _rows(ray_dir / "summary.csv")
    assert [(r["group"], r["seed"]) for r in ray_rows] == [("PPO", "1"), ("A2C", "1")]
    assert ray_rows == [r for r in rows if r["seed"] == "1"]
    assert (ray_dir / "plots" / "safety_comparison.png").exists()
    assert not (ray_dir / "ray").exists() or any((ray_dir / "ray").iterdir())  # Tune's own records


def test_a_killed_sweep_continues_in_its_folder_and_keeps_its_finished_runs(tmp_path, capsys):
    cfg = load_config(CONFIG, FAST)
    whole = run_sweep(cfg, seeds=2, sweep_dir=tmp_path / "whole", max_workers=1, progress=False)
    # what a kill leaves: three runs finished, one half-written (no eval.json), no summary yet
    cut = tmp_path / "cut"
    run_sweep(cfg, seeds=2, sweep_dir=cut, max_workers=1, progress=False)
    unfinished = cut / "runs" / "A2C" / "seed1"
    (unfinished / "eval.json").unlink()
    (unfinished / "model.zip").write_bytes(b"half")
    for name in ("summary.csv", "summary_groups.csv", "comparison.json"):
        (cut / name).unlink()
    kept = {p: p.stat().st_mtime_ns for p in (cut / "runs").glob("*/seed*/eval.json")}
    assert len(kept) == 3
    run_sweep(cfg, seeds=2, sweep_dir=cut, max_workers=1)
    assert "3/4 runs finished earlier, kept" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in kept} == kept, "a finished run was trained again"
    assert (unfinished / "eval.json").exists() and (unfinished / "model.zip").read_bytes() != b"half"
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert strip(_rows(cut / "summary.csv")) == strip(_rows(whole / "summary.csv"))


def test_a_sweep_folder_holding_other_runs_is_refused_and_left_alone(tmp_path):
    cfg = load_config(CONFIG, FAST)
    out = run_sweep(cfg, seeds=1, sweep_dir=tmp_path / "s", max_workers=1, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(FileExistsError, match=r"holds another sweep \(runs .*'PPO', 1"):
        run_sweep(cfg, seeds=2, sweep_dir=out, max_workers=1, progress=False)
    with pytest.raises(FileExistsError, match="same runs with other configs"):
        run_sweep(load_config(CONFIG, [*FAST, "agent.gamma=0.9"]), seeds=1, sweep_dir=out, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a sweep folder"):
        run_sweep(cfg, seeds=1, sweep_dir=other, progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
