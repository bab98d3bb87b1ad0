"""Array steps: a VecEnv step whose results stay in arrays, for batched simulators and the wrappers around them.

SB3's ``VecEnv.step`` returns a list of ``n_envs`` info dicts, and every wrapper and SB3's rollout loop then
walk that list in Python. A batched simulator keeps a step's results in arrays; an *array-step* VecEnv also
offers :meth:`step_arrays`, which returns them as an :class:`ArrayStep`: observations, rewards, dones, which
episodes ended by a time limit, the terminal observations, and the infos as a :class:`StepInfos` sequence
whose entries are only built when read. The infos of the envs whose episode ended are built at the step
(they carry ``"terminal_observation"`` and ``"TimeLimit.truncated"``, and wrappers add to them, e.g.
``VecMonitor``'s ``"episode"``); the others are built on first access.

The contract, for a VecEnv or a ``VecEnvWrapper`` that defines ``step_arrays(actions) -> ArrayStep``:

- it does what ``step_async(actions)`` then ``step_wait()`` do, with the same observations, rewards,
  dones and infos (``list(step.infos)`` is what ``step_wait`` returns);
- a wrapper calls its ``venv.step_arrays`` and changes only the arrays and the infos of ended envs
  (an info written for an env whose episode did not end would be lost when a non-ended info is
  rebuilt lazily); a wrapper that cannot keep this does not define ``step_arrays``.

:func:`array_step_env` says whether a whole wrapper chain keeps the contract: every layer must define
``step_arrays`` in its own class or a subclass of the classes that define its ``step_wait`` and
``step_async``, so a subclass that changes ``step_wait`` without changing ``step_arrays`` does not pass
(``VecEnvWrapper`` forwards unknown attributes to the wrapped env, so ``hasattr`` alone would say yes for
a wrapper that knows nothing of this).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

__all__ = ["ArrayStep", "StepInfos", "array_step_env"]


class ArrayStep(NamedTuple):
    """The results of one batched step.

    :param obs: observations after the step (auto-reset envs: the first of the new episode), ``(n_envs, ...)``.
    :param rewards: rewards ``(n_envs,)`` (or ``(n_envs, m)`` after a wrapper that hands over the vectors).
    :param dones: bool ``(n_envs,)``: the episode ended at this step.
    :param truncated: bool ``(n_envs,)``: it ended by the time limit and not by termination (SB3's
        ``info["TimeLimit.truncated"]``), so its value is bootstrapped from ``terminal_obs``.
    :param terminal_obs: ``(n_envs, ...)``; row ``i`` is env ``i``'s last observation of the ended episode
        where ``dones[i]`` (other rows are unspecified). Valid until the next step.
    :param infos: the ``n_envs`` infos (:class:`StepInfos`).
    """

    obs: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    truncated: np.ndarray
    terminal_obs: np.ndarray
    infos: "StepInfos"


class StepInfos(Sequence):
    """The ``n_envs`` infos of one step, each built on first access by ``make(i)``; ``ended`` holds the infos
    built at the step (the envs whose episode ended). Assigning ``infos[i] = info`` replaces one.

    :param n_envs: number of envs.
    :param make: ``make(i)`` builds env ``i``'s info.
    :param ended: ``{i: info}`` already built.
    """

    __slots__ = ("_n", "_make", "_built")

    def __init__(self, n_envs: int, make: Callable[[int], dict[str, Any]], ended: dict[int, dict] | None = None):
        self._n = int(n_envs)
        self._make = make
        self._built = {} if ended is None else ended

    def __len__(self) -> int:
        return self._n

    def _index(self, i) -> int:
        i = operator.index(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"env index {i} out of range for {self._n} envs")
        return i

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = self._index(i)
        info = self._built.get(i)
        if info is None:
            info = self._built[i] = self._make(i)
        return info

    def __setitem__(self, i, info) -> None:
        self._built[self._index(i)] = info

    def __iter__(self):
        return (self[i] for i in range(self._n))

    def __repr__(self) -> str:
        return f"StepInfos(n_envs={self._n}, built={sorted(self._built)})"


def _provider(cls: type, name: str) -> type | None:
    """The class of ``cls``'s MRO that defines ``name``."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def array_step_env(venv) -> bool:
    """Whether every layer of ``venv``'s wrapper chain keeps the array-step contract (see the module)."""
    layer = venv
    while True:
        cls = type(layer)
        own = _provider(cls, "step_arrays")
        if own is None:
            return False
        for name in ("step_wait", "step_async"):
            other = _provider(cls, name)
            if other is not None and not issubclass(own, other):
                return False
        if not isinstance(layer, VecEnvWrapper):
            return True
        layer = layer.venv
