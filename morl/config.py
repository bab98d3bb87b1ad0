"""The YAML experiment schema, validated with pydantic v2.

A config file describes one experiment (and optionally a sweep of it)::

    name: highway_qdiqn                 # defaults to the file's stem
    env:
      id: morl/Highway-v0               # or scenario: highway (batched make_vec), or factory: "pkg.mod:fn"
      kwargs: {action_type: discrete}
      wrappers: [{name: "gymnasium.wrappers:ClipAction"}]
      preorder: "safety > rules > progress, comfort"   # or levels [[safety], [rules], ...]
      weights: {progress: 1.0, safety: 10.0}           # scalarisation that SB3 sees (default: ones)
      gamma: 0.99                                      # for discounted per-objective returns
    agent:
      name: QDIQN                       # looked up in `agents`, then SB3 / sb3-contrib
      policy: MlpPolicy
      learning_rate: 1.0e-4             # every other key is a constructor argument (or under kwargs:)
    train: {total_timesteps: 100000, seed: 0, n_envs: 4, device: auto, checkpoint_every: 10000}
    eval: {episodes: 20, deterministic: true, seeds: null}
    output: {root: runs}
    sweep: {seeds: 3, grid: {agent.name: [QDIQN, IQN]}, backend: local}
    # or, when the agents need different arguments, sweep whole sections:
    #   grid: {agent: [{name: QDIQN, n_quantiles: 32}, {name: IQN, n_quantiles: 32}]}

:func:`load_config` reads a file, applies ``--set key.path=value`` overrides and validates. Every
problem raises :class:`ConfigError` with the message ``"<file>: <field.path>: <problem>"``; nothing is
written to disk before validation passes.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from morl import registry
from morl.preorder import Preorder, PreorderError

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "EnvConfig",
    "AgentConfig",
    "TrainConfig",
    "EvalConfig",
    "OutputConfig",
    "SweepConfig",
    "load_config",
    "config_from_dict",
    "apply_overrides",
    "parse_value",
    "dump_config",
]


class ConfigError(ValueError):
    """An invalid experiment config. The message is ``"<file>: <field.path>: <problem>"``."""

    def __init__(self, source: str, path: str, problem: str):
        self.source, self.path, self.problem = source, path, problem
        super().__init__(f"{source}: {path}: {problem}")

    def __reduce__(self):  # picklable, so a sweep worker's error reaches the parent intact
        return type(self), (self.source, self.path, self.problem)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class WrapperSpec(_Strict):
    """A Gymnasium wrapper applied right after the env is made (before the preorder/scalarisation); with
    ``env.scenario`` (a batched env), an SB3 ``VecEnvWrapper`` applied around it."""

    name: str = Field(description="'package.module:Class', or a class name in morl.wrappers or gymnasium.wrappers")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class EnvConfig(_Strict):
    id: str | None = None
    scenario: str | None = None
    factory: str | None = None
    make_vec: str = "morl.envs.driving:make_vec"
    imports: list[str] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    wrappers: list[WrapperSpec] = Field(default_factory=list)
    preorder: str | list[str | list[str]] | dict[str, Any] | None = None
    weights: list[float] | dict[str, float] | None = None
    gamma: float = Field(0.99, ge=0.0, le=1.0)

    @field_validator("weights")
    @classmethod
    def _finite_weights(cls, v):
        values = v.values() if isinstance(v, dict) else (v or ())
        bad = [w for w in values if not math.isfinite(w)]
        if bad:
            raise ValueError(f"weights must be finite numbers, got {bad[0]}")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("id", "scenario", "factory") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of id, scenario, factory (got {given or 'none'})")
        return self


class AgentConfig(BaseModel):
    """``name`` and ``policy``; every other key is a constructor argument of the agent class."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str
    policy: str | None = "MlpPolicy"

    @model_validator(mode="before")
    @classmethod
    def _flatten_kwargs(cls, data):
        # `kwargs: {...}` and top-level keys are the same thing; keep one flat form (SB3-zoo style).
        if isinstance(data, dict) and "kwargs" in data:
            data = dict(data)
            kwargs = data.pop("kwargs") or {}
            if not isinstance(kwargs, dict):
                raise ValueError("agent.kwargs must be a mapping")
            data = {**kwargs, **data}
        return data

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(_Strict):
    total_timesteps: int = Field(gt=0)
    seed: int = Field(0, ge=0, lt=2**32)  # numpy and torch seeds
    n_envs: int = Field(1, ge=1)
    vec_env: Literal["dummy", "subproc"] = "dummy"
    device: str = "auto"
    checkpoint_every: int | None = Field(None, gt=0)
    progress_bar: bool | None = None  # None: show one when stderr is a terminal
    log_interval: int | None = Field(None, ge=1)  # SB3's learn(log_interval): episodes (off-policy) or iterations
    # torch's intra-op threads during training. The agents' networks are small: one thread is faster
    # than two on a 2-core machine (measured: an IQN update 5.8 ms with 1 thread, 97 ms with 2 under
    # load) and keeps CPU runs reproducible.
    torch_threads: int = Field(1, ge=1)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and not (v == "cpu" or v.startswith("cuda") or v == "mps"):
            raise ValueError(f"device must be auto, cpu, cuda[:N] or mps, got {v!r}")
        return v


class EvalConfig(_Strict):
    episodes: int = Field(10, ge=1)
    deterministic: bool = True
    seeds: list[int] | None = None  # default: 10_000 + i, disjoint from training seeds
    bootstrap_reps: int = Field(2000, ge=100)
    interval: int = Field(0, ge=0)  # env-steps between evaluations during training (0: none)
    interval_episodes: int = Field(50, ge=1)  # episodes of each evaluation during training
    last_k: int = Field(5, ge=1)  # the run's reported figure: mean of the last k evaluations


class OutputConfig(_Strict):
    root: str = "runs"


class SweepConfig(_Strict):
    seeds: int | list[int] = 1
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    backend: Literal["local", "ray"] = "local"
    address: str | None = None
    max_workers: int | None = Field(None, ge=1)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if isinstance(v, int) and v < 1:
            raise ValueError(f"seeds must be >= 1, got {v}")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {v}")
        return v

    def seed_list(self, base: int = 0) -> list[int]:
        return list(range(base, base + self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


_RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class ExperimentConfig(_Strict):
    name: str = "experiment"
    env: EnvConfig
    agent: AgentConfig
    train: TrainConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    sweep: SweepConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # The name becomes a folder under output.root: no separators, no "..", nothing hidden.
        if not _RUN_NAME.match(v):
            raise ValueError(f"name must be 1-128 letters, digits, '_', '-' or '.' not starting with '.' or '-' "
                             f"(it names the run folder), got {v!r:.60}")
        return v

    def preorder(self) -> Preorder | None:
        return None if self.env.preorder is None else Preorder.parse(self.env.preorder)


# ---------------------------------------------------------------------------------------------------
# Overrides


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalars and lists, plus floats YAML 1.1 misses (``1e-4``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def apply_overrides(data: dict, overrides, source: str = "<config>") -> dict:
    """Return a copy of ``data`` with each ``"a.b.c=value"`` (or ``(path, value)``) applied.

    Grid keys such as ``agent.name`` use the same paths; missing intermediate mappings are created
    (validation then reports a key that does not exist in the schema).
    """
    out = copy.deepcopy(data)
    for item in overrides:
        if isinstance(item, str):
            if "=" not in item:
                raise ConfigError(source, item, "an override must look like key.path=value")
            path, text = item.split("=", 1)
            value = parse_value(text)
        else:
            path, value = item
        keys = path.strip().split(".")
        if not all(keys):
            raise ConfigError(source, path, "empty key in override path")
        node = out
        for i, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(source, ".".join(keys[: i + 1]), f"is a {type(child).__name__}, cannot set {path}")
            node = child
        node[keys[-1]] = value
    return out


# ---------------------------------------------------------------------------------------------------
# Loading and validation


_UNION_TAG = re.compile(r"^(str|int|float|bool|none|list|dict|tuple|set|literal|function-\w+)(\[.*\])?$")


def _field_loc(loc) -> tuple:
    """The field path of a pydantic error location, without the tags naming the union member tried
    (``env.weights.list[float]`` -> ``env.weights``)."""
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p)))


def _model_at(loc) -> type[BaseModel] | None:
    """The schema section holding the key at ``loc`` (``("train", "seeed")`` -> TrainConfig)."""
    model = ExperimentConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        candidates += [a for c in candidates for a in typing.get_args(c)]  # list[WrapperSpec]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return None
    return model


def _pydantic_problem(err: dict) -> tuple[str, str]:
    loc = ".".join(str(p) for p in _field_loc(err["loc"])) or "<root>"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        model = _model_at(err["loc"])
        known = [] if model is None else list(model.model_fields)
        return loc, f"unknown key{_did_you_mean(str(err['loc'][-1]), known)}"
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    if kind not in ("value_error",) and not isinstance(got, dict):
        msg = f"{msg} (got {got!r})"
    return loc, msg


def config_from_dict(data: dict, source: str = "<config>") -> ExperimentConfig:
    """Validate a config mapping: schema, then agent, env id/factory, preorder and weights by name."""
    if not isinstance(data, dict):
        raise ConfigError(source, "<root>", f"the file must hold a mapping, got {type(data).__name__}")
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        # Report the first problem only: one clear message beats a wall of follow-on errors.
        # Unknown keys first: a misspelt key also makes the key it meant "missing", and the typo is the cause.
        errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
        path, problem = _pydantic_problem(errors[0])
        field = _field_loc(errors[0]["loc"])
        if field != tuple(errors[0]["loc"]):
            # A union field (weights: a list or a mapping): one message listing what each form wanted.
            same = [e for e in errors if _field_loc(e["loc"]) == field and len(e["loc"]) == len(errors[0]["loc"])]
            if len(same) > 1:
                wants = list(dict.fromkeys(e["msg"].removeprefix("Input should be ") for e in same))
                problem = f"Input should be {' or '.join(wants)} (got {errors[0].get('input')!r:.60})"
                errors = [errors[0]] + [e for e in errors if e not in same]
        if len(errors) > 1:
            problem += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise ConfigError(source, path, problem) from None
    _check_names(cfg, source)
    return cfg


def _check_names(cfg: ExperimentConfig, source: str) -> None:
    try:
        cls = registry.resolve_agent(cfg.agent.name)
    except KeyError as exc:
        raise ConfigError(source, "agent.name", exc.args[0]) from None
    _check_agent_arguments(cfg, cls, source)
    env = cfg.env
    try:
        for module in env.imports:
            registry.import_module(module)
        if env.id is not None:
            registry.ensure_env_id(env.id, tuple(env.imports))
    except KeyError as exc:
        raise ConfigError(source, "env.id", exc.args[0]) from None
    except ImportError as exc:
        raise ConfigError(source, "env.imports", f"cannot import: {exc}") from None
    try:
        if env.factory is not None:
            registry.import_callable(env.factory)
    except ValueError as exc:
        raise ConfigError(source, "env.factory", str(exc)) from None
    if env.scenario is not None:
        try:
            registry.import_callable(env.make_vec)
        except ValueError as exc:
            raise ConfigError(source, "env.make_vec", str(exc)) from None
    from stable_baselines3.common.vec_env import VecEnvWrapper  # here: importing SB3 (and torch) takes a second

    for i, spec in enumerate(env.wrappers):
        try:
            wrapper = resolve_wrapper(spec.name)
        except ValueError as exc:
            raise ConfigError(source, f"env.wrappers.{i}.name", str(exc)) from None
        if env.scenario is not None and not (isinstance(wrapper, type) and issubclass(wrapper, VecEnvWrapper)):
            raise ConfigError(source, f"env.wrappers.{i}.name",
                              f"{spec.name} is not a VecEnvWrapper: a batched env (env.scenario) takes VecEnv wrappers "
                              "(e.g. morl.agents.carl:CaRLVecReward), a single env (env.id) takes Gymnasium ones")
    # The preorder's and the weights' names are checked against the env's objectives (check_objectives),
    # not against each other: only the env knows which of two differing names is the misspelt one.
    if env.preorder is not None:
        try:
            Preorder.parse(env.preorder)
        except PreorderError as exc:
            raise ConfigError(source, "env.preorder", str(exc)) from None
    if cfg.sweep is not None:
        for key in cfg.sweep.grid:
            if not cfg.sweep.grid[key]:
                raise ConfigError(source, f"sweep.grid.{key}", "needs at least one value")
            if key.split(".")[0] == "sweep":
                raise ConfigError(source, f"sweep.grid.{key}", "cannot sweep over the sweep section")


def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _annotation_members(annotation) -> set[str] | None:
    """The type names of a parameter's annotation, with ``None`` left out (``"int | None"`` -> ``{"int"}``);
    None when there is no annotation."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):  # postponed annotations (``from __future__ import annotations``)
        text = annotation.replace(" ", "")
        if text.startswith("Optional[") and text.endswith("]"):
            text = text[len("Optional["):-1]
        members = set(text.split("|"))  # a bracketed member splits into pieces that name no number type
    else:
        args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
            else (annotation,)
        members = {a.__name__ if isinstance(a, type) else str(a) for a in args}
    return members - {"None", "NoneType"}


def _number_kind(param: inspect.Parameter) -> str | None:
    """``"bool"``, ``"int"`` or ``"float"`` when the parameter takes only that (a float may also be a
    schedule, which a YAML file cannot hold); None when it takes other things too."""
    members = _annotation_members(param.annotation)
    if members is None:  # unannotated: judge by the default
        default = param.default
        members = {type(default).__name__} if isinstance(default, (bool, int, float)) else set()
    if members == {"bool"}:
        return "bool"
    if members == {"int"}:
        return "int"
    if members and members <= {"int", "float", "Schedule"} | {m for m in members if m.startswith(
            ("collections.abc.Callable", "Callable", "typing.Callable"))} and "float" in members:
        return "float"
    return None


_KIND_WORDS = {"bool": "true or false", "int": "an integer", "float": "a number"}


def _fits(kind: str, value) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_agent_arguments(cfg: ExperimentConfig, cls: type, source: str) -> None:
    """The agent's arguments against its constructor: names (with a did-you-mean), number types (from the
    annotations, or the defaults where there are none), and settings under which no gradient step happens."""
    params, var_kw = registry.agent_signature(cls)
    name = cls.__name__
    kwargs = cfg.agent.kwargs
    for key, value in kwargs.items():
        if key not in params:
            if not var_kw:
                raise ConfigError(source, f"agent.{key}", f"unknown argument of {name}{_did_you_mean(key, params)}")
            continue
        kind = _number_kind(params[key])
        if kind is None or value is None or _fits(kind, value):
            continue
        if kind == "int" and isinstance(value, float) and value.is_integer():  # 1e6 is a float in YAML
            cfg.agent.model_extra[key] = int(value)
            continue
        default = params[key].default
        hint = f" ({name}'s default: {default!r})" if default is not inspect.Parameter.empty else ""
        problem = f"must be {_KIND_WORDS[kind]}{hint}, got {value!r}"
        if isinstance(value, str) and kind != "bool":
            try:
                float(value)
                problem += " (a string: remove the quotes)"
            except ValueError:
                pass
        raise ConfigError(source, f"agent.{key}", problem)
    effective = {k: kwargs.get(k, p.default) for k, p in params.items()}
    starts, total = effective.get("learning_starts"), cfg.train.total_timesteps
    if _fits("int", starts) and starts >= total:
        given = "" if "learning_starts" in kwargs else f" ({name}'s default)"
        raise ConfigError(source, "agent.learning_starts",
                          f"{starts}{given} is not below train.total_timesteps = {total}: the agent would collect "
                          f"{total} steps and never update (no gradient step); lower agent.learning_starts or raise "
                          "train.total_timesteps")
    if effective.get("gradient_steps") == 0:
        raise ConfigError(source, "agent.gradient_steps", "is 0: the agent would never update (no gradient step); "
                                                          "give 1 or more (-1: one per env step)")


def resolve_wrapper(name: str):
    """A wrapper class from ``"pkg.mod:Class"`` or a bare name in ``morl.wrappers`` / ``morl.vec_wrappers`` /
    ``gymnasium.wrappers``."""
    if ":" in name:
        return registry.import_callable(name)
    import gymnasium.wrappers

    from morl import vec_wrappers
    from morl import wrappers as morl_wrappers

    for module in (morl_wrappers, vec_wrappers, gymnasium.wrappers):
        obj = getattr(module, name, None)
        if obj is not None:
            return obj
    raise ValueError(f"unknown wrapper {name!r} (give 'package.module:Class' or a name in morl.wrappers, "
                     "morl.vec_wrappers or gymnasium.wrappers)")


def check_objectives(cfg: ExperimentConfig, objectives, source: str) -> None:
    """Check the config's preorder and weights against the env's objective names."""
    objectives = tuple(objectives)
    preorder = cfg.preorder()
    if preorder is not None:
        for name in preorder.objectives:
            if name not in objectives:
                raise ConfigError(source, "env.preorder", f"unknown objective {name!r} (the env's objectives: "
                                                          f"{', '.join(objectives)}){_did_you_mean(name, objectives)}")
        for name in objectives:
            if name not in preorder.objectives:
                raise ConfigError(source, "env.preorder",
                                  f"objective {name!r} of the env is missing from the preorder")
    weights = cfg.env.weights
    if isinstance(weights, dict):
        for name in weights:
            if name not in objectives:
                raise ConfigError(source, f"env.weights.{name}", f"unknown objective (the env's objectives: "
                                                                  f"{', '.join(objectives)}){_did_you_mean(name, objectives)}")
    elif weights is not None and len(weights) != len(objectives):
        raise ConfigError(source, "env.weights", f"has {len(weights)} entries for {len(objectives)} objectives "
                                                 f"({', '.join(objectives)})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key written twice in one mapping is an error (PyYAML keeps
    the last silently, so a pasted second ``agent:`` section would replace the first unnoticed), and
    that ``1e-4`` and ``3.0e4`` are floats as in YAML 1.2 (YAML 1.1 reads them as strings: its floats
    need a dot and a signed exponent)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {first.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_config(path, overrides=()) -> ExperimentConfig:
    """Read, override and validate a YAML config file.

    :param path: the YAML file.
    :param overrides: ``"key.path=value"`` strings (the CLI's ``--set``), applied before validation.
    :raises ConfigError: naming the file, the field path and the problem.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(source, "<file>", f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        problem = f"invalid YAML: {getattr(exc, 'problem', exc)}"
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None and (mark is None or start.line != mark.line):
            problem += f" ({context} started on line {start.line + 1})"  # e.g. where an unclosed quote opened
        raise ConfigError(source, where, problem) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):  # before the overrides, which need a mapping to set keys in
        raise ConfigError(source, "<root>", f"the file must hold a mapping, got {type(data).__name__}")
    data.setdefault("name", Path(path).stem)
    data = apply_overrides(data, overrides, source)
    return config_from_dict(data, source)


def dump_config(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (what a run directory's ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=False), sort_keys=False)
