"""Benchmark: CUDA against CPU training of QDIQN and CaRLPPO (issue 11), on the built-in driving simulator.

Three checks, in one process, each section wrapped so that a failure prints and the rest goes on:

1. **Same loss.** A CPU model and a CUDA model with the same weights (the CPU model's state dict is
   loaded into the CUDA one) compute the loss of one fixed minibatch with fixed quantile fractions
   (QDIQN: ``QDIQN._loss``; CaRLPPO: ``CaRLPPO._minibatch_loss``). They must agree within
   ``rtol = 1e-4, atol = 1e-6`` (float32; TF32 is switched off so CUDA matmuls are full float32). The two
   devices still add in different orders, so a quantile comparison within rounding of a tie can put
   another next action in a sample's QDIQN target; that sample is 1/1024 of the loss, and the printed
   relative difference shows how close the check came.
2. **Updates/s.** Gradient steps per second of ``train()`` on a filled buffer (QDIQN: ``train(gradient_steps,
   batch_size=1024)`` with m = 4 objectives, N = N' = K = 32; CaRLPPO: one ``train()`` = ``n_epochs`` passes
   of minibatches of 16,384 over the rollout), timed with ``torch.cuda.synchronize()`` before the clock
   stops; the median of ``--repeats`` runs per device; then the CUDA/CPU ratio against the target of 20x.
3. **Syncs** (CUDA only): torch's sync debug mode lists the lines where one ``train()`` call waits for
   the GPU; expected are the once-per-call log read-backs, not one per gradient step.

Without a CUDA device it prints ``no CUDA device: ...`` and exits 0. ``--device cpu --quick`` runs the
same functions on the CPU only, with tiny sizes (what the test exercises). Exit code: 0 when every section
ran and the losses agree, 1 when the losses disagree, 2 when a section failed.

Usage::

    python scripts/bench_gpu.py                      # CPU and CUDA, full sizes (meant to take < 3 minutes)
    python scripts/bench_gpu.py --device cpu --quick # CPU only, tiny sizes (seconds)
"""

import argparse
import os
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

RTOL, ATOL = 1e-4, 1e-6
TARGET_RATIO = 20.0


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one benchmark run."""

    qd_envs: int = 16
    qd_fill: int = 32_768  # transitions in the replay buffer (full)
    qd_batch: int = 1024
    qd_quantiles: int = 32  # N = N' = K
    qd_net: tuple[int, ...] = (64, 64)
    qd_steps: dict | None = None  # gradient steps per timed run, per device type
    carl_envs: int = 64
    carl_n_steps: int = 512  # rollout = carl_envs * carl_n_steps samples
    carl_minibatch: int = 16_384
    carl_epochs: int = 3
    carl_net: tuple[int, ...] = (256, 256)
    repeats: int = 5

    def steps(self, device: str) -> int:
        table = self.qd_steps or {"cpu": 10, "cuda": 100}
        return table["cpu" if device == "cpu" else "cuda"]


FULL = Sizes()
QUICK = Sizes(qd_envs=4, qd_fill=256, qd_batch=32, qd_quantiles=8, qd_net=(16,), qd_steps={"cpu": 2, "cuda": 2},
              carl_envs=4, carl_n_steps=16, carl_minibatch=32, carl_epochs=1, carl_net=(16,), repeats=3)


class _ConstantLR:
    """A constant learning rate (CaRLPPO decays a float to 0; timed updates must not run at lr 0)."""

    def __call__(self, progress_remaining: float) -> float:
        return 2.5e-4


def synchronize(device: str) -> None:
    if th.device(device).type == "cuda":
        th.cuda.synchronize()


# ------------------------------------------------------------------------------------------------ QDIQN
def build_qdiqn(device: str, sizes: Sizes, seed: int = 0):
    """QDIQN on ``make_vec("route")`` (m = 4) with a full replay buffer of random-policy transitions."""
    from morl.agents.iqn import QDIQN
    from morl.envs.driving import make_vec

    venv = make_vec("route", sizes.qd_envs, action_type="discrete", seed=seed)
    n = sizes.qd_quantiles
    model = QDIQN("MlpPolicy", venv, buffer_size=sizes.qd_fill, learning_starts=sizes.qd_fill,
                  batch_size=sizes.qd_batch, n_quantiles=n, n_target_quantiles=n, n_quantiles_act=n,
                  exploration_initial_eps=1.0, exploration_final_eps=1.0,
                  policy_kwargs={"net_arch": list(sizes.qd_net)}, seed=seed, device=device)
    model.learn(sizes.qd_fill)  # learning_starts = fill: only collects (epsilon = 1: uniform actions, no network)
    return model


def qdiqn_updates_per_s(model, sizes: Sizes) -> list[float]:
    """Gradient steps/s of ``model.train``, one figure per repeat (after one warm-up call)."""
    device = str(model.device)
    steps = sizes.steps(device)
    model.train(gradient_steps=max(1, steps // 4), batch_size=sizes.qd_batch)  # warm-up (and the device mirror)
    synchronize(device)
    rates = []
    for _ in range(sizes.repeats):
        start = time.perf_counter()
        model.train(gradient_steps=steps, batch_size=sizes.qd_batch)
        synchronize(device)
        rates.append(steps / (time.perf_counter() - start))
    return rates


def qdiqn_fixed_loss(model, batch_np, tau_next: th.Tensor, taus: th.Tensor) -> float:
    """QDIQN's loss on a fixed minibatch (CPU tensors, moved to the model's device) and fixed fractions."""
    device = model.device
    batch = type(batch_np)(*(None if f is None else f.to(device) for f in batch_np))
    with th.no_grad():
        return float(model._loss(batch, None, tau_next.to(device), taus.to(device)))


# ------------------------------------------------------------------------------------------------ CaRLPPO
def build_carl(device: str, sizes: Sizes, seed: int = 0):
    """CaRLPPO (Beta policy) on ``make_vec("route", continuous)`` with one rollout collected (and trained on)."""
    from morl.agents.carl import CaRLPPO
    from morl.envs.driving import make_vec

    venv = make_vec("route", sizes.carl_envs, action_type="continuous", seed=seed)
    net = list(sizes.carl_net)
    model = CaRLPPO("BetaPolicy", venv, learning_rate=_ConstantLR(), n_steps=sizes.carl_n_steps,
                    batch_size=sizes.carl_minibatch, n_epochs=sizes.carl_epochs,
                    policy_kwargs={"net_arch": {"pi": net, "vf": net}}, seed=seed, device=device)
    model.learn(sizes.carl_n_steps * sizes.carl_envs)  # one rollout and one update; the buffer stays full
    return model


def carl_steps_per_train(model) -> int:
    rollout = model.n_steps * model.n_envs
    return model.n_epochs * -(-rollout // model.batch_size)


def carl_updates_per_s(model, sizes: Sizes) -> list[float]:
    """Gradient steps/s of ``model.train()`` on the collected rollout, one figure per repeat."""
    device = str(model.device)
    steps = carl_steps_per_train(model)
    model.train()  # warm-up
    synchronize(device)
    rates = []
    for _ in range(sizes.repeats):
        start = time.perf_counter()
        model.train()
        synchronize(device)
        rates.append(steps / (time.perf_counter() - start))
    return rates


def carl_fixed_loss(model, batch_cpu) -> float:
    device = model.device
    batch = type(batch_cpu)(*(f.to(device) for f in batch_cpu))
    with th.no_grad():
        loss, _ = model._minibatch_loss(batch, 0.1, 0.1)
    return float(loss)


# ------------------------------------------------------------------------------------------------ checks
def loss_agreement(agent: str, models: dict, seed: int = 0) -> tuple[float, float]:
    """The loss of one fixed minibatch with the reference model's weights on both devices.

    :param models: ``{"ref": model on the CPU, "other": model on the device under test}``; the
        reference weights are loaded into the other model.
    :return: ``(reference loss, other device's loss)``.
    """
    ref, other = models["ref"], models["other"]
    other.policy.load_state_dict(ref.policy.state_dict())
    np.random.seed(seed)
    gen = th.Generator().manual_seed(seed)
    if agent == "QDIQN":
        batch = ref.replay_buffer.samples_at(np.random.randint(0, ref.replay_buffer.buffer_size, ref.batch_size),
                                             np.random.randint(0, ref.replay_buffer.n_envs, ref.batch_size))
        tau_next = th.rand(ref.batch_size, ref.n_target_quantiles, generator=gen)
        taus = th.rand(ref.batch_size, ref.n_quantiles, generator=gen)
        return qdiqn_fixed_loss(ref, batch, tau_next, taus), qdiqn_fixed_loss(other, batch, tau_next, taus)
    batch = next(iter(ref.rollout_buffer.get(ref.batch_size)))
    batch = type(batch)(*(f.cpu() for f in batch))
    return carl_fixed_loss(ref, batch), carl_fixed_loss(other, batch)


def sync_sites(fn) -> dict[str, int]:
    """``file:line -> count`` of the synchronising CUDA calls made by ``fn()`` (torch's sync debug mode)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        th.cuda.set_sync_debug_mode("warn")
        try:
            fn()
            th.cuda.synchronize()
        finally:
            th.cuda.set_sync_debug_mode("default")
    sites: dict[str, int] = {}
    for w in caught:
        if "synchroniz" in str(w.message):
            key = f"{Path(w.filename).name}:{w.lineno}"
            sites[key] = sites.get(key, 0) + 1
    return sites


def sync_report(agent: str, model, sizes: Sizes) -> None:
    """Print where one training call synchronises with the host (expected: the log read-backs only)."""
    if agent == "QDIQN":
        steps = 5
        sites = sync_sites(lambda: model.train(gradient_steps=steps, batch_size=sizes.qd_batch))
    else:
        steps = carl_steps_per_train(model)
        sites = sync_sites(model.train)
    listed = ", ".join(f"{k} x{v}" for k, v in sorted(sites.items())) or "none"
    print(f"{agent} syncs in one train() call of {steps} gradient steps: {sum(sites.values())} ({listed})")


def _section(name: str, failures: list[str], fn, *args):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - one failing section must not stop the others
        print(f"[{name}] FAILED:")
        traceback.print_exc(file=sys.stdout)
        failures.append(name)
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto/cuda: CPU and CUDA (needs a CUDA device); cpu: the CPU side only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run of the same code)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads on the CPU")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per device (median taken)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be >= 1")
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    if args.device != "cpu" and not th.cuda.is_available():
        print(f"no CUDA device: torch.cuda.is_available() is False (torch {th.__version__}, CUDA build "
              f"{th.version.cuda or 'none'}); nothing to compare. `--device cpu --quick` runs the CPU side.")
        return 0
    th.set_num_threads(args.threads)
    th.backends.cuda.matmul.allow_tf32 = False  # full float32 on both sides (the loss check's tolerance)
    th.backends.cudnn.allow_tf32 = False
    devices = ["cpu"] if args.device == "cpu" else ["cpu", "cuda"]
    gpu = th.cuda.get_device_name(0) if "cuda" in devices else "none"
    print(f"torch {th.__version__}, torch.set_num_threads({args.threads}) -> {th.get_num_threads()} CPU thread(s), "
          f"{os.cpu_count()} CPUs, GPU: {gpu}; load average {os.getloadavg()[0]:.2f}; "
          f"median of {sizes.repeats} repeats{' (quick sizes)' if args.quick else ''}")
    print(f"QDIQN: m=4, N=N'=K={sizes.qd_quantiles}, batch {sizes.qd_batch}, net {list(sizes.qd_net)}, "
          f"buffer {sizes.qd_fill} ({sizes.qd_envs} envs); CaRLPPO: minibatch {sizes.carl_minibatch}, "
          f"rollout {sizes.carl_envs}x{sizes.carl_n_steps}, {sizes.carl_epochs} epochs, net {list(sizes.carl_net)}")

    failures: list[str] = []
    disagree: list[str] = []
    rates: dict[tuple[str, str], float] = {}
    builders = {"QDIQN": (build_qdiqn, qdiqn_updates_per_s), "CaRLPPO": (build_carl, carl_updates_per_s)}
    for agent, (build, measure) in builders.items():
        models = {}
        for device in devices:
            model = _section(f"{agent} build {device}", failures, build, device, sizes, args.seed)
            if model is None:
                continue
            models[device] = model
            if agent == "QDIQN":
                print(f"  {agent} {device}: replay buffer device_storage={model.replay_buffer.device_storage}")
            runs = _section(f"{agent} updates/s {device}", failures, measure, model, sizes)
            if runs:
                rates[(agent, device)] = statistics.median(runs)
            if device == "cuda":
                _section(f"{agent} sync check", failures, sync_report, agent, model, sizes)
        # the CUDA model against the CPU one; on a CPU-only run a second CPU model (same code path)
        other = models.get("cuda") if "cuda" in devices else _section(
            f"{agent} build cpu (2nd)", failures, build, "cpu", sizes, args.seed + 1)
        if "cpu" in models and other is not None:
            got = _section(f"{agent} loss check", failures, loss_agreement, agent, {"ref": models["cpu"], "other": other},
                           args.seed)
            if got is not None:
                ref, val = got
                ok = bool(np.isclose(val, ref, rtol=RTOL, atol=ATOL))
                rel = abs(val - ref) / max(abs(ref), 1e-12)
                print(f"{agent} fixed-batch loss: cpu {ref:.8g}  {other.device.type} {val:.8g}  |diff| {abs(val - ref):.3g}"
                      f"  rel {rel:.3g}  (rtol {RTOL:g}, atol {ATOL:g}) -> {'agree' if ok else 'DISAGREE'}")
                if not ok:
                    disagree.append(agent)

    print()
    print(f"{'agent':10s} {'device':6s} {'updates/s':>12s}")
    for (agent, device), rate in rates.items():
        print(f"{agent:10s} {device:6s} {rate:12.1f}")
    for agent in builders:
        cpu, cuda = rates.get((agent, "cpu")), rates.get((agent, "cuda"))
        if cpu and cuda:
            ratio = cuda / cpu
            print(f"{agent}: CUDA/CPU = {ratio:.1f}x  (target >= {TARGET_RATIO:g}x: "
                  f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}; {gpu} vs {th.get_num_threads()} CPU threads)")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    if disagree:
        print(f"CPU and CUDA losses disagree: {', '.join(disagree)}")
        return 1
    if failures:
        print(f"sections failed: {', '.join(failures)}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
