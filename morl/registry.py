"""Names to things: agent classes, environment ids and ``module:callable`` references.

The experiment layer is the only part of ``morl`` that knows agents and environments, and it knows
them only by name, through this module:

- :func:`resolve_agent` looks a class name up in the project's ``agents`` package (and the ``__all__``
  of its sub-packages) first, then among
  the stable-baselines3 / sb3-contrib algorithms, which serve as baselines;
- :func:`ensure_env_id` checks that a Gymnasium id is registered, importing the project's ``envs``
  packages (which register their ids on import) when the id is not yet known;
- :func:`import_callable` reads ``"package.module:attribute"`` references used in configs.

It also holds :func:`two_objective_cartpole`, a small real vector-reward environment (CartPole with a
"balance" and a "centred" objective and an ``off_road`` event) that the tiny test configs use, so the
experiment layer can be tested without any simulator of the project.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable

import gymnasium as gym
import numpy as np

__all__ = [
    "BASELINE_ALGORITHMS",
    "resolve_agent",
    "known_agents",
    "ensure_env_id",
    "import_callable",
    "import_module",
    "agent_parameters",
    "agent_signature",
    "two_objective_cartpole",
]

#: SB3 and sb3-contrib algorithms usable as baselines, by class name -> module.
BASELINE_ALGORITHMS = {
    **{n: "stable_baselines3" for n in ("PPO", "A2C", "DQN", "SAC", "TD3", "DDPG")},
    **{n: "sb3_contrib" for n in ("QRDQN", "TQC", "TRPO", "ARS", "RecurrentPPO", "MaskablePPO", "CrossQ")},
}

#: Sub-packages of ``envs`` that register Gymnasium ids when imported.
ENV_PACKAGES = ("morl.envs.driving", "morl.envs.mujoco", "morl.envs.coverage", "morl.envs.swarm")


_IMPORT_ERRORS: dict[str, str] = {}


def _is_algorithm(obj) -> bool:
    # SB3 algorithms and controllers following BaseAlgorithm's interface; policies and rewards are not.
    return inspect.isclass(obj) and all(callable(getattr(obj, a, None)) for a in ("learn", "predict", "load"))


def _project_agents() -> dict[str, type]:
    """Agent classes of the ``agents`` package and of its sub-packages' ``__all__``."""
    try:
        pkg = importlib.import_module("morl.agents")
    except ImportError as exc:
        _IMPORT_ERRORS["morl.agents"] = str(exc)
        return {}
    modules = [pkg]
    for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        if not info.ispkg:
            continue
        try:
            modules.append(importlib.import_module(f"morl.agents.{info.name}"))
        except Exception as exc:  # noqa: BLE001 - a broken agent package must not hide the others
            _IMPORT_ERRORS[f"morl.agents.{info.name}"] = f"{type(exc).__name__}: {exc}"
    out = {}
    for module in modules:
        names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name, None)
            if _is_algorithm(obj):
                out.setdefault(name, obj)
    return out


def known_agents() -> list[str]:
    """All agent names a config may use: the project's agents, then the SB3 baselines."""
    return sorted(_project_agents()) + sorted(n for n in BASELINE_ALGORITHMS if n not in _project_agents())


def resolve_agent(name: str) -> type:
    """The agent class called ``name`` (``agents`` package first, then SB3 / sb3-contrib).

    :raises KeyError: with a message listing the known names.
    """
    project = _project_agents()
    if name in project:
        return project[name]
    if name in BASELINE_ALGORITHMS:
        try:
            return getattr(importlib.import_module(BASELINE_ALGORITHMS[name]), name)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"agent {name!r} needs {BASELINE_ALGORITHMS[name]}, which failed to import: {exc}") from None
    broken = "".join(f"; {m} failed to import: {e}" for m, e in _IMPORT_ERRORS.items())
    raise KeyError(f"unknown agent {name!r} (known: {', '.join(known_agents())}){broken}")


def agent_signature(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """Keyword parameters of ``cls.__init__`` by name, and whether it takes ``**kwargs`` nobody names.

    An ``__init__`` with ``**kwargs`` hands them to its base class (``QDIQN(**kwargs)`` to ``IQN``,
    ``CaRLPPO`` to ``PPO``), so the bases' parameters are collected too, up to the first ``__init__``
    without ``**kwargs``; the first definition of a name wins.
    """
    out: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        for name, p in params.items():
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                out.setdefault(name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return out, False
    return out, True


def agent_parameters(cls: type) -> tuple[set[str], bool]:
    """Keyword parameters of the agent's constructor (see :func:`agent_signature`) and whether it also
    takes ``**kwargs`` nobody names."""
    params, var_kw = agent_signature(cls)
    return set(params), var_kw


def import_module(name):
    """``importlib.import_module`` for names from config files: only absolute module names.

    :raises ImportError: naming the module, also for names ``importlib`` rejects with another error
        (empty, relative, not a string).
    """
    if not isinstance(name, str) or not name or name.startswith(".") or not all(name.split(".")):
        raise ImportError(f"{name!r} is not an absolute module name")
    return importlib.import_module(name)


def ensure_env_id(env_id: str, imports: tuple[str, ...] = ()) -> None:
    """Make sure ``env_id`` is registered with Gymnasium.

    Imports the modules in ``imports``, then, if the id is still unknown, the project's ``envs``
    sub-packages (they register their ids on import; ones that do not exist yet are skipped).

    :raises KeyError: naming the id and the closest registered ids.
    """
    for module in imports:
        import_module(module)
    if env_id in gym.registry:
        return
    for module in ENV_PACKAGES:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        if env_id in gym.registry:
            return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise KeyError(f"unknown environment id {env_id!r}{hint}")


def import_callable(ref: str) -> Callable:
    """The object named by ``"package.module:attribute"``.

    :raises ValueError: when the reference is malformed, the module is missing or the attribute is not callable.
    """
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValueError(f"{ref!r} is not of the form 'package.module:callable'")
    module_name, attr = ref.split(":")
    if not module_name or not attr:
        raise ValueError(f"{ref!r} is not of the form 'package.module:callable'")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable")
    return obj


# ---------------------------------------------------------------------------------------------------
# A small real vector-reward env for the tiny configs and the tests.


class _OffRoadEvent(gym.Wrapper):
    """Flags ``info["off_road"]`` when the cart is further than ``limit`` from the centre."""

    def __init__(self, env: gym.Env, limit: float):
        super().__init__(env)
        self.limit = float(limit)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["off_road"] = bool(abs(obs[0]) > self.limit)
        return obs, reward, terminated, truncated, info


def two_objective_cartpole(max_episode_steps: int = 200, off_road_limit: float = 1.0, render_mode=None) -> gym.Env:
    """CartPole with objectives ``("balance", "centred")`` and an ``off_road`` safety event.

    ``balance`` is CartPole's +1 per step; ``centred`` is ``-|x|`` (cart position), larger is better.

    :param max_episode_steps: episode cap (CartPole-v1 uses 500; 200 keeps tests short).
    :param off_road_limit: ``|x|`` beyond which a step counts as an ``off_road`` event.
    """
    from morl.wrappers import VectorReward  # late import: registry is imported by config validation

    env = gym.make("CartPole-v1", max_episode_steps=max_episode_steps, render_mode=render_mode)
    env = _OffRoadEvent(env, off_road_limit)
    return VectorReward(env, objectives=("balance", "centred"), fn=_cartpole_vector)


def _cartpole_vector(obs, reward, info) -> np.ndarray:
    return np.array([reward, -abs(float(obs[0]))], dtype=np.float32)
