"""The env an agent's constructor is given, made fit for SB3, whose machinery expects a scalar reward.

An env with a vector reward (``objectives`` and a ``reward_space`` of shape ``(m,)``) reaches SB3
through the MO-Gymnasium channel: :class:`~morl.wrappers.Scalarize` gives SB3 the scalar ``w · r`` and
keeps the vector in ``info["vector_reward"]``, where morl's buffers read it, and
:class:`~morl.wrappers.MOEpisodeStatistics` records per-objective episode returns. :func:`agent_env`
adds both to a Gymnasium env that has neither, with the weights the env declares as
``reward_weights`` (a sequence in vector order, or a mapping by name); an agent that learns from the
vector (QDIQN) needs no weights, and then the scalar (the sum) only feeds SB3's episode statistics.
An env that is already scalarised, or an env that is not a vector-reward env, passes unchanged.

>>> import gymnasium as gym
>>> from morl.wrappers import VectorReward
>>> env = VectorReward(gym.make("CartPole-v1"), ("alive", "centred"), fn=lambda o, r, i: [r, -abs(o[0])])
>>> agent_env(env, "IQN", weights_needed=True)
Traceback (most recent call last):
...
ValueError: IQN trains on a scalar reward, but the env's reward is a vector over (alive, centred) and the env declares no reward_weights: wrap it as morl.wrappers.Scalarize(env, weights), one weight per objective (e.g. {'alive': 1.0, 'centred': 1.0}), or train QDIQN, which learns from the vector
>>> _ = agent_env(env, "QDIQN", weights_needed=False).reset(seed=0)
"""

from __future__ import annotations

import gymnasium as gym

from morl.preorder import Preorder

__all__ = ["FitsVectorEnvOnLoad", "agent_env", "env_preorder", "is_scalarised"]


def env_preorder(env, preorder, agent: str):
    """The :class:`~morl.preorder.Preorder` an agent follows, indexed as the env's reward vector.

    :param env: the agent's VecEnv, or ``None``; its ``objectives`` attribute (when it has one) orders the
        objectives, and its ``preorder`` attribute stands in for a ``preorder`` of ``None``.
    :param preorder: a ``Preorder`` or what :meth:`Preorder.parse` reads, or ``None``.
    :param agent: the agent's name, for the error.
    :raises ValueError: naming the agent when neither gives a preorder.
    """
    objectives = None
    if env is not None:
        try:
            objectives = tuple(env.get_attr("objectives")[0])
        except (AttributeError, KeyError, NotImplementedError):
            objectives = None
        if preorder is None:
            try:
                preorder = env.get_attr("preorder")[0]
            except (AttributeError, KeyError, NotImplementedError):
                preorder = None
    if preorder is None:
        raise ValueError(f"{agent} needs a preorder: pass preorder='a > b > ...' or use an env with a 'preorder' "
                         "attribute (morl.wrappers.WithPreorder)")
    preorder = Preorder.parse(preorder)
    return preorder.reindexed(objectives) if objectives is not None else preorder


def is_scalarised(env: gym.Env) -> bool:
    """Whether a layer of ``env``'s wrapper chain gives SB3 a scalar reward (a class with ``scalar_reward = True``:
    :class:`~morl.wrappers.Scalarize`, :class:`~morl.wrappers.PreorderGate`, CaRL's reward)."""
    layer = env
    while True:
        if getattr(type(layer), "scalar_reward", False):
            return True
        if not hasattr(layer, "env"):
            return False
        layer = layer.env


def _objectives(env) -> tuple[str, ...] | None:
    try:
        objectives = env.get_wrapper_attr("objectives")
    except AttributeError:
        objectives = getattr(getattr(env, "unwrapped", env), "objectives", None)
    return None if objectives is None else tuple(objectives)


def agent_env(env, agent: str, weights_needed: bool, episode_statistics: bool = True):
    """``env`` as the agent called ``agent`` should get it (see the module docstring).

    :param env: a Gymnasium env, an env id, a VecEnv, or None.
    :param agent: the agent's name, for messages.
    :param weights_needed: the agent trains on the scalar, so an env without ``reward_weights`` is an error.
    :param episode_statistics: add :class:`~morl.wrappers.MOEpisodeStatistics` (its ``info["episode"]`` holds
        vectors: SB3's algorithms put their ``Monitor`` outside it, which writes the scalar record there).
    :raises ValueError: naming the wrapper to use, when the env cannot be made fit.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper

    from morl.wrappers import MOEpisodeStatistics, Scalarize

    if env is None:
        return env
    if isinstance(env, VecEnv):
        inner = env
        while isinstance(inner, VecEnvWrapper):
            inner = inner.venv
        if not isinstance(inner, (DummyVecEnv, SubprocVecEnv)):
            return env  # a batched simulator gives its own scalar (and keeps the vector in an array)
        try:
            objectives = tuple(inner.get_attr("objectives", [0])[0])
        except AttributeError:
            return env
        try:
            inner.get_attr("scalar_reward", [0])
        except AttributeError:
            raise ValueError(
                f"{agent} got a VecEnv whose envs return a vector reward over ({', '.join(objectives)}): SB3's VecEnv "
                "needs a scalar, so wrap each env in morl.wrappers.Scalarize(env, weights) before building the VecEnv"
                + ("" if weights_needed else f" ({agent} learns from the vector; the weights only feed SB3's episode "
                                              "statistics)")) from None
        return env
    if isinstance(env, str):
        env = gym.make(env)
    objectives = _objectives(env)
    if objectives is None or is_scalarised(env):
        return env
    try:
        weights = env.get_wrapper_attr("reward_weights")
    except AttributeError:
        weights = None
    if weights is None:
        if weights_needed:
            example = {name: 1.0 for name in objectives}
            raise ValueError(
                f"{agent} trains on a scalar reward, but the env's reward is a vector over ({', '.join(objectives)}) "
                "and the env declares no reward_weights: wrap it as morl.wrappers.Scalarize(env, weights), one "
                f"weight per objective (e.g. {example}), or train QDIQN, which learns from the vector")
        weights = [1.0] * len(objectives)
    env = Scalarize(env, weights)
    return MOEpisodeStatistics(env) if episode_statistics else env


class FitsVectorEnvOnLoad:
    """Mixin for SB3 agents: ``Agent.load(path, env=...)`` fits a vector-reward Gymnasium env as the constructor
    does (:func:`agent_env`), before SB3 wraps it in a ``DummyVecEnv``.

    The agent class says whether it trains on the scalar with ``trains_on_scalar_reward`` (default True).
    """

    @classmethod
    def load(cls, path, env=None, **kwargs):
        from stable_baselines3.common.vec_env import VecEnv

        if env is not None and not isinstance(env, VecEnv):
            env = agent_env(env, cls.__name__, weights_needed=getattr(cls, "trains_on_scalar_reward", True))
        return super().load(path, env=env, **kwargs)
