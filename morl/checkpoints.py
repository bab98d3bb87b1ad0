"""Crash safety for training runs: atomic checkpoints, the divergence guard, and progress files.

- :class:`AtomicCheckpoint` writes model (with optimizer), replay buffer (off-policy) and counters
  through a temp file and ``os.replace``, ``state.json`` last, so a crash leaves either the previous
  checkpoint or the new one, never half of one;
- :class:`DivergenceGuard` (with :class:`GuardedLogger`) stops training at the first NaN/inf loss or
  parameter, before a checkpoint of the bad model is written, with a :class:`DivergenceError` naming it;
- the progress helpers keep ``progress.csv`` rows whole across crashes and resumes, and
  :class:`StepsFile` tells another process how far a run is.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

__all__ = ["AtomicCheckpoint", "DivergenceError", "DivergenceGuard", "GuardedLogger", "StepsFile", "read_checkpoint_state",
           "read_progress", "write_progress", "atomic_write", "non_finite_parameter"]


class DivergenceError(RuntimeError):
    """Training produced a NaN/inf loss or parameter; the message names it and the timestep."""


class GuardedLogger(Logger):
    """SB3's logger, remembering the first non-finite loss recorded (a ``train/*`` key naming a loss).

    Losses are recorded inside ``train()`` and may be dumped (and cleared) before any callback sees
    them, so they are caught here, at the moment they are recorded. Other diagnostics are not checked:
    SB3 records ``train/explained_variance`` as NaN whenever the returns have zero variance.
    """

    def __init__(self, folder, output_formats):
        super().__init__(folder, output_formats)
        self.first_non_finite: tuple[str, float] | None = None

    def record(self, key: str, value, exclude=None) -> None:
        if self.first_non_finite is None and key.startswith("train/") and "loss" in key:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = 0.0  # not a scalar (strings, arrays): nothing to check
            if not math.isfinite(number):
                self.first_non_finite = (key, number)
        super().record(key, value, exclude)


def non_finite_parameter(model) -> str | None:
    """``"parameter q_net.0.weight has nan (3 of 256 entries non-finite)"``, or None when all are finite."""
    import torch

    policy = getattr(model, "policy", None)
    if not isinstance(policy, torch.nn.Module):
        return None  # controllers without torch parameters (D2OC, Lloyd, SMC)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            ok = torch.isfinite(p)
            if not bool(ok.all()):
                bad = p[~ok]
                return (f"parameter {name} has {float(bad[0])} ({int(bad.numel())} of {p.numel()} entries "
                        f"non-finite)")
    return None


class DivergenceGuard(BaseCallback):
    """Stop training at the first NaN/inf loss or parameter, with an error naming it and the timestep.

    Losses are read from a :class:`GuardedLogger` at each rollout's start (the first point after an
    update); parameters are checked every ``check_every`` timesteps, at the end of training and
    before every checkpoint (:class:`AtomicCheckpoint` calls :meth:`check`), so no checkpoint ever
    holds a diverged model: the newest one is the last good one.

    :param check_every: timesteps between parameter checks (parameters are also checked before
        each checkpoint and at the end); None checks them at every rollout start.
    :param run_dir: the run directory, named in the error message (the last good checkpoint).
    """

    def __init__(self, check_every: int | None = 1000, run_dir=None):
        super().__init__()
        self.check_every = check_every
        self.run_dir = None if run_dir is None else Path(run_dir)
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        due = self.check_every is None or self.model.num_timesteps - self._last >= self.check_every
        self.check(parameters=due)

    def _on_training_end(self) -> None:
        self.check(parameters=True)

    def _on_step(self) -> bool:
        return True

    def check(self, parameters: bool = True) -> None:
        """Raise :class:`DivergenceError` when a recorded loss or (with ``parameters``) a parameter is non-finite."""
        steps = int(self.model.num_timesteps)
        what = None
        bad = getattr(self.model.logger, "first_non_finite", None)
        if bad is not None:
            what = f"{bad[0]} is {bad[1]}"
        if what is None and parameters:
            self._last = steps
            what = non_finite_parameter(self.model)
        if what is not None:
            raise self.error(what)

    def error(self, what: str) -> DivergenceError:
        """The error for ``what`` went non-finite now, naming the last good checkpoint."""
        steps = int(self.model.num_timesteps)
        state = read_checkpoint_state(self.run_dir) if self.run_dir is not None else None
        if state:
            keep = (f"the last good checkpoint, {self.run_dir / 'checkpoints' / state['model']} at timestep "
                    f"{state['num_timesteps']}, is kept (lower the learning rate and `morl train --resume "
                    f"{self.run_dir}`)")
        else:
            keep = "no checkpoint was written before it"
        return DivergenceError(f"training diverged at timestep {steps}: {what}; {keep}")


class AtomicCheckpoint(BaseCallback):
    """Save model, replay buffer (off-policy) and counters every ``every`` steps, atomically.

    Each file is written to a temporary name and moved into place with ``os.replace``; ``state.json``
    is written last and names the newest complete checkpoint, so an interruption at any moment leaves
    the previous checkpoint usable.

    :param directory: the ``checkpoints/`` folder.
    :param every: steps between checkpoints (counted in env steps over all envs); checkpoints fall on
        the first rollout boundary after each multiple.
    :param guard: a :class:`DivergenceGuard` checked before each save, so a diverged model is never saved.
    """

    def __init__(self, directory: Path, every: int | None, guard: DivergenceGuard | None = None):
        super().__init__()
        self.directory = Path(directory)
        self.every = every
        self.guard = guard
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        # At a rollout's start every collected transition is stored and every update done, so the
        # model, buffer and counter agree (inside _on_step SB3 has not stored the step's transition yet).
        # Compare multiples, not distances: measuring ``every`` from the last save would let the
        # checkpoints drift later by up to a rollout each time.
        if self.every and self.model.num_timesteps // self.every > self._last // self.every:
            self.save()

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        if self.guard is not None:
            self.guard.check(parameters=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        steps = int(self.model.num_timesteps)
        self._last = steps
        model_path = self.directory / f"ckpt_{steps}.zip"
        buf = io.BytesIO()
        self.model.save(buf)
        atomic_write(model_path, buf.getvalue())
        state = {"num_timesteps": steps, "model": model_path.name, "buffer": None,
                 "episodes": int(getattr(self.model, "_episode_num", 0)), "time": time.time()}
        if isinstance(self.model, OffPolicyAlgorithm) and self.model.replay_buffer is not None:
            buf = io.BytesIO()
            self.model.save_replay_buffer(buf)
            state["buffer"] = f"buffer_{steps}.pkl"
            atomic_write(self.directory / state["buffer"], buf.getvalue())
        old = read_checkpoint_state(self.directory.parent)
        atomic_write(self.directory / "state.json", json.dumps(state, indent=1).encode())
        # Only the newest replay buffer is kept: buffers are large and only the last one resumes.
        if old and old.get("buffer") and old["buffer"] != state["buffer"]:
            (self.directory / old["buffer"]).unlink(missing_ok=True)
        return model_path


class StepsFile(BaseCallback):
    """Write ``{"steps": <timesteps so far>, "total": <the run's total>}`` to a JSON file every ``every_s``
    seconds and at the end of training, so another process (a sweep's parent) can show the run's progress.

    :param path: the file (written atomically).
    :param total: the run's total timesteps.
    :param every_s: seconds between writes.
    """

    def __init__(self, path, total: int, every_s: float = 1.0):
        super().__init__()
        self.path, self.total, self.every_s = Path(path), int(total), float(every_s)
        self._last = 0.0

    def write(self, **extra) -> None:
        steps = int(self.model.num_timesteps) if self.model is not None else 0
        atomic_write(self.path, json.dumps({"steps": steps, "total": self.total, **extra}).encode())

    def _on_step(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.write()
        return True

    def _on_training_end(self) -> None:
        self.write()


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint_state(run_dir) -> dict | None:
    path = Path(run_dir) / "checkpoints" / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def _read_csv(path: Path) -> list[dict]:
    """Rows of a CSV file; a last line cut short by a crash (fewer fields than the header) is dropped."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    if rows and (None in rows[-1].values() or None in rows[-1]):
        rows.pop()
    return rows


def _steps_of(row: dict) -> float | None:
    try:
        return float(row.get("time/total_timesteps") or "nan")
    except ValueError:
        return None


def read_progress(run_dir: Path, max_steps: int | None = None) -> list[dict]:
    """The run's progress rows: those kept aside by an interrupted resume, then ``progress.csv``'s."""
    rows = _read_csv(run_dir / "progress.kept.csv") + _read_csv(run_dir / "progress.csv")
    # A crash between saving the kept rows and SB3 truncating progress.csv leaves them in both.
    seen: set = set()
    rows = [r for r in rows if not (key := tuple(r.items())) in seen and not seen.add(key)]
    if max_steps is not None:
        rows = [r for r in rows if (s := _steps_of(r)) is None or math.isnan(s) or s <= max_steps]
    return rows


def write_progress(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r if k is not None))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())
