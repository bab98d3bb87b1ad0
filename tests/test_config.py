"""Config validation: good files, overrides, and one clear message for each kind of bad file."""

from pathlib import Path

import pytest
import yaml

from morl import cli
from morl.config import ConfigError, apply_overrides, load_config, parse_value

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _write(tmp_path, data, name="exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _base():
    return yaml.safe_load((CONFIGS / "tiny_dqn.yaml").read_text())


@pytest.mark.parametrize("name", ["tiny_dqn.yaml", "tiny_sweep.yaml"])
def test_tiny_configs_are_valid(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.name == name.removesuffix(".yaml")
    assert cfg.preorder().objectives == ("balance", "centred")


def test_overrides_and_agent_kwargs(tmp_path):
    path = _write(tmp_path, _base())
    cfg = load_config(path, ["agent.learning_rate=1e-4", "train.total_timesteps=60", "eval.seeds=[1, 2]",
                             "agent.policy_kwargs.net_arch=[8]"])
    assert cfg.agent.kwargs["learning_rate"] == pytest.approx(1e-4)  # YAML 1.1 alone reads "1e-4" as a string
    assert cfg.train.total_timesteps == 60 and cfg.eval.seeds == [1, 2]
    assert cfg.agent.kwargs["policy_kwargs"] == {"net_arch": [8]}
    # `kwargs:` and flat keys are the same thing
    data = _base()
    data["agent"] = {"name": "DQN", "kwargs": {"gamma": 0.9}}
    assert load_config(_write(tmp_path, data)).agent.kwargs == {"gamma": 0.9}
    # name defaults to the file stem
    data = _base()
    del data["name"]
    assert load_config(_write(tmp_path, data, "my_run.yaml")).name == "my_run"


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("1e-4") == pytest.approx(1e-4)
    assert parse_value("true") is True and parse_value("[1, 2]") == [1, 2] and parse_value("PPO") == "PPO"


def _bad(tmp_path, mutate, overrides=()):
    data = _base()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return path, info.value


@pytest.mark.parametrize("mutate,field,problem", [
    (lambda d: d["train"].update(total_timestep=5), "train.total_timestep", "unknown key (did you mean total_timesteps?)"),
    (lambda d: d.update(trian={}), "trian", "unknown key"),
    (lambda d: d["train"].update(total_timesteps="lots"), "train.total_timesteps", "valid integer"),
    (lambda d: d["train"].update(total_timesteps=-3), "train.total_timesteps", "greater than 0"),
    (lambda d: d["eval"].update(deterministic="maybe"), "eval.deterministic", "valid boolean"),
    (lambda d: d["train"].pop("total_timesteps"), "train.total_timesteps", "required key is missing"),
    (lambda d: d["agent"].update(name="DQM"), "agent.name", "unknown agent 'DQM' (known:"),
    (lambda d: d["agent"].update(learnin_rate=0.1), "agent.learnin_rate",
     "unknown argument of DQN (did you mean learning_rate?)"),
    (lambda d: d["env"].update(factory=None, id="CartPol-v1"), "env.id", "did you mean CartPole-v1"),
    (lambda d: d["env"].update(id="CartPole-v1"), "env", "exactly one of id, scenario, factory"),
    (lambda d: d["env"].update(factory="morl.registry:no_such_env"), "env.factory", "no attribute"),
    (lambda d: d["env"].update(preorder="balance > > centred"), "env.preorder", "empty objective name"),
    (lambda d: d["train"].update(device="gpu"), "train.device", "device must be"),
    (lambda d: d.update(sweep={"seeds": 2, "grid": {"agent.name": []}}), "sweep.grid.agent.name", "at least one"),
    (lambda d: d["env"].update(factory=None, scenario="route", wrappers=[{"name": "morl.agents.carl:CaRLReward"}]),
     "env.wrappers.0.name", "is not a VecEnvWrapper"),
])
def test_each_kind_of_bad_file_names_file_field_problem(tmp_path, mutate, field, problem):
    path, err = _bad(tmp_path, mutate)
    assert str(err).startswith(f"{path}: {field}: "), str(err)
    assert problem in err.problem, str(err)


def test_bad_override_and_bad_yaml(tmp_path):
    path = _write(tmp_path, _base())
    with pytest.raises(ConfigError, match=r"exp.yaml: train.seeed: unknown key"):
        load_config(path, ["train.seeed=3"])
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        load_config(path, ["train.seed"])
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+: invalid YAML"):
        load_config(_write(tmp_path, "env: [unclosed\nagent: x\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="missing.yaml: <file>: cannot read"):
        load_config(tmp_path / "missing.yaml")
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_cli_bad_config_exits_2_without_traceback_or_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Unknown objective: only building the env reveals it, still before any directory is made.
    data = _base()
    data["env"]["preorder"] = "balance > speed"
    del data["env"]["weights"]  # (the weights would name the mismatch first, at load time)
    path = _write(tmp_path, data)
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {path}: env.preorder: unknown objective 'speed' (the env's objectives: balance, centred)"
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()
    # Preorder leaving out an env objective, and weights of the wrong length: same path, same guarantees.
    for key, value, field in (("preorder", "balance", "env.preorder"), ("weights", [1.0], "env.weights")):
        data = _base()
        del data["env"]["weights"]
        data["env"][key] = value
        assert cli.main(["train", str(_write(tmp_path, data))]) == 2
        assert f": {field}: " in capsys.readouterr().err
    assert cli.main(["sweep", str(path), "--grid", "agent.name=DQN,Nope"]) == 2
    assert "agent.name: unknown agent 'Nope'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_messages_name_the_mistake(tmp_path, monkeypatch, capsys):
    # YAML 1.1 reads 1e-4 as a string; the config loader reads it as the number it is meant to be.
    text = (CONFIGS / "tiny_dqn.yaml").read_text()
    text = text.replace("learning_starts: 50", "learning_starts: 50\n  learning_rate: 1e-4")
    text = text.replace("buffer_size: 2000", "buffer_size: 1e4")
    cfg = load_config(_write(tmp_path, text))
    assert cfg.agent.kwargs["learning_rate"] == 1e-4 and cfg.agent.kwargs["buffer_size"] == 10_000
    assert type(cfg.agent.kwargs["buffer_size"]) is int
    with pytest.raises(ConfigError, match=r"exp.yaml: agent.learning_rate: must be a number \(DQN's default: 0.0001\), "
                                          r"got '1e-4' \(a string: remove the quotes\)$"):
        load_config(_write(tmp_path, text.replace("learning_rate: 1e-4", "learning_rate: '1e-4'")))
    # Agent arguments are checked against the constructor before anything trains.
    cases = [
        (lambda d: d["agent"].update(learning_starts="fifty"), "agent.learning_starts",
         "must be an integer (DQN's default: 100), got 'fifty'"),
        (lambda d: d["agent"].update(learning_starts=2.5), "agent.learning_starts",
         "must be an integer (DQN's default: 100), got 2.5"),
        # QDIQN hands **kwargs to IQN: IQN's parameters are known too, so a typo is caught and named.
        (lambda d: d["agent"].update(name="QDIQN", learning_strats=10, learning_starts=None), "agent.learning_strats",
         "unknown argument of QDIQN (did you mean learning_starts?)"),
        (lambda d: d["agent"].update(learning_starts=300), "agent.learning_starts",
         "300 is not below train.total_timesteps = 300: the agent would collect 300 steps and never update "
         "(no gradient step); lower agent.learning_starts or raise train.total_timesteps"),
        (lambda d: (d["agent"].pop("learning_starts"), d["train"].update(total_timesteps=80)), "agent.learning_starts",
         "100 (DQN's default) is not below train.total_timesteps = 80"),
        (lambda d: d["agent"].update(gradient_steps=0), "agent.gradient_steps", "is 0: the agent would never update"),
        # A misspelt key is named first, not hidden behind the key it meant being "missing".
        (lambda d: d["train"].update(total_timestep=d["train"].pop("total_timesteps")), "train.total_timestep",
         "unknown key (did you mean total_timesteps?) (and 1 more problem)"),
    ]
    for mutate, field, problem in cases:
        path, err = _bad(tmp_path, mutate)
        assert str(err).startswith(f"{path}: {field}: ") and problem in err.problem, str(err)
    # A misspelt objective in the preorder is named, not the correct name the weights use.
    monkeypatch.chdir(tmp_path)
    data = _base()
    data["env"]["preorder"] = "balance > centerd"
    path = _write(tmp_path, data)
    assert cli.main(["train", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {path}: env.preorder: unknown objective 'centerd' (the env's "
                                               "objectives: balance, centred) (did you mean centred?)")
    data = _base()
    data["env"]["weights"] = {"balance": 1.0, "speed": 2.0}
    path = _write(tmp_path, data)
    assert cli.main(["train", str(path)]) == 2
    assert "env.weights.speed: unknown objective (the env's objectives: balance, centred)" in capsys.readouterr().err
