"""Divergence guard: a NaN/inf loss or parameter stops training with a clear error and keeps the last good checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

from morl import cli, experiment
from morl.config import load_config
from morl.experiment import DivergenceError, GuardedLogger

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_dqn.yaml"


class _PoisonParameter(BaseCallback):
    """Writes NaN into one weight at a given step: the simplest divergence there is."""

    def __init__(self, at: int, value: float = float("nan")):
        super().__init__()
        self.at, self.value = at, value

    def _on_step(self):
        if self.num_timesteps == self.at:
            with torch.no_grad():
                next(self.model.policy.parameters()).view(-1)[3] = self.value
        return True


def _finite_model(path: Path) -> DQN:
    model = DQN.load(path, device="cpu")
    assert all(torch.isfinite(p).all() for p in model.policy.parameters()), f"{path} holds non-finite parameters"
    return model


@pytest.mark.parametrize("value,learning_starts,caught_by", [
    (float("nan"), 50, "train/loss is nan"),  # updates run: the next loss is NaN (checked at the next rollout)
    (float("inf"), 50, "train/loss is nan"),
    # no update runs before 399, so no loss is logged: the parameter check before the checkpoint at 300 catches it
    (float("nan"), 399, "parameter q_net.q_net.0.weight has nan (1 of 128 entries non-finite)"),
    (float("inf"), 399, "parameter q_net.q_net.0.weight has inf (1 of 128 entries non-finite)"),
])
def test_non_finite_parameter_stops_before_the_next_checkpoint(tmp_path, value, learning_starts, caught_by):
    cfg = load_config(CONFIG, ["train.total_timesteps=400", f"agent.learning_starts={learning_starts}"])
    run = tmp_path / "run"
    with pytest.raises(DivergenceError) as info:
        experiment.train(cfg, run_dir=run, callbacks=[_PoisonParameter(250, value)], evaluate_after=False)
    msg = str(info.value)
    # names what went non-finite and when, and where the last good checkpoint is
    steps = int(msg.removeprefix("training diverged at timestep ").split(":")[0])
    assert 250 <= steps <= 300 and f": {caught_by}; " in msg, msg
    assert f"{run / 'checkpoints' / 'ckpt_200.zip'} at timestep 200, is kept" in msg
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 200 and state["model"] == "ckpt_200.zip"
    assert {p.name for p in (run / "checkpoints").glob("ckpt_*.zip")} == {"ckpt_100.zip", "ckpt_200.zip"}
    assert not (run / "model.zip").exists()
    assert "DivergenceError" in (run / "error.txt").read_text()
    assert _finite_model(run / "checkpoints" / "ckpt_200.zip").num_timesteps == 200
    # the run resumes from the last good checkpoint
    experiment.resume(run, evaluate_after=False)
    assert _finite_model(run / "model.zip").num_timesteps == 400
    assert not (run / "error.txt").exists()


def test_inf_loss_from_a_real_blow_up_through_the_cli(tmp_path, capsys):
    # A reward of 1e38 makes the TD loss overflow float32 at the first update (learning_starts=250,
    # after the checkpoints at 100 and 200).
    run = tmp_path / "run"
    code = cli.main(["train", str(CONFIG), "--run-dir", str(run), "--no-eval", "--set", "env.weights.balance=1e38",
                     "--set", "agent.learning_starts=250", "--set", "train.total_timesteps=400"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: DivergenceError: training diverged at timestep 25"), err
    assert "train/loss is inf" in err or "parameter" in err
    assert json.loads((run / "checkpoints" / "state.json").read_text())["num_timesteps"] == 200
    _finite_model(run / "checkpoints" / "ckpt_200.zip")


def test_divergence_before_any_checkpoint_leaves_no_run_directory(tmp_path):
    cfg = load_config(CONFIG, ["train.total_timesteps=200", "env.weights.balance=1e38", "train.checkpoint_every=null",
                               f"output.root={tmp_path / 'runs'}"])
    with pytest.raises(DivergenceError, match=r"timestep \d+: .*; no checkpoint was written before it"):
        experiment.train(cfg, evaluate_after=False)
    assert not list((tmp_path / "runs").rglob("*"))  # not even an empty timestamp folder


def test_on_policy_value_loss_blow_up_is_caught(tmp_path):
    cfg = load_config(CONFIG, ["agent={name: PPO, n_steps: 32, batch_size: 32, n_epochs: 1}", "env.weights.balance=1e38",
                               "train.total_timesteps=128", "train.checkpoint_every=null"])
    with pytest.raises(DivergenceError, match=r"training diverged at timestep \d+: (train/\w*loss is (inf|nan)|parameter)"):
        experiment.train(cfg, run_dir=tmp_path / "ppo", evaluate_after=False)
    assert not (tmp_path / "ppo").exists()


def test_guarded_logger_remembers_only_the_first_non_finite_loss(tmp_path):
    log = GuardedLogger(str(tmp_path), [])
    log.record("train/explained_variance", float("nan"))  # SB3 logs NaN here legitimately
    log.record("train/loss", 1.5)
    log.record("rollout/ep_rew_mean", float("inf"))
    assert log.first_non_finite is None
    log.record("train/critic_loss", np.float32("inf"))
    log.record("train/actor_loss", float("nan"))
    assert log.first_non_finite == ("train/critic_loss", float("inf"))


@pytest.mark.parametrize("config,sets", [
    (CONFIG, ["agent={name: QDIQN, learning_starts: 20, buffer_size: 500, n_quantiles: 8, n_target_quantiles: 8, "
              "n_quantiles_act: 8, policy_kwargs: {net_arch: [16]}}"]),
    (CONFIG, ["agent={name: CaRLPPO, n_steps: 16, batch_size: 16, n_epochs: 1, policy_kwargs: {net_arch: [16]}}"]),
    (CONFIG.with_name("coverage_subpo.yaml"), ["train.n_envs=2", "train.device=cpu"]),
], ids=["QDIQN", "CaRLPPO", "SubPO"])
def test_the_guard_stops_the_project_agents(config, sets, tmp_path):
    from morl import registry

    name = yaml_agent_name(sets) or "SubPO"
    registry.resolve_agent(name)  # an agent that does not resolve is a failure, not a skip
    cfg = load_config(config, [*sets, "train.total_timesteps=400", "train.checkpoint_every=null"])
    with pytest.raises(DivergenceError, match=r"^training diverged at timestep \d+: (train/\w+ is nan|parameter \S+ has nan)"):
        experiment.train(cfg, run_dir=tmp_path / "run", callbacks=[_PoisonParameter(10)], evaluate_after=False)
    assert not (tmp_path / "run").exists()


def yaml_agent_name(sets):
    import yaml

    for s in sets:
        if s.startswith("agent="):
            return yaml.safe_load(s.removeprefix("agent="))["name"]
    return None
