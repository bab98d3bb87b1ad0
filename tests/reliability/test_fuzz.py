"""Hypothesis fuzzing: the preorder parser and the config loader raise only their documented errors.

``Preorder.parse`` may raise :class:`~morl.preorder.PreorderError` and nothing else, whatever it is
given; ``config_from_dict`` / ``load_config`` may raise :class:`~morl.config.ConfigError` and nothing
else. Every error message must name something (it is never empty).
"""

import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morl.config import ConfigError, config_from_dict, load_config
from morl.preorder import Preorder, PreorderError

NAMES = st.sampled_from(["safety", "rules", "progress", "comfort", "a", "b", "", " ", "1x", "x y", "é"])
TOKENS = st.sampled_from([">", ",", ";", " ", "safety", "rules", "progress", "a", "b", ">>", ",,", "\n", "-"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), NAMES)
ANYTHING = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(NAMES, st.text(max_size=5), st.integers(-3, 3)), inner, max_size=4)), max_leaves=12)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_preorder_error(spec):
    try:
        p = Preorder.parse(spec)
    except PreorderError as exc:
        assert str(exc)
        return None
    # whatever parses is a valid preorder that round-trips through its string form
    assert Preorder.parse(str(p)) == p
    return p


VALID = {"safety", "rules", "progress", "comfort", "a", "b"}


def _check_parsed(p):
    """What any parsed preorder must satisfy: named objectives, a reflexive and transitive relation."""
    assert p.m >= 1 and len(set(p.objectives)) == p.m
    g = p.geq.astype(int)
    assert g.diagonal().all()
    assert ((g @ g > 0) <= p.geq).all()


@FUZZ
@given(st.text(max_size=40))
def test_preorder_random_text(text):
    p = _parse_or_preorder_error(text)
    if p is not None:
        _check_parsed(p)
        assert all(name in text for name in p.objectives)  # names come from the text, nothing invented


@FUZZ
@given(st.lists(TOKENS, max_size=12))
def test_preorder_token_soup(tokens):
    text = "".join(tokens)
    p = _parse_or_preorder_error(text)
    if p is not None:
        _check_parsed(p)
        assert all(name in text for name in p.objectives)
    chain = [t for t in tokens if t in VALID]
    if chain and len(set(chain)) == len(chain):
        # distinct valid names joined by ">" always parse, as a total order in that sequence
        q = Preorder.parse(" > ".join(chain))
        assert q.levels == tuple((n,) for n in chain)


def _strings(spec) -> list[str]:
    """Every string in a nested structure, dict keys included."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, dict):
        return [s for k, v in spec.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(spec, (list, tuple)):
        return [s for item in spec for s in _strings(item)]
    return []


WELL_FORMED_LEVELS = st.lists(st.lists(st.sampled_from(sorted(VALID)), min_size=1, max_size=2, unique=True),
                              min_size=1, max_size=3).filter(lambda lv: len({n for x in lv for n in x}) == sum(map(len, lv)))


@FUZZ
@given(st.one_of(ANYTHING, WELL_FORMED_LEVELS))
def test_preorder_random_structures(spec):
    """Any structure parses to a valid preorder over names taken from it, or raises PreorderError; the
    well-formed level lists mixed in must parse, level for level."""
    p = _parse_or_preorder_error(spec)
    if p is not None:
        _check_parsed(p)
        leaves = _strings(spec)
        for name in p.objectives:  # nothing invented: each name comes from a string of the input
            assert any(name in leaf for leaf in leaves), (name, spec)
    if isinstance(spec, list) and spec and all(isinstance(lv, list) and lv and all(n in VALID for n in lv)
                                               for lv in spec) \
            and len({n for lv in spec for n in lv}) == sum(map(len, spec)):
        assert p is not None and p.levels == tuple(tuple(lv) for lv in spec)


@FUZZ
@given(st.fixed_dictionaries({"objectives": ANYTHING}, optional={"greater": ANYTHING, "ties": ANYTHING}))
def test_preorder_random_pair_mappings(spec):
    p = _parse_or_preorder_error(spec)
    if p is not None:
        _check_parsed(p)
        assert list(p.objectives) == [o.strip() for o in spec["objectives"]]


@FUZZ
@given(st.lists(st.lists(NAMES, max_size=3), max_size=4), st.lists(st.tuples(NAMES, NAMES), max_size=4))
def test_preorder_levels_and_pairs(levels, pairs):
    p = _parse_or_preorder_error(levels)
    flat = [n for lv in levels for n in lv]
    well_formed = (levels and all(levels) and all(n in VALID for n in flat) and len(set(flat)) == len(flat))
    assert (p is not None) == bool(well_formed)
    if p is not None:
        assert p.levels == tuple(tuple(lv) for lv in levels)
    q = _parse_or_preorder_error({"objectives": flat, "greater": pairs})
    if q is not None:
        _check_parsed(q)
        for a, b in pairs:  # every stated pair holds strictly
            assert q.strictly_above[q.index(a), q.index(b)]


# ------------------------------------------------------------------------------------------ config
SECTION_KEYS = {
    "env": ["factory", "id", "scenario", "kwargs", "wrappers", "preorder", "weights", "gamma", "imports", "make_vec"],
    "agent": ["name", "policy", "kwargs", "learning_rate", "gamma", "buffer_size"],
    "train": ["total_timesteps", "seed", "n_envs", "device", "checkpoint_every", "vec_env", "progress_bar"],
    "eval": ["episodes", "deterministic", "seeds", "bootstrap_reps"],
    "output": ["root"],
    "sweep": ["seeds", "grid", "backend", "max_workers"],
}
# Values that reach imports are drawn from names that are safe to import (no side effects).
SAFE_VALUES = st.one_of(SCALARS, st.sampled_from([
    "morl.registry:two_objective_cartpole", "morl.registry:nothing", "no_such_module:f", ":", "a:b:c", ".rel:f",
    "CartPole-v1", "DQN", "PPO", "Nope", "MlpPolicy", "balance > centred", "balance > balance", "cpu", "gpu",
    "", "..", "../escape", "a/b", "x" * 300, "json", "morl"]), ANYTHING)
MODULE_REFS = st.sampled_from(["", ".", ".x", "..x", "a..b", "json", "morl.no_such", "morl.registry", 3, None])
SAFE_VALUES = st.one_of(SAFE_VALUES, st.lists(MODULE_REFS, max_size=2),
                        st.lists(st.fixed_dictionaries({"name": st.one_of(MODULE_REFS, SAFE_VALUES)}), max_size=2),
                        st.dictionaries(st.one_of(st.integers(-2, 2), NAMES), SCALARS, max_size=3))


@st.composite
def configs(draw):
    data = {}
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            data[section] = draw(st.one_of(
                st.dictionaries(st.sampled_from(keys), SAFE_VALUES, max_size=5),
                SAFE_VALUES))
    if draw(st.booleans()):
        data["name"] = draw(SAFE_VALUES)
    if draw(st.booleans()):
        data[draw(st.text(max_size=6))] = draw(SAFE_VALUES)
    return data


def _valid_base():
    return {"name": "fuzz", "env": {"factory": "morl.registry:two_objective_cartpole", "preorder": "balance > centred"},
            "agent": {"name": "DQN"}, "train": {"total_timesteps": 10}}


@FUZZ
@given(configs())
def test_config_random_mappings(data):
    try:
        config_from_dict(data, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ") and exc.problem


@FUZZ
@given(st.sampled_from(list(SECTION_KEYS)), st.data())
def test_config_one_field_mutated_from_a_valid_base(section, data):
    cfg = _valid_base()
    key = data.draw(st.sampled_from(SECTION_KEYS[section]))
    cfg.setdefault(section, {})[key] = data.draw(SAFE_VALUES)
    try:
        config_from_dict(cfg, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.path and exc.problem


@FUZZ
@given(ANYTHING)
def test_config_non_mapping_roots(data):
    try:
        config_from_dict(data, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problem


@pytest.fixture(scope="module")
def yaml_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_yaml")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=string.printable + "é\t", max_size=60))
def test_load_config_random_yaml_text(yaml_dir, text):
    path = yaml_dir / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(configs(), st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz.=_0123", max_size=15), max_size=2))
def test_load_config_dumped_mappings_with_overrides(yaml_dir, data, overrides):
    path = yaml_dir / "fuzz2.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        load_config(path, overrides)
    except ConfigError as exc:
        assert exc.problem
