import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from morl.dominance import optimal_subset, quantile_dominance, staged_subsets
from morl.preorder import Preorder

NAMES = ["safety", "rules", "progress", "comfort"]


def ref_qd(z, k, a, b, delta):
    K = len(z[k][a])
    return sum(z[k][a][j] > z[k][b][j] + delta[k] for j in range(K)) / K


def ref_dominates(z, k, i, j, theta, delta):
    return ref_qd(z, k, i, j, delta) >= theta


def ref_stages(geq):
    """Stage of each objective from its definition: the length of the longest chain of objectives strictly
    above it (0 for one nothing outranks); objectives of equal depth share a stage."""
    m = len(geq)
    strictly = [[geq[i][j] and not geq[j][i] for j in range(m)] for i in range(m)]

    def depth(k):
        above = [i for i in range(m) if strictly[i][k]]
        return 0 if not above else 1 + max(depth(i) for i in above)

    depths = [depth(k) for k in range(m)]
    return [[k for k in range(m) if depths[k] == s] for s in range(max(depths) + 1)], strictly


def ref_staged(z, preorder, theta, delta, valid):
    """Staged elimination from its definition, one state at a time: at each stage, j is removed when a
    candidate i dominates it on an objective k of the stage and j dominates i on no objective that is
    neither strictly above nor strictly below k; a stage that removes everything keeps the best mean sum."""
    m, A = len(z), len(z[0])
    delta = [delta] * m if np.isscalar(delta) else list(delta)
    geq = preorder.geq.tolist()
    stages, strictly = ref_stages(geq)
    cand = [a for a in range(A) if valid[a]]
    for stage in stages:
        def removes(i, j):
            for k in stage:
                if ref_dominates(z, k, i, j, theta, delta):
                    blockers = [l for l in range(m) if not strictly[l][k] and not strictly[k][l]]
                    if not any(ref_dominates(z, l, j, i, theta, delta) for l in blockers):
                        return True
            return False
        survivors = [a for a in cand if not any(b != a and removes(b, a) for b in cand)]
        if not survivors and cand:
            score = {a: sum(float(np.mean(z[k][a])) for k in stage) for a in cand}
            best = max(score.values())
            survivors = [a for a in cand if score[a] >= best - 1e-5 * (1 + abs(best))]
        cand = survivors
    return [a in cand for a in range(A)]


def ref_rulebook(z, preorder, theta, delta, valid):
    """Rulebook non-dominated set from its definition: pairwise ``Preorder.strictly_prefers`` on the vectors of
    per-objective dominance wins; where every action is strictly beaten, the actions every action that reaches
    them through a chain of strict preferences is reached back from (the top cycle)."""
    m, A = len(z), len(z[0])
    delta = [delta] * m if np.isscalar(delta) else list(delta)
    acts = [a for a in range(A) if valid[a]]

    def wins(i, j):
        return [float(ref_dominates(z, k, i, j, theta, delta)) for k in range(m)]

    beats = {(i, j): i != j and preorder.strictly_prefers(wins(i, j), wins(j, i)) for i in acts for j in acts}
    keep = [j for j in acts if not any(beats[i, j] for i in acts)]
    if not keep and acts:
        def reachable(src):
            seen, todo = set(), [src]
            while todo:
                x = todo.pop()
                for y in acts:
                    if beats[x, y] and y not in seen:
                        seen.add(y)
                        todo.append(y)
            return seen
        reach = {a: reachable(a) for a in acts}
        keep = [j for j in acts if all(i in reach[j] for i in acts if j in reach[i])]
    return [a in keep for a in range(A)]


REFERENCES = {"staged": ref_staged, "rulebook": ref_rulebook}


@st.composite
def cases(draw, general_only=False):
    m = draw(st.integers(1, 4))
    names = NAMES[:m]
    kind = "general" if general_only else draw(st.sampled_from(["total", "ties", "general"]))
    perm = draw(st.permutations(names))
    if kind == "total":
        p = Preorder.from_levels([[n] for n in perm])
    elif kind == "ties":
        cut = draw(st.integers(1, m))
        p = Preorder.from_levels([list(perm[:cut])] + [[n] for n in perm[cut:]])
    else:  # any relation: its reflexive-transitive closure is a general preorder (ties and incomparable pairs)
        geq = np.array(draw(st.lists(st.booleans(), min_size=m * m, max_size=m * m))).reshape(m, m)
        p = Preorder(names, geq)
    B, A, K = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    # Small integers make ties and equal quantiles common.
    z = draw(st.lists(st.integers(-2, 2), min_size=B * m * A * K, max_size=B * m * A * K))
    z = torch.tensor(z, dtype=torch.float32).reshape(B, m, A, K)
    theta = draw(st.sampled_from([0.51, 0.6, 0.75, 1.0]))
    delta = draw(st.sampled_from([0.0, 0.5, [0.0, 1.0, 0.5, 0.0][:m]]))
    valid = torch.tensor(draw(st.lists(st.booleans(), min_size=B * A, max_size=B * A))).reshape(B, A)
    valid[:, draw(st.integers(0, A - 1))] = True  # at least one valid action per row
    return p, z, theta, delta, valid


def check_against_reference(case, use_mask, rule):
    p, z, theta, delta, valid = case
    mask = valid if use_mask else None
    got = optimal_subset(z, p, theta=theta, delta=delta, valid_mask=mask, rule=rule)
    assert got.dtype == torch.bool and got.shape == valid.shape
    for b in range(z.shape[0]):
        v = valid[b].tolist() if use_mask else [True] * z.shape[2]
        assert got[b].tolist() == REFERENCES[rule](z[b].tolist(), p, theta, delta, v)
        assert got[b].any()  # never empty
        assert not (got[b] & ~torch.tensor(v)).any()  # only valid actions


@pytest.mark.parametrize("rule", ["staged", "rulebook"])
@settings(max_examples=300, deadline=None)
@given(case=cases(), use_mask=st.booleans())
def test_optimal_subset_matches_reference(rule, case, use_mask):
    check_against_reference(case, use_mask, rule)


@pytest.mark.parametrize("rule", ["staged", "rulebook"])
@settings(max_examples=200, deadline=None)
@given(case=cases(general_only=True), use_mask=st.booleans())
def test_optimal_subset_matches_reference_on_general_preorders(rule, case, use_mask):
    check_against_reference(case, use_mask, rule)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_staged_on_a_total_preorder_is_pareto_elimination_level_by_level(case):
    """For the levels of a total preorder (strict chains, ties) staging is lexicographic elimination with
    Pareto dominance inside each level: the agents' subset for the shipped chains."""
    p, z, theta, delta, valid = case
    if not p.is_total:
        return
    got = optimal_subset(z, p, theta=theta, delta=delta, valid_mask=valid)
    m, A = z.shape[1], z.shape[2]
    d = [delta] * m if np.isscalar(delta) else delta
    ranks = [int(p.geq[:, k].sum()) for k in range(m)]  # objectives at least as high as k: equal within a level
    for b in range(z.shape[0]):
        zl = z[b].tolist()
        cand = [a for a in range(A) if valid[b, a]]
        for r in sorted(set(ranks)):
            level = [k for k in range(m) if ranks[k] == r]
            def beats(i, j):
                return any(ref_dominates(zl, k, i, j, theta, d) for k in level)
            keep = [a for a in cand if not any(i != a and beats(i, a) and not beats(a, i) for i in cand)]
            if not keep:
                score = {a: sum(float(np.mean(zl[k][a])) for k in level) for a in cand}
                best = max(score.values())
                keep = [a for a in cand if score[a] >= best - 1e-5 * (1 + abs(best))]
            cand = keep
        assert got[b].tolist() == [a in cand for a in range(A)]


def points(*actions):
    """Point distributions (one quantile) of the given score vectors, as ``z [1, m, A, 1]``."""
    return torch.tensor(actions, dtype=torch.float32).T.reshape(1, len(actions[0]), len(actions), 1)


def test_an_unrelated_objective_does_not_outrank_others():
    # comfort is related to nothing: it must not remove b, which wins on rules and progress.
    p = Preorder.from_pairs(NAMES, greater=[("safety", "rules"), ("safety", "progress")])
    a, b = (0, 0, 0, 1), (0, 5, 5, 0)
    assert not p.prefers(a, b) and not p.prefers(b, a)
    for rule in ("staged", "rulebook"):
        assert optimal_subset(points(a, b), p, theta=1.0, rule=rule).tolist() == [[True, True]]


def test_staged_and_rulebook_differ_where_documented():
    # Tied objectives above the last level: staging keeps only y, the rulebook both.
    x, y = (1, 0, 0), (0, 1, 5)
    assert optimal_subset(points(x, y), "a, b > c", theta=1.0, rule="staged").tolist() == [[False, True]]
    assert optimal_subset(points(x, y), "a, b > c", theta=1.0, rule="rulebook").tolist() == [[True, True]]
    # A strict chain: action 0, removed by 2 on safety, still beats 1 on progress.
    z = torch.tensor([[[[0., 0.], [-1., 2.], [1., 1.]], [[5., 5.], [0., 0.], [-1., 1.]]]])
    assert optimal_subset(z, "safety > progress", theta=1.0, rule="staged").tolist() == [[False, True, True]]
    assert optimal_subset(z, "safety > progress", theta=1.0, rule="rulebook").tolist() == [[False, False, True]]


def test_rulebook_cycle_at_theta_one_keeps_the_top_cycle():
    # safety > progress, two quantiles: 0 beats 1 on safety, 1 beats 2 on progress, 2 beats 0 on progress,
    # no other safety dominance: a cycle 0 > 1 > 2 > 0 of strict preferences at theta 1.
    z = torch.tensor([[[[0., 0.], [-1., -1.], [-2., 2.]], [[0., 0.], [5., 5.], [3., 3.]]]])
    assert optimal_subset(z, "safety > progress", 1.0, rule="rulebook").tolist() == [[True, True, True]]
    assert optimal_subset(z, "safety > progress", 1.0, rule="staged").tolist() == [[False, False, True]]


def test_negative_or_nan_delta_is_rejected_with_its_value():
    z = torch.zeros(1, 2, 3, 4)
    for bad in (-0.1, [0.0, -1.0], float("nan")):
        with pytest.raises(ValueError, match=r"delta must be >= 0.*-1\.0|delta must be >= 0.*-0\.1|delta must be >= 0.*nan"):
            optimal_subset(z, "a > b", delta=bad)
        with pytest.raises(ValueError, match="delta must be >= 0"):
            quantile_dominance(z, bad)


@pytest.mark.parametrize("rule", ["staged", "rulebook"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_nan_quantile_raises_naming_the_objective(rule, dtype):
    z = torch.randn(2, 3, 4, 5).to(dtype)
    z[1, 2, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="'comfort'.*state 1, action 3"):
        optimal_subset(z, "safety > rules > comfort", rule=rule)
    # A NaN in an invalid action is never looked at.
    valid = torch.ones(2, 4, dtype=torch.bool)
    valid[1, 3] = False
    assert optimal_subset(z, "safety > rules > comfort", valid_mask=valid, rule=rule)[1].any()


def test_preorder_string_is_accepted():
    z = torch.tensor([[[[0.]], [[1.]]], [[[1.]], [[0.]]]]).reshape(1, 2, 2, 1)
    assert optimal_subset(z, "a > b", theta=1.0).tolist() == [[False, True]]  # objectives in the string's order
    assert optimal_subset(z, Preorder("b > a").reindexed(["a", "b"]), theta=1.0).tolist() == [[True, False]]


@settings(max_examples=100, deadline=None)
@given(cases())
def test_quantile_dominance_matches_reference(case):
    _, z, _, delta, _ = case
    qd = quantile_dominance(z, delta)
    B, m, A, _ = z.shape
    d = [delta] * m if np.isscalar(delta) else delta
    for b in range(B):
        zl = z[b].tolist()
        for k in range(m):
            for i in range(A):
                for j in range(A):
                    assert qd[b, k, i, j].item() == pytest.approx(ref_qd(zl, k, i, j, d))


def test_lexicographic_filtering_example():
    p = Preorder.parse("safety > progress")
    # 4 actions, 3 quantiles. Actions 0 and 3 are safe; 1 crashes in 2 of 3 quantiles, 2 in all.
    safety = [[0, 0, 0], [-1, -1, 0], [-1, -1, -1], [0, 0, 0]]
    progress = [[1, 1, 1], [9, 9, 9], [9, 9, 9], [2, 2, 2]]
    z = torch.tensor([[safety, progress]], dtype=torch.float32)
    # theta 1 (first-order dominance on the grid): only action 2 is dominated on safety; 1 is fastest.
    assert optimal_subset(z, p, theta=1.0).tolist() == [[False, True, False, False]]
    # theta 0.6: losing 2 of 3 safety quantiles is enough to be dominated; 3 is the faster safe action.
    assert optimal_subset(z, p, theta=0.6).tolist() == [[False, False, False, True]]
    steps = staged_subsets(z, p, theta=0.6)
    assert [s.tolist() for s in steps] == [[[True, False, False, True]], [[False, False, False, True]]]
    # The preorder flipped: progress first keeps the fast actions, and safety cannot split them at 0.6.
    q = Preorder.parse("progress > safety").reindexed(["safety", "progress"])
    assert optimal_subset(z, q, theta=0.6).tolist() == [[False, True, True, False]]


def test_delta_margin_makes_close_actions_indifferent():
    p = Preorder.parse("progress")
    z = torch.tensor([[[[1.0, 1.0], [1.2, 1.2]]]])
    assert optimal_subset(z, p, theta=1.0, delta=0.0).tolist() == [[False, True]]
    assert optimal_subset(z, p, theta=1.0, delta=0.5).tolist() == [[True, True]]


def test_cycle_falls_back_to_best_mean():
    # Three actions whose majority-of-quantiles dominance is cyclic (a non-transitive dice set).
    p = Preorder.parse("x")
    z = torch.tensor([[[[2, 4, 9], [1, 6, 8], [3, 5, 7]]]], dtype=torch.float32)
    qd = quantile_dominance(z)[0, 0]
    dom = qd >= 0.6
    assert dom[0, 1] and dom[1, 2] and dom[2, 0]  # 0 > 1 > 2 > 0
    assert optimal_subset(z, p, theta=0.6).tolist() == [[True, True, True]]  # equal means: all kept
    z[0, 0, 1, 2] = 8.5
    assert optimal_subset(z, p, theta=0.6).tolist() == [[False, True, False]]


def test_all_invalid_row_is_empty_and_bad_shapes_raise():
    p = Preorder.parse("a > b")
    z = torch.zeros(2, 2, 3, 4)
    valid = torch.tensor([[True, False, False], [False, False, False]])
    out = optimal_subset(z, p, valid_mask=valid)
    assert out.tolist() == [[True, False, False], [False, False, False]]
    with pytest.raises(ValueError, match="objectives"):
        optimal_subset(torch.zeros(2, 3, 3, 4), p)
    with pytest.raises(ValueError, match="theta"):
        optimal_subset(z, p, theta=0.5)
    with pytest.raises(ValueError, match="valid_mask"):
        optimal_subset(z, p, valid_mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="delta"):
        optimal_subset(z, p, delta=[0.1, 0.2, 0.3])


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_device_and_dtype_follow_input_and_the_masks_are_the_reference(dtype):
    p = Preorder.parse("a > b")
    z = (torch.randn(5, 2, 4, 8, generator=torch.Generator().manual_seed(0)) * 2).round().to(dtype)
    for rule in ("staged", "rulebook"):
        out = optimal_subset(z, p, rule=rule)
        assert out.device == z.device and out.dtype == torch.bool and out.shape == (5, 4)
        zl = z.float()
        for b in range(5):
            assert out[b].tolist() == REFERENCES[rule](zl[b].tolist(), p, 0.75, 0.0, [True] * 4)
        assert 1 < out.sum() < 20  # neither trivial nor everything
