"""scripts/train_carla.py against fake CARLA servers, one per port (tests/envs/fake_carla.py).

Each port gets its own copy of the fake module (its own ``SERVER``), behind a ``carla`` module whose
``Client(host, port)`` picks the server by port, as separate CarlaUE4.sh processes would be.
"""

import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from morl import experiment

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "envs" / "fake_carla.py"

# tiny budget: 2 envs x 32 steps = 64 samples per rollout, a checkpoint every rollout
TINY = ["--set", "env.kwargs.route=[[0.0, 0.0], [150.0, 0.0]]", "--set", "env.kwargs.n_traffic=1",
        "--set", "env.kwargs.max_steps=40", "--set", "env.kwargs.backoff_base=0.001",
        "--set", "env.kwargs.backoff_max=0.002", "--set", "env.kwargs.reconnect_attempts=2",
        "--set", "agent.n_steps=32", "--set", "agent.batch_size=32", "--set", "agent.n_epochs=1",
        "--set", "agent.policy_kwargs={net_arch: {pi: [16], vf: [16]}}", "--set", "train.device=cpu",
        "--set", "train.checkpoint_every=64", "--set", "eval.episodes=1", "--set", "eval.bootstrap_reps=100",
        "--restart-delay", "0"]


@pytest.fixture
def servers(monkeypatch, load_file):
    """``{port: fake module}``, filled as clients connect; ``servers[port].SERVER`` is that server."""
    fakes = {}

    def module_for(port):
        if port not in fakes:
            fakes[port] = load_file(FAKE, f"fake_carla_{port}")
        return fakes[port]

    carla = types.ModuleType("carla")  # the value types (Location, LaneType, ...) of one copy serve all servers
    carla.__dict__.update({k: v for k, v in vars(load_file(FAKE, "fake_carla_types")).items() if not k.startswith("__")})
    carla.Client = lambda host="localhost", port=2000, worker_threads=0: module_for(port).Client(host, port)
    monkeypatch.setitem(sys.modules, "carla", carla)
    fakes["module_for"] = module_for
    return fakes


def test_trains_one_env_per_server_and_writes_the_run(servers, tmp_path, capsys, load_script):
    run = tmp_path / "run"
    assert load_script("train_carla").main(["--base-port", "3000", "--n-envs", "2", "--timesteps", "128",
                               "--run-dir", str(run), "--no-eval", *TINY]) == 0
    out = capsys.readouterr().out
    assert "env 0: CARLA server localhost:3000 (Traffic Manager 8000)" in out
    assert "env 1: CARLA server localhost:3003 (Traffic Manager 8001)" in out
    # each env drove its own server, with its own Traffic Manager, which it handed back at close
    assert sorted(p for p in servers if p != "module_for") == [3000, 3003]
    assert servers[3000].SERVER.ticks > 40 and servers[3003].SERVER.ticks > 40
    assert servers[3000].SERVER.tm_sync == {8000: False} and servers[3003].SERVER.tm_sync == {8001: False}
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 128 and (run / "checkpoints" / "ckpt_64.zip").exists()
    assert (run / "model.zip").exists()
    # evaluation (without plots here) drives env 0's server only
    ticks = servers[3000].SERVER.ticks, servers[3003].SERVER.ticks
    assert len(experiment.evaluate(run, episodes=1, plots=False)["episodes"]) == 1
    assert servers[3000].SERVER.ticks > ticks[0] and servers[3003].SERVER.ticks == ticks[1]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["agent"]["name"] == "CaRLPPO" and cfg["env"]["wrappers"][0]["name"] == "morl.agents.carl:CaRLReward"
    assert cfg["env"]["kwargs"]["per_env"] == {"port": [3000, 3003], "tm_port": [8000, 8001]}


def test_resumes_from_the_checkpoint_when_a_server_dies(servers, tmp_path, capsys, load_script):
    # env 1's server (port 2003) goes away at its 100th tick (about timestep 200) for long enough that the
    # env's reconnection gives up (2 attempts), and is back when the script resumes.
    down = servers["module_for"](2003).SERVER
    down.drop_at_tick, down.down_for_calls = 100, 3
    run = tmp_path / "run"
    assert load_script("train_carla").main(["--timesteps", "320", "--n-envs", "2", "--run-dir", str(run), "--no-eval",
                               "--max-restarts", "2", *TINY]) == 0
    out = capsys.readouterr().out
    assert "CARLA server lost: ConnectionError: could not reach the CARLA server at localhost:2003" in out
    assert "restart 1/2 in 0 s, resuming from the checkpoint at timestep 192" in out
    assert "done: 320 timesteps, 1 restart(s)" in out
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 320 and (run / "model.zip").exists()
    assert not (run / "error.txt").exists()  # the resume finished the run
    assert servers[2000].SERVER.clients == 2  # the healthy server: one client per segment
    progress = (run / "progress.csv").read_text().splitlines()
    steps = [float(r.split(",")[h]) for h in [progress[0].split(",").index("time/total_timesteps")]
             for r in progress[1:]]
    assert steps == sorted(steps) and steps[-1] == 320  # rows up to the checkpoint kept, then the resumed ones


def test_gives_up_after_max_restarts(servers, tmp_path, capsys, load_script):
    down = servers["module_for"](2003).SERVER
    down.drop_at_tick, down.down_for_calls = 60, 10_000  # gone for good
    run = tmp_path / "run"
    assert load_script("train_carla").main(["--timesteps", "320", "--n-envs", "2", "--run-dir", str(run), "--no-eval",
                               "--max-restarts", "1", *TINY]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("CARLA server lost") == 2 and "restart 1/1" in captured.out
    assert f"giving up after 1 restart(s); continue later with: python scripts/train_carla.py --resume {run}" \
        in captured.err
    assert read_state(run)["num_timesteps"] == 64  # the checkpoint before the crash is kept


def read_state(run):
    return json.loads((run / "checkpoints" / "state.json").read_text())


def test_port_arguments_become_per_env_overrides(load_script):
    script = load_script("train_carla")
    data = {"train": {"n_envs": 4}, "env": {"kwargs": {"per_env": {"port": [2000, 2003, 2006, 2009],
                                                                    "tm_port": [8000, 8001, 8002, 8003]}}}}
    over = dict(o for o in script.overrides_for(script.parse_args(["--ports", "2000,2010"]), data)
                if isinstance(o, tuple))
    assert over == {"train.n_envs": 2, "env.kwargs.per_env.port": [2000, 2010],
                    "env.kwargs.per_env.tm_port": [8000, 8001]}
    over = dict(script.overrides_for(script.parse_args(["--n-envs", "3", "--tm-base-port", "9000"]), data))
    assert over["env.kwargs.per_env.port"] == [2000, 2003, 2006]
    assert over["env.kwargs.per_env.tm_port"] == [9000, 9001, 9002]
    assert script.overrides_for(script.parse_args([]), data) == []
    with pytest.raises(SystemExit):
        script.parse_args(["--ports", "2000,2003", "--n-envs", "3"])
    assert script.server_lost(ConnectionError("x")) and script.server_lost(RuntimeError("time-out of 10000ms"))
    from morl.checkpoints import DivergenceError

    assert not script.server_lost(DivergenceError("time-out")) and not script.server_lost(ValueError("x"))


def test_too_few_ports_for_the_envs_is_a_config_error(servers, tmp_path, capsys, load_script):
    # the config lists 4 ports; asking for 5 envs through --set (not --n-envs, which rewrites them) fails
    # before anything is written, naming the entry
    run = tmp_path / "run"
    assert load_script("train_carla").main(["--set", "train.n_envs=5", "--run-dir", str(run), "--no-eval", *TINY]) == 2
    err = capsys.readouterr().err
    assert "env.kwargs.per_env.port: needs a list of at least train.n_envs = 5 values" in err
    assert not run.exists() and not [p for p in servers if p != "module_for"]  # no server was contacted


@pytest.mark.parametrize("env, problem", [
    ({"scenario": "route", "kwargs": {"per_env": {"seed": [1, 2]}}}, "a batched simulator (env.scenario) takes no"),
    ({"id": "morl/Carla-v0", "kwargs": {"port": 2000, "per_env": {"port": [2000, 2003]}}}, "also given as env.kwargs.port"),
    ({"id": "morl/Carla-v0", "kwargs": {"per_env": [2000, 2003]}}, "must map argument names to lists"),
])
def test_per_env_arguments_are_checked(env, problem):
    from morl.config import ConfigError, config_from_dict

    cfg = config_from_dict({"env": env, "agent": {"name": "CaRLPPO"}, "train": {"total_timesteps": 1, "n_envs": 2}})
    with pytest.raises(ConfigError, match="env.kwargs.per_env") as info:
        experiment.check_config(cfg, "x.yaml")
    assert problem in str(info.value)
