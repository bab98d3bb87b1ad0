"""profile_training.py: a config trained through morl train's path under cProfile, split into its parts."""

import re

import pytest

from morl.config import ConfigError


def _rows(text: str) -> dict[str, float]:
    return {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^\| ([^|]+) \| ([0-9.]+) \|", text, re.M)}


def test_the_parts_of_an_off_policy_run_add_up(load_script, capsys):
    module = load_script("profile_training")
    assert module.main(["configs/tiny_dqn.yaml", "--steps", "1500", "--warmup", "100", "--top", "3"]) == 0
    out = capsys.readouterr()
    steps, wall = re.search(r"profiled ([0-9,]+) env-steps in ([0-9.]+) s", out.out).groups()
    # the callback stops the run once the profile holds the steps asked for (one env: exactly)
    assert int(steps.replace(",", "")) == 1500
    rows = _rows(out.out)
    # every part was found in the profile (a key that does not match reads as 0 s)
    for part in ("update", "backward", "optimizer step", "replay sample", "collection", "env step (all wrappers)",
                 "acting", "callbacks"):
        assert rows[part] > 0, part
    # the two top-level parts and the rest are the profiled wall-clock; the inner parts fit inside their parent
    assert rows["update"] + rows["collection"] + rows["other"] == pytest.approx(float(wall), abs=0.03)
    assert rows["backward"] + rows["optimizer step"] + rows["replay sample"] <= rows["update"] + 0.01
    assert rows["env step (all wrappers)"] + rows["acting"] + rows["callbacks"] <= rows["collection"] + 0.01
    assert "ncalls  tottime" in out.out
    # the budget of 300 steps could not hold the profile: it was raised, and the run says so
    assert "train.total_timesteps raised from 300" in out.err


def test_an_on_policy_run_profiles_its_rollouts(load_script, capsys, tmp_path):
    module = load_script("profile_training")
    config = tmp_path / "tiny_ppo.yaml"
    config.write_text("""name: tiny_ppo
env:
  factory: "morl.registry:two_objective_cartpole"
  kwargs: {max_episode_steps: 100}
  weights: {balance: 1.0, centred: 0.5}
agent: {name: PPO, n_steps: 64, batch_size: 32, n_epochs: 1, policy_kwargs: {net_arch: [16]}}
train: {total_timesteps: 2000, seed: 0, n_envs: 2, device: cpu}
""")
    assert module.main([str(config), "--steps", "256"]) == 0
    out = capsys.readouterr()
    rows = _rows(out.out)
    assert rows["acting forward"] > 0 and rows["update"] > 0 and "replay sample" not in rows
    # the warm-up is one rollout (128 env-steps) and the budget held the profile: nothing was raised
    assert "raised" not in out.err


def test_a_bad_override_names_the_field(load_script):
    module = load_script("profile_training")
    with pytest.raises(ConfigError, match="train.n_envs"):
        module.main(["configs/tiny_dqn.yaml", "--set", "train.n_envs=0"])
