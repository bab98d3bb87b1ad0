"""Benchmark: training env-steps/s of CaRL PPO against SB3 PPO, and end-to-end on the batched simulator.

Everything runs in one process on the built-in route scenario, batched (``morl.envs.driving`` ``route``,
continuous actions), built the morl way (:func:`morl.experiment.make_vec_env`: scalarised reward for
SB3, the reward vector in ``info["vector_reward"]``, the NaN check and ``VecMonitor``), on the CPU with
one torch thread (``train.torch_threads``' default) unless ``--threads`` says otherwise.

(a) Same env and settings for all rows (``n_steps``, ``batch_size``, epochs, the same MLP, the same PPO
    coefficients, value clipping on): SB3 ``PPO`` with ``MlpPolicy``; ``CaRLPPO`` with SB3's Gaussian
    ``ActorCriticPolicy`` (so the difference to SB3 is our bookkeeping: ``MORolloutBuffer``, which reads
    the simulator's reward-vector array at each step, the per-rollout vector logging, our ``train``, and
    the array-step collection of :mod:`morl.rollout`); the same with ``array_rollouts = False`` (SB3's
    ``collect_rollouts``, so the two Gaussian rows differ by the collection path alone); ``CaRLPPO`` with
    ``BetaPolicy`` (the distribution's own cost on top); and ``LexPPO`` with the same Gaussian
    actor (its weights copied), one critic per objective, per-objective GAE and its multipliers, following the
    route's preorder: its ratio to ``CaRLPPO (Gaussian)`` is the cost of the lexicographic update.
    The learning rate is 0 by default (``--learning-rate``): the updates do all their work, but every
    row keeps the same policy, so the simulator does the same work for each.
    The rows alternate within each repeat; the table shows medians and the ratio to SB3 (target >= 1.0x).
(b) End to end: ``CaRLPPO`` with its defaults (``BetaPolicy``, ReLU) on ``--e2e-envs`` envs (64), the rollout
    and minibatch of ``configs/carl_route.yaml`` scaled to 4 minibatches; target 30,000 env-steps/s. Two rows,
    one per network (``--e2e-nets``): SB3's ``MlpPolicy`` size, 64-64 per head (the issue's "MLP policy",
    and the network of its SB3 reference figure), and CaRL's own heads, 256-256, whose update costs about
    9x the multiply-adds and is bound by them on two cores.

Each timed run is ``--rollouts`` rollouts of ``model.learn`` after a warm-up rollout (before each run of (a),
torch, NumPy and the env are reseeded alike, so rows with the same weights take the same actions and end the
same episodes); the split between collecting rollouts and updating is measured around ``collect_rollouts``.
Example::

    python scripts/bench_ppo.py --repeats 5
    python scripts/bench_ppo.py --quick          # a few seconds, for a smoke test
    python scripts/bench_ppo.py --threads 2    # both cores for torch
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.policies import ActorCriticPolicy  # noqa: E402

from morl.agents.carl import CaRLPPO  # noqa: E402
from morl.agents.lexppo import LexPPO  # noqa: E402
from morl.config import config_from_dict  # noqa: E402
from morl.experiment import make_vec_env  # noqa: E402

E2E_TARGET = 30_000.0


class _PhaseTimer:
    """Wall-clock seconds spent collecting rollouts (the rest of ``learn`` is updates and logging), and
    the episodes that ended (each costs the simulator a reset, so a policy that ends more episodes makes
    the env slower: the column tells that apart from the agents' own cost).

    It wraps the model's ``collect_rollouts`` rather than being a callback: a callback runs at every step,
    a cost that only the bench would add."""

    def __init__(self, model):
        self.model, self.collect, self.episodes = model, 0.0, 0
        self._inner = model.collect_rollouts

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        ok = self._inner(*args, **kwargs)
        self.collect += time.perf_counter() - start
        # episode starts after the rollout's first step are the episodes that ended during it
        self.episodes += int(self.model.rollout_buffer.episode_starts[1:].sum())
        return ok

    def __enter__(self):
        self.model.collect_rollouts = self
        return self

    def __exit__(self, *exc):
        del self.model.collect_rollouts  # back to the class's method


def make_env(n_envs: int, seed: int = 0):
    cfg = config_from_dict({"name": "bench_ppo", "env": {"scenario": "route", "kwargs": {"action_type": "continuous"}},
                            "agent": {"name": "CaRLPPO"}, "train": {"total_timesteps": 1, "n_envs": n_envs}})
    return make_vec_env(cfg, n_envs, seed=seed)


def time_learn(model, steps: int, seed: int | None = None) -> tuple[float, float, float, float, int]:
    """(env-steps per wall second, per CPU second of this process, seconds collecting, seconds updating,
    episodes ended) of one ``learn(steps)``. The CPU-second rate is the steadier one when other jobs share the cores
    (one torch thread and a serial simulator keep this process on one core).

    ``seed`` reseeds torch, NumPy and the env first, so that models with the same weights draw the same actions
    and the simulator does the same work for each (the same episodes end)."""
    if seed is not None:
        th.manual_seed(seed)
        np.random.seed(seed)
        model.get_env().seed(seed)
    with _PhaseTimer(model) as timer:
        start, cpu = time.perf_counter(), time.process_time()
        model.learn(steps, reset_num_timesteps=True)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
    return steps / total, steps / max(cpu, 1e-9), timer.collect, total - timer.collect, timer.episodes


def build_rows(venv, n_steps: int, batch_size: int, n_epochs: int, net: list[int],
               learning_rate: float = 0.0) -> dict:
    common = dict(n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs, learning_rate=learning_rate, gamma=0.99,
                  gae_lambda=0.95, clip_range=0.1, clip_range_vf=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
                  device="cpu", seed=0, verbose=0,
                  policy_kwargs=dict(net_arch=dict(pi=list(net), vf=list(net)), activation_fn=th.nn.Tanh))
    rows = {
        "SB3 PPO (MlpPolicy)": PPO("MlpPolicy", venv, **common),
        "CaRLPPO (Gaussian)": CaRLPPO(ActorCriticPolicy, venv, **common),
        "CaRLPPO (Gaussian, SB3 loop)": CaRLPPO(ActorCriticPolicy, venv, **common),
        "CaRLPPO (BetaPolicy)": CaRLPPO("BetaPolicy", venv, **common),
        "LexPPO (Gaussian)": LexPPO(ActorCriticPolicy, venv, **common),
    }
    rows["CaRLPPO (Gaussian, SB3 loop)"].array_rollouts = False  # SB3's collect_rollouts: the array path's baseline
    # The same initial weights for the Gaussian rows: the models are built one after the other, so their
    # initialisations differ, and a policy that ends more episodes makes the env do more work.
    weights = rows["SB3 PPO (MlpPolicy)"].policy.state_dict()
    for name in ("CaRLPPO (Gaussian)", "CaRLPPO (Gaussian, SB3 loop)"):
        rows[name].policy.load_state_dict(weights)
    # LexPPO's value head has one output per objective: the same actor, its own critic
    actor = {k: v for k, v in weights.items() if not k.startswith("value_net.")}
    keys = rows["LexPPO (Gaussian)"].policy.load_state_dict(actor, strict=False)
    if keys.unexpected_keys or any(not k.startswith("value_net.") for k in keys.missing_keys):
        raise RuntimeError(f"LexPPO's actor does not match SB3 PPO's: {keys}")
    return rows


def _medians(runs) -> tuple[float, ...]:
    return tuple(statistics.median(x[i] for x in runs) for i in range(len(runs[0])))


def bench_same_settings(args) -> list[tuple]:
    venv = make_env(args.n_envs)
    models = build_rows(venv, args.n_steps, args.batch_size, args.n_epochs, args.net, args.learning_rate)
    rollout = args.n_steps * args.n_envs
    for model in models.values():
        time_learn(model, rollout)  # warm-up: numba cache, allocations, first update
    results = {name: [] for name in models}
    for r in range(args.repeats):
        names = list(models) if r % 2 == 0 else list(reversed(models))  # alternate the order
        for name in names:
            results[name].append(time_learn(models[name], args.rollouts * rollout, seed=r))
    venv.close()
    return [(name, *_medians(runs)) for name, runs in results.items()]


def bench_end_to_end(args, net: list[int]) -> tuple[float, ...]:
    venv = make_env(args.e2e_envs)
    model = CaRLPPO("BetaPolicy", venv, n_steps=args.e2e_n_steps, batch_size=args.e2e_batch_size, device="cpu",
                    seed=0, verbose=0, policy_kwargs=dict(net_arch=dict(pi=list(net), vf=list(net))))
    rollout = args.e2e_n_steps * args.e2e_envs
    time_learn(model, rollout)
    runs = [time_learn(model, args.rollouts * rollout) for _ in range(args.repeats)]
    venv.close()
    return _medians(runs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    p.add_argument("--rollouts", type=int, default=8,
                   help="rollouts per timed run (default 8: with 2, the per-learn set-up and the machine's noise "
                        "moved the ratios by a few per cent)")
    p.add_argument("--n-envs", type=int, default=64, help="(a): envs")
    p.add_argument("--n-steps", type=int, default=64, help="(a): rollout steps per env")
    p.add_argument("--batch-size", type=int, default=1024, help="(a): minibatch size")
    p.add_argument("--n-epochs", type=int, default=3, help="(a): epochs per rollout")
    p.add_argument("--net", type=int, nargs="+", default=[64, 64], help="(a): hidden layers of both heads")
    p.add_argument("--learning-rate", type=float, default=0.0,
                   help="(a): the default 0 keeps every row at the same initial policy, so the env does the same "
                        "work for each (with learning the rows' policies drift apart, and one that ends more "
                        "episodes pays for more resets and info copies: see the episodes column); the updates "
                        "still compute everything. CaRL's is 2.5e-4")
    p.add_argument("--e2e-envs", type=int, default=64, help="(b): envs")
    p.add_argument("--e2e-n-steps", type=int, default=128, help="(b): rollout steps per env")
    p.add_argument("--e2e-batch-size", type=int, default=2048, help="(b): minibatch size (4 per rollout)")
    p.add_argument("--e2e-nets", nargs="+", default=["64,64", "256,256"],
                   help="(b): one row per network, hidden layers of both heads, comma-separated")
    p.add_argument("--skip-e2e", action="store_true", help="only (a)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads for every row (the simulator is serial here, so with 2 the update's "
                        "matrix products use the second core while the env waits)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run of a few seconds")
    args = p.parse_args(argv)
    try:
        e2e_nets = [[int(w) for w in net.split(",")] for net in args.e2e_nets]
    except ValueError:
        p.error(f"--e2e-nets takes comma-separated layer widths such as 64,64, got {args.e2e_nets}")
    if any(w < 1 for net in e2e_nets for w in net):
        p.error(f"--e2e-nets widths must be >= 1, got {args.e2e_nets}")
    if args.quick:
        args.repeats, args.rollouts, args.n_envs, args.n_steps, args.batch_size = 1, 1, 8, 16, 64
        args.e2e_envs, args.e2e_n_steps, args.e2e_batch_size, args.net, e2e_nets = 8, 16, 32, [16], [[16]]
    for name in ("repeats", "rollouts", "n_envs", "n_steps", "batch_size", "n_epochs", "e2e_envs", "e2e_n_steps",
                 "e2e_batch_size", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    th.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average before: {load:.2f}; {os.cpu_count()} CPUs; torch threads {th.get_num_threads()}; device cpu")

    rows = bench_same_settings(args)
    base, base_cpu = rows[0][1], rows[0][2]
    print(f"\n(a) same env and settings: route scenario, E={args.n_envs}, n_steps={args.n_steps}, "
          f"batch={args.batch_size}, epochs={args.n_epochs}, net={args.net} tanh, lr {args.learning_rate:g}; "
          f"{args.rollouts} rollout(s) per run, median of {args.repeats}")
    print(f"| {'agent':<28} | env-steps/s | per CPU-s | collect s | update s | episodes "
          f"| vs SB3 PPO, wall / CPU (target >= 1.0x) |")
    print(f"|{'-' * 30}|-------------|-----------|-----------|----------|----------"
          f"|-----------------------------------------|")
    for name, rate, cpu, collect, update, episodes in rows:
        ratio = f"{rate / base:.2f}x / {cpu / base_cpu:.2f}x"
        print(f"| {name:<28} | {rate:>11,.0f} | {cpu:>9,.0f} | {collect:>9.3f} | {update:>8.3f} | {episodes:>8.0f} "
              f"| {ratio:>39} |")
    if not args.skip_e2e:
        print(f"\n(b) end to end: CaRLPPO defaults (BetaPolicy, ReLU), route scenario, E={args.e2e_envs}, "
              f"n_steps={args.e2e_n_steps}, batch={args.e2e_batch_size}, 3 epochs; median of {args.repeats}")
        print("| network per head | env-steps/s | per CPU-s | collect s | update s | vs target 30,000, wall / CPU |")
        print("|------------------|-------------|-----------|-----------|----------|------------------------------|")
        for net in e2e_nets:
            rate, cpu, collect, update, _ = bench_end_to_end(args, net)
            name = "-".join(map(str, net))
            print(f"| {name:<16} | {rate:>11,.0f} | {cpu:>9,.0f} | {collect:>9.3f} | {update:>8.3f} | "
                  f"{f'{rate / E2E_TARGET:.2f}x / {cpu / E2E_TARGET:.2f}x':>28} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average after: {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
