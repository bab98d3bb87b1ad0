import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morl.preorder import Preorder, PreorderError

NAMES = ["safety", "rules", "progress", "comfort", "energy"]


def test_parse_string_levels_and_ties():
    p = Preorder.parse("safety > rules > progress, comfort")
    assert p.objectives == ("safety", "rules", "progress", "comfort")
    assert p.levels == (("safety",), ("rules",), ("progress", "comfort"))
    assert p.is_total
    assert p.geq[p.index("progress"), p.index("comfort")] and p.geq[p.index("comfort"), p.index("progress")]
    assert p.strictly_above[p.index("safety"), p.index("comfort")]  # transitive
    assert not p.strictly_above[p.index("comfort"), p.index("safety")]


def test_three_syntaxes_agree():
    s = Preorder.parse("safety > rules > progress, comfort")
    y = Preorder.parse([["safety"], ["rules"], ["progress", "comfort"]])
    d = Preorder.parse({"objectives": ["comfort", "progress", "rules", "safety"],
                        "greater": [["safety", "rules"], ["rules", "progress"]], "ties": [["progress", "comfort"]]})
    assert s == y == d
    assert s != Preorder.parse("safety > rules > progress > comfort")


def test_general_preorder_has_incomparable_pairs():
    p = Preorder.from_pairs(["safety", "rules", "progress", "comfort"],
                            greater=[("safety", "rules"), ("safety", "progress")])
    assert not p.is_total
    r, g = p.index("rules"), p.index("progress")
    assert not p.geq[r, g] and not p.geq[g, r]
    # comfort is related to nothing, so nothing outranks it: it sits in the first generation.
    assert p.levels == (("safety", "comfort"), ("rules", "progress"))
    assert Preorder.parse(str(p)) == p


def brute_prefers(p, a, b):
    for k in range(p.m):
        if b[k] > a[k]:
            if not any(p.geq[j, k] and not p.geq[k, j] and a[j] > b[j] for j in range(p.m)):
                return False
    return True


@st.composite
def preorders(draw):
    m = draw(st.integers(1, 5))
    names = NAMES[:m]
    pairs = [(a, b) for a, b in itertools.permutations(names, 2)]
    # A random strict order by rank plus ties among equal ranks; extra incomparability by dropping pairs.
    ranks = draw(st.lists(st.integers(0, 3), min_size=m, max_size=m))
    keep = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    greater = [(a, b) for (a, b), k in zip(pairs, keep) if k and ranks[names.index(a)] < ranks[names.index(b)]]
    ties = [(a, b) for (a, b), k in zip(pairs, keep) if k and ranks[names.index(a)] == ranks[names.index(b)]]
    return Preorder.from_pairs(names, greater, ties)


@settings(max_examples=150, deadline=None)
@given(preorders(), st.data())
def test_prefers_matches_rulebook_definition_and_str_roundtrips(p, data):
    assert Preorder.parse(str(p)) == p
    vec = st.lists(st.integers(-2, 2), min_size=p.m, max_size=p.m)
    a, b = data.draw(vec), data.draw(vec)
    assert p.prefers(a, b) == brute_prefers(p, a, b)
    assert p.prefers(a, a)
    assert p.strictly_prefers(a, b) == (brute_prefers(p, a, b) and not brute_prefers(p, b, a))
    # Relation properties: reflexive, transitive.
    g = p.geq
    assert g.diagonal().all()
    assert ((g.astype(int) @ g.astype(int) > 0) <= g).all()


def test_prefers_lexicographic_example():
    p = Preorder.parse("safety > progress")
    assert p.strictly_prefers([0, 0], [-1, 10])
    assert p.strictly_prefers([0, 2], [0, 1])
    assert not p.prefers([-1, 10], [0, 0])


def test_reindexed_keeps_relation():
    p = Preorder.parse("safety > rules > progress")
    q = p.reindexed(["progress", "safety", "rules"])
    assert q.objectives == ("progress", "safety", "rules") and q == p
    assert q.strictly_above[1, 0]


@pytest.mark.parametrize("spec, token", [
    ("", "empty"),
    ("safety > > rules", "empty objective name"),
    ("safety > rules > safety", "'safety' is listed twice"),
    ("safety, safety", "'safety' is listed twice"),
    ("safety > ru!es", "ru!es"),
    ("a > b; b > a", "'a > b'"),
    ([["safety"], []], "level 1"),
    ([["safety"], ["rules", "safety"]], "'safety' is listed twice"),
    ([], "empty list"),
    ({"objectives": ["a", "b"], "greater": [["a", "c"]]}, "unknown objective 'c'"),
    ({"objectives": ["a", "b"], "greater": [["a", "b"]], "ties": [["b", "a"]]}, "'a > b'"),
    ({"objectives": ["a"], "bogus": 1}, "'bogus'"),
    (3.5, "float"),
])
def test_bad_input_names_the_token(spec, token):
    with pytest.raises(PreorderError, match=token.replace("(", r"\(")):
        Preorder.parse(spec)


def test_prefers_wrong_length():
    with pytest.raises(PreorderError, match="2 entries"):
        Preorder.parse("a > b").prefers([1, 2, 3], [1, 2])


def test_constructor_parses_like_parse():
    for spec in ("safety > rules > progress, comfort", [["a"], ["b", "c"]], {"objectives": ["x", "y"], "greater": [["x", "y"]]}):
        assert Preorder(spec) == Preorder.parse(spec)
    p = Preorder("a > b")
    assert p.objectives == ("a", "b") and p.strictly_above[0, 1] and Preorder(p) == p
    assert Preorder(["a", "b"], [[True, False], [False, True]]).is_total is False
    with pytest.raises(PreorderError, match="empty preorder string"):
        Preorder("  ")


def test_peers_and_maximal_follow_the_relation_not_the_generations():
    p = Preorder.from_pairs(["safety", "rules", "progress", "comfort"], greater=[("safety", "rules"), ("safety", "progress")])
    assert p.levels == (("safety", "comfort"), ("rules", "progress"))  # generations: an order of processing
    assert p.peers[3].tolist() == [True, True, True, True]  # comfort outranks nothing and nothing outranks it
    assert p.peers[1].tolist() == [False, True, True, True]
    assert p.maximal([1, 3]) == (1, 3) and p.maximal([0, 1, 2]) == (0,)


def test_reindexing_names_the_misspelt_token_with_a_suggestion():
    with pytest.raises(PreorderError, match=r"preorder objective 'rulez' is not among the objectives .*did you mean 'rules'"):
        Preorder("safety > rulez").reindexed(("safety", "rules"))
