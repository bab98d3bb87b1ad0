"""Benchmark of the IQN agents: training throughput against sb3-contrib's QR-DQN, end-to-end throughput
on the batched driving simulator, and the cost of the optimal subset.

Three measurements, each the median of ``--runs`` (>= 5) timed runs in this one process:

1. **QDIQN vs QRDQN-32**, training env-steps/s on the same env (CartPole-v1 with a 4-objective reward
   vector; QR-DQN trains on the scalar), same network width (``[64, 64]``), batch size (32), train
   frequency (4), one gradient step per training call, the same epsilon (fixed at 0.05 so that both
   call their network equally often). QDIQN: m = 4 objectives on four preorder levels,
   N = N' = K = 32; QR-DQN: 32 quantiles; plain IQN (scalar reward, N = N' = K = 32) for reference.
   Runs alternate between the algorithms, so load from other processes hits them alike. Torch uses the
   same thread count (``--threads``) for all of them. Target: QDIQN / QRDQN >= 0.8.
2. **QDIQN end-to-end** on ``morl.envs.driving.make_vec("route", 16)``: training env-steps/s (every
   transition counted), same hyperparameters. Target: >= 5,000 env-steps/s.
3. **optimal_subset** (``morl.dominance``) for B = 256, m = 4, K = 32, A in {5, 27}: milliseconds a call.

Torch runs on one intra-op thread (``--threads``): these networks are too small for two threads to pay,
and a second thread spin-waits against other processes on a shared machine.

Usage: ``python scripts/bench_iqn.py [--runs 5] [--steps 2000] [--vec-steps 8000] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import gymnasium as gym
import numpy as np
import torch as th

OBJECTIVES = ("alive", "centred", "upright", "still")


def vector_cartpole():
    """CartPole-v1 with a 4-objective reward vector (scalar = sum) for QDIQN, and the preorder."""
    from morl.wrappers import Scalarize, VectorReward

    def vec(obs, r, info):
        return [r, -abs(obs[0]), -abs(obs[2]), -abs(obs[3])]

    return Scalarize(VectorReward(gym.make("CartPole-v1"), OBJECTIVES, fn=vec), [1.0, 0.0, 0.0, 0.0])


COMMON = {"learning_rate": 1e-4, "buffer_size": 100_000, "learning_starts": 1000, "batch_size": 32, "train_freq": 4,
              "gradient_steps": 1, "target_update_interval": 1000, "exploration_initial_eps": 0.05,
              "exploration_final_eps": 0.05, "policy_kwargs": {"net_arch": [64, 64]}, "seed": 0, "device": "cpu"}


def timed_learn(model, steps: int) -> float:
    """Env-steps/s of ``model.learn(steps)`` continuing the same model (buffer already warm)."""
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def bench_vs_qrdqn(runs: int, steps: int) -> dict[str, float]:
    """Median env-steps/s of QRDQN-32, IQN and QDIQN (m = 4), timed runs interleaved."""
    from sb3_contrib import QRDQN

    from morl.agents.iqn import IQN, QDIQN

    quantiles = {"n_quantiles": 32, "n_target_quantiles": 32, "n_quantiles_act": 32}
    models = {
        "QRDQN": QRDQN("MlpPolicy", vector_cartpole(),
                       **{**COMMON, "policy_kwargs": {"net_arch": [64, 64], "n_quantiles": 32}}),
        "IQN": IQN("MlpPolicy", vector_cartpole(), **quantiles, **COMMON),
        "QDIQN": QDIQN("MlpPolicy", vector_cartpole(), preorder=" > ".join(OBJECTIVES), **quantiles, **COMMON),
    }
    for model in models.values():  # fill past learning_starts so every timed run trains
        model.learn(COMMON["learning_starts"] + steps // 2)
    rates = {name: [] for name in models}
    for _ in range(runs):
        for name, model in models.items():
            rates[name].append(timed_learn(model, steps))
    return {name: statistics.median(r) for name, r in rates.items()}


def bench_end_to_end(runs: int, steps: int, n_envs: int = 16) -> float:
    from morl.agents.iqn import QDIQN
    from morl.envs.driving import make_vec

    venv = make_vec("route", n_envs, action_type="discrete", seed=0)
    model = QDIQN("MlpPolicy", venv, n_quantiles=32, n_target_quantiles=32, n_quantiles_act=32, **COMMON)
    model.learn(COMMON["learning_starts"] + steps // 2)
    return statistics.median(timed_learn(model, steps) for _ in range(runs))


def bench_optimal_subset(runs: int, n_actions: int, batch: int = 256, m: int = 4, k: int = 32) -> float:
    from morl.dominance import optimal_subset
    from morl.preorder import Preorder

    preorder = Preorder.parse(" > ".join(OBJECTIVES))
    z = th.randn(batch, m, n_actions, k, generator=th.Generator().manual_seed(0))
    delta = th.full((m,), 0.01)
    optimal_subset(z, preorder, 0.75, delta)
    calls = 20 if n_actions <= 5 else 3
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            optimal_subset(z, preorder, 0.75, delta)
        times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median taken)")
    parser.add_argument("--steps", type=int, default=2000, help="env steps per timed run, single env")
    parser.add_argument("--vec-steps", type=int, default=8000, help="env steps per timed run, 16 envs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--only", choices=("qrdqn", "vec", "subset"), default=None, help="run one measurement")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be >= 5 (the median of at least five runs is reported)")
    th.set_num_threads(args.threads)
    np.random.seed(0)
    print(f"torch {th.__version__}, {th.get_num_threads()} thread(s), median of {args.runs} runs, "
          f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f} (other processes share the machine)")
    if args.only in (None, "qrdqn"):
        rate = bench_vs_qrdqn(args.runs, args.steps)
        qd, qr, iq = rate["QDIQN"], rate["QRDQN"], rate["IQN"]
        print("CartPole (m=4 vector), 1 env, net [64, 64], batch 32, train_freq 4:")
        print(f"  QRDQN-32   {qr:8.0f} env-steps/s")
        print(f"  IQN        {iq:8.0f} env-steps/s   (N=N'=K=32)   ratio IQN / QRDQN = {iq / qr:.2f}")
        print(f"  QDIQN      {qd:8.0f} env-steps/s   (m=4, N=N'=K=32)")
        print(f"  ratio QDIQN / QRDQN = {qd / qr:.2f}   (target >= 0.8)")
    if args.only in (None, "vec"):
        rate = bench_end_to_end(args.runs, args.vec_steps)
        print(f"QDIQN end-to-end on make_vec('route', 16): {rate:8.0f} env-steps/s   (target >= 5000)")
    if args.only in (None, "subset"):
        for n_actions in (5, 27):
            ms = bench_optimal_subset(args.runs, n_actions)
            print(f"optimal_subset B=256 m=4 K=32 A={n_actions:2d}: {ms:8.2f} ms/call")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
