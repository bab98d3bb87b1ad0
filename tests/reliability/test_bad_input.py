"""The bad-input corpus: each case gives one clear error naming the culprit, and leaves no run directory.

Config cases run through ``morl train`` (the CLI, in-process): exit status 2 and a single stderr line
``error: <file>: <field.path>: <problem>``. Run-time cases (NaN/inf observations and rewards) exit
with status 1 and ``error: NonFiniteError: <what> ... at step <k> of episode <e>``. Action cases call
the env that :func:`morl.experiment.make_env` builds. The files under ``corpus/`` are the fixtures;
the other cases change one field of ``corpus/base.yaml``. Cases already in ``tests/test_config.py``
(unknown keys, unknown agent / env id / factory, typed fields, bad overrides, a missing file) are not
repeated here.
"""

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from morl import cli, experiment
from morl.config import load_config
from morl.wrappers import ActionError, DiscretizeAction, FiniteCheck, NonFiniteError, VectorReward

CORPUS = Path(__file__).resolve().parent / "corpus"


def _base() -> dict:
    return yaml.safe_load((CORPUS / "base.yaml").read_text())


def _train_cli(path: Path, capsys, *extra) -> tuple[int, str]:
    code = cli.main(["train", str(path), "--no-eval", *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {err}"
    return code, lines[0]


def _no_run_left(root: Path) -> None:
    runs = root / "runs"
    assert not runs.exists() or not any(runs.rglob("*")), f"left behind: {sorted(runs.rglob('*'))}"


# ------------------------------------------------------------------------------------------ files
FILE_CASES = [
    # (file, field, problem): the message is "error: <file>: <field>: <problem>"
    ("tab_indent.yaml", "line 4", "invalid YAML: found character '\\t' that cannot start any token"),
    ("unclosed_quote.yaml", "line 4", "invalid YAML: found unexpected end of stream (while scanning a quoted scalar started on line 2)"),
    ("duplicate_section.yaml", "line 6", "invalid YAML: duplicate key 'agent' (first on line 4)"),
    ("not_a_mapping.yaml", "<root>", "the file must hold a mapping, got list"),
]


@pytest.mark.parametrize("extra", [(), ("--set", "train.seed=1")], ids=["plain", "with_set"])
@pytest.mark.parametrize("name,field,problem", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_malformed_files(name, field, problem, extra, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = CORPUS / name
    code, line = _train_cli(path, capsys, *extra)  # an override must not turn the message into a traceback
    assert code == 2 and line == f"error: {path}: {field}: {problem}", line
    _no_run_left(tmp_path)


# ------------------------------------------------------------------------------------------ fields
def _set(dotted: str, value):
    def mutate(data):
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return mutate


def _carla(route):
    def mutate(data):
        data["env"] = {"factory": "morl.envs.driving.carla_env:CarlaEnv", "kwargs": {"route": route}}
    return mutate


FIELD_CASES = [
    # id, mutation, field, problem (a regex that must match the whole problem text)
    ("seed_is_text", _set("train.seed", "zero"), "train.seed", r"Input should be a valid integer, unable to parse string as an integer \(got 'zero'\)"),
    ("negative_seed", _set("train.seed", -1), "train.seed", r"Input should be greater than or equal to 0 \(got -1\)"),
    ("n_envs_fraction", _set("train.n_envs", 1.5), "train.n_envs", r"Input should be a valid integer, got a number with a fractional part \(got 1.5\)"),
    ("kwargs_not_mapping", _set("env.kwargs", [1, 2]), "env.kwargs", r"Input should be a valid dictionary \(got \[1, 2\]\)"),
    ("weights_text", _set("env.weights", "heavy"), "env.weights", r"Input should be a valid list or a valid dictionary \(got 'heavy'\)"),
    ("weight_nan", _set("env.weights.centred", float("nan")), "env.weights", r"weights must be finite numbers, got nan"),
    ("gamma_above_one", _set("env.gamma", 1.5), "env.gamma", r"Input should be less than or equal to 1 \(got 1.5\)"),
    ("checkpoint_every_zero", _set("train.checkpoint_every", 0), "train.checkpoint_every", r"Input should be greater than 0 \(got 0\)"),
    ("run_name_escapes", _set("name", "../../elsewhere"), "name", r"name must be 1-128 letters, .* \(it names the run folder\), got '../../elsewhere'"),
    ("unknown_wrapper", _set("env.wrappers", [{"name": "NoSuchWrapper"}]), "env.wrappers.0.name", r"unknown wrapper 'NoSuchWrapper' \(give 'package.module:Class' or a name in morl.wrappers, morl.vec_wrappers or gymnasium.wrappers\)"),
    ("unknown_import", _set("env.imports", ["no_such_package"]), "env.imports", r"cannot import: No module named 'no_such_package'"),
    ("relative_import", _set("env.imports", [".envs"]), "env.imports", r"cannot import: '.envs' is not an absolute module name"),
    ("unknown_scenario", lambda d: d.update(env={"scenario": "nowhere"}), "env", r"building the environment failed: .*'nowhere'.*"),
    ("weights_outside_preorder", _set("env.preorder", [["balance"], ["speed"]]), "env.preorder", r"unknown objective 'speed' \(the env's objectives: balance, centred\)"),
    ("unknown_objective_in_levels", lambda d: d["env"].update(preorder=[["balance"], ["speed"]], weights=None), "env.preorder", r"unknown objective 'speed' \(the env's objectives: balance, centred\)"),
    ("preorder_cycle", _set("env.preorder", "balance > centred; centred > balance"), "env.preorder", r"cycle: 'balance > centred' is contradicted by the other pairs, which put them level"),
    ("preorder_pairs_cycle", _set("env.preorder", {"objectives": ["balance", "centred"], "greater": [["centred", "balance"]], "ties": [["balance", "centred"]]}), "env.preorder", r"cycle: 'centred > balance' is contradicted by the other pairs, which put them level"),
    ("preorder_duplicate", _set("env.preorder", "balance > balance"), "env.preorder", r"objective 'balance' is listed twice in 'balance > balance'"),
    ("preorder_duplicate_level", _set("env.preorder", [["balance"], ["balance", "centred"]]), "env.preorder", r"objective 'balance' is listed twice"),
    ("preorder_self_precedence", _set("env.preorder", {"objectives": ["balance", "centred"], "greater": [["balance", "balance"]]}), "env.preorder", r"objective 'balance' cannot have precedence over itself"),
    ("preorder_empty", _set("env.preorder", ""), "env.preorder", r"empty preorder string"),
    ("preorder_bad_key", _set("env.preorder", {"objectives": ["balance"], "greatr": []}), "env.preorder", r"unknown preorder key 'greatr' \(allowed: objectives, greater, ties\)"),
    ("missing_route_file", _carla("no_such_route.json"), "env", r"building the environment failed: route file 'no_such_route.json' not found \(also looked in .*assets/routes\)"),
    ("broken_route_file", _carla(str(CORPUS / "broken_route.json")), "env", r"building the environment failed: route file .*broken_route.json: invalid JSON: Expecting .*"),
    ("missing_density_image", lambda d: d.update(env={"id": "morl/Swarm-v0", "kwargs": {"density": "image:no_such_map"}}), "env", r"building the environment failed: density image 'no_such_map' not found \(assets: .*\)"),
]


@pytest.mark.parametrize("mutate,field,problem", [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_bad_fields(mutate, field, problem, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = _base()
    mutate(data)
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(data))
    code, line = _train_cli(path, capsys)
    prefix = f"error: {path}: {field}: "
    assert code == 2 and line.startswith(prefix), line
    assert re.fullmatch(problem, line[len(prefix):]), line
    _no_run_left(tmp_path)


# ------------------------------------------------------------------------------------------ run time
class Poison(gym.Wrapper):
    """Makes one entry of the observation or reward non-finite from a given total step (test fixture).

    :param what: ``"obs"``, ``"reward"`` or ``"reset"`` (the observation returned by ``reset``).
    :param at: the total step count (over all episodes) from which it happens.
    :param value: ``"nan"``, ``"inf"`` or ``"-inf"``.
    :param index: which entry.
    """

    def __init__(self, env, what: str, at: int = 0, value: str = "nan", index: int = 0):
        super().__init__(env)
        self.what, self.at, self.value, self.index, self.t = what, at, float(value), index, 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.what == "reset":
            obs = obs.copy()
            obs[self.index] = self.value
        return obs, info

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.t += 1
        if self.t >= self.at and self.what == "obs":
            obs = obs.copy()
            obs[self.index] = self.value
        if self.t >= self.at and self.what == "reward":
            reward = reward.copy()
            reward[self.index] = self.value
        return obs, reward, term, trunc, info


def _poisoned(tmp_path, **kwargs) -> Path:
    data = _base()
    data["env"]["wrappers"] = [{"name": f"{__name__}:Poison", "kwargs": kwargs}]
    path = tmp_path / "poisoned.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


RUNTIME_CASES = [
    ({"what": "reset"}, r"observation is non-finite after reset \(episode 1\): nan at \[0\]"),
    ({"what": "obs", "at": 7, "index": 2}, r"observation is non-finite at step 7 of episode 1: nan at \[2\]"),
    ({"what": "obs", "at": 3, "value": "-inf", "index": 1}, r"observation is non-finite at step 3 of episode 1: -inf at \[1\]"),
    ({"what": "reward", "at": 5, "index": 1, "value": "inf"}, r"reward 'centred' is inf at step 5 of episode 1 \(reward \[1.0, inf\]\)"),
    ({"what": "reward", "at": 4}, r"reward 'balance' is nan at step 4 of episode 1 \(reward \[nan, -?0.0\d*\]\)"),
]


@pytest.mark.parametrize("poison,message", RUNTIME_CASES)
def test_non_finite_observations_and_rewards(poison, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, line = _train_cli(_poisoned(tmp_path, **poison), capsys)
    assert code == 1 and line.startswith("error: NonFiniteError: "), line
    assert re.fullmatch(message, line.removeprefix("error: NonFiniteError: ")), line
    _no_run_left(tmp_path)


def test_a_fault_after_a_checkpoint_keeps_a_resumable_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _poisoned(tmp_path, what="reward", at=45, value="inf")
    code, line = _train_cli(path, capsys, "--set", "train.checkpoint_every=20")
    assert code == 1 and re.search(r"reward 'balance' is inf at step \d+ of episode \d+", line), line
    (run,) = (tmp_path / "runs" / "corpus").iterdir()
    assert "NonFiniteError: reward 'balance' is inf" in (run / "error.txt").read_text()
    assert experiment.read_checkpoint_state(run)["num_timesteps"] in (20, 40)


# ------------------------------------------------------------------------------------------ actions
@pytest.fixture
def cartpole_env():
    env = experiment.make_env(load_config(CORPUS / "base.yaml"))
    env.reset(seed=0)
    return env


@pytest.mark.parametrize("action,message", [
    (np.array([0, 1]), "action array([0, 1]) does not fit Discrete(2): a discrete action must be one integer, got shape (2,)"),
    (0.5, "action 0.5 does not fit Discrete(2): a discrete action must be an integer, got float"),
    (np.float32(1.0), "action np.float32(1.0) does not fit Discrete(2): a discrete action must be an integer, got float32"),
    (2, "action 2 does not fit Discrete(2): it is outside 0..1"),
    (-1, "action -1 does not fit Discrete(2): it is outside 0..1"),
    ("left", "action 'left' does not fit Discrete(2): a discrete action must be an integer, got str"),
    (None, "action None does not fit Discrete(2): a discrete action must be an integer, got NoneType"),
])
def test_wrong_discrete_actions(cartpole_env, action, message):
    with pytest.raises(ActionError) as info:
        cartpole_env.step(action)
    assert str(info.value) == message
    cartpole_env.step(np.int64(1))  # a good action still works afterwards


def _pendulum():
    env = VectorReward(gym.make("Pendulum-v1"), ("upright",), fn=lambda o, r, i: [r])
    env = FiniteCheck(env)
    env.reset(seed=0)
    return env


@pytest.mark.parametrize("action,message", [
    (np.zeros(3, np.float32), "expected shape (1,), got shape (3,)"),
    (np.array(["fast"]), "expected numbers, got dtype <U4"),
    (np.array([np.nan], np.float32), "non-finite entry nan at [0]"),
    (np.array([True]), "expected numbers, got dtype bool"),
])
def test_wrong_continuous_actions(action, message):
    env = _pendulum()
    with pytest.raises(ActionError, match=re.escape(f"does not fit {env.action_space}: {message}")):
        env.step(action)
    env.step(np.array([5.0], np.float32))  # out of bounds passes: envs clip


def test_wrong_multi_discrete_actions():
    env = FiniteCheck(DiscretizeAction(gym.make("Pendulum-v1"), bins=3, mode="factorised"))
    env.reset(seed=0)
    with pytest.raises(ActionError, match=r"expected integers of shape \(1,\), got dtype float64 shape \(1,\)"):
        env.step(np.array([1.0]))
    with pytest.raises(ActionError, match="an entry is out of range"):
        env.step(np.array([3]))
    env.step(np.array([2]))


def test_finite_check_passes_good_data_unchanged():
    base = VectorReward(gym.make("CartPole-v1"), ("alive", "x"), fn=lambda o, r, i: [r, -abs(o[0])])
    checked = FiniteCheck(VectorReward(gym.make("CartPole-v1"), ("alive", "x"), fn=lambda o, r, i: [r, -abs(o[0])]))
    o1, _ = base.reset(seed=3)
    o2, _ = checked.reset(seed=3)
    assert np.array_equal(o1, o2)
    for a in [0, 1, 1, 0, 1]:
        s1, s2 = base.step(a), checked.step(a)
        assert np.array_equal(s1[0], s2[0]) and np.array_equal(s1[1], s2[1]) and s1[2:4] == s2[2:4]


def test_non_finite_error_is_a_value_error_with_the_step():
    env = FiniteCheck(Poison(VectorReward(gym.make("CartPole-v1"), ("alive", "x"), fn=lambda o, r, i: [r, 0.0]),
                             "reward", at=2, index=1))
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(NonFiniteError, match=r"^reward 'x' is nan at step 2 of episode 1") as info:
        env.step(0)
    assert isinstance(info.value, ValueError)
