"""Gymnasium wrappers for vector rewards and preorders.

- :class:`VectorReward`: builds the reward vector from named ``info`` keys or a callable;
- :class:`WithPreorder`: attaches a :class:`~morl.preorder.Preorder` checked against ``objectives``;
- :class:`Scalarize`: a scalar reward by declared weights for SB3, the vector kept in
  ``info["vector_reward"]`` (the MO-Gymnasium channel);
- :class:`PreorderGate`: a scalar reward in which an objective pays only on steps where every
  objective strictly above it in the preorder meets its threshold (a preordered reward for PPO);
- :class:`MOEpisodeStatistics`: per-objective episode returns and safety-event counts;
- :class:`FiniteCheck`: a clear error, naming the value and the step, on a NaN/inf observation or
  reward, and on an action of the wrong shape or dtype, before it reaches the learner.

An env with a vector reward has ``objectives`` (names, in vector order) and ``reward_space`` (a Box
of shape ``(m,)``); every component is signed so that larger is better.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np

from morl.gate import GateTerms
from morl.preorder import Preorder, PreorderError

__all__ = ["EVENT_KEYS", "VectorReward", "WithPreorder", "Scalarize", "PreorderGate", "MOEpisodeStatistics", "DiscretizeAction",
           "FiniteCheck", "NonFiniteError", "ActionError", "vector_reward_of"]

#: Safety-event keys that envs report in ``info`` (driving events, and ``cost`` in the safety-gymnasium
#: convention): counted per episode.
EVENT_KEYS = ("collision", "off_road", "red_light", "speeding", "success", "cost")


def _objectives_of(env: gym.Env) -> tuple[str, ...]:
    objectives = getattr(env.unwrapped, "objectives", None)
    try:
        objectives = env.get_wrapper_attr("objectives")
    except AttributeError:
        pass
    if objectives is None:
        raise AttributeError(f"{env} has no 'objectives': wrap it in morl.wrappers.VectorReward first")
    return tuple(objectives)


def vector_reward_of(reward, info: Mapping) -> np.ndarray:
    """The reward vector of one step: ``reward`` itself when it is a vector, else ``info["vector_reward"]``."""
    if np.ndim(reward) == 1:
        return np.asarray(reward, dtype=np.float32)
    if "vector_reward" not in info:
        raise KeyError("the step gave a scalar reward and no info['vector_reward']: "
                       "the env must return a vector reward or be wrapped in morl.wrappers.Scalarize")
    return np.asarray(info["vector_reward"], dtype=np.float32)


class VectorReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Replace the reward by a vector built from ``info`` keys or a callable.

    :param env: the environment.
    :param objectives: objective names, in vector order.
    :param keys: for each objective, the ``info`` key holding its value, or ``(key, scale)`` to rescale
        or flip its sign (events such as ``"collision"`` become ``("collision", -1.0)``). Missing keys
        raise ``KeyError`` naming the key and the objective.
    :param fn: alternatively ``fn(obs, reward, info) -> array-like of length m``.

    >>> import gymnasium as gym
    >>> env = VectorReward(gym.make("CartPole-v1"), objectives=("alive", "centred"),
    ...                    fn=lambda obs, r, info: [r, -abs(obs[0])])
    >>> env.objectives, env.reward_space.shape
    (('alive', 'centred'), (2,))
    >>> _ = env.reset(seed=0)
    >>> r = env.step(0)[1]
    >>> r.dtype, r.shape, float(r[0])
    (dtype('float32'), (2,), 1.0)
    """

    def __init__(
        self,
        env: gym.Env,
        objectives: Sequence[str],
        keys: Mapping[str, str | tuple[str, float]] | None = None,
        fn: Callable | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(self, objectives=objectives, keys=keys, fn=fn)
        super().__init__(env)
        if isinstance(objectives, str) or not objectives:
            raise ValueError(f"objectives must be a non-empty list of names, got {objectives!r}")
        self.objectives = tuple(objectives)
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives {self.objectives} contain a duplicate name")
        if (keys is None) == (fn is None):
            raise ValueError("VectorReward needs exactly one of keys= or fn=")
        if keys is not None:
            missing = [o for o in self.objectives if o not in keys]
            extra = [k for k in keys if k not in self.objectives]
            if missing or extra:
                raise ValueError(f"keys must name each objective once: missing {missing}, unknown {extra}")
            self._keys = [(keys[o], 1.0) if isinstance(keys[o], str) else (keys[o][0], float(keys[o][1]))
                          for o in self.objectives]
        self._fn = fn
        m = len(self.objectives)
        self.reward_space = gym.spaces.Box(-np.inf, np.inf, shape=(m,), dtype=np.float32)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._fn is not None:
            vec = np.asarray(self._fn(obs, reward, info), dtype=np.float32).reshape(-1)
            if vec.shape != (len(self.objectives),):
                raise ValueError(f"VectorReward fn returned {vec.size} values for {len(self.objectives)} objectives")
        else:
            vec = np.empty(len(self.objectives), dtype=np.float32)
            for i, (key, scale) in enumerate(self._keys):
                if key not in info:
                    raise KeyError(f"info has no key {key!r} for objective {self.objectives[i]!r} "
                                   f"(info keys: {sorted(info)})")
                vec[i] = scale * float(info[key])
        return obs, vec, terminated, truncated, info


class WithPreorder(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Attach a preorder over the env's objectives, reindexed to their vector order.

    :param env: an env with ``objectives`` (a vector-reward env).
    :param preorder: a :class:`Preorder` or anything :meth:`Preorder.parse` reads.

    >>> import gymnasium as gym
    >>> env = VectorReward(gym.make("CartPole-v1"), ("alive", "centred"), fn=lambda o, r, i: [r, -abs(o[0])])
    >>> WithPreorder(env, "centred > alive").preorder
    Preorder('centred > alive')
    >>> WithPreorder(env, "centred > speed")
    Traceback (most recent call last):
    ...
    morl.preorder.PreorderError: objective 'speed' is not among the objectives ('alive', 'centred')
    """

    def __init__(self, env: gym.Env, preorder):
        gym.utils.RecordConstructorArgs.__init__(self, preorder=str(preorder))
        super().__init__(env)
        objectives = _objectives_of(env)
        parsed = Preorder.parse(preorder)
        for name in parsed.objectives:
            if name not in objectives:
                raise PreorderError(f"objective {name!r} is not among the objectives {objectives}")
        self.preorder = parsed.reindexed(objectives)
        self.objectives = objectives


class Scalarize(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Give SB3 a scalar reward ``w · r``; keep the vector in ``info["vector_reward"]``.

    SB3's ``Monitor``, ``VecNormalize``, ``EvalCallback`` and ``evaluate_policy`` then work unchanged,
    and morl's buffers read the vector back from ``infos``. When an inner wrapper already turned the
    reward into a scalar and put the vector in ``info["vector_reward"]`` (CaRL's reward does), that
    scalar is passed on unchanged and the weights are not used.

    :param env: a vector-reward env.
    :param weights: one weight per objective, as a sequence in vector order or a mapping by name
        (objectives missing from the mapping get weight 0).

    >>> import gymnasium as gym
    >>> env = VectorReward(gym.make("CartPole-v1"), ("alive", "centred"), fn=lambda o, r, i: [r, -1.0])
    >>> env = Scalarize(env, {"alive": 1.0, "centred": 0.5})
    >>> _ = env.reset(seed=0)
    >>> _, r, _, _, info = env.step(0)
    >>> r, info["vector_reward"].tolist()
    (0.5, [1.0, -1.0])
    """

    scalar_reward = True  # gives SB3 a scalar (morl.agent_env.is_scalarised)

    def __init__(self, env: gym.Env, weights: Sequence[float] | Mapping[str, float]):
        gym.utils.RecordConstructorArgs.__init__(self, weights=weights)
        super().__init__(env)
        objectives = _objectives_of(env)
        if isinstance(weights, Mapping):
            unknown = [k for k in weights if k not in objectives]
            if unknown:
                raise ValueError(f"Scalarize weight for unknown objective {unknown[0]!r} (objectives: {objectives})")
            w = [float(weights.get(o, 0.0)) for o in objectives]
        else:
            w = [float(x) for x in weights]
            if len(w) != len(objectives):
                raise ValueError(f"Scalarize got {len(w)} weights for {len(objectives)} objectives {objectives}")
        self.weights = np.asarray(w, dtype=np.float32)
        if not np.all(np.isfinite(self.weights)):
            raise ValueError(f"Scalarize weights must be finite, got {w}")

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if np.ndim(reward) == 0 and "vector_reward" in info:
            # An inner reward wrapper (e.g. morl.agents.carl.CaRLReward) already chose the scalar and kept
            # the vector in info: its scalar is the one SB3 trains on.
            return obs, float(reward), terminated, truncated, info
        vec = np.asarray(reward, dtype=np.float32).reshape(-1)
        info["vector_reward"] = vec
        return obs, float(self.weights @ vec), terminated, truncated, info


class PreorderGate(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A scalar reward that follows the preorder: lower objectives pay only while higher ones are met.

    The gate of :mod:`morl.gate`: ``r_t = sum_i w_i r_t,i g_t,i``, with ``g_t,i = prod_j (1 if r_t,j >= tau_j
    else factor)`` over the objectives ``j`` strictly above ``i`` that have a threshold ``tau_j``. With
    ``factor = 0`` a step that violates a higher objective earns nothing from the objectives below it, so no
    amount of progress pays for a violation: the higher objective's own term ``w_j r_t,j`` is the only signal
    on that step. This is CaRL's multiplicative soft penalty (route completion times penalty factors,
    arXiv 2504.17838) generalised to a preorder; it orders steps, not returns, so it is an approximation
    of lexicographic preference that any scalar-reward learner (PPO) can train on. The vector stays in
    ``info["vector_reward"]``; the outer :class:`Scalarize` passes this scalar through unchanged.
    A batched simulator takes :class:`morl.vec_wrappers.PreorderVecGate` instead.

    :param env: a vector-reward env.
    :param thresholds: per objective name, the value at or above which it counts as met
        (e.g. ``{"safety": 0.0}`` for a reward that is ``-cost``). Objectives without one gate nothing.
    :param weights: per objective name (default 1 for every objective).
    :param factor: the gate's value on a violating step, in ``[0, 1]``.
    :param preorder: precedence to follow; default the env's ``preorder``.

    >>> import gymnasium as gym
    >>> env = VectorReward(gym.make("CartPole-v1"), ("safe", "fast"), fn=lambda o, r, i: [-1.0, 2.0])
    >>> env = PreorderGate(env, {"safe": 0.0}, preorder="safe > fast")
    >>> _ = env.reset(seed=0)
    >>> _, r, _, _, info = env.step(0)
    >>> r, info["vector_reward"].tolist()     # 'safe' is violated, so 'fast' earns nothing
    (-1.0, [-1.0, 2.0])
    """

    scalar_reward = True  # gives SB3 a scalar (morl.agent_env.is_scalarised)

    def __init__(self, env: gym.Env, thresholds: Mapping[str, float], weights: Mapping[str, float] | None = None,
                 factor: float = 0.0, preorder=None):
        gym.utils.RecordConstructorArgs.__init__(self, thresholds=dict(thresholds), weights=weights, factor=factor,
                                                 preorder=None if preorder is None else str(preorder))
        super().__init__(env)
        if preorder is None:
            try:
                preorder = env.get_wrapper_attr("preorder")
            except AttributeError:
                raise PreorderError("PreorderGate needs a preorder: the env has none, pass preorder=...") from None
        self.terms = GateTerms(_objectives_of(env), thresholds, weights, factor, preorder)

    def gate(self, vec: np.ndarray) -> np.ndarray:
        """Per-objective gate ``g_i`` for one reward vector."""
        return self.terms.gate(vec)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        vec = np.asarray(reward, dtype=np.float32).reshape(-1)
        info["vector_reward"] = vec
        return obs, float(self.terms.reward(vec)), terminated, truncated, info


class MOEpisodeStatistics(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Per-objective episode statistics, written at the end of each episode.

    ``info["mo_episode"]`` (and ``info["episode"]``, which an outer SB3 ``Monitor`` overwrites with its
    scalar record) holds ``r`` (per-objective return), ``dr`` (discounted return), ``l`` (length),
    ``t`` (seconds), the count of steps on which each event of :data:`EVENT_KEYS` was set
    (``cost`` is summed), and the last ``route_completion`` when the env reports it. The vector is read
    from the reward when it is a vector, else from ``info["vector_reward"]``.

    :param env: a vector-reward env (inside or outside :class:`Scalarize`).
    :param gamma: discount for ``dr``.

    >>> import gymnasium as gym
    >>> env = VectorReward(gym.make("CartPole-v1"), ("alive", "centred"), fn=lambda o, r, i: [r, -1.0])
    >>> env = MOEpisodeStatistics(env, gamma=0.5)
    >>> _ = env.reset(seed=0)
    >>> done = False
    >>> while not done:
    ...     _, _, term, trunc, info = env.step(0)
    ...     done = term or trunc
    >>> ep = info["mo_episode"]
    >>> int(ep["l"]), ep["r"].tolist(), round(float(ep["dr"][0]), 3)
    (11, [11.0, -11.0], 1.999)
    """

    def __init__(self, env: gym.Env, gamma: float = 0.99):
        gym.utils.RecordConstructorArgs.__init__(self, gamma=gamma)
        super().__init__(env)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self._reset_stats()

    def _reset_stats(self):
        self._ret = None
        self._dret = None
        self._discount = 1.0
        self._len = 0
        self._events = dict.fromkeys(EVENT_KEYS, 0.0)
        self._start = time.perf_counter()

    def reset(self, **kwargs):
        self._reset_stats()
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        vec = vector_reward_of(reward, info).astype(np.float64)
        if self._ret is None:
            self._ret = np.zeros_like(vec)
            self._dret = np.zeros_like(vec)
        self._ret += vec
        self._dret += self._discount * vec
        self._discount *= self.gamma
        self._len += 1
        for key in EVENT_KEYS:
            value = info.get(key)
            if value is not None:
                self._events[key] += float(value) if key == "cost" else float(bool(value))
        if terminated or truncated:
            ep = {"r": self._ret.astype(np.float32), "dr": self._dret.astype(np.float32), "l": self._len,
                  "t": round(time.perf_counter() - self._start, 6), **self._events}
            if "route_completion" in info:
                ep["route_completion"] = float(info["route_completion"])
            info["mo_episode"] = ep
            info["episode"] = ep
        return obs, reward, terminated, truncated, info


class DiscretizeAction(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Discrete actions for a Box-action env, so discrete agents (QD-IQN) run on continuous control.

    Each dimension's ``[low, high]`` is cut into ``bins`` equal bins and an action picks bin centres.

    - ``mode="product"``: one ``Discrete(bins ** d)`` index for the joint product of all dimensions
      (dimension 0 varies slowest);
    - ``mode="factorised"``: ``MultiDiscrete([bins] * d)``, one bin per dimension, for agents with one
      head per dimension.

    :param env: an env with a bounded ``Box`` action space.
    :param bins: bins per dimension (≥ 2), an int or one per dimension.
    :param mode: ``"product"`` or ``"factorised"``.

    >>> import gymnasium as gym
    >>> env = DiscretizeAction(gym.make("Pendulum-v1"), bins=5)
    >>> env.action_space, env.action(4).tolist(), env.action(2).tolist()
    (Discrete(5), [1.600000023841858], [0.0])
    """

    def __init__(self, env: gym.Env, bins: int | Sequence[int] = 3, mode: str = "product"):
        gym.utils.RecordConstructorArgs.__init__(self, bins=bins, mode=mode)
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"DiscretizeAction needs a bounded Box action space, got {space}")
        low, high = space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
        d = low.size
        bins_arr = np.broadcast_to(np.asarray(bins), (d,)).astype(int) if np.ndim(bins) == 0 else np.asarray(bins, int)
        if bins_arr.shape != (d,) or np.any(bins_arr < 2):
            raise ValueError(f"bins must be an int >= 2 or {d} ints >= 2, got {bins!r}")
        if mode not in ("product", "factorised"):
            raise ValueError(f"mode must be 'product' or 'factorised', got {mode!r}")
        self.mode, self.bins = mode, bins_arr
        width = (high - low) / bins_arr
        #: Bin centres per dimension.
        self.centres = [(low[i] + (np.arange(bins_arr[i]) + 0.5) * width[i]).astype(space.dtype) for i in range(d)]
        self._shape, self._dtype = space.shape, space.dtype
        if mode == "product":
            self.action_space = gym.spaces.Discrete(int(np.prod(bins_arr)))
        else:
            self.action_space = gym.spaces.MultiDiscrete(bins_arr)

    def bin_indices(self, action) -> np.ndarray:
        """Per-dimension bin indices of a discrete action."""
        if self.mode == "product":
            a = int(action)
            if not 0 <= a < self.action_space.n:
                raise ValueError(f"action {action!r} is outside Discrete({self.action_space.n})")
            return np.array(np.unravel_index(a, tuple(self.bins)))
        idx = np.asarray(action, dtype=int).reshape(-1)
        if idx.shape != self.bins.shape or np.any(idx < 0) or np.any(idx >= self.bins):
            raise ValueError(f"action {action!r} is outside MultiDiscrete({self.bins.tolist()})")
        return idx

    def action(self, action):
        idx = self.bin_indices(action)
        return np.array([c[i] for c, i in zip(self.centres, idx)], dtype=self._dtype).reshape(self._shape)

    def discretize(self, continuous) -> int | np.ndarray:
        """The discrete action whose bin holds each dimension of ``continuous`` (inverse at bin centres)."""
        x = np.asarray(continuous, dtype=np.float64).reshape(-1)
        idx = np.array([int(np.argmin(np.abs(c - v))) for c, v in zip(self.centres, x)])
        return int(np.ravel_multi_index(tuple(idx), tuple(self.bins))) if self.mode == "product" else idx


class NonFiniteError(ValueError):
    """An environment produced a NaN or infinite observation or reward."""


class ActionError(ValueError):
    """An action does not fit the environment's action space (shape, dtype or range of a discrete action)."""


def _first_bad(x: np.ndarray) -> str:
    """``"nan at [3]"``: the first non-finite entry of ``x`` and its index."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    i = int(np.flatnonzero(~np.isfinite(flat))[0])
    where = np.unravel_index(i, np.shape(x)) if np.ndim(x) else ()
    return f"{flat[i]} at {list(map(int, where))}"


def _non_finite(value) -> str | None:
    """A description of the first non-finite number in ``value`` (array, scalar or dict of arrays), or None."""
    if isinstance(value, np.ndarray):  # the common case, kept cheap: one isfinite pass
        if value.dtype.kind not in "fc" or np.isfinite(value).all():
            return None
        return _first_bad(value)
    if isinstance(value, Mapping):
        for key, v in value.items():
            bad = _non_finite(v)
            if bad is not None:
                return f"[{key!r}] {bad}"
        return None
    if isinstance(value, (tuple, list)) and value and not np.isscalar(value[0]):
        for k, v in enumerate(value):
            bad = _non_finite(v)
            if bad is not None:
                return f"[{k}] {bad}"
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "fc" or np.isfinite(arr).all():  # integers and booleans are always finite
        return None
    return _first_bad(arr)


class FiniteCheck(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Stop at the first NaN/inf observation or reward, and at an action that does not fit the action space.

    A NaN that reaches a replay buffer silently poisons every later update; this wrapper turns it into
    one error naming what was non-finite, its value and index, the step of the episode and the
    episode. Actions are checked for shape and dtype (a ``Box`` action must be finite numbers of the
    space's shape; a ``Discrete`` one an integer in range); out-of-bounds ``Box`` values pass, since
    envs clip them.

    :param env: the environment (vector or scalar reward).
    :param check_actions: also check actions.
    :raises NonFiniteError: on a non-finite observation (at ``reset`` or ``step``) or reward.
    :raises ActionError: on an action of the wrong shape, dtype or (discrete) range.

    >>> import gymnasium as gym
    >>> env = FiniteCheck(VectorReward(gym.make("CartPole-v1"), ("alive", "bad"),
    ...                                fn=lambda o, r, i: [r, float("nan")]))
    >>> _ = env.reset(seed=0)
    >>> env.step(0)
    Traceback (most recent call last):
    ...
    morl.wrappers.NonFiniteError: reward 'bad' is nan at step 1 of episode 1 (reward [1.0, nan])
    >>> env.step(1.5)
    Traceback (most recent call last):
    ...
    morl.wrappers.ActionError: action 1.5 does not fit Discrete(2): a discrete action must be an integer, got float
    """

    def __init__(self, env: gym.Env, check_actions: bool = True):
        gym.utils.RecordConstructorArgs.__init__(self, check_actions=check_actions)
        super().__init__(env)
        self.check_actions = bool(check_actions)
        try:
            self._names = tuple(env.get_wrapper_attr("objectives"))
        except AttributeError:
            self._names = None
        self._step, self._episode = 0, 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._step, self._episode = 0, self._episode + 1
        bad = _non_finite(obs)
        if bad is not None:
            raise NonFiniteError(f"observation is non-finite after reset (episode {self._episode}): {bad}")
        return obs, info

    def step(self, action):
        if self.check_actions:
            self._check_action(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        bad = _non_finite(obs)
        if bad is not None:
            raise NonFiniteError(f"observation is non-finite at {self._where()}: {bad}")
        if isinstance(reward, np.ndarray) and reward.dtype.kind == "f" and np.isfinite(reward).all():
            return obs, reward, terminated, truncated, info  # the common case, without building messages
        vec = np.asarray(reward, dtype=np.float64)
        if vec.dtype.kind not in "fiub":
            raise NonFiniteError(f"reward {reward!r} at {self._where()} is not a number")
        if not np.isfinite(vec).all():
            flat = vec.reshape(-1)
            i = int(np.flatnonzero(~np.isfinite(flat))[0])
            name = self._names[i] if self._names is not None and vec.ndim == 1 and i < len(self._names) else None
            label = f"reward {name!r}" if name else ("reward" if vec.ndim == 0 else f"reward component {i}")
            shown = f" (reward {flat.tolist()})" if vec.ndim else ""
            raise NonFiniteError(f"{label} is {flat[i]} at {self._where()}{shown}")
        return obs, reward, terminated, truncated, info

    def _where(self) -> str:
        return f"step {self._step} of episode {self._episode}"

    def _check_action(self, action) -> None:
        space = self.action_space
        # fast paths for what SB3 passes: a numpy integer for Discrete, a float array of the right shape for Box
        if isinstance(space, gym.spaces.Discrete):
            if isinstance(action, (int, np.integer)) and not isinstance(action, bool) \
                    and space.start <= action < space.start + space.n:
                return
        elif isinstance(space, gym.spaces.Box) and isinstance(action, np.ndarray) and action.shape == space.shape \
                and action.dtype.kind == "f" and np.isfinite(action).all():
            return
        fail = lambda why: ActionError(f"action {action!r:.80} does not fit {space}: {why}")  # noqa: E731
        try:
            arr = np.asarray(action)
        except Exception:  # noqa: BLE001 - ragged or exotic input: report it as an action error
            raise fail("it is not an array") from None
        if isinstance(space, gym.spaces.Discrete):
            if arr.size != 1:
                raise fail(f"a discrete action must be one integer, got shape {arr.shape}")
            if arr.dtype.kind not in "iu":
                raise fail(f"a discrete action must be an integer, got {type(action).__name__}"
                           if arr.ndim == 0 else f"a discrete action must be an integer, got dtype {arr.dtype}")
            if not space.contains(np.int64(arr.reshape(-1)[0])):
                raise fail(f"it is outside {space.start}..{space.start + space.n - 1}")
        elif isinstance(space, gym.spaces.MultiDiscrete):
            if arr.shape != space.shape or arr.dtype.kind not in "iu":
                raise fail(f"expected integers of shape {space.shape}, got dtype {arr.dtype} shape {arr.shape}")
            if not space.contains(arr.astype(space.dtype)):
                raise fail("an entry is out of range")
        elif isinstance(space, gym.spaces.Box):
            if arr.dtype.kind not in "fiu":
                raise fail(f"expected numbers, got dtype {arr.dtype}")
            if arr.shape != space.shape and arr.size != int(np.prod(space.shape)):
                raise fail(f"expected shape {space.shape}, got shape {arr.shape}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise fail(f"non-finite entry {_first_bad(arr)}")
