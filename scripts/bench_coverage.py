"""Benchmark: batched env-steps/s with incremental marginal gains vs recomputing F every step.

Both sides run in this process on the same :class:`~morl.envs.coverage.CoverageVecEnv` code path
(``step_arrays``: move, gain, modular reward, trajectory record), with the same random actions:

- ``incremental``: numba kernels update F in O(footprint) (coverage, items) or O(|S|^2) by a
  Cholesky row (experiment design);
- ``recompute`` (the reference style of the authors' code): F is re-evaluated from each env's visited
  set at every step and the gain is the difference.

Each measurement is one full episode of ``--envs`` envs (reset excluded); the median of ``--repeats``
runs is reported, with the ratio. Usage::

    python scripts/bench_coverage.py [--envs 256] [--repeats 5] [--scenarios coverage gorilla ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from morl.envs.coverage import SCENARIOS, make_vec


def episode_rate(env, actions: np.ndarray) -> float:
    """env-steps/s of one episode of every env with the given ``[T, B]`` actions."""
    env.reset()
    t0 = time.perf_counter()
    for a in actions:
        env.step_arrays(a)
    return actions.size / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    args = parser.parse_args(argv)
    results = {}
    print(f"{'scenario':<18} {'grid':>7} {'H':>3} {'incremental/s':>14} {'recompute/s':>12} {'ratio':>7}")
    for name in args.scenarios:
        fast = make_vec(name, args.envs, incremental=True)
        slow = make_vec(name, args.envs, incremental=False)
        rng = np.random.default_rng(0)
        actions = rng.integers(0, 5, size=(fast.horizon, args.envs))
        episode_rate(fast, actions)  # numba compile / warm-up
        inc, rec = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
            inc.append(episode_rate(fast, actions))
            rec.append(episode_rate(slow, actions))
        assert np.allclose(fast.value, slow.value), "incremental and recomputed F differ"
        i, r = float(np.median(inc)), float(np.median(rec))
        results[name] = {"incremental": i, "recompute": r, "ratio": i / r}
        g = fast.grid
        print(f"{name:<18} {g.rows:>3}x{g.cols:<3} {fast.horizon:>3} {i:>14,.0f} {r:>12,.0f} {i / r:>6.0f}x", flush=True)
    return results


if __name__ == "__main__":
    main()
