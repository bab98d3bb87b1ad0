"""morl.plots: each figure is a readable PNG, the band statistics are right, the domain hook is called."""

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from morl import plots


def _assert_png(path: Path, min_side=150):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > min_side and img.shape[1] > min_side
    assert img[..., :3].std() > 0.01  # not blank


def _table():
    return {
        "QDIQN": {"collision_rate": {"value": 0.1, "lo": 0.02, "hi": 0.2},
                  "return/progress": {"value": 5.0, "lo": 4.0, "hi": 6.0}},
        "IQN": {"collision_rate": {"value": 0.3, "lo": 0.2, "hi": 0.45},
                "return/progress": {"value": 7.0, "lo": 6.5, "hi": 7.4}},
    }


def test_safety_bars(tmp_path):
    _assert_png(plots.safety_bars(_table(), tmp_path / "s.png"))
    with pytest.raises(ValueError, match="at least one method"):
        plots.safety_bars({}, tmp_path / "x.png")


def test_metric_labels_carry_units():
    assert plots.metric_label("collision_rate") == "collision (share of episodes)"
    assert plots.metric_label("red_light_per_km") == "red light (events / km)"
    assert plots.metric_label("cost_rate") == "cost rate (cost / step)"
    assert plots.metric_label("return/safety") == "return: safety"


def test_band_is_mean_with_bootstrap_interval():
    v = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    mean, lo, hi = plots._band(v)
    np.testing.assert_allclose(mean, [2.0, 3.0])
    assert np.all(lo < mean) and np.all(mean < hi) and np.all(lo >= 0.0) and np.all(hi <= 5.0)
    one = plots._band(v[:1])
    np.testing.assert_allclose(one[1], one[2])  # one seed: no band


def test_learning_curves_quantiles_pareto(tmp_path):
    rng = np.random.default_rng(0)
    curves = {m: [(np.sort(rng.integers(0, 1000, 20)), np.cumsum(rng.normal(off, 1, 20))) for _ in range(3)]
              for m, off in (("QDIQN", 0.5), ("IQN", 0.2))}
    _assert_png(plots.learning_curves(curves, tmp_path / "lc.png", ylabel="episode return"))
    rets = {"QDIQN": rng.normal(size=(30, 3)), "IQN": rng.normal(1, 1, size=(30, 3))}
    _assert_png(plots.return_quantiles(rets, ["safety", "rules", "progress"], tmp_path / "q.png"))
    _assert_png(plots.pareto_scatter({"a": rng.normal(size=(5, 2)), "b": rng.normal(size=(4, 2))},
                                     ["safety", "progress"], tmp_path / "p.png"))
    _assert_png(plots.pareto_scatter({"a": rng.normal(size=(5, 4)), "b": rng.normal(size=(4, 4))},
                                     ["safety", "rules", "progress", "comfort"], tmp_path / "p4.png"))
    with pytest.raises(ValueError, match="at least two objectives"):
        plots.pareto_scatter({"a": np.zeros((2, 1))}, ["x"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="no data"):
        plots.learning_curves({"a": []}, tmp_path / "empty.png")


def _fake_run(tmp_path, env="morl/Highway-v0") -> Path:
    run = tmp_path / "run"
    run.mkdir()
    eps = [{"seed": i, "returns": {"safety": -float(i % 2), "progress": float(i)}, "length": 10,
            "events": {"collision": float(i % 2)}} for i in range(6)]
    from morl.metrics import episode_metrics

    ev = {"agent": "QDIQN", "env": env, "objectives": ["safety", "progress"], "episodes": eps,
          "metrics": episode_metrics(eps, reps=200)}
    (run / "eval.json").write_text(json.dumps(ev))
    (run / "progress.csv").write_text("time/total_timesteps,rollout/ep_rew_mean\n10,1.0\n20,2.0\n30,2.5\n")
    return run


def test_plot_run_calls_matching_domain_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "_DOMAIN", {})
    calls = []

    @plots.register_domain_figure("trajectories", env_pattern="morl/Highway-*")
    def traj(run_dir, ev, out):
        calls.append(ev["agent"])
        return plots.pareto_scatter({"x": np.array([[0, 1], [1, 0]])}, ["safety", "progress"], out / "traj.png")

    plots.register_domain_figure("coverage", lambda r, e, o: calls.append("coverage"), env_pattern="morl/Coverage-*")
    run = _fake_run(tmp_path)
    made = plots.plot_run(run)
    names = {p.name for p in made}
    assert {"safety.png", "returns.png", "learning_curve.png", "traj.png"} <= names
    assert calls == ["QDIQN"]  # the coverage figure's pattern does not match
    for p in made:
        _assert_png(p)
