"""Benchmark: per-objective GAE with morl.stats.gae vs stable-baselines3's RolloutBuffer.

SB3 computes GAE for one scalar reward, so m objectives cost m calls of
``RolloutBuffer.compute_returns_and_advantage``; ``morl.stats.gae`` does all m in one numba pass.
Both run in this process on the same random float32 rollout (with random episode starts), after a
warm-up (numba compilation excluded); the median of ``--repeats`` runs is reported, plus the max
absolute difference of the advantages and returns.

    python scripts/bench_stats.py --repeats 21
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from morl.stats import gae


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: numba compilation / first-touch allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2048, help="rollout length T")
    parser.add_argument("--envs", type=int, default=64, help="number of envs")
    parser.add_argument("--objectives", type=int, default=4, help="number of objectives m")
    parser.add_argument("--repeats", type=int, default=21, help="timed runs per side (median reported)")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--gae-lambda", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")

    T, n, m = args.steps, args.envs, args.objectives
    rng = np.random.default_rng(args.seed)
    rewards = rng.normal(size=(T, n, m)).astype(np.float32)
    values = rng.normal(size=(T, n, m)).astype(np.float32)
    starts = (rng.random((T, n)) < 0.01).astype(np.float32)
    starts[0] = 1.0
    last_values = rng.normal(size=(n, m)).astype(np.float32)
    last_dones = rng.random(n) < 0.5

    # SB3 side: one buffer per objective, filled once; only compute_returns_and_advantage is timed
    obs_space, act_space = spaces.Box(-1.0, 1.0, (1,), np.float32), spaces.Discrete(2)
    buffers = []
    for j in range(m):
        buf = RolloutBuffer(T, obs_space, act_space, "cpu", gae_lambda=args.gae_lambda, gamma=args.gamma, n_envs=n)
        buf.rewards[:] = rewards[..., j]
        buf.values[:] = values[..., j]
        buf.episode_starts[:] = starts
        buffers.append((buf, th.as_tensor(last_values[:, j].copy())))

    def run_sb3():
        for buf, last in buffers:
            buf.compute_returns_and_advantage(last, last_dones)

    def run_morl():
        return gae(rewards, values, starts, last_values, last_dones, gamma=args.gamma, gae_lambda=args.gae_lambda)

    out = (np.empty_like(rewards), np.empty_like(rewards))

    def run_morl_out():
        return gae(
            rewards, values, starts, last_values, last_dones, gamma=args.gamma, gae_lambda=args.gae_lambda, out=out
        )

    t_sb3 = median_seconds(run_sb3, args.repeats)
    t_morl = median_seconds(run_morl, args.repeats)
    t_morl_out = median_seconds(run_morl_out, args.repeats)

    adv, ret = run_morl()
    err_adv = max(float(np.abs(adv[..., j] - buf.advantages).max()) for j, (buf, _) in enumerate(buffers))
    err_ret = max(float(np.abs(ret[..., j] - buf.returns).max()) for j, (buf, _) in enumerate(buffers))

    print(f"GAE, T={T}, n_envs={n}, m={m}, float32, median of {args.repeats} runs (after warm-up)")
    print(f"{'implementation':<44}{'median ms':>12}{'speed-up':>10}")
    print(f"{'SB3 RolloutBuffer x ' + str(m) + ' objectives':<44}{t_sb3 * 1e3:>12.3f}{1.0:>9.1f}x")
    print(f"{'morl.stats.gae (allocates outputs)':<44}{t_morl * 1e3:>12.3f}{t_sb3 / t_morl:>9.1f}x")
    print(f"{'morl.stats.gae (out= preallocated)':<44}{t_morl_out * 1e3:>12.3f}{t_sb3 / t_morl_out:>9.1f}x")
    print(f"max |diff| vs SB3: advantages {err_adv:.3g}, returns {err_ret:.3g}")
    if err_adv > 1e-4 or err_ret > 1e-4:
        raise SystemExit("morl.stats.gae disagrees with SB3")


if __name__ == "__main__":
    main()
