import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from morl.dominance import level_subsets, optimal_subset, quantile_dominance
from morl.preorder import Preorder

NAMES = ["safety", "rules", "progress", "comfort"]


def ref_qd(z, k, a, b, delta):
    K = len(z[k][a])
    return sum(z[k][a][j] > z[k][b][j] + delta[k] for j in range(K)) / K


def ref_optimal_subset(z, preorder, theta, delta, valid):
    """Plain-Python reading of the documented algorithm, one state at a time."""
    m, A = len(z), len(z[0])
    delta = [delta] * m if np.isscalar(delta) else list(delta)
    cand = [a for a in range(A) if valid[a]]
    for level in preorder.level_indices:
        def beats(i, j):
            return any(ref_qd(z, k, i, j, delta) >= theta for k in level)
        survivors = [a for a in cand if not any(b != a and beats(b, a) and not beats(a, b) for b in cand)]
        if not survivors and cand:
            score = {a: sum(float(np.mean(z[k][a])) for k in level) for a in cand}
            best = max(score.values())
            survivors = [a for a in cand if score[a] >= best - 1e-5 * (1 + abs(best))]
        cand = survivors
    return [a in cand for a in range(A)]


@st.composite
def cases(draw):
    m = draw(st.integers(1, 4))
    names = NAMES[:m]
    kind = draw(st.sampled_from(["total", "ties", "general"]))
    perm = draw(st.permutations(names))
    if kind == "total":
        p = Preorder.from_levels([[n] for n in perm])
    elif kind == "ties":
        cut = draw(st.integers(1, m))
        p = Preorder.from_levels([list(perm[:cut])] + [[n] for n in perm[cut:]])
    else:
        greater = [(perm[0], n) for n in perm[1:] if draw(st.booleans())]
        p = Preorder.from_pairs(perm, greater)
    B, A, K = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    # Small integers make ties and equal quantiles common.
    z = draw(st.lists(st.integers(-2, 2), min_size=B * m * A * K, max_size=B * m * A * K))
    z = torch.tensor(z, dtype=torch.float32).reshape(B, m, A, K)
    theta = draw(st.sampled_from([0.51, 0.6, 0.75, 1.0]))
    delta = draw(st.sampled_from([0.0, 0.5, [0.0, 1.0, 0.5, 0.0][:m]]))
    valid = torch.tensor(draw(st.lists(st.booleans(), min_size=B * A, max_size=B * A))).reshape(B, A)
    valid[:, draw(st.integers(0, A - 1))] = True  # at least one valid action per row
    return p, z, theta, delta, valid


@settings(max_examples=300, deadline=None)
@given(cases(), st.booleans())
def test_optimal_subset_matches_reference(case, use_mask):
    p, z, theta, delta, valid = case
    mask = valid if use_mask else None
    got = optimal_subset(z, p, theta=theta, delta=delta, valid_mask=mask)
    assert got.dtype == torch.bool and got.shape == valid.shape
    for b in range(z.shape[0]):
        v = valid[b].tolist() if use_mask else [True] * z.shape[2]
        expected = ref_optimal_subset(z[b].tolist(), p, theta, delta, v)
        assert got[b].tolist() == expected
        assert got[b].any()  # never empty
        assert not (got[b] & ~torch.tensor(v)).any()  # only valid actions


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
    steps = level_subsets(z, p, theta=0.6)
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


def test_device_and_dtype_follow_input():
    p = Preorder.parse("a > b")
    z = torch.randn(5, 2, 4, 8, dtype=torch.float64)
    out = optimal_subset(z, p)
    assert out.device == z.device and out.dtype == torch.bool
