"""Benchmark: how fast each agent *learns* on the route scenario, on its shipped config, through ``morl train``'s path.

For each agent and seed, the shipped config (the one the README and ``morl sweep`` use) is trained through
:func:`morl.experiment.train` with the evaluation during training turned on (``eval.interval``): every
``--interval`` env-steps the deterministic policy is evaluated on ``--episodes`` held-out episodes (fresh seeds
each time, :mod:`morl.periodic`). A run stops at the first evaluation that meets the threshold (success rate
>= ``--success`` and collision rate <= ``--collision``), or when its training wall-clock passes ``--cap``
seconds (or the config's step budget times ``--budget-factor`` is spent).

Reported per agent (median and range over seeds):

- **time-to-threshold**: training wall-clock seconds until that first evaluation, evaluation time excluded
  (``train_seconds`` of ``evaluations.csv``); a run that does not get there says "not reached" and its best
  evaluation (highest success, then lowest collision);
- **end-to-end env-steps/s**: env-steps over training wall-clock (evaluation excluded), as a user gets it;
- **simulator env-steps/s**: the batched simulator alone, stepped with random actions in the same process at
  the config's ``n_envs`` (infos built, as training uses them), and the ratio of the two.

Above the table, the reference without learning: :class:`morl.envs.driving.RuleDriver` (hand-written rules on
the same observation, discrete meta-actions) on the held-out episodes of the first ``--reference-evals``
evaluations, which shows whether the threshold is within reach on this scenario at all.

Writes ``OUT/results.json`` (one record per run, written as each run ends: a killed benchmark resumes where it
stopped and never redoes a finished run), ``OUT/results.md`` (the table) and ``OUT/learning.png`` (success and
collision against training wall-clock, one line per seed). Example::

    python scripts/bench_learning.py --seeds 3                       # all agents, 3 seeds each
    python scripts/bench_learning.py --agents CaRLPPO --cap 180
    python scripts/bench_learning.py --quick                         # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from morl import experiment  # noqa: E402
from morl.config import load_config  # noqa: E402
from morl.evaluate import run_episodes  # noqa: E402
from morl.metrics import episode_metrics  # noqa: E402
from morl.periodic import PERIODIC_SEED_BASE, read_evaluations  # noqa: E402

#: agent label -> shipped config
AGENTS = {
    "QDIQN": "configs/driving_qdiqn.yaml",
    "IQN": "configs/driving_iqn.yaml",
    "CaRLPPO": "configs/carl_route.yaml",
    "GatePPO": "configs/gate_route.yaml",
    "LexPPO": "configs/lexppo_route.yaml",
}


class StopAtThreshold(BaseCallback):
    """Stops training once an evaluation of ``evaluations.csv`` meets the threshold or passes the time cap."""

    def __init__(self, run_dir: Path, success: float, collision: float, cap_seconds: float):
        super().__init__()
        self.path = Path(run_dir) / "evaluations.csv"
        self.success, self.collision, self.cap = success, collision, cap_seconds
        self._mtime, self._stop = None, False

    def _on_rollout_start(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        rows = read_evaluations(self.path.parent)
        if rows:
            last = rows[-1]
            self._stop = reached(last, self.success, self.collision) or last["train_seconds"] >= self.cap

    def _on_step(self) -> bool:
        return not self._stop


def reached(row: dict, success: float, collision: float) -> bool:
    return row.get("success_rate", 0.0) >= success and row.get("collision_rate", 1.0) <= collision


def simulator_speed(cfg, seconds: float = 1.0) -> float:
    """Env-steps/s of the config's batched simulator alone (random actions, infos built), same process."""
    venv = experiment.make_vec_env(cfg, cfg.train.n_envs, seed=0, monitor=False)
    rng = np.random.default_rng(0)
    space = venv.action_space
    n = venv.num_envs

    def actions():
        if hasattr(space, "n"):
            return rng.integers(0, space.n, size=n)
        return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(np.float32)

    venv.reset()
    acts = [actions() for _ in range(16)]
    for a in acts[:4]:
        venv.step(a)  # warm-up (numba compiled already)
    steps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        venv.step(acts[steps % 16])
        steps += 1
    dt = time.perf_counter() - t
    venv.close()
    return steps * n / dt


def rule_reference(args) -> dict:
    """The rule-based driver's rates on the held-out episodes of the first ``args.reference_evals`` evaluations
    (the seeds every run's periodic evaluation uses), on QDIQN's env (the route, discrete meta-actions)."""
    from morl.envs.driving import RuleDriver

    cfg = load_config(ROOT / AGENTS["QDIQN"])
    envs = experiment.eval_envs(cfg)
    n = args.reference_evals * args.episodes
    try:
        objectives = experiment.env_objectives(envs(1))
        records = run_episodes(RuleDriver(), envs, range(PERIODIC_SEED_BASE, PERIODIC_SEED_BASE + n), True,
                               objectives, cfg.env.gamma, batch=min(n, 100))
    finally:
        envs.close()
    rates = {k: v["value"] for k, v in episode_metrics(records, objectives, reps=200, seed=0).items()}
    return {"episodes": n, **{k: rates[k] for k in ("success_rate", "collision_rate", "off_road_rate")},
            "reached": reached(rates, args.success, args.collision)}


def run_one(agent: str, seed: int, args, out: Path) -> dict:
    cfg_path = ROOT / AGENTS[agent]
    base = load_config(cfg_path)
    total = int(base.train.total_timesteps * args.budget_factor)
    overrides = [f"train.seed={seed}", f"train.total_timesteps={total}", f"eval.interval={args.interval}",
                 f"eval.interval_episodes={args.episodes}", "eval.episodes=1", "train.checkpoint_every=null",
                 *args.set]
    cfg = load_config(cfg_path, overrides=overrides)
    run_dir = out / "runs" / f"{agent}-seed{seed}"
    if run_dir.exists():  # an unfinished run of a killed benchmark: start it again
        shutil.rmtree(run_dir)
    stop = StopAtThreshold(run_dir, args.success, args.collision, args.cap)
    experiment.train(cfg, run_dir=run_dir, source=str(cfg_path), callbacks=[stop], evaluate_after=False)
    rows = read_evaluations(run_dir)
    hit = next((r for r in rows if reached(r, args.success, args.collision)), None)
    best = max(rows, key=lambda r: (r.get("success_rate", 0.0), -r.get("collision_rate", 1.0))) if rows else None
    last = rows[-1] if rows else None
    return {
        "agent": agent, "seed": seed, "config": AGENTS[agent], "n_envs": cfg.train.n_envs,
        "reached": hit is not None,
        "time_to_threshold_s": None if hit is None else hit["train_seconds"],
        "steps_to_threshold": None if hit is None else hit["step"],
        "best": None if best is None else {k: best.get(k) for k in ("step", "train_seconds", "success_rate",
                                                                    "collision_rate", "route_completion")},
        "steps": None if last is None else last["step"],
        "train_seconds": None if last is None else last["train_seconds"],
        "env_steps_per_s": None if last is None else last["step"] / last["train_seconds"],
        "simulator_steps_per_s": simulator_speed(cfg, seconds=args.sim_seconds),
        "evaluations": [{k: r.get(k) for k in ("step", "train_seconds", "success_rate", "collision_rate",
                                                "route_completion")} for r in rows],
    }


def _med(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}, {max(values):,.0f}]"


def table(records: list[dict], args, reference: dict | None = None) -> str:
    lines = [f"Threshold: success >= {args.success}, collision <= {args.collision} on {args.episodes} held-out "
             f"episodes, evaluated every {args.interval:,} env-steps; training wall-clock, evaluation excluded; "
             f"cap {args.cap:,.0f} s. Median [min, max] over seeds.", ""]
    if reference is not None:
        lines += [f"Without learning, `RuleDriver` (hand-written rules on the same observation) on the "
                  f"{reference['episodes']} held-out episodes of the first {args.reference_evals} evaluations: "
                  f"success {reference['success_rate']:.3f}, collision {reference['collision_rate']:.3f}, off-road "
                  f"{reference['off_road_rate']:.3f} (threshold {'met' if reference['reached'] else 'not met'}).", ""]
    lines += [
             "| agent | config | seeds | reached | time-to-threshold (s) | env-steps to threshold | "
             "end-to-end env-steps/s | simulator env-steps/s | ratio | best (success / collision) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for agent in dict.fromkeys(r["agent"] for r in records):
        rs = [r for r in records if r["agent"] == agent]
        ok = [r for r in rs if r["reached"]]
        ratio = [r["env_steps_per_s"] / r["simulator_steps_per_s"] for r in rs if r["env_steps_per_s"]]
        tt = _med([r["time_to_threshold_s"] for r in ok]) if len(ok) == len(rs) else (
            f"not reached in {len(rs) - len(ok)} of {len(rs)}" + (f"; reached: {_med([r['time_to_threshold_s'] for r in ok])}" if ok else ""))
        best = "; ".join(f"{r['best']['success_rate']:.2f} / {r['best']['collision_rate']:.2f}" for r in rs if r["best"])
        lines.append(f"| {agent} | `{rs[0]['config']}` | {len(rs)} | {len(ok)}/{len(rs)} | {tt} | "
                     f"{_med([r['steps_to_threshold'] for r in ok])} | {_med([r['env_steps_per_s'] for r in rs])} | "
                     f"{_med([r['simulator_steps_per_s'] for r in rs])} | "
                     f"{statistics.median(ratio) if ratio else float('nan'):.3f} | {best} |")
    return "\n".join(lines)


def figure(records: list[dict], path: Path) -> Path:
    from morl.plots import evaluation_curves

    curves = {}
    for r in records:
        curves.setdefault(r["agent"], []).append(r["evaluations"])
    return evaluation_curves(curves, path, x="train_seconds", metrics=["success_rate", "collision_rate"],
                             title="Route: deterministic evaluations against training wall-clock (one line per seed)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    p.add_argument("--seeds", type=int, default=3, help="number of seeds per agent")
    p.add_argument("--seed-start", type=int, default=0,
                   help="first seed (seeds SEED_START..SEED_START+N-1; tune on seeds you do not report)")
    p.add_argument("--interval", type=int, default=20_000, help="env-steps between evaluations")
    p.add_argument("--episodes", type=int, default=50, help="held-out episodes per evaluation")
    p.add_argument("--success", type=float, default=0.8)
    p.add_argument("--collision", type=float, default=0.05)
    p.add_argument("--cap", type=float, default=600.0, help="training wall-clock cap per run (s)")
    p.add_argument("--budget-factor", type=float, default=10.0,
                   help="step cap per run: the config's train.total_timesteps times this")
    p.add_argument("--sim-seconds", type=float, default=1.0, help="how long to time the simulator alone")
    p.add_argument("--reference-evals", type=int, default=5,
                   help="evaluations' worth of held-out episodes the rule-based reference drives (0: none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_learning")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny budgets, one seed")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.interval, args.episodes, args.cap, args.sim_seconds = 1, 512, 4, 60.0, 0.2
        args.reference_evals = 1
        args.set = [*args.set, "train.total_timesteps=1024", "train.n_envs=4"]  # after the budget: it wins
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    records = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["agent"], r["seed"]) for r in records}
    for agent in args.agents:
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            if (agent, seed) in done:
                print(f"[bench_learning] {agent} seed {seed}: done earlier, kept", flush=True)
                continue
            rec = run_one(agent, seed, _quick_args(args, agent), args.out)
            records.append(rec)
            results_path.write_text(json.dumps(records, indent=1))
            state = (f"threshold at {rec['time_to_threshold_s']:.0f} s ({rec['steps_to_threshold']:,} steps)"
                     if rec["reached"] else f"not reached; best {rec['best']}")
            print(f"[bench_learning] {agent} seed {seed}: {state}; {rec['env_steps_per_s']:,.0f} env-steps/s "
                  f"(simulator {rec['simulator_steps_per_s']:,.0f})", flush=True)
    records = [r for r in records if r["agent"] in args.agents]
    text = table(records, args, rule_reference(args) if args.reference_evals > 0 else None)
    (args.out / "results.md").write_text(text + "\n")
    figure(records, args.out / "learning.png")
    print(text)
    print(f"[bench_learning] wrote {args.out / 'results.md'}, {args.out / 'learning.png'}")
    return 0


def _quick_args(args, agent: str):
    """``--quick``: the budget of each agent's tiny run (on-policy agents need their rollout to fit it)."""
    if not args.quick:
        return args
    quick = argparse.Namespace(**vars(args))
    if agent in ("CaRLPPO", "GatePPO", "LexPPO"):
        quick.set = [*args.set, "agent.n_steps=64", "agent.batch_size=128"]
    else:
        quick.set = [*args.set, "agent.learning_starts=256", "agent.buffer_size=2000"]
    return quick


if __name__ == "__main__":
    sys.exit(main())
