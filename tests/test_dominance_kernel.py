"""The CPU kernels of ``morl.dominance`` (staged and rulebook subsets) against their torch code (the references)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from morl.dominance import (
    _rulebook_subset_torch,
    _staged_subsets_cpu,
    _staged_subsets_torch,
    _subset_cpu,
    optimal_subset,
    staged_subsets,
)
from morl.dominance_kernels import _min_wins
from morl.preorder import Preorder

NAMES = ["safety", "rules", "progress", "comfort"]


def preorders(m: int):
    names = NAMES[:m]
    yield Preorder.from_levels([[n] for n in names])
    yield Preorder.from_levels([names[: (m + 1) // 2]] + [[n] for n in names[(m + 1) // 2:]])
    yield Preorder.from_pairs(names, [(names[0], n) for n in names[2:]])
    if m == 4:  # an unrelated objective, and ties beside an incomparable pair
        yield Preorder.from_pairs(names, [(names[0], names[1]), (names[0], names[2])])
        yield Preorder.from_pairs(names, [(names[0], names[2]), (names[1], names[3])], ties=[(names[0], names[1])])


def both(z, p, theta, delta, valid):
    """Kernel and torch masks: the staged stages, then the rulebook subset as one more entry."""
    cand = torch.ones(z.shape[0], z.shape[2], dtype=torch.bool) if valid is None else valid
    got = [*_staged_subsets_cpu(z, p, theta, delta, cand), _subset_cpu(z, p, theta, delta, cand, "rulebook")]
    ref = [*_staged_subsets_torch(z, p, theta, delta, cand), _rulebook_subset_torch(z, p, theta, delta, cand)]
    return got, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m", [1, 4])
def test_kernel_matches_torch_on_random_and_tied_quantiles(dtype, m):
    gen = torch.Generator().manual_seed(m)
    for p in preorders(m):
        for A, K in ((2, 32), (5, 7), (9, 10), (27, 32)):
            for theta in (0.51, 0.7, 0.75, 1.0):
                for delta in (0.0, 0.3, [0.0, 0.5, 0.1, 0.0][:m]):
                    z = torch.randn(6, m, A, K, generator=gen, dtype=dtype)
                    z[:3] = z[:3].round()  # ties, equal quantiles and dominance cycles
                    z[3] = z[3] * 1e-6 + 1.0  # near-equal means: the fallback's tie margin
                    valid = torch.rand(6, A, generator=gen) < 0.8
                    valid[:, 0] = True
                    valid[5] = False  # a row with no valid action
                    for mask in (None, valid):
                        got, ref = both(z, p, theta, delta, mask)
                        assert len(got) == len(ref) == len(p.level_indices) + 1
                        for g, r in zip(got, ref):
                            assert g.dtype == torch.bool and torch.equal(g, r)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 12), st.sampled_from([0.51, 0.6, 0.75, 0.8, 1.0]),
       st.data())
def test_kernel_matches_torch_on_small_integer_quantiles(m, A, K, theta, data):
    p = data.draw(st.sampled_from(list(preorders(m))))
    values = data.draw(st.lists(st.integers(-2, 2), min_size=3 * m * A * K, max_size=3 * m * A * K))
    z = torch.tensor(values, dtype=torch.float32).reshape(3, m, A, K)
    got, ref = both(z, p, theta, 0.0, None)
    assert all(torch.equal(g, r) for g, r in zip(got, ref))


def test_min_wins_is_the_count_where_the_mean_reaches_theta():
    assert _min_wins(10, 0.7, torch.float32) == 7  # float32(0.7) compares equal to 7/10
    assert _min_wins(32, 0.75, torch.float32) == 24
    assert _min_wins(3, 1.0, torch.float64) == 3
    assert _min_wins(4, 0.51, torch.float32) == 3


def test_infinite_means_follow_torch_and_the_fallback_is_never_empty():
    p = Preorder.parse("x")
    z = torch.tensor([[[[2.0, 4, 9], [1, 6, 8], [3, 5, 7]]]])  # a dominance cycle at theta 0.6
    for value in (float("inf"), float("-inf")):
        zz = z.clone()
        zz[0, 0, 1, 0] = value
        got, ref = both(zz, p, 0.6, 0.0, None)
        assert all(torch.equal(g, r) and g.any() for g, r in zip(got, ref))
    zz = z.clone()
    zz[0, 0, 0, 2] = float("inf")  # the cycle stays, action 0's mean is infinite: the fallback keeps it
    got, ref = both(zz, p, 0.6, 0.0, None)
    assert got[0].tolist() == ref[0].tolist() == [[True, False, False]]


def test_cpu_tensors_take_the_kernel_and_non_contiguous_input_works():
    p = Preorder.parse("a > b")
    z = torch.randn(4, 8, 2, 3).permute(0, 2, 3, 1)  # [B, m, A, K] view, not contiguous
    assert torch.equal(optimal_subset(z, p), _staged_subsets_torch(z, p, 0.75, 0.0, torch.ones(4, 3, dtype=torch.bool))[-1])
    half = z.to(torch.bfloat16)  # dtypes numba lacks stay on the torch code
    assert staged_subsets(half, p)[-1].shape == (4, 3)
