"""Train the preordered agents and the scalarised baseline on a MuJoCo task with a velocity limit.

Runs one sweep per method through morl's experiment layer, then writes

- ``table.md``: per method, cost rate (share of steps over the speed limit) and forward return, each
  with a 95 % bootstrap interval over seeds, and each preordered method's ratios to the scalarised
  baseline (targets: cost rate <= 0.5x at forward return >= 0.8x);
- ``runs.csv``: every run's figures; ``cost_vs_return.png``: cost rate against forward return, one point
  per run and the method means.

Methods (``--methods``, default ``lexppo gate scalarised``), with the same budget, seeds and rollout size:

- ``lexppo``: :class:`agents.LexPPO` (lexicographic PPO, Skalse et al. 2022, arXiv 2212.13769) with one critic
  per objective under ``safety > progress > energy`` (``configs/mujoco_halfcheetah_lexppo.yaml``): progress is
  improved while the cost rate stays within safety's slack (0.02) of 0; CaRL's Beta actor, as the PPO baselines;
- ``gate``: CaRL-style PPO on :class:`morl.wrappers.PreorderGate` under ``safety > progress > energy``
  (``configs/mujoco_halfcheetah_ppo_gated.yaml``): a step over the limit earns nothing from progress;
- ``scalarised``: the same PPO on the equal-weight sum (``configs/mujoco_halfcheetah_ppo.yaml``);
- ``qdiqn``: QD-IQN on a 2-bins-per-joint discretisation (``configs/mujoco_halfcheetah_qdiqn.yaml``);
  about 40-100 env-steps/s on this 2-core CPU (64 joint actions x 3 objectives x 32 quantiles in each
  Bellman target), so it is not in the default set.

The velocity limit is 1.0 m/s in these configs, not Safety-Gymnasium's 3.2096 m/s: PPO at the CPU budget
(500k steps) runs about 1 m/s, so the original limit would never bind and both cost rates would be 0.

Measured tables, the figure and the commands that made them: ``docs/results/README.md``.

Example::

    python scripts/train_mujoco.py --seeds 3 --workers 2 --out runs/mujoco_halfcheetah
    python scripts/train_mujoco.py --seeds 3 --side-by-side --timesteps 300000   # 3 methods x 1 process each

and a smoke run of every default method in about a minute: ``python scripts/train_mujoco.py --quick``.
Another robot: ``--set env.id=morl/Hopper-v5`` (any ``--set`` applies to every config).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from morl.config import load_config  # noqa: E402
from morl.metrics import stratified_bootstrap_ci  # noqa: E402
from morl.sweep import run_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: method key -> (label, config); the baseline the others are compared with is "scalarised".
METHODS = {"lexppo": ("LexPPO (lexicographic)", ROOT / "configs/mujoco_halfcheetah_lexppo.yaml"),
           "gate": ("PPO (preorder gate)", ROOT / "configs/mujoco_halfcheetah_ppo_gated.yaml"),
           "qdiqn": ("QDIQN (preordered)", ROOT / "configs/mujoco_halfcheetah_qdiqn.yaml"),
           "scalarised": ("PPO (scalarised)", ROOT / "configs/mujoco_halfcheetah_ppo.yaml")}
BASELINE = "scalarised"
#: --quick: one seed, 50-step episodes, a few short rollouts, one evaluation episode (a smoke run, not a result)
QUICK = ["train.total_timesteps=256", "eval.episodes=1", "env.kwargs.max_episode_steps=50"]
QUICK_ON_POLICY = ["agent.n_steps=64", "agent.batch_size=64"]  # for the configs whose agent collects rollouts


def run_metrics(run_dir: Path) -> tuple[float, float]:
    """(cost rate, forward return) of one run's evaluation episodes."""
    ev = json.loads((run_dir / "eval.json").read_text())
    episodes = ev["episodes"]
    cost = sum(float(e["events"].get("cost", 0.0)) for e in episodes)
    steps = sum(int(e["length"]) for e in episodes)
    forward = float(np.mean([e["returns"]["progress"] for e in episodes]))
    return cost / max(steps, 1), forward


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=None, help="override train.total_timesteps of both configs")
    parser.add_argument("--episodes", type=int, default=None, help="override eval.episodes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every config")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one seed and a tiny budget (overrides "
                        "--seeds, --timesteps and --episodes)")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["lexppo", "gate", BASELINE],
                        help="methods to run (the scalarised baseline is always added)")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel within each method's sweep")
    parser.add_argument("--side-by-side", action="store_true", help="run the methods' sweeps at the same time "
                        "(len(methods) x --workers processes) instead of one after another")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / f"mujoco-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    overrides = list(args.set)
    if args.timesteps is not None:
        overrides.append(f"train.total_timesteps={args.timesteps}")
    if args.episodes is not None:
        overrides.append(f"eval.episodes={args.episodes}")
    if args.quick:
        args.seeds, overrides = 1, [*overrides, *QUICK]
    args.out.mkdir(parents=True, exist_ok=False)
    keys = [k for k in METHODS if k in args.methods or k == BASELINE]

    def sweep(key: str) -> list[tuple[float, float]]:
        path = METHODS[key][1]
        cfg = load_config(path, overrides)
        if args.quick and "n_steps" in cfg.agent.kwargs:
            cfg = load_config(path, [*overrides, *QUICK_ON_POLICY])
        sweep_dir = run_sweep(cfg, seeds=args.seeds, max_workers=args.workers, sweep_dir=args.out / cfg.name,
                              source=str(path))
        return [run_metrics(r) for r in sorted(p.parent for p in (sweep_dir / "runs").rglob("eval.json"))]

    # each sweep runs its seeds in its own worker processes; side by side, the methods share the cores evenly
    with ThreadPoolExecutor(max_workers=len(keys) if args.side_by_side else 1) as pool:
        results = list(pool.map(sweep, keys))
    per_method = {METHODS[k][0]: r for k, r in zip(keys, results)}

    rows, summary = [], {}
    for method, values in per_method.items():
        arr = np.array(values)
        cost_ci = stratified_bootstrap_ci(arr[:, 0], "mean", seed=0)
        fwd_ci = stratified_bootstrap_ci(arr[:, 1], "mean", seed=0)
        summary[method] = (arr[:, 0].mean(), arr[:, 1].mean())
        rows.append((method, len(arr), cost_ci, fwd_ci))
    base = summary[METHODS[BASELINE][0]]
    lines = ["| method | runs | cost rate | forward return |", "|---|---|---|---|"]
    for method, n, c, f in rows:
        lines.append(f"| {method} | {n} | {c[0]:.4f} [{c[1]:.4f}, {c[2]:.4f}] | {f[0]:.1f} [{f[1]:.1f}, {f[2]:.1f}] |")
    lines.append("")
    for key in keys:
        if key == BASELINE:
            continue
        method = METHODS[key][0]
        pre = summary[method]
        cost_ratio = pre[0] / base[0] if base[0] > 0 else float("inf") if pre[0] > 0 else 1.0
        fwd_ratio = pre[1] / base[1] if base[1] != 0 else float("nan")
        lines += [f"{method}: cost rate / scalarised {cost_ratio:.3f} (target <= 0.5); "
                  f"forward return / scalarised {fwd_ratio:.3f} (target >= 0.8)"]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    with open(args.out / "runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "cost_rate", "forward_return"])
        writer.writerows([m, c, r] for m, vals in per_method.items() for c, r in vals)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for (method, values), color in zip(per_method.items(), ("tab:blue", "tab:green", "tab:orange", "tab:red")):
        arr = np.array(values)
        ax.scatter(arr[:, 1], arr[:, 0], color=color, alpha=0.5, label=f"{method}: runs")
        ax.scatter(arr[:, 1].mean(), arr[:, 0].mean(), color=color, marker="X", s=120, edgecolor="k",
                   label=f"{method}: mean")
    ax.set_xlabel("forward return per episode (progress objective)")
    ax.set_ylabel("cost rate (share of steps over the speed limit)")
    ax.set_title("Velocity-limited locomotion: cost vs forward return", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "cost_vs_return.png", dpi=120)
    print("\n".join(lines))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
