"""Config -> environment + agent -> train -> evaluate -> run directory.

A run directory holds::

    config.yaml        the resolved config (what ``--resume`` and ``morl eval`` read back)
    error.txt          only after a failed run that left a checkpoint: what went wrong
    model.zip          the final model
    checkpoints/       ckpt_<steps>.zip, buffer_<steps>.pkl (off-policy, latest only), state.json
    progress.csv, tb/  SB3 logger output (CSV and TensorBoard), plus per-objective episode returns
    eval.json          per-episode objective returns and safety events, and their metrics
    plots/             figures (see :mod:`morl.plots`)

Environments are built as ``gym.make(id)`` (or ``factory(**kwargs)``) -> config wrappers ->
``WithPreorder`` -> ``Scalarize`` -> ``MOEpisodeStatistics`` -> ``Monitor`` -> ``DummyVecEnv`` /
``SubprocVecEnv``; a batched simulator (``env.scenario``) comes from its own ``make_vec``, and the config's
wrappers are then VecEnv wrappers around it.
Keyword arguments that differ between the envs of a vector go under ``env.kwargs.per_env``, one list
per argument, and env ``i`` gets the ``i``-th entries (:func:`env_kwargs`): one CARLA server per env is
``per_env: {port: [2000, 2003], tm_port: [8000, 8001]}``. Evaluation uses env 0's.
Everything that can be checked is checked before the run directory is created.

Reliability: every non-batched env is wrapped in :class:`~morl.wrappers.FiniteCheck` (batched ones in
SB3's ``VecCheckNan``), so a NaN/inf observation or reward or a malformed action stops the run with
an error naming it; :class:`DivergenceGuard` stops training at a NaN/inf loss or parameter before a
checkpoint of the bad model is written; checkpoints are atomic. A run that fails before its first
checkpoint leaves no run directory behind; one that fails later keeps its checkpoints (and
``error.txt``), and ``morl train --resume`` continues it.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecCheckNan, VecEnv

from morl import registry
from morl.checkpoints import (
    AtomicCheckpoint,
    DivergenceError,
    DivergenceGuard,
    GuardedLogger,
    atomic_write,
    non_finite_parameter,
    read_checkpoint_state,
    read_progress,
    write_progress,
)
from morl.config import ConfigError, ExperimentConfig, apply_overrides, check_objectives, config_from_dict, dump_config, resolve_wrapper
from morl.evaluate import EVAL_BATCH, EVAL_SEED_BASE, EvalEnvs, ObjectiveLogger, run_episodes
from morl.periodic import PeriodicEvaluation
from morl.metrics import episode_metrics
from morl.preorder import PreorderError
from morl.rollout import with_array_rollouts
from morl.vec_arrays import array_step_env
from morl.vec_wrappers import ArrayVecMonitor
from morl.wrappers import FiniteCheck, MOEpisodeStatistics, NonFiniteError, Scalarize, WithPreorder

__all__ = ["make_env", "replay_episode", "make_vec_env", "env_kwargs", "env_objectives", "check_config", "agent_class", "build_agent", "new_run_dir",
           "train", "resume", "evaluate", "load_run_config", "AtomicCheckpoint", "DivergenceGuard", "DivergenceError",
           "TrainingInterrupted",
           "EVAL_SEED_BASE", "PER_ENV"]


# ---------------------------------------------------------------------------------------------------
# Environments


#: The ``env.kwargs`` key holding per-env argument lists (see :func:`env_kwargs`).
PER_ENV = "per_env"


def env_kwargs(cfg: ExperimentConfig, index: int = 0) -> dict:
    """``env.kwargs`` for env ``index`` of the vector: each list under ``per_env`` gives its ``index``-th entry.

    >>> kwargs = {"host": "h", "per_env": {"port": [2000, 2003]}}
    >>> cfg = config_from_dict({"env": {"id": "morl/Carla-v0", "kwargs": kwargs}, "agent": {"name": "PPO"},
    ...                         "train": {"total_timesteps": 1}})
    >>> env_kwargs(cfg, 1)
    {'host': 'h', 'port': 2003}
    """
    kwargs = dict(cfg.env.kwargs)
    for key, values in (kwargs.pop(PER_ENV, None) or {}).items():
        kwargs[key] = values[index]
    return kwargs


def _check_per_env(cfg: ExperimentConfig, source: str) -> None:
    per_env = cfg.env.kwargs.get(PER_ENV)
    if per_env is None:
        return
    where = f"env.kwargs.{PER_ENV}"
    if cfg.env.scenario is not None:
        raise ConfigError(source, where, "a batched simulator (env.scenario) takes no per-env arguments")
    if not isinstance(per_env, dict):
        raise ConfigError(source, where, f"must map argument names to lists, got {per_env!r}")
    for key, values in per_env.items():
        if not isinstance(values, list) or len(values) < cfg.train.n_envs:
            raise ConfigError(source, f"{where}.{key}", f"needs a list of at least train.n_envs = "
                                                         f"{cfg.train.n_envs} values, got {values!r}")
        if key in cfg.env.kwargs:
            raise ConfigError(source, f"{where}.{key}", f"also given as env.kwargs.{key}: give it in one place")


def _base_env(cfg: ExperimentConfig, index: int = 0) -> gym.Env:
    """The vector-reward env with the config's own wrappers, before preorder and scalarisation."""
    e = cfg.env
    kwargs = env_kwargs(cfg, index)
    if e.factory is not None:
        env = registry.import_callable(e.factory)(**kwargs)
    else:
        registry.ensure_env_id(e.id, tuple(e.imports))
        # The passive checker insists on scalar rewards; vector rewards are our convention.
        env = gym.make(e.id, disable_env_checker=True, **kwargs)
    for spec in e.wrappers:
        env = resolve_wrapper(spec.name)(env, **spec.kwargs)
    return env


def make_env(cfg: ExperimentConfig, monitor: bool = False, index: int = 0) -> gym.Env:
    """One (non-batched) environment with the config's wrappers, preorder, scalarisation and statistics.

    :param index: the env's index in its vector (selects its ``per_env`` arguments).
    """
    e = cfg.env
    env = FiniteCheck(_base_env(cfg, index))
    if e.preorder is not None:
        env = WithPreorder(env, e.preorder)
    objectives = env.get_wrapper_attr("objectives")
    env = Scalarize(env, e.weights if e.weights is not None else [1.0] * len(objectives))
    env = MOEpisodeStatistics(env, gamma=e.gamma)
    return Monitor(env) if monitor else env


def _env_fn(cfg_data: dict, monitor: bool, index: int) -> gym.Env:
    # Module-level and fed a plain dict so SubprocVecEnv can pickle it.
    return make_env(config_from_dict(cfg_data), monitor=monitor, index=index)


def make_vec_env(cfg: ExperimentConfig, n_envs: int, seed: int | None, monitor: bool = True) -> VecEnv:
    """``n_envs`` environments as an SB3 VecEnv, seeded with ``seed, seed + 1, ...``."""
    if cfg.env.scenario is not None:
        make = registry.import_callable(cfg.env.make_vec)
        kwargs = dict(cfg.env.kwargs)
        if cfg.env.preorder is not None:
            kwargs["preorder"] = str(cfg.preorder())
        weights = cfg.env.weights
        if isinstance(weights, dict):  # by name -> in the simulator's objective order (0 when not named)
            probe = make(cfg.env.scenario, 1, seed=None, **kwargs)
            weights = [float(weights.get(o, 0.0)) for o in env_objectives(probe)]
            probe.close()
        venv = make(cfg.env.scenario, n_envs, seed=seed, scalarization=weights, **kwargs)
        for spec in cfg.env.wrappers:  # VecEnvWrappers (checked by the config), e.g. CaRL's reward
            venv = resolve_wrapper(spec.name)(venv, **spec.kwargs)
        # batched simulators: SB3's NaN/inf check on observations, rewards and actions
        venv = _VecFiniteCheck(venv, raise_exception=True)
        if monitor:  # SB3's episode statistics (ep_rew_mean), as Monitor gives the single envs
            venv = ArrayVecMonitor(venv)
    else:
        data = cfg.model_dump(mode="json")
        fns = [partial(_env_fn, data, monitor, i) for i in range(n_envs)]
        venv = SubprocVecEnv(fns) if cfg.train.vec_env == "subproc" and n_envs > 1 else DummyVecEnv(fns)
    if seed is not None:
        venv.seed(seed)
    return venv


class _VecFiniteCheck(VecCheckNan):
    """SB3's ``VecCheckNan`` raising :class:`~morl.wrappers.NonFiniteError`, like ``FiniteCheck`` does."""

    def _check_val(self, event: str, **kwargs) -> None:
        try:
            super()._check_val(event, **kwargs)
        except ValueError as exc:
            raise NonFiniteError(str(exc)) from None

    def step_arrays(self, actions):
        """``step_async`` and ``step_wait``'s checks around the wrapped env's array step (:mod:`morl.vec_arrays`)."""
        self._check_val(event="step_async", actions=actions)
        self._actions = actions
        step = self.venv.step_arrays(actions)
        self._check_val(event="step_wait", observations=step.obs, rewards=step.rewards, dones=step.dones)
        self._observations = step.obs
        return step


def env_objectives(env) -> tuple[str, ...]:
    """Objective names of a gym env or a VecEnv."""
    if isinstance(env, VecEnv):
        obj = getattr(env, "objectives", None)
        return tuple(obj) if obj is not None else tuple(env.get_attr("objectives")[0])
    return tuple(env.get_wrapper_attr("objectives"))


def check_config(cfg: ExperimentConfig, source: str) -> tuple[str, ...]:
    """Build one env to check the config against it; any failure becomes a ConfigError."""
    _check_per_env(cfg, source)
    _available_device(cfg.train.device, source)
    def build(fn):
        try:
            return fn(cfg)
        except PreorderError as exc:
            raise ConfigError(source, "env.preorder", str(exc)) from None
        except (TypeError, ValueError, KeyError, AttributeError, ImportError) as exc:
            raise ConfigError(source, "env", f"building the environment failed: {exc}") from None
        except OSError as exc:  # a missing asset file (route, map, density image, model XML)
            raise ConfigError(source, "env", f"building the environment failed: {exc}") from None

    if cfg.env.scenario is not None:
        env = build(lambda c: make_vec_env(c, 1, seed=None, monitor=False))
        objectives = env_objectives(env)
        env.close()
        check_objectives(cfg, objectives, source)
        return objectives
    env = build(_base_env)  # objectives first, so a mismatch is reported against the config's fields
    objectives = env_objectives(env)
    env.close()
    check_objectives(cfg, objectives, source)
    build(make_env).close()
    return objectives


# ---------------------------------------------------------------------------------------------------
# Agents and callbacks


def agent_class(cfg: ExperimentConfig, env: VecEnv) -> type:
    """The configured agent's class; an SB3 on-policy algorithm (``PPO``, ``A2C``, ...) on an array-step VecEnv
    (the batched simulators) gets :class:`morl.rollout.ArrayRollouts`, so it collects rollouts without
    per-env Python work (the same rollouts as SB3's own loop)."""
    cls = registry.resolve_agent(cfg.agent.name)
    if issubclass(cls, OnPolicyAlgorithm) and array_step_env(env):
        return with_array_rollouts(cls)
    return cls


def build_agent(cfg: ExperimentConfig, env: VecEnv, source: str = "<config>"):
    """Instantiate the configured agent on ``env`` (seed, device and preorder passed when accepted)."""
    cls = agent_class(cfg, env)
    params, var_kw = registry.agent_parameters(cls)
    kwargs = copy.deepcopy(cfg.agent.kwargs)  # SB3 adds entries to policy_kwargs (A2C: optimizer_class)
    accepts = lambda name: name in params or var_kw  # noqa: E731
    if "policy" in params and "policy" not in kwargs and cfg.agent.policy is not None:
        kwargs["policy"] = cfg.agent.policy
    for key, value in (("seed", cfg.train.seed), ("device", cfg.train.device), ("verbose", 0)):
        if accepts(key):
            kwargs.setdefault(key, value)
    if cfg.env.preorder is not None and "preorder" in params:
        kwargs.setdefault("preorder", cfg.preorder())
    try:
        return cls(env=env, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(source, "agent", f"{cls.__name__}(...) failed: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Training


def new_run_dir(cfg: ExperimentConfig) -> Path:
    """A fresh ``<output.root>/<name>/<timestamp>[-i]`` path for a run (not created)."""
    base = Path(cfg.output.root) / cfg.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, i = base / stamp, 1
    while run_dir.exists():
        run_dir, i = base / f"{stamp}-{i}", i + 1
    return run_dir


def _show_progress(cfg: ExperimentConfig) -> bool:
    return sys.stderr.isatty() if cfg.train.progress_bar is None else cfg.train.progress_bar


def _logger(run_dir: Path) -> Logger:
    return GuardedLogger(str(run_dir), [make_output_format("csv", str(run_dir)),
                                 make_output_format("tensorboard", str(run_dir / "tb"))])


def train(cfg: ExperimentConfig, run_dir=None, source: str = "<config>", callbacks=(), evaluate_after: bool = True) -> Path:
    """Train the configured agent and write a run directory; returns its path.

    :param cfg: a validated config.
    :param run_dir: where to write (default ``<output.root>/<name>/<timestamp>``); must not exist yet
        or be empty.
    :param source: the config's file name, for error messages.
    :param callbacks: extra SB3 callbacks.
    :param evaluate_after: evaluate and plot when training ends.
    :raises ConfigError: before anything is written, when the config does not fit the env or agent.
    """
    objectives = check_config(cfg, source)
    venv = make_vec_env(cfg, cfg.train.n_envs, seed=cfg.train.seed)
    model = build_agent(cfg, venv, source)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(cfg)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run directory {run_dir} exists and is not empty (use --resume to continue it)")
    created = run_dir  # the topmost folder this run creates: removed again if the run fails early
    while not created.parent.exists():
        created = created.parent
    created = created if not created.exists() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(run_dir / "config.yaml", dump_config(cfg).encode())
        _learn(cfg, model, run_dir, objectives, cfg.train.total_timesteps, callbacks)
    except BaseException as exc:
        _after_failure(run_dir, created, exc)
        if isinstance(exc, KeyboardInterrupt):
            raise TrainingInterrupted(_interrupted_note(run_dir, model)) from None
        raise
    finally:
        venv.close()
    if evaluate_after:
        evaluate(run_dir)
    return run_dir


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the last checkpoint is and how to resume."""


def _interrupted_note(run_dir: Path, model) -> str:
    state = read_checkpoint_state(run_dir)
    at = "" if model is None else f" at timestep {int(model.num_timesteps)}"
    if state is None:
        return (f"training stopped{at}, before the first checkpoint: nothing was kept (set train.checkpoint_every "
                "to keep checkpoints)")
    return (f"training stopped{at}; the last checkpoint is {run_dir / 'checkpoints' / state['model']} "
            f"(timestep {state['num_timesteps']}): continue with `morl train --resume {run_dir}`, or evaluate it "
            f"with `morl eval {run_dir}`")


def _after_failure(run_dir: Path, created: Path | None, exc: BaseException) -> None:
    """A failed run: with no checkpoint nothing worth keeping was written, so the run directory goes
    (no half-written run is left behind); with one, the directory stays resumable and says why it stopped.

    :param created: the topmost folder the run created (``run_dir`` or an ancestor), None if it existed.
    """
    if read_checkpoint_state(run_dir) is None:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:  # a --run-dir the user made: empty it again, keep the folder
            for child in run_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)
        return
    note = f"{type(exc).__name__}: {exc}\nresume with: morl train --resume {run_dir}\n"
    try:
        atomic_write(run_dir / "error.txt", note.encode())
    except OSError:  # a full disk must not hide the original error
        pass


def _learn(cfg, model, run_dir: Path, objectives, steps: int, callbacks, reset: bool = True) -> None:
    torch.set_num_threads(cfg.train.torch_threads)
    model.set_logger(_logger(run_dir))
    guard = DivergenceGuard(run_dir=run_dir)
    ckpt = AtomicCheckpoint(run_dir / "checkpoints", cfg.train.checkpoint_every, guard=guard)
    cbs = [guard, ckpt, ObjectiveLogger(objectives, accumulate=cfg.env.scenario is not None)]
    if cfg.eval.interval:
        cbs.append(periodic_evaluation(cfg, run_dir, objectives))
    cbs = CallbackList([*cbs, *callbacks])
    extra = {"log_interval": cfg.train.log_interval} if cfg.train.log_interval else {}
    try:
        model.learn(steps, callback=cbs, reset_num_timesteps=reset, progress_bar=_show_progress(cfg), **extra)
    except Exception as exc:
        # A NaN parameter can fail inside an update before any callback runs (torch refuses a
        # distribution with NaN logits, mid-epoch); name the parameter, not the symptom.
        what = None if isinstance(exc, DivergenceError) else non_finite_parameter(model)
        if what is None:
            raise
        raise guard.error(f"{what} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from exc
    model.logger.close()
    if cfg.train.checkpoint_every:
        ckpt.save()
    buf = io.BytesIO()
    model.save(buf)
    atomic_write(run_dir / "model.zip", buf.getvalue())


def periodic_evaluation(cfg: ExperimentConfig, run_dir: Path, objectives) -> PeriodicEvaluation:
    """The evaluation during training that ``eval.interval`` asks for (see :mod:`morl.periodic`)."""
    ranking = [o for level in cfg.preorder().levels for o in level] if cfg.env.preorder is not None else objectives
    envs = lambda n: make_vec_env(cfg, n, seed=None, monitor=False)  # noqa: E731
    return PeriodicEvaluation(run_dir, envs, objectives, cfg.eval.interval, episodes=cfg.eval.interval_episodes,
                              gamma=cfg.env.gamma, deterministic=cfg.eval.deterministic, last_k=cfg.eval.last_k,
                              ranking=ranking, batch=_eval_batch(cfg))


def load_run_config(run_dir, overrides=()) -> ExperimentConfig:
    """The resolved config of a run directory, with ``--set`` overrides applied."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(str(path), "<file>", "not found: is this a run directory?")
    data = apply_overrides(yaml.safe_load(path.read_text()), overrides, str(path))
    return config_from_dict(data, str(path))


def resume(run_dir, overrides=(), callbacks=(), evaluate_after: bool = True) -> Path:
    """Continue a run from its newest checkpoint up to ``train.total_timesteps``.

    The timestep counter continues (``learn(..., reset_num_timesteps=False)``); ``progress.csv`` keeps
    the rows up to the checkpoint and appends the new ones. ``overrides`` may raise the total.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, overrides)
    source = str(run_dir / "config.yaml")
    state = read_checkpoint_state(run_dir)
    if state is not None:
        model_path = run_dir / "checkpoints" / state["model"]
    elif (run_dir / "model.zip").exists():
        # A finished run trained without checkpoints: continue from its final model (no replay buffer).
        warnings.warn(f"{run_dir} has no checkpoint; resuming from model.zip without its replay buffer", stacklevel=2)
        model_path, state = run_dir / "model.zip", {}
    else:
        raise ConfigError(source, "train.checkpoint_every", f"{run_dir} has no checkpoint to resume from")
    objectives = check_config(cfg, source)
    for stale in (run_dir / "checkpoints").glob("*.tmp"):  # a write cut short by a crash
        stale.unlink(missing_ok=True)
    for orphan in (run_dir / "checkpoints").glob("buffer_*.pkl"):  # written by a save the crash cut short
        if orphan.name != state.get("buffer"):
            orphan.unlink(missing_ok=True)
    venv = make_vec_env(cfg, cfg.train.n_envs, seed=None)
    model = None
    try:
        model = agent_class(cfg, venv).load(model_path, env=venv, device=cfg.train.device)
        done = int(model.num_timesteps)
        remaining = cfg.train.total_timesteps - done
        if remaining <= 0:
            raise ConfigError(source, "train.total_timesteps",
                              f"{run_dir} has finished: it trained {done} of train.total_timesteps = "
                              f"{cfg.train.total_timesteps} steps. To train on, raise the total (`morl train --resume "
                              f"{run_dir} --set train.total_timesteps={2 * done}`); to evaluate it, `morl eval {run_dir}`")
        venv.seed(cfg.train.seed + done)  # fresh episodes, not a replay of the first segment's
        if state.get("buffer"):
            model.load_replay_buffer(run_dir / "checkpoints" / state["buffer"])
        atomic_write(run_dir / "config.yaml", dump_config(cfg).encode())
        if remaining > 0:
            # The rows up to the checkpoint are saved aside before SB3's CSV logger truncates
            # progress.csv, so a crash during this segment loses none of them (the next resume reads both).
            kept = run_dir / "progress.kept.csv"
            write_progress(kept, read_progress(run_dir, max_steps=done))
            (run_dir / "error.txt").unlink(missing_ok=True)
            _learn(cfg, model, run_dir, objectives, remaining, callbacks, reset=False)
            write_progress(run_dir / "progress.csv", read_progress(run_dir))
            kept.unlink()
    except (DivergenceError, KeyboardInterrupt) as exc:
        _after_failure(run_dir, None, exc)
        if isinstance(exc, KeyboardInterrupt):
            raise TrainingInterrupted(_interrupted_note(run_dir, model)) from None
        raise
    finally:
        venv.close()
    if evaluate_after:
        evaluate(run_dir)
    return run_dir


# ---------------------------------------------------------------------------------------------------
# Evaluation


def _eval_batch(cfg: ExperimentConfig) -> int:
    """Envs per evaluation batch: many for a batched simulator, one for single envs (a CARLA server each)."""
    return EVAL_BATCH if cfg.env.scenario is not None else 1


def eval_envs(cfg: ExperimentConfig) -> EvalEnvs:
    """Evaluation VecEnvs of ``cfg`` by batch size (no monitor), for :func:`morl.evaluate.run_episodes`."""
    return EvalEnvs(lambda n: make_vec_env(cfg, n, seed=None, monitor=False))


def evaluate(run_dir, episodes: int | None = None, deterministic: bool | None = None, plots: bool = True,
             progress: bool | None = None, model_path=None, seeds=None) -> dict:
    """Run evaluation episodes with fixed seeds; write ``eval.json`` (and ``plots/``); return its content.

    Episodes run side by side on a batched simulator (:func:`morl.evaluate.run_episodes`). Each episode
    record holds ``seed``, ``returns`` and ``discounted_returns`` per objective, ``length``, ``events``
    (steps on which each event of :data:`morl.wrappers.EVENT_KEYS` was set, ``cost`` summed),
    ``route_completion`` (last value, if reported) and ``distance_km`` (from a cumulative
    ``info["distance"]`` in metres, if reported). ``eval.json`` names the model file it evaluated and, for
    a run evaluated during training, carries the summary of ``evaluations.json`` under ``"periodic"``.

    :param model_path: the model to evaluate (default ``run_dir/model.zip``), e.g. a checkpoint.
    :param seeds: episode seeds (default ``eval.seeds``, then ``EVAL_SEED_BASE + i``).
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if seeds is None:
        n = episodes if episodes is not None else cfg.eval.episodes
        seeds = list(cfg.eval.seeds) if cfg.eval.seeds else []
        seeds = (seeds + [EVAL_SEED_BASE + i for i in range(len(seeds), n)])[:n]
    seeds = [int(s) for s in seeds]
    det = cfg.eval.deterministic if deterministic is None else deterministic
    model_path = Path(model_path) if model_path is not None else _model_to_evaluate(run_dir)
    device = _available_device(cfg.train.device, str(run_dir / "config.yaml"), fallback=True)
    envs = eval_envs(cfg)
    try:
        venv = envs(min(len(seeds), _eval_batch(cfg)))
        objectives = env_objectives(venv)
        model = registry.resolve_agent(cfg.agent.name).load(model_path, env=venv, device=device)
        show = sys.stderr.isatty() if progress is None else progress
        from tqdm.auto import tqdm

        with tqdm(total=len(seeds), desc="eval", unit="ep", disable=not show) as bar:
            records = run_episodes(model, envs, seeds, det, objectives, cfg.env.gamma, batch=_eval_batch(cfg),
                                   progress=bar.update)
    finally:
        envs.close()
    result = {
        "run_dir": str(run_dir), "agent": cfg.agent.name, "env": cfg.env.id or cfg.env.scenario or cfg.env.factory,
        "objectives": list(objectives), "preorder": None if cfg.env.preorder is None else str(cfg.preorder()),
        "model": _relative(model_path, run_dir), "deterministic": det, "num_timesteps": int(model.num_timesteps),
        "episodes": records, "metrics": episode_metrics(records, objectives, reps=cfg.eval.bootstrap_reps, seed=0),
    }
    periodic = run_dir / "evaluations.json"
    if periodic.exists():
        result["periodic"] = json.loads(periodic.read_text())
    atomic_write(run_dir / "eval.json", json.dumps(result, indent=1).encode())
    if plots:
        from morl.plots import plot_run

        plot_run(run_dir, replay=partial(replay_episode, run_dir))
    return result


def replay_episode(run_dir, seed: int, model_path=None) -> dict:
    """One deterministic episode of a run's saved model on one env seeded ``seed``, for figures.

    :return: ``{"observations": [obs of env 0 at each step, the initial one first, the terminal one last],
        "env": the unwrapped env (its task and map stay readable after the episode), "agent": its name}``.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    venv = make_vec_env(cfg, 1, seed=None, monitor=False)
    path = Path(model_path) if model_path is not None else _model_to_evaluate(run_dir)
    model = registry.resolve_agent(cfg.agent.name).load(path, env=venv, device="cpu")
    venv.seed(int(seed))
    obs = venv.reset()
    observations, start = [obs[0]], np.ones(1, dtype=bool)
    while True:
        action, _ = model.predict(obs, episode_start=start, deterministic=cfg.eval.deterministic)
        obs, _, dones, infos = venv.step(action)
        start = dones
        observations.append(infos[0]["terminal_observation"] if dones[0] else obs[0])
        if dones[0]:
            break
    env = venv.envs[0].unwrapped if hasattr(venv, "envs") else venv.unwrapped
    venv.close()
    return {"observations": observations, "env": env, "agent": cfg.agent.name}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _model_to_evaluate(run_dir: Path) -> Path:
    """``model.zip``, or for a run that stopped before writing it, its newest checkpoint (said on stderr)."""
    if (run_dir / "model.zip").exists():
        return run_dir / "model.zip"
    state = read_checkpoint_state(run_dir)
    if state is None:
        raise ConfigError(str(run_dir), "model.zip", "not found, and the run has no checkpoint: it stopped before "
                                                     "anything was saved")
    print(f"{run_dir} has no model.zip (it stopped at timestep {state['num_timesteps']}): evaluating its last "
          f"checkpoint, {state['model']}", file=sys.stderr)
    return run_dir / "checkpoints" / state["model"]


def _available_device(device: str, source: str, fallback: bool = False) -> str:
    """``device`` when torch can use it. Otherwise a ConfigError naming ``train.device``, or with ``fallback``
    (evaluating a run trained on another machine) a warning and ``"cpu"``."""
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        ok, have = torch.cuda.is_available() and index < torch.cuda.device_count(), torch.cuda.device_count()
        why = f"torch sees {have} CUDA device{'s' if have != 1 else ''}" + (
            "" if torch.version.cuda else f" (this torch {torch.__version__} is built without CUDA)")
    elif device == "mps":
        ok, why = torch.backends.mps.is_available(), "torch sees no MPS device"
    else:
        return device
    if ok:
        return device
    if fallback:
        warnings.warn(f"{source}: train.device is {device!r} but {why}: using the CPU", stacklevel=3)
        return "cpu"
    raise ConfigError(source, "train.device", f"is {device!r} but {why}: use auto (CUDA when present, else the "
                                              "CPU) or cpu")
