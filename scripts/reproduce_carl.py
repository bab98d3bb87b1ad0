"""CaRL's scaling result on the built-in route scenario: score vs minibatch size, simple vs shaped reward.

CaRL (Jaeger et al. 2025, arXiv 2504.17838) reports that PPO on the shaped (Roach) reward gets worse as
the minibatch grows, while the simple reward (route completion × soft penalties) keeps improving. This
script trains ``configs/carl_route.yaml`` (CaRL reward) and ``configs/shaped_route.yaml`` (weighted sum
of the four driving objectives) with the same CaRL PPO, network and sample budget at each minibatch size,
the rollout sized to hold 4 minibatches (as the authors' 4 minibatches per iteration), and writes

- ``table.md`` / ``table.csv``: route completion, collision and success rate (mean over seeds, 95 %
  bootstrap interval over seeds) per reward and minibatch size;
- ``scaling.png``: route completion and collision rate against minibatch size for both rewards.

Both configs run on the batched route simulator (CaRL's reward by :class:`morl.agents.carl.CaRLVecReward`), 64 envs.
The budget must let the largest minibatch learn: a 16,384-sample minibatch fills a 65,536-sample rollout, so
300k steps gave it 4 updates and every reward fell with the minibatch; 2M steps give it 30.

Measured (``python scripts/reproduce_carl.py``, defaults: 3 seeds, 2M env-steps per run, 33 min on 2 cores),
route completion / collision rate / success rate, means over seeds:

| minibatch | CaRL reward | shaped reward |
|---|---|---|
| 256 | 0.81 / 0.17 / 0.63 | 0.73 / 0.37 / 0.50 |
| 2048 | 0.87 / 0.10 / 0.72 | 0.91 / 0.05 / 0.80 |
| 16384 | 0.83 / 0.10 / 0.17 | 0.35 / 0.50 / 0.00 |

The shaped reward collapses at 16,384 while CaRL's route completion and collision rate hold (the paper's
finding); CaRL's success rate does fall there (its agents complete most of the route but too slowly).

Example: ``python scripts/reproduce_carl.py --seeds 3 --timesteps 2000000 --out runs/carl_scaling``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from morl.config import load_config  # noqa: E402
from morl.metrics import stratified_bootstrap_ci  # noqa: E402
from morl.sweep import run_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REWARDS = {"CaRL reward": ROOT / "configs/carl_route.yaml", "shaped reward": ROOT / "configs/shaped_route.yaml"}
METRICS = ("route_completion", "collision_rate", "success_rate")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minibatches", type=int, nargs="+", default=[256, 2048, 16384])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=2_000_000, help="env-steps per run (equal for all)")
    parser.add_argument("--n-envs", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per run")
    parser.add_argument("--max-workers", type=int, default=3, help="runs at once (default: the 3 seeds together)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / f"carl-scaling-{time.strftime('%Y%m%d-%H%M%S')}")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=False)
    values: dict[tuple[str, int], dict[str, list[float]]] = {}
    for reward, path in REWARDS.items():
        for mb in args.minibatches:
            n_steps = max(1, 4 * mb // args.n_envs)  # rollout = 4 minibatches
            cfg = load_config(path, [f"agent.batch_size={mb}", f"agent.n_steps={n_steps}",
                                     f"train.n_envs={args.n_envs}", f"train.total_timesteps={args.timesteps}",
                                     f"eval.episodes={args.episodes}"])
            slug = f"{'carl' if reward.startswith('CaRL') else 'shaped'}_mb{mb}"
            sweep_dir = run_sweep(cfg, seeds=args.seeds, max_workers=args.max_workers, sweep_dir=args.out / slug,
                                  source=str(path))
            runs = sorted(p.parent for p in (sweep_dir / "runs").rglob("eval.json"))
            metrics = [json.loads((r / "eval.json").read_text())["metrics"] for r in runs]
            values[(reward, mb)] = {m: [float(x[m]["value"]) for x in metrics] for m in METRICS}

    header = ["reward", "minibatch", "rollout"] + [f"{m} {s}" for m in METRICS for s in ("mean", "lo", "hi")]
    rows = []
    for (reward, mb), vals in values.items():
        row = [reward, mb, 4 * mb]
        for m in METRICS:
            row += list(stratified_bootstrap_ci(np.array(vals[m]), "mean", seed=0))
        rows.append(row)
    with open(args.out / "table.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    lines = ["| reward | minibatch | route completion | collision rate | success rate |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[3 + 3 * i]:.3f} [{r[4 + 3 * i]:.3f}, {r[5 + 3 * i]:.3f}]" for i in range(len(METRICS))]
        lines.append(f"| {r[0]} | {r[1]} | " + " | ".join(cells) + " |")
    lines.append(f"\n{args.seeds} seeds, {args.timesteps} env-steps per run, {args.n_envs} envs, "
                 f"{args.episodes} held-out evaluation episodes per run; 95 % bootstrap intervals over seeds.")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric, label in zip(axes, METRICS[:2], ("route completion (fraction)", "collision rate (share of episodes)")):
        for reward, color in zip(REWARDS, ("tab:green", "tab:red")):
            pts = [r for r in rows if r[0] == reward]
            i = 3 + 3 * METRICS.index(metric)
            x = [r[1] for r in pts]
            y = np.array([r[i] for r in pts])
            err = np.array([[r[i] - r[i + 1] for r in pts], [r[i + 2] - r[i] for r in pts]])
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=color, label=reward)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("PPO minibatch size (samples)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"CaRL vs shaped reward on the route scenario ({args.timesteps:,} env-steps per run, "
                 f"{args.seeds} seeds, 95 % CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "scaling.png", dpi=120)
    print("\n".join(lines))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
