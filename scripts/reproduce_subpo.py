"""Reproduction: SubPO vs ModPO vs greedy planners that know F and the dynamics, on every grid objective.

For each scenario (``coverage``, ``bimodal``, ``gorilla``, ``experiment_design``, ``item_collection``,
``two_rooms``; instance 0, the authors' start cell) and each seed, SubPO and ModPO are trained with the
same budget, features and hyperparameters; J(pi) = E[F(tau)] is estimated from ``--eval-episodes``
sampled trajectories of the trained stochastic policy. The oracle reference is the better of two
planners on the true F and dynamics (:func:`morl.envs.coverage.oracle_plan`: receding-horizon greedy with
lookahead 3, and beam search of width 128 on F); it is deterministic and is the normaliser:
``normalised F = J / F_oracle``. Writes ``results.json``, ``table.md`` and ``coverage_maps.png``::

    python scripts/reproduce_subpo.py [--seeds 5] [--iterations 50] [--envs 64] [--workers 2] [--out runs/subpo_repro]

Targets (issue 7): SubPO >= 0.9 x the greedy planner on coverage, and SubPO > ModPO on every objective.

``--continuous STEPS`` also trains an actor-critic (SB3 PPO) on ``morl/PointCoverage-v0`` (MuJoCo
point robot) with the marginal-gain reward and, as the modular baseline, with the patch-area reward,
for STEPS steps each, and reports the covered area (m^2) of 5 evaluation episodes next to a random policy.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SCENARIO_ORDER = ("coverage", "bimodal", "gorilla", "experiment_design", "item_collection", "two_rooms")


def evaluate(model, env, episodes: int) -> tuple[float, np.ndarray]:
    """Mean F(tau) over ``episodes * num_envs`` sampled trajectories, and the visited map of the first one."""
    values, visited = [], None
    for _ in range(episodes):
        obs = env.reset()
        for _ in range(env.horizon):
            action, _ = model.predict(obs, deterministic=False)
            obs, _, _, infos = env.step(action)
        values += [info["F"] for info in infos]
        if visited is None:
            visited = infos[0]["terminal_observation"]["visited"].copy()
    return float(np.mean(values)), visited


def run_one(scenario: str, algo: str, seed: int, iterations: int, n_envs: int, lr: float, eval_episodes: int):
    import torch as th

    th.set_num_threads(1)  # the machine is shared; small MLPs gain nothing from threads
    from morl.agents.subpo import ModPO, SubPO
    from morl.envs.coverage import make_vec

    cls = {"SubPO": SubPO, "ModPO": ModPO}[algo]
    env = make_vec(scenario, n_envs, seed=seed)
    t0 = time.time()
    model = cls("MultiInputPolicy", env, learning_rate=lr, seed=seed, device="cpu")
    model.learn(iterations * n_envs * env.horizon)
    value, visited = evaluate(model, env, eval_episodes)
    return {"scenario": scenario, "algo": algo, "seed": seed, "F": value, "seconds": time.time() - t0,
            "visited": visited.tolist()}


def greedy(scenario: str):
    from morl.envs.coverage import make_vec, oracle_plan

    env = make_vec(scenario, 1)
    value, traj, planner = oracle_plan(env.obj, int(env.pos[0]), env.horizon, lookahead=3, width=128)
    visited = np.zeros(env.grid.n_cells, np.int8)
    visited[traj] = 1
    return {"scenario": scenario, "algo": "Greedy", "planner": planner, "seed": 0, "F": value,
            "visited": visited.tolist()}


def continuous(steps: int, seed: int = 0) -> dict:
    """PPO on the point-robot coverage task: marginal-gain vs modular reward vs random, covered area."""
    import gymnasium as gym
    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import morl.envs.coverage  # noqa: F401  (registers the ids)

    th.set_num_threads(1)

    def covered(policy, episodes=5):
        env = gym.make("morl/PointCoverage-v0", disable_env_checker=True)
        areas = []
        for ep in range(episodes):
            obs, info = env.reset(seed=1000 + ep)
            done = False
            while not done:
                a = env.action_space.sample() if policy is None else policy.predict(obs, deterministic=True)[0]
                obs, _, term, trunc, info = env.step(a)
                done = term or trunc
            areas.append(info["F"])
        return float(np.mean(areas))

    out = {"random": covered(None)}
    for reward in ("marginal", "modular"):
        venv = make_vec_env("morl/PointCoverage-v0", n_envs=8, seed=seed,
                            env_kwargs={"reward": reward, "disable_env_checker": True})
        model = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, gamma=0.99, gae_lambda=0.95, learning_rate=3e-4,
                    ent_coef=0.0, seed=seed, device="cpu", verbose=0)
        model.learn(steps)
        out[reward] = covered(model)
    return out


def plot_maps(results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from morl.envs.coverage import make_vec

    algos = ("SubPO", "ModPO", "Greedy")
    fig, axes = plt.subplots(len(algos), len(SCENARIO_ORDER), figsize=(3.0 * len(SCENARIO_ORDER), 8.4))
    for j, sc in enumerate(SCENARIO_ORDER):
        env = make_vec(sc, 1)
        g, obj = env.grid, env.obj
        if obj.kind == "coverage":
            back, cmap = obj.weights.copy(), "Greens"
        elif obj.kind == "items":
            back, cmap = np.where(obj.item_type >= 0, obj.item_type + 1.0, 0.0), "Pastel1_r"
        else:
            back, cmap = np.diag(obj.cov).copy(), "Greens"
        back = np.ma.masked_array(back, g.walls).reshape(g.rows, g.cols)  # walls drawn grey
        cmap = matplotlib.colormaps[cmap].copy()
        cmap.set_bad("0.45")
        for i, algo in enumerate(algos):
            ax = axes[i, j]
            rec = next(r for r in results if r["scenario"] == sc and r["algo"] == algo and r["seed"] == 0)
            vis = np.asarray(rec["visited"]).reshape(g.rows, g.cols)
            ax.imshow(back, cmap=cmap, origin="upper", vmin=0, vmax=1.6 * float(back.max()))
            rr, cc = np.nonzero(vis)
            ax.scatter(cc, rr, s=8, c="tab:red", marker="s")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(sc, fontsize=10)
            if j == 0:
                ax.set_ylabel({"Greedy": "oracle planner"}.get(algo, algo))
            ax.set_xlabel(f"F = {rec['F']:.1f}" if algo == "Greedy" else "", fontsize=8)
    fig.suptitle("Visited cells (red) of one sampled trajectory (seed 0; oracle: its plan) over the weights, "
                 "item types or GP variance; walls grey")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=50, help="policy-gradient updates (one batch of episodes each)")
    p.add_argument("--envs", type=int, default=64, help="episodes per batch")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--eval-episodes", type=int, default=2, help="batches of sampled episodes for J(pi)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIO_ORDER))
    p.add_argument("--out", default="runs/subpo_repro")
    p.add_argument("--continuous", type=int, default=0, metavar="STEPS",
                   help="also train PPO on morl/PointCoverage-v0 for STEPS steps (0: skip)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = [(sc, algo, s, args.iterations, args.envs, args.lr, args.eval_episodes)
            for sc in args.scenarios for s in range(args.seeds) for algo in ("SubPO", "ModPO")]
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_one, *job) for job in jobs] + [pool.submit(greedy, sc) for sc in args.scenarios]
        results = []
        for f in futures:
            results.append(f.result())
            r = results[-1]
            print(f"{r['scenario']:<18} {r['algo']:<6} seed {r['seed']}  F = {r['F']:.3f}", flush=True)
    lines = ["| objective | oracle F (planner) | SubPO F / oracle | ModPO F / oracle | SubPO > ModPO |",
             "|---|---|---|---|---|"]
    summary = {}
    for sc in args.scenarios:
        oracle = next(r for r in results if r["scenario"] == sc and r["algo"] == "Greedy")
        ref = oracle["F"]
        row = {"oracle_F": ref, "oracle_planner": oracle["planner"]}
        for algo in ("SubPO", "ModPO"):
            v = np.array([r["F"] for r in results if r["scenario"] == sc and r["algo"] == algo]) / ref
            row[algo] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "per_seed": v.tolist()}
        row["subpo_beats_modpo"] = row["SubPO"]["mean"] > row["ModPO"]["mean"]
        summary[sc] = row
        lines.append(f"| {sc} | {ref:.2f} ({oracle['planner']}) | {row['SubPO']['mean']:.3f} ± {row['SubPO']['std']:.3f} | "
                     f"{row['ModPO']['mean']:.3f} ± {row['ModPO']['std']:.3f} | {row['subpo_beats_modpo']} |")
    table = "\n".join(lines)
    note = (f"\n\n{args.seeds} seeds, {args.iterations} updates x {args.envs} episodes, lr {args.lr}, "
            f"J(pi) from {args.eval_episodes * args.envs} sampled episodes; mean ± std over seeds. "
            f"Wall time {time.time() - t0:.0f} s.\n")
    (out / "table.md").write_text(table + note)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "summary": summary, "runs": results}))
    if set(args.scenarios) == set(SCENARIO_ORDER):
        plot_maps(results, out / "coverage_maps.png")
    print(table + note)
    if "coverage" in summary:
        print("target SubPO >= 0.9 x the greedy planner on coverage:", summary["coverage"]["SubPO"]["mean"] >= 0.9)
    print("target SubPO > ModPO on every objective:", all(r["subpo_beats_modpo"] for r in summary.values()))
    if args.continuous:
        cont = continuous(args.continuous)
        text = (f"\nPointCoverage-v0 (MuJoCo point robot, 200 steps, 20 x 20 m), PPO {args.continuous} steps: covered "
                f"area m^2: marginal-gain reward {cont['marginal']:.1f}, modular reward {cont['modular']:.1f}, "
                f"random {cont['random']:.1f}\n")
        print(text)
        with open(out / "table.md", "a") as f:
            f.write(text)
        summary["point_coverage"] = cont
        (out / "results.json").write_text(json.dumps({"args": vars(args), "summary": summary, "runs": results}))
    return summary


if __name__ == "__main__":
    main()
