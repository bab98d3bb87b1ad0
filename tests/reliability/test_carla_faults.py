"""CARLA faults: training through the experiment layer survives the server dropping mid-episode.

The fake ``carla`` module (tests/envs/fake_carla.py) is installed as ``carla`` and its server is made
to drop the connection mid-episode, twice, during a DQN training on ``CarlaEnv`` built from a config
(the whole wrapper stack: FiniteCheck, Scalarize, statistics, Monitor). Each drop must end its episode
as truncated with ``info["server_lost"]``, the next reset must reconnect with exponential backoff,
and training must reach its total with every checkpoint written.
"""

import json

import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback

from morl import experiment
from morl.config import config_from_dict


class _DropAndWatch(BaseCallback):
    """Drops the server at given timesteps (a few ticks later, mid-episode) and records episode ends."""

    def __init__(self, server, drop_at):
        super().__init__()
        self.server, self.drop_at = server, set(drop_at)
        self.ends = []  # (timestep, truncated, server_lost)

    def _on_step(self):
        if self.num_timesteps in self.drop_at:
            self.server.drop_at_tick, self.server.down_for_calls = self.server.ticks + 2, 3
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done:
                self.ends.append((self.num_timesteps, bool(info.get("TimeLimit.truncated")), bool(info["server_lost"])))
        return True


def test_training_goes_on_through_server_drops(fake_carla, tmp_path):
    cfg = config_from_dict({
        "name": "carla_faults",
        "env": {"factory": "morl.envs.driving.carla_env:CarlaEnv",
                "kwargs": {"route": [[0.0, 0.0], [150.0, 0.0]], "action_type": "discrete", "max_steps": 40,
                           "backoff_base": 0.001, "backoff_max": 0.004, "reconnect_attempts": 5},
                "weights": {"safety": 1.0, "rules": 1.0, "progress": 1.0, "comfort": 0.1}},
        "agent": {"name": "DQN", "learning_starts": 30, "buffer_size": 1000, "train_freq": 4,
                  "policy_kwargs": {"net_arch": [16]}},
        "train": {"total_timesteps": 160, "seed": 0, "device": "cpu", "checkpoint_every": 50},
    }, "carla_faults")
    server = fake_carla.SERVER
    watch = _DropAndWatch(server, drop_at=(15, 95))
    clients_before = server.clients
    run = experiment.train(cfg, run_dir=tmp_path / "run", callbacks=[watch], evaluate_after=False)

    lost = [e for e in watch.ends if e[2]]
    assert len(lost) == 2, watch.ends  # each drop ended exactly one episode ...
    assert all(truncated for _, truncated, _ in lost)  # ... as truncated, not terminated
    assert [t for t, _, _ in lost] == [17, 97]  # mid-episode, two ticks after the switch
    assert any(t > 97 and not was_lost for t, _, was_lost in watch.ends), watch.ends  # episodes went on after
    assert server.clients >= clients_before + 3  # first connection + one reconnection per drop
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 160 and (run / "model.zip").exists()


def test_reconnection_failure_is_one_clear_error_and_keeps_the_checkpoint(fake_carla, tmp_path):
    cfg = config_from_dict({
        "name": "carla_down",
        "env": {"factory": "morl.envs.driving.carla_env:CarlaEnv",
                "kwargs": {"route": [[0.0, 0.0], [150.0, 0.0]], "action_type": "discrete", "max_steps": 40,
                           "backoff_base": 0.001, "backoff_max": 0.002, "reconnect_attempts": 3},
                "weights": {"safety": 1.0, "rules": 1.0, "progress": 1.0, "comfort": 0.1}},
        "agent": {"name": "DQN", "learning_starts": 30, "buffer_size": 1000, "policy_kwargs": {"net_arch": [16]}},
        "train": {"total_timesteps": 200, "seed": 0, "device": "cpu", "checkpoint_every": 50},
    }, "carla_down")
    server = fake_carla.SERVER

    class _KillServer(BaseCallback):
        def _on_step(self):
            if self.num_timesteps == 70:
                server.drop_at_tick, server.down_for_calls = server.ticks + 1, 10_000  # gone for good
            return True

    run = tmp_path / "run"
    with pytest.raises(ConnectionError, match=r"could not reach the CARLA server at localhost:2000 after 3 attempts"):
        experiment.train(cfg, run_dir=run, callbacks=[_KillServer()], evaluate_after=False)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert 50 <= state["num_timesteps"] < 75 and "ConnectionError" in (run / "error.txt").read_text()
    assert np.isfinite(state["time"])
