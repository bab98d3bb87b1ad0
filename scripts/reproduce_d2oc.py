"""Reproduction of D2OC's comparison: 3 reference densities x {D2OC, Lloyd, SMC} x 5 seeds, final W2.

Setting: the authors' test configuration (MATLAB ``Sim_rev60.mat`` / ``Main_D2OC.m``): 6 linearised
quadrotors (8 states, T = 0.1 s), operation time 150 steps, horizon H = 15, communication radius 25 m,
``param07`` weights, on a 100 m map; M = 1,500 reference samples per density (the authors' maps hold a
few thousand; their DF8 map is not public). Densities: ``gmm`` (fixed 4-component mixture),
``random_gmm`` (8 random components), ``image:ring`` (``assets/densities/ring.npy``), map seed 0.
Initial positions: uniform on the map, seeds 0..4 (the same for every method).

Methods: D2OC with log-gossip sharing (decentralised, the authors' code), D2OC min-consensus, D2OC centralised (one
shared weight vector), D2OC with log gossip and predicted consumption (``predict_consumption``, ours: an agent
discounts the mass the agents it has not heard from should have taken since), the same with known starts
(``known_starts``, ours: the agents know where the others start, so the agents never met are estimated too), Lloyd
(64 x 64 grid) and SMC (10 x 10 cosine basis), and log-gossip D2OC at larger communication radii (``--radii``, 35
and 50 m), which shows how the decentralised gap depends on how often the agents meet (the gap comes from agents
that drain the same samples while out of contact). The gap varies a lot from start to start (most starts give almost
none, a few 50-80 %), so it is also estimated over ``--gap-seeds`` starts (30) with a bootstrap interval, for log
gossip with and without predicted consumption (and known starts). Known starts were tried on the tuning map (seed
99, starts 100..129) before this map: gap of log gossip / predicted / predicted with known starts 13.4 / 9.7 / 6.0 %
(gmm), 6.5 / 2.6 / 2.5 % (random_gmm), 13.9 / 3.0 / 2.0 % (ring). On the reported map (seed 0, starts 0..29; 266 s
on 2 cores): 14.6 / 10.2 / 6.2 % [3.4, 9.1] (gmm), 18.5 / 16.9 / 8.0 % [3.0, 12.8] (random_gmm), 16.6 / 5.3 / 1.6 %
[-0.7, 4.1] (ring), bracketed: the 95 % bootstrap interval of known starts. All use the same tracking gains with
weight ``100 / (N T)`` (``--tracking-scale`` times the agent-point mass; D2OC's default weight ``1 / (N T)`` made
every method slower), and SMC a target step of 20 m. Both were chosen on a separate map seed (99) and start seeds
(100..102), never on the seeds reported here. Tuning runs, mean final W2 of decentralised / centralised D2OC / SMC
over those 3 starts, by scale (gmm; random_gmm; ring): 3: 8.98/7.91/9.54; 9.70/9.17/11.61; 6.08/6.09/7.93. 10:
7.72/7.35/8.23; 9.11/8.52/12.06; 5.77/5.60/7.17. 30: 8.85/6.96/8.05; 8.66/7.98/11.95; 6.91/5.25/6.62. 60:
6.69/6.29/8.14; 8.30/7.74/11.64; 5.16/4.93/6.87. 100: 6.82/6.56/8.29; 8.21/7.64/11.26; 5.07/4.94/7.06. 300:
6.56/6.25/8.63; 7.67/7.13/11.27. Scale 100 had the smallest largest gap between decentralised and centralised (7.4
%) with D2OC below SMC on all three; the gap is noisy from scale to scale (150 gave 17 % on gmm), a sign of how much
it depends on where the agents happen to meet.

Output (``--out``, default ``runs/reproduce_d2oc``): ``table.md`` (mean final W2 with a 95 % Student-t
confidence interval over seeds), ``results.json`` (every value, W2-vs-time curves), ``coverage_<density>.png``
(trajectories of seed 0 over the map and W2 vs time, mean and min-max band over seeds).

    python scripts/reproduce_d2oc.py [--seeds 5] [--samples 1500] [--radii 35 50] [--gap-seeds 30] [--out runs/reproduce_d2oc]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from morl.agents.d2oc import D2OC, SMC, Lloyd
from morl.envs.swarm import SwarmEnv
from morl.envs.swarm.figures import coverage_figure, w2_curves

DENSITIES = ("gmm", "random_gmm", "image:ring")
AUTHORS_RADIUS = 25.0  # m, the communication radius of the authors' tests (comm_thresh)
TRACKING_SCALE = 100.0  # x the agent-point mass 1/(N T); chosen on tuning seeds (docstring)
METHODS = {
    "D2OC": lambda task, w: D2OC(task=task, sharing="log_gossip", tracking_weight=w),
    "D2OC min-consensus": lambda task, w: D2OC(task=task, sharing="min_consensus", tracking_weight=w),
    "D2OC centralised": lambda task, w: D2OC(task=task, sharing="centralised", tracking_weight=w),
    "D2OC predicted": lambda task, w: D2OC(task=task, sharing="log_gossip", predict_consumption=True, tracking_weight=w),
    "D2OC predicted+starts": lambda task, w: D2OC(task=task, sharing="log_gossip", predict_consumption=True,
                                                  known_starts=True, tracking_weight=w),
    "Lloyd": lambda task, w: Lloyd(task=task, tracking_weight=w),
    "SMC": lambda task, w: SMC(task=task, step_length=20.0, tracking_weight=w),
}
FIGURE_METHODS = ("D2OC", "Lloyd", "SMC")
GAP_TARGET = 0.10  # decentralised final W2 at most 10 % above centralised
# decentralised variants whose gap to centralised gets the many-seed estimate
GAP_METHODS = ("D2OC", "D2OC predicted", "D2OC predicted+starts")


def run_episode(env: SwarmEnv, ctrl, seed: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    start = True
    for _ in range(env.task.max_steps):
        action, _ = ctrl.predict(obs, episode_start=[start])
        start = False
        obs, *_ = env.step(action)
    return env.trajectory()


def ci95(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def gap_ci(decentral, central, n_boot: int = 2000) -> tuple[float, float, float]:
    """Gap ``mean(decentral) / mean(central) - 1`` and its 95 % bootstrap interval, seeds resampled in pairs."""
    d, c = np.asarray(decentral, float), np.asarray(central, float)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(d), (n_boot, len(d)))
    boot = d[idx].mean(axis=1) / c[idx].mean(axis=1) - 1
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(d.mean() / c.mean() - 1), float(lo), float(hi)


def target_word(gap: float) -> str:
    """Whether a decentralised gap meets the issue's target (within 10 % of centralised)."""
    return "within" if gap <= GAP_TARGET else "NOT within"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--samples", type=int, default=1500)
    p.add_argument("--agents", type=int, default=6)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--checkpoints", type=int, default=6, help="W2-vs-time points per episode")
    p.add_argument("--tracking-scale", type=float, default=TRACKING_SCALE,
                   help="tracking weight of every method, in units of the agent-point mass 1/(N T)")
    p.add_argument("--radii", type=float, nargs="*", default=[35.0, 50.0],
                   help=f"extra communication radii (m) for log-gossip D2OC, beside the authors' {AUTHORS_RADIUS:g}: how the "
                        "decentralised gap shrinks as agents meet more often")
    p.add_argument("--gap-seeds", type=int, default=30,
                   help="seeds for the estimate of the decentralised gap (log gossip, predicted consumption and "
                        "known starts vs centralised, 95 %% bootstrap interval); the gap varies a lot from start to "
                        "start; 0 skips it")
    p.add_argument("--out", default="runs/reproduce_d2oc")
    args = p.parse_args(argv)
    if any(not r > 0 for r in args.radii):
        p.error(f"--radii must be positive, got {args.radii}")
    methods = dict(METHODS)
    for r in args.radii:
        methods[f"D2OC r={r:g}"] = lambda task, w, r=r: D2OC(task=task, sharing="log_gossip", comm_radius=r,
                                                             tracking_weight=w)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    results = {"setting": vars(args), "densities": {}}
    steps = np.unique(np.linspace(args.steps / args.checkpoints, args.steps, args.checkpoints).round().astype(int))
    for dens in DENSITIES:
        env = SwarmEnv(n_agents=args.agents, dynamics="quadrotor", density=dens, n_samples=args.samples,
                       max_steps=args.steps, comm_radius=AUTHORS_RADIUS, density_seed=0, w2_every=None)
        weight = args.tracking_scale * env.task.agent_mass
        per_method, trajs, curves = {}, {}, {}
        for name, make in methods.items():
            ctrl = make(env.task, weight)
            finals, cs = [], []
            for seed in range(args.seeds):
                traj = run_episode(env, ctrl, seed)
                s, v = w2_curves(traj, env.task.density, steps, method="exact")
                finals.append(float(v[-1]))
                cs.append((s, v))
                if seed == 0:
                    trajs[name] = traj
            per_method[name] = {"final_w2": finals, "curves": [[c[0].tolist(), c[1].tolist()] for c in cs]}
            curves[name] = cs
            mean, half = ci95(finals)
            print(f"{dens:12s} {name:20s} final W2 {mean:7.3f} +- {half:.3f}", flush=True)
        results["densities"][dens] = per_method
        if args.gap_seeds > args.seeds:  # more starts for the sharing variants
            for name in (*GAP_METHODS, "D2OC centralised"):
                ctrl = methods[name](env.task, weight)
                per_method[name]["gap_seeds_w2"] = per_method[name]["final_w2"] + [
                    float(w2_curves(run_episode(env, ctrl, seed), env.task.density, steps[-1:], method="exact")[1][-1])
                    for seed in range(args.seeds, args.gap_seeds)]
        label = dens.replace(":", "_")
        coverage_figure(env.task.density, {k: trajs[k] for k in FIGURE_METHODS},
                        {k: curves[k] for k in (*FIGURE_METHODS, "D2OC centralised")}, out / f"coverage_{label}.png",
                        title=f"{dens}: {args.agents} quadrotors, {args.steps} steps, M = {args.samples} (seed 0)")
    # table
    names = list(methods)
    lines = ["| density | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    checks = []
    for dens, per in results["densities"].items():
        cells = []
        means = {k: ci95(per[k]["final_w2"]) for k in names}
        for k in names:
            cells.append(f"{means[k][0]:.2f} ± {means[k][1]:.2f}")
        lines.append(f"| {dens} | " + " | ".join(cells) + " |")
        best_baseline = min(means["Lloyd"][0], means["SMC"][0])
        central = means["D2OC centralised"][0]  # the gaps below: decentralised / centralised final W2 - 1
        radius_gaps = "".join(f"; r = {r:g} m: {100 * (means[f'D2OC r={r:g}'][0] / central - 1):+.1f} %"
                              for r in args.radii)
        radius_gaps += "".join(f"; {label}: {100 * (means[name][0] / central - 1):+.1f} %" for name, label in (
            ("D2OC predicted", "with predicted consumption"), ("D2OC predicted+starts", "and known starts")))
        checks.append((dens, means["D2OC"][0] < best_baseline, means["D2OC"][0] / central - 1.0, radius_gaps))
    table = "\n".join(lines)
    summary = [f"- {d}: D2OC lowest final W2 vs Lloyd/SMC: {'yes' if ok else 'NO'}; "
               f"decentralised (r = {AUTHORS_RADIUS:g} m) vs centralised: {100 * g:+.1f} % ({target_word(g)} 10 %){rg}"
               for d, ok, g, rg in checks]
    if args.gap_seeds > args.seeds:
        summary.append(f"\nDecentralised (r = {AUTHORS_RADIUS:g} m) vs centralised over {args.gap_seeds} starts, "
                       "gap of the mean final W2 [95 % bootstrap interval]:")
        for dens, per in results["densities"].items():
            central = per["D2OC centralised"]["gap_seeds_w2"]
            gaps = {name: gap_ci(per[name]["gap_seeds_w2"], central) for name in GAP_METHODS}
            results.setdefault("gaps", {})[dens] = gaps
            summary.append(f"- {dens}: " + "; ".join(
                f"{name} {100 * g:+.1f} % [{100 * lo:+.1f}, {100 * hi:+.1f}] ({target_word(g)} 10 %)"
                for name, (g, lo, hi) in gaps.items()))
    text = (f"Final W2 (mean ± 95 % CI half-width, Student t over {args.seeds} seeds), lower is better\n\n{table}\n\n"
            + "\n".join(summary) + f"\n\nwall time {time.time() - t_start:.0f} s\n")
    print("\n" + text)
    (out / "table.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
