"""Where a training run's time goes: a config trained through ``morl train``'s path under :mod:`cProfile`.

The run is :func:`morl.experiment.train` itself (the same vec env, wrappers, agent and callbacks as ``morl
train``), with the evaluation during training and after it turned off. The profiler starts after a warm-up
(default: the agent's ``learning_starts`` plus 1,000 env-steps for an off-policy agent, one rollout for an
on-policy one), so numba's compilation, the first allocations and the steps before learning starts are not in
the figures, and stops when training ends.

Printed: the split of the profiled wall-clock into the agent's update (its ``train``, with the backward pass,
the optimizer step and the replay sampling inside it), the collection (its ``collect_rollouts``, with the vec
env's ``step``, the acting forward pass and the callbacks inside it), and the rest; each part in seconds, as a
share and in microseconds per env-step; then the functions with the most time of their own. Example::

    python scripts/profile_training.py configs/driving_qdiqn.yaml --steps 16000
    python scripts/profile_training.py configs/carl_route.yaml --steps 100000 --set train.n_envs=64

Profiling adds a cost to each Python call, so the env-steps/s it prints are a little below a plain run's.
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import torch  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm  # noqa: E402

from morl import experiment  # noqa: E402
from morl.config import load_config  # noqa: E402


class ProfileAfter(BaseCallback):
    """Enables ``profiler`` at the first step at or after ``start`` env-steps (``None``: the warm-up of the
    module docstring) and stops training ``steps`` env-steps later (or disables it when training ends first)."""

    def __init__(self, profiler: cProfile.Profile, steps: int, start: int | None = None):
        super().__init__()
        self.profiler = profiler
        self.target = int(steps)
        self.start = start
        self.started_at: int | None = None
        self.wall = 0.0
        self._t0 = 0.0

    def _init_callback(self) -> None:
        if self.start is None:
            model = self.model
            if isinstance(model, OnPolicyAlgorithm):
                self.start = model.n_steps * model.n_envs
            else:
                self.start = int(getattr(model, "learning_starts", 0)) + 1000

    def _on_step(self) -> bool:
        if self.started_at is None:
            if self.num_timesteps >= self.start:
                self.started_at = self.num_timesteps
                self._t0 = time.perf_counter()
                self.profiler.enable()
            return True
        return self.steps < self.target

    def _on_training_end(self) -> None:
        if self.started_at is not None and not self.wall:
            self.profiler.disable()
            self.wall = time.perf_counter() - self._t0

    @property
    def steps(self) -> int:
        """Env-steps inside the profile."""
        return 0 if self.started_at is None else int(self.num_timesteps - self.started_at)


def _key(function) -> tuple[str, int, str] | None:
    """The :mod:`pstats` key of a Python function (``None`` for a builtin)."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return None if code is None else (code.co_filename, code.co_firstlineno, code.co_name)


def _innermost(venv):
    while hasattr(venv, "venv"):
        venv = venv.venv
    return venv


def parts(model) -> dict[str, list]:
    """Named parts of a training step: ``name -> [function, ...]`` (their cumulative times add up): the two
    top-level ones (``update``, ``collection``; the callbacks run inside the collection), each followed by what
    lies inside it (``parent/name``)."""
    policy = model.policy
    venv = model.get_env()
    named = {"update": [type(model).train], "update/backward": [torch.Tensor.backward]}
    optimizer = getattr(policy, "optimizer", None)
    if optimizer is not None:
        named["update/optimizer step"] = [type(optimizer).step]
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        named["update/replay sample"] = [type(buffer).sample]
    named["collection"] = [type(model).collect_rollouts]
    named["collection/env step (all wrappers)"] = [type(venv).step_wait]
    named["collection/env step (innermost env)"] = [type(_innermost(venv)).step_wait]
    if isinstance(model, OnPolicyAlgorithm):
        named["collection/acting forward"] = [type(policy).forward]
    else:
        named["collection/acting"] = [type(model)._sample_action]
    named["collection/callbacks"] = [BaseCallback.on_step]
    return named


def breakdown(stats: pstats.Stats, model, wall: float, steps: int) -> list[tuple[str, float, float, float]]:
    """``(part, seconds, share of wall, microseconds per env-step)`` per part of :func:`parts`, and ``other``
    (the profiled wall-clock outside the top-level parts)."""
    table = stats.stats  # key -> (primitive calls, calls, own time, cumulative time, callers)
    rows = []
    top = 0.0
    for name, functions in parts(model).items():
        keys = {k for k in map(_key, functions) if k is not None}
        seconds = sum(table[k][3] for k in keys if k in table)
        if "/" not in name:
            top += seconds
        rows.append((name, seconds))
    rows.append(("other", max(wall - top, 0.0)))
    per = 1e6 / max(steps, 1)
    return [(name, s, s / wall if wall > 0 else 0.0, s * per) for name, s in rows]


def report(rows, stats: pstats.Stats, wall: float, steps: int, top: int) -> str:
    lines = [f"profiled {steps:,} env-steps in {wall:.2f} s: {steps / max(wall, 1e-9):,.0f} env-steps/s (under the "
             "profiler)", "", "| part | s | share | us / env-step |", "|---|---|---|---|"]
    for name, seconds, share, us in rows:
        label = f"  {name.split('/', 1)[1]}" if "/" in name else name
        lines.append(f"| {label} | {seconds:.2f} | {share:.1%} | {us:.1f} |")
    buf = io.StringIO()
    stats.stream = buf
    stats.sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    lines += ["", f"functions with the most time of their own (top {top}):", text[text.find("   ncalls"):].rstrip()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="experiment YAML (e.g. configs/driving_qdiqn.yaml)")
    parser.add_argument("--steps", type=int, default=16000, help="env-steps inside the profile")
    parser.add_argument("--warmup", type=int, default=None,
                        help="env-steps before the profile starts (default: see the module docstring)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override")
    parser.add_argument("--top", type=int, default=15, help="functions listed by their own time")
    args = parser.parse_args(argv)
    overrides = [*args.overrides, "eval.interval=0", "train.checkpoint_every=null"]
    cfg = load_config(args.config, overrides=overrides)
    profiler = cProfile.Profile()
    probe = ProfileAfter(profiler, args.steps, args.warmup)
    # the run keeps the config's budget (its schedules depend on it) unless the profile needs more; the callback
    # stops it once the profile is complete
    kwargs = cfg.agent.kwargs
    warm = args.warmup if args.warmup is not None else max(int(kwargs.get("learning_starts") or 0) + 1000,
                                                           int(kwargs.get("n_steps") or 0) * cfg.train.n_envs)
    need = warm + args.steps + cfg.train.n_envs
    if cfg.train.total_timesteps < need:
        print(f"train.total_timesteps raised from {cfg.train.total_timesteps:,} to {need:,} so that the profile fits "
              "in the run (schedules over the budget stretch with it)", file=sys.stderr)
        cfg = load_config(args.config, overrides=[*overrides, f"train.total_timesteps={need}"])
    with tempfile.TemporaryDirectory() as tmp:
        experiment.train(cfg, run_dir=Path(tmp) / "run", source=args.config, callbacks=[probe],
                         evaluate_after=False)
    if probe.started_at is None:
        print(f"the run ended at {probe.num_timesteps} env-steps, before the warm-up of {probe.start}: nothing "
              "was profiled (lower --warmup)", file=sys.stderr)
        return 1
    if probe.steps < args.steps:
        print(f"the run's budget ended after {probe.steps:,} profiled env-steps of the {args.steps:,} asked for "
              "(raise train.total_timesteps)", file=sys.stderr)
    stats = pstats.Stats(profiler)
    rows = breakdown(stats, probe.model, probe.wall, probe.steps)
    print(report(rows, stats, probe.wall, probe.steps, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
