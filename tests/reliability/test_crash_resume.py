"""Crash safety: ``morl train`` killed with SIGKILL mid-run resumes from its last checkpoint, losing nothing.

A training runs in a subprocess (the real CLI); once a checkpoint exists it is killed with SIGKILL,
at whatever point it has reached (possibly mid-write). Then ``morl train --resume RUN_DIR`` must
continue from the last complete checkpoint: the timestep counter starts at that checkpoint's count,
the replay buffer is exactly the checkpoint's (size and contents), every file parses, and
``progress.csv`` keeps the rows up to the checkpoint and continues after it.
"""

import csv
import functools
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from morl import checkpoints, cli, experiment, registry
from morl.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tiny_dqn.yaml"
AGENTS = {
    "DQN": [],
    "QDIQN": ["agent={name: QDIQN, learning_starts: 50, buffer_size: 2000, batch_size: 16, train_freq: 4, "
              "target_update_interval: 100, n_quantiles: 8, n_target_quantiles: 8, n_quantiles_act: 8, "
              "policy_kwargs: {net_arch: [32, 32]}}"],
}


class _Start(BaseCallback):
    """Records the counter and the replay buffer the resumed training starts with."""

    def _on_training_start(self):
        buf = self.model.replay_buffer
        self.steps = self.model.num_timesteps
        self.size = buf.size()
        self.observations = buf.observations[: self.size].copy()
        self.rewards = buf.rewards[: self.size].copy()

    def _on_step(self):
        return True


def _wait_for_checkpoint(proc, run: Path, min_steps: int, timeout: float = 60.0) -> None:
    state = run / "checkpoints" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        try:
            if json.loads(state.read_text())["num_timesteps"] >= min_steps:
                return
        except (FileNotFoundError, json.JSONDecodeError):  # not written yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of >= {min_steps} steps within {timeout} s")


def _progress_steps(run: Path) -> list[float]:
    with open(run / "progress.csv", newline="") as f:
        return [float(r["time/total_timesteps"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("agent", list(AGENTS))
def test_sigkill_mid_run_then_resume_continues_from_the_last_checkpoint(agent, tmp_path, monkeypatch):
    registry.resolve_agent(agent)  # an agent that does not resolve is a failure, not a skip
    run = tmp_path / "run"
    sets = ["train.total_timesteps=1000000", "train.checkpoint_every=150", "train.progress_bar=false", *AGENTS[agent]]
    args = [sys.executable, "-m", "morl.cli", "train", str(CONFIG), "--run-dir", str(run), "--no-eval"]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_checkpoint(proc, run, min_steps=450)
        time.sleep(0.1)  # let it run on, into the next segment (or into the middle of a write)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # What the crash left: the newest complete checkpoint, named by state.json.
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    done = state["num_timesteps"]
    assert done >= 450 and done % 150 < 10  # a checkpoint falls on the first rollout boundary after each 150
    assert (run / "checkpoints" / state["model"]).exists() and (run / "checkpoints" / state["buffer"]).exists()
    assert not (run / "model.zip").exists()
    with open(run / "checkpoints" / state["buffer"], "rb") as f:
        saved_buffer = pickle.load(f)
    assert saved_buffer.size() == min(done, 2000)
    before = [s for s in _progress_steps(run) if s <= done]

    # Resume through the CLI, observing where the training starts.
    start = _Start()
    monkeypatch.setattr(experiment, "resume", functools.partial(experiment.resume, callbacks=[start]))
    total = done + 200
    assert cli.main(["train", "--resume", str(run), "--set", f"train.total_timesteps={total}", "--no-eval"]) == 0
    assert start.steps == done, "the timestep counter did not continue from the last checkpoint"
    assert start.size == saved_buffer.size()
    assert np.array_equal(start.observations, saved_buffer.observations[: start.size])
    assert np.array_equal(start.rewards, saved_buffer.rewards[: start.size])

    # Everything it wrote parses and continues.
    cls = registry.resolve_agent(agent)
    final = cls.load(run / "model.zip", device="cpu")
    assert final.num_timesteps >= total
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == final.num_timesteps
    for ckpt in (run / "checkpoints").glob("ckpt_*.zip"):
        assert zipfile.ZipFile(ckpt).testzip() is None, ckpt
    final.load_replay_buffer(run / "checkpoints" / state["buffer"])
    assert final.replay_buffer.size() == min(final.num_timesteps, 2000)
    assert len(list((run / "checkpoints").glob("buffer_*.pkl"))) == 1  # only the newest buffer is kept
    assert not list(run.rglob("*.tmp")) and not (run / "progress.kept.csv").exists()
    steps = _progress_steps(run)
    assert steps[: len(before)] == before and steps == sorted(steps) and steps[-1] > done
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["total_timesteps"] == total


def test_progress_rows_survive_a_crash_during_a_resumed_segment(tmp_path):
    """The rows up to a checkpoint are kept aside before SB3's CSV logger truncates progress.csv."""
    run = tmp_path / "run"
    (run).mkdir()
    fields = "time/total_timesteps,train/loss\n"
    (run / "progress.kept.csv").write_text(fields + "100,1.0\n200,0.5\n")
    (run / "progress.csv").write_text(fields + "100,1.0\n300,0.4\n400")  # a duplicate row; the last line cut short
    rows = checkpoints.read_progress(run)
    assert [(r["time/total_timesteps"], r["train/loss"]) for r in rows] == [("100", "1.0"), ("200", "0.5"), ("300", "0.4")]
    assert [r["time/total_timesteps"] for r in checkpoints.read_progress(run, max_steps=250)] == ["100", "200"]
    checkpoints.write_progress(run / "out.csv", rows)
    assert (run / "out.csv").read_text().splitlines() == ["time/total_timesteps,train/loss", "100,1.0", "200,0.5",
                                                          "300,0.4"]


class _Keep(BaseCallback):
    """Keeps a reference to the live model (to compare with what the checkpoint holds)."""

    def _on_step(self):
        return True


def test_a_checkpoint_holds_model_optimizer_buffer_and_counters(tmp_path):
    from morl.config import load_config

    keep = _Keep()
    cfg = load_config(CONFIG, ["train.total_timesteps=250", "train.checkpoint_every=1000"])  # only the final one
    run = experiment.train(cfg, run_dir=tmp_path / "run", callbacks=[keep], evaluate_after=False)
    live = keep.model
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == live.num_timesteps >= 250 and state["episodes"] == live._episode_num > 0
    ckpt = registry.resolve_agent("DQN").load(run / "checkpoints" / state["model"], device="cpu")
    # counters that drive schedules and target updates
    for name in ("num_timesteps", "_n_updates", "_n_calls", "_episode_num", "exploration_rate"):
        assert getattr(ckpt, name) == getattr(live, name), name
    # the networks and the optimizer's state (Adam moments and step counts)
    saved, now = ckpt.get_parameters(), live.get_parameters()
    assert saved.keys() == now.keys() and "policy.optimizer" in saved
    opt_saved, opt_now = saved["policy.optimizer"]["state"], now["policy.optimizer"]["state"]
    assert opt_saved.keys() == opt_now.keys() and opt_saved
    for k in opt_saved:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert np.array_equal(opt_saved[k][key].numpy(), opt_now[k][key].numpy()), (k, key)
    for key, value in saved["policy"].items():
        assert np.array_equal(value.numpy(), now["policy"][key].numpy()), key
    # the replay buffer, exactly
    with open(run / "checkpoints" / state["buffer"], "rb") as f:
        buf = pickle.load(f)
    assert buf.size() == live.replay_buffer.size() == live.num_timesteps and buf.pos == live.replay_buffer.pos
    for field in ("observations", "actions", "rewards", "dones", "timeouts"):
        assert np.array_equal(getattr(buf, field), getattr(live.replay_buffer, field)), field


def test_checkpoints_fall_on_the_first_rollout_boundary_after_each_multiple(tmp_path):
    """With 4-step rollouts and every=150 the saves are at 152, 300, 452, 600, 752 (then 800, the end): no drift."""
    cfg = load_config(CONFIG, ["train.total_timesteps=800", "train.checkpoint_every=150",
                               "train.progress_bar=false"])
    run = experiment.train(cfg, run_dir=tmp_path / "run", evaluate_after=False)
    saved = sorted(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("ckpt_*.zip"))
    assert saved == [152, 300, 452, 600, 752, 800]
