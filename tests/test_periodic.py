"""Evaluation episodes side by side, and evaluation during training (morl.evaluate, morl.periodic)."""

import csv
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import morl.envs.driving  # noqa: F401 (registers morl/Route-v0)
from morl.envs.driving import make_vec
from morl import experiment
from morl.config import load_config
from morl.evaluate import EvalEnvs, run_episodes
from morl.periodic import PERIODIC_SEED_BASE, read_evaluations, summarise_evaluations
from morl.wrappers import EVENT_KEYS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class ObsPolicy:
    """A deterministic policy without torch: the action is a fixed function of the observation."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(obs)
        return (np.abs(obs[:, :3]).sum(1) * 7).astype(int) % 5, None


def _reference_episode(seed: int) -> dict:
    """One episode on a single gym env, the plain way: reset(seed), step until it ends, sum as it goes."""
    env = gym.make("morl/Route-v0", action_type="discrete")
    obs, info = env.reset(seed=seed)
    ret, length, events = np.zeros(4), 0, dict.fromkeys(EVENT_KEYS, 0.0)
    while True:
        action = int(ObsPolicy().predict(obs[None])[0][0])
        obs, reward, terminated, truncated, info = env.step(action)
        ret += reward
        length += 1
        for key in EVENT_KEYS:
            if key in info:
                events[key] += float(info[key]) if key == "cost" else float(bool(info[key]))
        if terminated or truncated:
            env.close()
            return {"returns": ret, "length": length, "events": events, "route_completion": info["route_completion"]}


def test_batched_episodes_equal_single_env_episodes():
    seeds = [7, 8, 9, 10, 30, 31]  # two batches of consecutive seeds, the second of another size
    envs = EvalEnvs(lambda n: make_vec("route", n, action_type="discrete"))
    try:
        records = run_episodes(ObsPolicy(), envs, seeds, True, ("safety", "rules", "progress", "comfort"), 0.99,
                               batch=4)
    finally:
        envs.close()
    assert [r["seed"] for r in records] == seeds
    lengths = set()
    for rec, seed in zip(records, seeds):
        ref = _reference_episode(seed)
        np.testing.assert_allclose(list(rec["returns"].values()), ref["returns"], rtol=1e-5, atol=1e-5)
        assert rec["length"] == ref["length"]
        for key, count in rec["events"].items():
            assert count == pytest.approx(ref["events"][key]), (seed, key)
        assert rec["route_completion"] == pytest.approx(ref["route_completion"])
        lengths.add(rec["length"])
    assert len(lengths) > 1, "the episodes should end at different steps (envs keep stepping after their end)"


def _rows(run_dir: Path) -> list[dict]:
    return read_evaluations(run_dir)


@pytest.fixture(scope="module")
def periodic_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("periodic")
    cfg = load_config(CONFIGS / "carl_route.yaml", overrides=[
        "train.total_timesteps=1024", "train.n_envs=4", "agent.n_steps=64", "agent.batch_size=128",
        "train.checkpoint_every=512", "eval.interval=256", "eval.interval_episodes=6", "eval.episodes=3",
        f"output.root={root}", "agent.policy_kwargs={net_arch: [16, 16]}"])
    run_dir = experiment.train(cfg, run_dir=root / "run")
    return run_dir


def test_periodic_evaluation_rows_and_held_out_seeds(periodic_run):
    rows = _rows(periodic_run)
    assert [r["index"] for r in rows] == list(range(len(rows))) and len(rows) == 4
    assert [r["step"] for r in rows] == [256, 512, 768, 1024]
    firsts = [r["first_seed"] for r in rows]
    seed_sets = [set(range(f, f + r["episodes"])) for f, r in zip(firsts, rows)]
    for a in range(len(seed_sets)):  # distinct across the evaluations of one run
        for b in range(a + 1, len(seed_sets)):
            assert not seed_sets[a] & seed_sets[b]
    train_seeds = set(range(0, 4))  # env i starts with seed + i (seed 0, 4 envs)
    final = set(range(experiment.EVAL_SEED_BASE, experiment.EVAL_SEED_BASE + 3))
    assert all(not (s & train_seeds) and not (s & final) for s in seed_sets)
    assert all(r["train_seconds"] > 0 and r["eval_seconds"] > 0 for r in rows)
    assert all(b["train_seconds"] > a["train_seconds"] for a, b in zip(rows, rows[1:]))
    # logged through SB3's logger too
    with open(periodic_run / "progress.csv", newline="") as f:
        progress = list(csv.DictReader(f))
    logged = [float(p["eval/collision_rate"]) for p in progress if p.get("eval/collision_rate")]
    assert logged == [r["collision_rate"] for r in rows]
    summary = json.loads((periodic_run / "evaluations.json").read_text())
    assert summary["last_k_steps"] == [256, 512, 768, 1024]
    assert summary["last_k_mean"]["collision_rate"] == pytest.approx(np.mean([r["collision_rate"] for r in rows]))
    ev = json.loads((periodic_run / "eval.json").read_text())
    assert ev["model"] == "model.zip" and ev["periodic"]["evaluations"] == 4
    assert (periodic_run / "plots" / "evaluations.png").exists()


def test_periodic_evaluation_equals_morl_eval_of_the_checkpoint(periodic_run):
    row = next(r for r in _rows(periodic_run) if r["step"] == 512)
    seeds = range(row["first_seed"], row["first_seed"] + row["episodes"])
    ckpt = periodic_run / "checkpoints" / "ckpt_512.zip"
    assert ckpt.exists()
    result = experiment.evaluate(periodic_run, model_path=ckpt, seeds=seeds, plots=False)
    assert result["model"] == "checkpoints/ckpt_512.zip" and result["num_timesteps"] == 512
    for name in ("collision_rate", "success_rate", "route_completion", "return/safety", "return/progress"):
        assert result["metrics"][name]["value"] == pytest.approx(row[name], abs=1e-9), name
    assert row["first_seed"] == PERIODIC_SEED_BASE + row["index"] * row["episodes"]


def test_resume_continues_the_record_without_gaps_or_repeats(periodic_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(periodic_run, run)
    # roll back to the checkpoint at 512 as a crash after it would leave it: rows past 512 must go
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    state.update(num_timesteps=512, model="ckpt_512.zip", buffer=None)
    (run / "checkpoints" / "state.json").write_text(json.dumps(state))
    experiment.resume(run, overrides=["train.total_timesteps=1536"], evaluate_after=False)
    rows = _rows(run)
    assert [r["index"] for r in rows] == list(range(6))
    assert [r["step"] for r in rows] == [256, 512, 768, 1024, 1280, 1536]
    assert len({r["first_seed"] for r in rows}) == 6
    old = _rows(periodic_run)
    assert rows[:2] == old[:2]  # the record up to the checkpoint is kept as it was
    assert rows[2]["train_seconds"] > rows[1]["train_seconds"]


def test_summary_best_is_lexicographic_on_success_then_collision():
    rows = [{"index": 0, "step": 1, "success_rate": 0.5, "collision_rate": 0.1},
            {"index": 1, "step": 2, "success_rate": 0.9, "collision_rate": 0.3},
            {"index": 2, "step": 3, "success_rate": 0.9, "collision_rate": 0.2}]
    s = summarise_evaluations(rows, ("safety",), last_k=2)
    assert s["best"]["index"] == 2
    assert s["last_k_mean"]["success_rate"] == pytest.approx(0.9)
    assert s["last_k_mean"]["collision_rate"] == pytest.approx(0.25)
