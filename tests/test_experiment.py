"""CLI train -> eval -> plot on a tiny config, and resume from the last checkpoint."""

import csv
import json
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from morl import cli, experiment
from morl.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_dqn.yaml"


def _assert_png(path: Path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 150 and img.shape[1] > 150, (path, img.shape)
    assert img[..., :3].std() > 0.01, f"{path} is blank"


def _progress(run_dir: Path) -> list[dict]:
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


def _only_run(root: Path) -> Path:
    runs = list((root / "runs" / "tiny_dqn").iterdir())
    assert len(runs) == 1
    return runs[0]


def test_cli_train_eval_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", str(CONFIG), "--set", "agent.learning_rate=5e-4"]) == 0
    run = _only_run(tmp_path)
    assert (tmp_path / capsys.readouterr().out.strip()).resolve() == run.resolve()

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["agent"]["learning_rate"] == pytest.approx(5e-4) and cfg["train"]["total_timesteps"] == 300
    model = DQN.load(run / "model.zip")
    assert model.num_timesteps == 300 and model.learning_rate == pytest.approx(5e-4)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 300 and state["buffer"] == "buffer_300.pkl"
    assert {p.name for p in (run / "checkpoints").glob("ckpt_*.zip")} == {"ckpt_100.zip", "ckpt_200.zip", "ckpt_300.zip"}
    assert not list((run / "checkpoints").glob("*.tmp"))
    rows = _progress(run)
    steps = [float(r["time/total_timesteps"]) for r in rows]
    assert len(rows) >= 2 and steps == sorted(steps) and steps[-1] <= 300
    assert all(r["rollout/return_balance"] for r in rows)  # per-objective returns are logged
    assert list((run / "tb").glob("events.out.tfevents.*"))

    ev = json.loads((run / "eval.json").read_text())
    assert ev["objectives"] == ["balance", "centred"] and ev["preorder"] == "balance > centred"
    assert [ep["seed"] for ep in ev["episodes"]] == [10000, 10001, 10002, 10003]
    for ep in ev["episodes"]:
        # CartPole pays +1 per step on "balance"; "centred" is -|x| summed, so between -length*2.4 and 0.
        assert ep["returns"]["balance"] == ep["length"]
        assert -2.4 * ep["length"] <= ep["returns"]["centred"] <= 0
        assert set(ep["events"]) == {"off_road"} and 0 <= ep["events"]["off_road"] <= ep["length"]
    off_road = np.mean([ep["events"]["off_road"] > 0 for ep in ev["episodes"]])
    assert ev["metrics"]["off_road_rate"]["value"] == pytest.approx(off_road)
    assert "collision_rate" not in ev["metrics"]  # the env does not report collisions
    for name in ("safety.png", "returns.png", "learning_curve.png", "learning_curve_balance.png"):
        _assert_png(run / "plots" / name)

    # morl eval: fewer episodes, same seeds -> the same first episodes (deterministic policy)
    assert cli.main(["eval", str(run), "--episodes", "2"]) == 0
    assert "off_road_rate" in capsys.readouterr().out
    ev2 = json.loads((run / "eval.json").read_text())
    assert ev2["episodes"] == ev["episodes"][:2]

    # morl plot: one run into --out, and a comparison of two runs
    assert cli.main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    _assert_png(tmp_path / "figs" / "safety.png")
    assert cli.main(["plot", str(run), str(run), "--out", str(tmp_path / "cmp")]) == 0
    for name in ("safety_comparison.png", "returns_comparison.png", "learning_curves.png", "pareto.png"):
        _assert_png(tmp_path / "cmp" / name)


class _Interrupt(BaseCallback):
    """Simulates a crash (Ctrl-C) at a given step."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def _on_step(self):
        if self.num_timesteps >= self.at:
            raise KeyboardInterrupt
        return True


class _Start(BaseCallback):
    def _on_training_start(self):
        self.steps = self.model.num_timesteps
        self.buffer = self.model.replay_buffer.size()

    def _on_step(self):
        return True


def test_resume_continues_timestep_count(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CONFIG, ["eval.episodes=2"])
    run = tmp_path / "runs" / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        experiment.train(cfg, run_dir=run, callbacks=[_Interrupt(250)])
    assert json.loads((run / "checkpoints" / "state.json").read_text())["num_timesteps"] == 200
    assert not (run / "model.zip").exists()
    before = [float(r["time/total_timesteps"]) for r in _progress(run)]

    start = _Start()
    experiment.resume(run, ["train.total_timesteps=400"], callbacks=[start])
    assert start.steps == 200  # continued from the checkpoint, not from zero
    assert start.buffer == 200  # with the replay buffer it had
    assert DQN.load(run / "model.zip").num_timesteps == 400
    assert json.loads((run / "checkpoints" / "state.json").read_text())["num_timesteps"] == 400
    steps = [float(r["time/total_timesteps"]) for r in _progress(run)]
    kept = [s for s in before if s <= 200]
    assert steps[: len(kept)] == kept and steps == sorted(steps) and steps[-1] > 300
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["total_timesteps"] == 400

    # The CLI path: resuming a finished run to a higher total continues from its last checkpoint.
    assert cli.main(["train", "--resume", str(run), "--set", "train.total_timesteps=500", "--no-eval"]) == 0
    assert DQN.load(run / "model.zip").num_timesteps == 500
    # Without checkpoints, resuming continues from model.zip (and says the buffer is gone).
    plain = experiment.train(load_config(CONFIG, ["train.checkpoint_every=null", "train.total_timesteps=100"]),
                             run_dir=tmp_path / "plain", evaluate_after=False)
    assert not (plain / "checkpoints").exists()
    with pytest.warns(UserWarning, match="without its replay buffer"):
        experiment.resume(plain, ["train.total_timesteps=200"], evaluate_after=False)
    assert DQN.load(plain / "model.zip").num_timesteps == 200
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2  # not a run directory
    assert "not found: is this a run directory?" in capsys.readouterr().err


def test_ctrl_c_eval_of_an_interrupted_run_and_resume_of_a_finished_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    learn = experiment._learn
    monkeypatch.setattr(experiment, "_learn", lambda *a, **k: learn(*a[:5], [_Interrupt(250)], **k))
    run = tmp_path / "run"
    # Ctrl-C: one line saying where the checkpoint is and how to resume, no traceback.
    assert cli.main(["train", str(CONFIG), "--run-dir", str(run)]) == 130
    err = capsys.readouterr().err
    assert err.strip() == (f"interrupted: training stopped at timestep 250; the last checkpoint is "
                           f"{run / 'checkpoints' / 'ckpt_200.zip'} (timestep 200): continue with `morl train --resume "
                           f"{run}`, or evaluate it with `morl eval {run}`"), err
    assert not (run / "model.zip").exists()
    monkeypatch.setattr(experiment, "_learn", learn)
    # morl eval of the interrupted run evaluates its last checkpoint, and says so.
    assert cli.main(["eval", str(run), "--episodes", "1"]) == 0
    out = capsys.readouterr()
    assert "off_road_rate" in out.out and "evaluating its last checkpoint, ckpt_200.zip" in out.err
    assert json.loads((run / "eval.json").read_text())["num_timesteps"] == 200
    # Resumed to its end, it is finished: resuming again says so instead of silently re-evaluating.
    assert cli.main(["train", "--resume", str(run), "--no-eval"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {run / 'config.yaml'}: train.total_timesteps: {run} has finished: it trained 300 of "
        f"train.total_timesteps = 300 steps. To train on, raise the total (`morl train --resume {run} --set "
        f"train.total_timesteps=600`); to evaluate it, `morl eval {run}`")


def test_an_unavailable_device_is_an_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", str(CONFIG), "--set", "train.device=cuda:99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {CONFIG}: train.device: is 'cuda:99' but torch sees "), err
    assert err.endswith("use auto (CUDA when present, else the CPU) or cpu"), err
    assert not (tmp_path / "runs").exists()


def test_cli_imports_a_factory_from_the_current_folder(tmp_path, monkeypatch, capsys):
    # As `python -m` would: the user's own module next to the config, without installing it.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_envs", raising=False)
    (tmp_path / "my_envs.py").write_text("from morl.registry import two_objective_cartpole as make\n")
    data = yaml.safe_load(CONFIG.read_text())
    data["env"]["factory"] = "my_envs:make"
    data["train"].update(total_timesteps=100, checkpoint_every=50)
    data["agent"]["learning_starts"] = 20
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert cli.main(["train", "mine.yaml", "--run-dir", str(run), "--no-eval"]) == 0, capsys.readouterr().err
    # the same in a fresh process state: eval and --resume import it again
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_envs")
    assert cli.main(["eval", str(run), "--episodes", "1"]) == 0, capsys.readouterr().err
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_envs")
    assert cli.main(["train", "--resume", str(run), "--set", "train.total_timesteps=150", "--no-eval"]) == 0
    assert DQN.load(run / "model.zip").num_timesteps >= 150
