"""Benchmark: env-steps/s of the built-in batched driving simulator against highway-env ``highway-fast-v0``.

Measured in one process, random actions, median of ``--repeats`` runs:

1. the raw batched kernel step (``DrivingVecEnv.step_kernel``: one numba call, results left in arrays);
2. the full SB3 ``VecEnv.step`` (action validation, scalar rewards, per-env ``StepInfo`` dicts);
3. the same two with the batch split over one thread per CPU (``parallel=True``) unless ``--no-parallel``;
4. one Gymnasium env (``DrivingEnv.step``, a batch of one, Python loop);
5. highway-env ``highway-fast-v0`` (about 20-40 steps/s, so only ``--highway-steps`` steps in all).

Then prints the ratios to highway-fast-v0. ``--rates N`` instead prints the random policy's collision,
off-road and success rates over N episodes per scenario and action type. ``--components`` also prints
what one step costs per env, kernel by kernel (CPU time on a state reached by 60 random-action steps), to
show what bounds the batched rate.
Example::

    python scripts/bench_driving.py --n-envs 256 --n-vehicles 20 --components
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np


def _median_rate(fn, steps_per_run: int, repeats: int) -> tuple[float, float]:
    """Median env-steps per wall-clock second and per CPU second of this process (the second is the
    steadier figure when other jobs share the cores)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(steps_per_run / (time.perf_counter() - t0))
        cpu.append(steps_per_run / max(time.process_time() - c0, 1e-9))
    return statistics.median(wall), statistics.median(cpu)


def bench_batched(scenario, n_envs, n_vehicles, steps, repeats, parallel):
    from morl.envs.driving import make_vec

    venv = make_vec(scenario, n_envs, seed=0, n_vehicles=n_vehicles, parallel=parallel)
    venv.reset()
    actions = np.random.default_rng(0).integers(0, 5, (steps, n_envs)).astype(np.int64)
    venv.step_kernel(actions[0])  # compile / load the cache outside the timing
    venv.step(actions[0])

    def raw():
        for t in range(steps):
            venv.step_kernel(actions[t])

    def full():
        for t in range(steps):
            venv.step(actions[t])

    return _median_rate(raw, steps * n_envs, repeats), _median_rate(full, steps * n_envs, repeats)


def bench_single(scenario, n_vehicles, steps, repeats):
    from morl.envs.driving import DrivingEnv

    env = DrivingEnv(scenario, n_vehicles=n_vehicles)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 5, steps)

    def run():
        for t in range(steps):
            _, _, terminated, truncated, _ = env.step(int(actions[t]))
            if terminated or truncated:
                env.reset()

    run()
    return _median_rate(run, steps, repeats)


def bench_highway_env(total_steps, repeats):
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers its ids)

    env = gym.make("highway-fast-v0")
    env.reset(seed=0)
    env.action_space.seed(0)
    per_run = max(total_steps // repeats, 1)

    def run():
        for _ in range(per_run):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()

    return _median_rate(run, per_run, repeats)


_COMPONENTS = ("neighbours (MOBIL steps)", "traffic_accels (MOBIL steps)", "mobil_decisions (MOBIL steps)",
               "follow_sweep (other steps)", "integrate_traffic", "recycle", "sort_order", "ego checks",
               "write_obs")


def _component_loop():
    import numba

    from morl.envs.driving import sim
    from morl.envs.driving import traffic as tr
    from morl.envs.driving.road import MAX_LANES

    # like the simulator's kernels: no reference counting (the kernels inlined here would otherwise pay an
    # incref/decref per array they receive), so the scratch arrays come from the caller
    @numba.njit(_nrt=False)
    def loop(which, reps, ego, traf, order, rng, P, curv, speed, lane_start, lane_end, obs, leader, follower, front,
             acc, dist, nearest, target):
        x = 0.0
        for r in range(reps):
            for e in range(ego.shape[0]):
                if which == 0:
                    tr.neighbours(e, ego, traf, order, P, leader, follower, front[0], True)
                elif which == 1 or which == 2:
                    if r == 0:
                        tr.neighbours(e, ego, traf, order, P, leader, follower, front[0], True)
                    tr.traffic_accels(e, ego, traf, P, speed, lane_end, leader, acc)
                    if which == 2:  # decide, then undo the decisions so every repeat decides alike
                        for i in range(target.shape[0]):
                            target[i] = traf[e, tr.T_TARGET, i]
                        tr.mobil_decisions(e, 0, ego, traf, P, speed, lane_start, lane_end, leader, follower, acc)
                        for i in range(target.shape[0]):
                            traf[e, tr.T_TARGET, i] = target[i]
                elif which == 3:
                    tr.follow_sweep(e, ego, traf, order, P, speed, lane_end, front, acc)
                elif which == 4:
                    tr.integrate_traffic(e, traf, P, acc)
                elif which == 5:
                    tr.recycle(e, r, rng, ego, traf, P, speed, lane_start, lane_end)
                elif which == 6:
                    tr.sort_order(e, traf, order)
                elif which == 7:
                    psi = ego[e, sim.E_PSI]
                    x += sim._ego_checks(e, ego, traf, order, P, lane_start, lane_end, math.cos(psi),
                                         math.sin(psi))[2]
                else:
                    sim.write_obs(e, ego, traf, order, P, curv, speed, lane_start, lane_end, obs[e], dist, nearest)
        return x

    def run(which, reps, ego, traf, order, rng, P, curv, speed, lane_start, lane_end, obs):
        V = traf.shape[2]
        scratch = (np.empty((V + 1, MAX_LANES), np.int64), np.empty((V + 1, MAX_LANES), np.int64),
                   np.empty((1, MAX_LANES), np.int64), np.zeros(V + 1), np.empty(16), np.empty(16, np.int64),
                   np.empty(V))
        return loop(which, reps, ego, traf, order, rng, P, curv, speed, lane_start, lane_end, obs, *scratch)

    return run


def bench_components(scenario, n_envs, n_vehicles, repeats, reps=50):
    """``[(component, ns per env-step)]``: each kernel timed alone over the batch (CPU time, median), the
    MOBIL-step kernels weighted by ``1 / mobil_period``; the last row is the whole step for comparison."""
    from morl.envs.driving import make_vec
    from morl.envs.driving.traffic import P_MOBIL_PERIOD

    venv = make_vec(scenario, n_envs, seed=0, n_vehicles=n_vehicles)
    venv.reset()
    actions = np.random.default_rng(0).integers(0, 5, (reps, n_envs)).astype(np.int64)
    for t in range(60):
        venv.step_kernel(actions[t % reps])
    sim = venv.sim
    period = sim.P[P_MOBIL_PERIOD]
    loop = _component_loop()
    rows = []
    for which, name in enumerate(_COMPONENTS):
        state = [a.copy() for a in (sim.ego, sim.traf, sim.order, sim.rng)]
        args = (*state, sim.P, *sim._road_args, sim.obs.copy())
        loop(which, 1, *args)
        _, per_cpu = _median_rate(lambda: loop(which, reps, *args), reps * n_envs, repeats)
        weight = 1.0 / period if which < 3 else (1.0 - 1.0 / period if which == 3 else 1.0)
        rows.append((name, weight * 1e9 / per_cpu))

    rows[2] = (rows[2][0], rows[2][1] - rows[1][1])  # its loop recomputes the accelerations MOBIL reads

    def run():
        for t in range(reps):
            venv.step_kernel(actions[t])

    _, per_cpu = _median_rate(run, reps * n_envs, repeats)
    rows.append(("whole step (batch_step, with auto-reset)", 1e9 / per_cpu))
    return rows


def random_policy_rates(n_episodes: int, seed: int = 0) -> list[tuple[str, str, np.ndarray]]:
    """Collision, off-road and success rates of uniformly random actions: the first episode of each of
    ``n_episodes`` envs (seeds ``seed .. seed + n - 1``), per scenario and action type."""
    from morl.envs.driving import make_vec

    out = []
    for scenario in ("highway", "route"):
        for action_type in ("discrete", "continuous"):
            venv = make_vec(scenario, n_episodes, action_type=action_type, seed=seed)
            venv.reset()
            rng = np.random.default_rng(seed)
            events = np.full((n_episodes, 3), np.nan)
            while np.isnan(events[:, 0]).any():
                if action_type == "discrete":
                    actions = rng.integers(0, venv.action_space.n, n_episodes)
                else:
                    actions = rng.uniform(-1, 1, (n_episodes, 2)).astype(np.float32)
                _, _, dones, infos = venv.step(actions)
                for i in np.flatnonzero(dones & np.isnan(events[:, 0])):
                    events[i] = [infos[i]["collision"], infos[i]["off_road"], infos[i]["success"]]
            out.append((scenario, action_type, events.mean(axis=0)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="highway", choices=["highway", "route"])
    parser.add_argument("--n-envs", type=int, default=256)
    parser.add_argument("--n-vehicles", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200, help="batched steps per timed run")
    parser.add_argument("--single-steps", type=int, default=2000, help="single-env steps per timed run")
    parser.add_argument("--highway-steps", type=int, default=50, help="highway-fast-v0 steps in all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-parallel", action="store_true", help="skip the threaded variant")
    parser.add_argument("--components", action="store_true", help="also print the per-kernel cost of a step")
    parser.add_argument("--rates", type=int, default=0, metavar="N",
                        help="only print the random policy's collision / off-road / success rates over N episodes")
    args = parser.parse_args(argv)
    if args.rates:
        print(f"random actions, first episode of {args.rates} envs per row")
        print(f"{'scenario':<10}{'actions':<12}{'collision':>10}{'off-road':>10}{'success':>10}")
        for scenario, action_type, (coll, off, succ) in random_policy_rates(args.rates):
            print(f"{scenario:<10}{action_type:<12}{coll:>10.3f}{off:>10.3f}{succ:>10.3f}")
        return

    rows = []
    raw, full = bench_batched(args.scenario, args.n_envs, args.n_vehicles, args.steps, args.repeats, False)
    rows += [(f"batched kernel E={args.n_envs} V={args.n_vehicles}", raw),
             (f"batched VecEnv.step with infos E={args.n_envs}", full)]
    if not args.no_parallel:
        raw_p, full_p = bench_batched(args.scenario, args.n_envs, args.n_vehicles, args.steps, args.repeats, True)
        rows += [(f"batched kernel, {os.cpu_count()} threads", raw_p),
                 (f"batched VecEnv.step with infos, {os.cpu_count()} threads", full_p)]
    rows.append(("single DrivingEnv.step", bench_single(args.scenario, args.n_vehicles, args.single_steps,
                                                        args.repeats)))
    hw = bench_highway_env(args.highway_steps, args.repeats)
    rows.append(("highway-env highway-fast-v0", hw))
    print(f"scenario {args.scenario}, random actions, median of {args.repeats} runs; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'what':<52}{'env-steps/s':>13}{'x highway-fast':>16}{'per CPU-s':>12}{'x (CPU)':>10}")
    for name, (rate, cpu_rate) in rows:
        print(f"{name:<52}{rate:>13,.0f}{rate / hw[0]:>16,.0f}{cpu_rate:>12,.0f}{cpu_rate / hw[1]:>10,.0f}")
    if args.components:
        rows = bench_components(args.scenario, args.n_envs, args.n_vehicles, args.repeats)
        total = rows[-1][1]
        print(f"\nper env-step, CPU time (E={args.n_envs}, V={args.n_vehicles}); the rest of the whole step is the ego "
              "(control, bicycle model), reward, info and auto-resets")
        for name, ns in rows[:-1]:
            print(f"{name:<52}{ns:>10.0f} ns{100 * ns / total:>7.1f} %")
        rest = total - sum(ns for _, ns in rows[:-1])
        print(f"{'rest of the step':<52}{rest:>10.0f} ns{100 * rest / total:>7.1f} %")
        print(f"{rows[-1][0]:<52}{total:>10.0f} ns  -> {1e9 / total:,.0f} env-steps per CPU-s")


if __name__ == "__main__":
    main()
