"""morl.metrics against hand-computed values, brute-force references and a coverage simulation."""

import itertools

import numpy as np
import pytest

from morl import metrics
from morl.preorder import Preorder


def _episodes():
    # Four episodes, hand-made: two objectives, events counted per step, 2 km each except the last.
    return [
        {"returns": {"safety": 0.0, "progress": 10.0}, "length": 100, "distance_km": 2.0,
         "events": {"collision": 0, "off_road": 3, "success": 1, "cost": 0.0}, "route_completion": 1.0},
        {"returns": {"safety": -1.0, "progress": 4.0}, "length": 50, "distance_km": 2.0,
         "events": {"collision": 1, "off_road": 0, "success": 0, "cost": 2.0}, "route_completion": 0.4},
        {"returns": {"safety": 0.0, "progress": 8.0}, "length": 100, "distance_km": 2.0,
         "events": {"collision": 0, "off_road": 0, "success": 1, "cost": 1.0}, "route_completion": 1.0},
        {"returns": {"safety": 0.0, "progress": 2.0}, "length": 150, "distance_km": 1.0,
         "events": {"collision": 0, "off_road": 1, "success": 0, "cost": 0.0}, "route_completion": 0.2},
    ]


def test_episode_metrics_hand_computed():
    m = metrics.episode_metrics(_episodes(), reps=500)
    assert m["success_rate"]["value"] == pytest.approx(2 / 4)
    assert m["collision_rate"]["value"] == pytest.approx(1 / 4)
    assert m["off_road_rate"]["value"] == pytest.approx(2 / 4)
    assert m["collision_per_km"]["value"] == pytest.approx(1 / 7)
    assert m["off_road_per_km"]["value"] == pytest.approx(4 / 7)
    assert m["cost_rate"]["value"] == pytest.approx(3 / 400)
    assert m["route_completion"]["value"] == pytest.approx(2.6 / 4)
    assert m["return/progress"]["value"] == pytest.approx(6.0)
    assert m["return/safety"]["value"] == pytest.approx(-0.25)
    assert "red_light_rate" not in m  # never reported, so not invented
    for v in m.values():
        assert v["lo"] <= v["value"] + 1e-12 and v["value"] - 1e-12 <= v["hi"]
    # A rate's bootstrap interval of 4 episodes stays inside [0, 1] and is not degenerate.
    assert 0.0 <= m["success_rate"]["lo"] < m["success_rate"]["hi"] <= 1.0


def test_no_distance_no_per_km():
    eps = _episodes()
    del eps[0]["distance_km"]
    assert not any(k.endswith("_per_km") for k in metrics.episode_metrics(eps, reps=100))


def test_iqm_hand_computed():
    assert metrics.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(np.mean([3, 4, 5, 6]))
    assert metrics.iqm([5, 1, 3]) == pytest.approx(3.0)  # floor(0.75) = 0 trimmed
    x = np.random.default_rng(0).normal(size=(3, 11))
    np.testing.assert_allclose(metrics.iqm(x, axis=-1),
                               [np.mean(np.sort(r)[2:9]) for r in x])


def test_stratified_bootstrap_resamples_within_tasks():
    # Task 0 always scores 0, task 1 always 10: if strata were mixed, some replicates would draw
    # unequal numbers from each task and the mean would move; stratified, it is exactly 5.
    scores = np.stack([np.zeros(6), np.full(6, 10.0)], axis=1)
    point, lo, hi = metrics.stratified_bootstrap_ci(scores, "mean", reps=300)
    assert point == lo == hi == 5.0


@pytest.mark.parametrize("statistic,dist", [("mean", "bernoulli"), ("mean", "exponential"), ("iqm", "normal")])
def test_bootstrap_ci_covers_true_value_at_nominal_rate(statistic, dist):
    rng = np.random.default_rng(123)
    trials, n = 300, 60
    if dist == "bernoulli":
        samples, truth = (rng.random((trials, n)) < 0.3).astype(float), 0.3
    elif dist == "exponential":
        samples, truth = rng.exponential(2.0, (trials, n)), 2.0
    else:  # symmetric: the population IQM equals the mean
        samples, truth = rng.normal(1.5, 1.0, (trials, n)), 1.5
    hits = 0
    for t in range(trials):
        _, lo, hi = metrics.stratified_bootstrap_ci(samples[t], statistic, reps=1000, seed=t)
        hits += lo <= truth <= hi
    # 95 % nominal; binomial sd over 300 trials is 1.3 points, and the percentile bootstrap
    # under-covers slightly at n = 60 (skewed exponential most), so accept [0.89, 0.99].
    assert 0.89 <= hits / trials <= 0.99


def test_aggregate_runs_drops_nan():
    agg = metrics.aggregate_runs([1.0, np.nan, 3.0], reps=200)
    assert agg["n"] == 2 and agg["value"] == pytest.approx(2.0)


def test_lexicographic_compare_follows_precedence():
    rng = np.random.default_rng(0)
    pre = Preorder.parse("safety > progress")
    # a: clearly safer, slower; b: faster, less safe -> a wins, decided by safety.
    a = np.stack([rng.normal(0.0, 0.1, 40), rng.normal(5.0, 0.5, 40)], axis=1)
    b = np.stack([rng.normal(-1.0, 0.1, 40), rng.normal(9.0, 0.5, 40)], axis=1)
    res = metrics.lexicographic_compare(a, b, pre, objectives=("safety", "progress"), reps=500)
    assert res.winner == "a" and res.decided_by == ("safety",)
    assert res.signs == {"safety": 1, "progress": -1}
    assert res.diffs["progress"][0] == pytest.approx(a[:, 1].mean() - b[:, 1].mean())
    # Equal safety (same samples): the lower level decides.
    b2 = np.stack([a[:, 0], rng.normal(9.0, 0.5, 40)], axis=1)
    res2 = metrics.lexicographic_compare(a, b2, pre, objectives=("safety", "progress"), reps=500)
    assert res2.winner == "b" and res2.decided_by == ("progress",)
    # Same samples: tie. Tied objectives pulling apart: incomparable.
    assert metrics.lexicographic_compare(a, a, pre, objectives=("safety", "progress"), reps=200).winner == "tie"
    tied = Preorder.parse("safety, progress")
    assert metrics.lexicographic_compare(a, b, tied, objectives=("safety", "progress"), reps=500).winner == "incomparable"


def test_lexicographic_decided_by_never_credits_an_unrelated_objective():
    # safety > rules, comfort unrelated: a differs from b on comfort (better) and on rules (worse). Comfort does
    # not outrank rules, so both decide, and neither method wins.
    pre = Preorder.from_pairs(["safety", "rules", "comfort"], greater=[("safety", "rules")])
    rng = np.random.default_rng(1)
    a = np.stack([np.zeros(40), rng.normal(0.0, 0.1, 40), rng.normal(5.0, 0.1, 40)], axis=1)
    b = np.stack([np.zeros(40), rng.normal(3.0, 0.1, 40), rng.normal(0.0, 0.1, 40)], axis=1)
    res = metrics.lexicographic_compare(a, b, pre, reps=300)
    assert res.signs == {"safety": 0, "rules": -1, "comfort": 1}
    assert res.winner == "incomparable" and res.decided_by == ("rules", "comfort")
    # With a safety difference, safety outranks rules but not comfort.
    a[:, 0] = 1.0
    res = metrics.lexicographic_compare(a, b, pre, reps=300)
    assert res.winner == "a" and res.decided_by == ("safety", "comfort")


def test_pareto_filter():
    pts = np.array([[1, 5], [2, 4], [2, 4], [1, 4], [3, 1], [0, 0], [3, 0.5]])
    mask = metrics.pareto_mask(pts)
    np.testing.assert_array_equal(mask, [True, True, True, False, True, False, False])
    np.testing.assert_array_equal(metrics.pareto_filter(pts), [[1, 5], [2, 4], [3, 1]])


def _hv_grid(points, ref):
    """Reference: union volume of the boxes [ref, p] on the grid of all coordinates (brute force)."""
    p = np.asarray(points, float)
    p = p[(p > ref).all(1)]
    d = len(ref)
    axes = [np.unique(np.concatenate([[ref[k]], p[:, k]])) for k in range(d)]
    vol = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        upper = np.array([axes[k][cell[k] + 1] for k in range(d)])
        if (p >= upper).all(1).any():  # cell [lower, upper] lies inside some box
            vol += np.prod([axes[k][cell[k] + 1] - axes[k][cell[k]] for k in range(d)])
    return vol


def test_hypervolume_exact_cases():
    # 2-D staircase: 3*1 + 2*(2-1) + 1*(3-2) = 6.
    assert metrics.hypervolume([[3, 1], [2, 2], [1, 3]], [0, 0]) == pytest.approx(6.0)
    # One point: the box volume, in 2, 3 and 4 objectives.
    assert metrics.hypervolume([[2, 3, 4]], [0, 0, 0]) == pytest.approx(24.0)
    assert metrics.hypervolume([[1, 2, 3, 4]], [0, 0, 0, 0]) == pytest.approx(24.0)
    # 3-D: unit cube's three axis points (2,1,1),(1,2,1),(1,1,2) over ref 0: 3*2 - 3*1 + 1 = 4.
    assert metrics.hypervolume([[2, 1, 1], [1, 2, 1], [1, 1, 2]], [0, 0, 0]) == pytest.approx(4.0)
    # 4-D analogue by inclusion-exclusion: 4*2 - 6*1 + 4*1 - 1 = 5.
    pts4 = np.eye(4) + 1
    assert metrics.hypervolume(pts4, np.zeros(4)) == pytest.approx(5.0)
    # Dominated and out-of-reference points add nothing.
    assert metrics.hypervolume([[3, 1], [2, 2], [1, 3], [1, 1], [5, -1]], [0, 0]) == pytest.approx(6.0)
    assert metrics.hypervolume([[-1, 5]], [0, 0]) == 0.0


@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_matches_brute_force(d):
    rng = np.random.default_rng(d)
    for _ in range(5):
        pts = rng.integers(1, 6, size=(7, d)).astype(float)
        ref = np.zeros(d)
        assert metrics.hypervolume(pts, ref) == pytest.approx(_hv_grid(pts, ref))


def test_expected_utility():
    front = np.array([[1.0, 0.0], [0.0, 1.0]])
    w = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    assert metrics.expected_utility(front, w) == pytest.approx((1 + 0.5 + 1) / 3)
    # Default 2-D weights are equally spaced on [0, 1]: E[max(t, 1 - t)] -> 3/4.
    assert metrics.expected_utility(front, n_weights=1001) == pytest.approx(0.75, abs=1e-3)
    # Adding a dominated point changes nothing; a better compromise point raises it.
    assert metrics.expected_utility(np.vstack([front, [0.2, 0.2]]), w) == pytest.approx((1 + 0.5 + 1) / 3)
    assert metrics.expected_utility(np.vstack([front, [0.8, 0.8]]), w) > (1 + 0.5 + 1) / 3


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="statistic"):
        metrics.stratified_bootstrap_ci([1, 2], "mode")
    with pytest.raises(ValueError, match="points"):
        metrics.hypervolume([[1, 2, 3]], [0, 0])
    with pytest.raises(ValueError, match="a must be"):
        metrics.lexicographic_compare(np.ones((3, 3)), np.ones((3, 2)), "x > y")
