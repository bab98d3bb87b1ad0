"""Benchmark: one D2OC control step for all agents vs solving the full transport problem with POT each step.

Setting (issue 8): N = 100 agents, M = 10,000 reference samples, the authors' 8-state quadrotor,
horizon H = 15, T = 150 steps, communication radius 25 m on a 100 m map, GMM density.

- ``D2OC``: stages B, C (log gossip), A-1 and A-2 for all agents (``D2OC.predict``), measured at steps
  ``warmup .. warmup + steps`` of an episode (weights partly consumed, logs non-empty);
- ``POT per step``: the same control, but every step the targets come from the exact transport between
  the N agents (mass 1/N each) and the remaining reference weights (normalised), ``ot.emd`` on the
  N x M squared-distance matrix, targets = barycentric projection of each agent's share.

Each figure is the median over ``--runs`` (>= 5) runs; a D2OC run is the mean step time over
``--steps`` steps, a POT run one step. Wall time and this thread's CPU time are both reported (the
machine may be shared; CPU time is less sensitive to other processes).

    python scripts/bench_d2oc.py [--agents 100] [--samples 10000] [--runs 5] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot

from morl.agents.d2oc import D2OC
from morl.envs.swarm import SwarmEnv


def _advance(env, ctrl, steps: int, seed: int = 0):
    obs, _ = env.reset(seed=seed)
    start = True
    for _ in range(steps):
        action, _ = ctrl.predict(obs, episode_start=[start])
        start = False
        obs, *_ = env.step(action)
    return obs


def time_d2oc(env, sharing: str, runs: int, steps: int, warmup: int) -> tuple[list[float], list[float]]:
    ctrl = D2OC(task=env.task, sharing=sharing)
    _advance(env, ctrl, 3)  # compile / load the numba kernels
    walls, cpus = [], []
    for r in range(runs):
        obs = _advance(env, ctrl, warmup, seed=r)
        w = c = 0.0
        for _ in range(steps):
            w0, c0 = time.perf_counter(), time.thread_time()
            action, _ = ctrl.predict(obs)
            w += time.perf_counter() - w0
            c += time.thread_time() - c0
            obs, *_ = env.step(action)
        walls.append(w / steps)
        cpus.append(c / steps)
    return walls, cpus


def pot_step(ctrl, states, samples, remaining):
    """Targets from the full OT problem between agents and remaining weights (one ``ot.emd`` solve)."""
    pos = ctrl.positions(states)
    keep = remaining > 0
    b = remaining[keep] / remaining[keep].sum()
    a = np.full(len(pos), 1.0 / len(pos))
    plan = ot.emd(a, b, ot.dist(pos, samples[keep]), numItermax=10_000_000)
    targets = plan @ samples[keep] / plan.sum(axis=1, keepdims=True)
    return ctrl.control(states, targets)


def time_pot(env, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    ctrl = D2OC(task=env.task, sharing="centralised")
    walls, cpus = [], []
    for r in range(runs):
        obs = _advance(env, ctrl, warmup, seed=r)
        remaining = ctrl.memory()["W"][0].copy()
        w0, c0 = time.perf_counter(), time.thread_time()
        pot_step(ctrl, obs, env.task.density.samples, remaining)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.thread_time() - c0)
    return walls, cpus


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=40)
    args = p.parse_args(argv)
    if args.runs < 5:
        p.error("--runs must be >= 5 (medians of at least five runs)")
    env = SwarmEnv(n_agents=args.agents, dynamics="quadrotor", density="gmm", n_samples=args.samples, max_steps=150,
                   comm_radius=25.0, w2_every=None)
    print(f"N = {args.agents} agents, M = {args.samples} samples, quadrotor, H = 15; median of {args.runs} runs")
    out = {}
    for name, (walls, cpus) in [
        ("D2OC log_gossip", time_d2oc(env, "log_gossip", args.runs, args.steps, args.warmup)),
        ("D2OC min_consensus", time_d2oc(env, "min_consensus", args.runs, args.steps, args.warmup)),
        ("D2OC centralised", time_d2oc(env, "centralised", args.runs, args.steps, args.warmup)),
        ("POT ot.emd per step", time_pot(env, args.runs, args.warmup)),
    ]:
        out[name] = (float(np.median(walls)), float(np.median(cpus)))
        print(f"{name:22s} wall {1e3 * out[name][0]:9.2f} ms/step   cpu {1e3 * out[name][1]:9.2f} ms/step")
    ref = out["D2OC log_gossip"]
    pot = out["POT ot.emd per step"]
    print(f"speed-up of D2OC (log_gossip) over POT per step: wall {pot[0] / ref[0]:.0f}x, cpu {pot[1] / ref[1]:.0f}x")
    ok = lambda cond: "met" if cond else "NOT met"  # noqa: E731
    print(f"target <= 10 ms per step: wall {ok(ref[0] <= 0.010)}, cpu {ok(ref[1] <= 0.010)}; "
          f"target >= 20x: {ok(pot[0] / ref[0] >= 20)}")
    return out


if __name__ == "__main__":
    main()
