"""Rollout collection for SB3 on-policy algorithms on array-step VecEnvs (batched simulators).

SB3's ``OnPolicyAlgorithm.collect_rollouts`` does per-env Python work at every step: the VecEnv builds
``n_envs`` info dicts, ``VecMonitor`` and ``_update_info_buffer`` walk them, and truncated episodes are
bootstrapped one env at a time (a policy forward per env). :func:`collect_array_rollouts` is the same
loop on a VecEnv that keeps its results in arrays (:mod:`morl.vec_arrays`): one ``step_arrays`` call per
step, no per-env loop, and one value forward over the terminal observations of all the envs whose episode
was truncated at that step, ``r_t += γ · V(s_terminal)`` (SB3 issue 633). It gives SB3's rollout buffer
contents, episode statistics (``ep_info_buffer``, ``ep_success_buffer``) and callback calls: callbacks
see ``infos`` (a :class:`~morl.vec_arrays.StepInfos`; an env's info is built when read), ``dones``,
``rewards``, ``new_obs``, ``actions``, ``values`` and ``log_probs`` in ``self.locals`` as in SB3.

:class:`ArrayRollouts` is a mixin for an ``OnPolicyAlgorithm`` whose ``collect_rollouts`` takes this path on
an array-step VecEnv and SB3's otherwise (and when ``array_rollouts`` is set to False);
:func:`with_array_rollouts` gives an SB3 algorithm class with it (``PPO``, ``A2C``, ...).

>>> from stable_baselines3 import PPO
>>> from morl.envs.driving import make_vec
>>> venv = make_vec("route", 4, action_type="continuous", seed=0)
>>> model = with_array_rollouts(PPO)("MlpPolicy", venv, n_steps=8, batch_size=32, seed=0)
>>> model.uses_array_rollouts(), isinstance(model, PPO)
(True, True)
>>> _ = model.learn(32)
"""

from __future__ import annotations

import functools

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import obs_as_tensor

from morl.buffers import update_info_buffer_at_ends
from morl.vec_arrays import array_step_env

__all__ = ["ArrayRollouts", "collect_array_rollouts", "with_array_rollouts"]


def collect_array_rollouts(self: OnPolicyAlgorithm, env, callback, rollout_buffer, n_rollout_steps: int) -> bool:
    """SB3's ``OnPolicyAlgorithm.collect_rollouts`` on an array-step VecEnv (see the module).

    :param self: the algorithm.
    :param env: a VecEnv for which :func:`morl.vec_arrays.array_step_env` holds.
    :param callback: the SB3 callback, called as SB3 calls it.
    :param rollout_buffer: the buffer to fill (its ``add`` is called once per step).
    :param n_rollout_steps: steps per env.
    :return: True when the rollout was collected, False when a callback stopped it.
    """
    assert self._last_obs is not None, "No previous observation was provided"
    self.policy.set_training_mode(False)
    n_steps = 0
    rollout_buffer.reset()
    if self.use_sde:
        self.policy.reset_noise(env.num_envs)
    callback.on_rollout_start()
    box = isinstance(self.action_space, spaces.Box)
    discrete = isinstance(self.action_space, spaces.Discrete)
    # SB3's _update_info_buffer reads "episode" / "is_success" from every info; only the ended envs' infos can
    # hold them (the array-step contract), so the default one reads those alone
    own_info_update = type(self)._update_info_buffer is not BaseAlgorithm._update_info_buffer

    while n_steps < n_rollout_steps:
        if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
            self.policy.reset_noise(env.num_envs)
        with th.no_grad():
            obs_tensor = obs_as_tensor(self._last_obs, self.device)
            actions, values, log_probs = self.policy(obs_tensor)
        actions = actions.cpu().numpy()
        clipped_actions = actions
        if box:
            if self.policy.squash_output:
                clipped_actions = self.policy.unscale_action(clipped_actions)
            else:
                clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

        step = env.step_arrays(clipped_actions)
        new_obs, rewards, dones, infos = step.obs, step.rewards, step.dones, step.infos
        self.num_timesteps += env.num_envs

        callback.update_locals(locals())
        if not callback.on_step():
            return False
        if own_info_update:
            self._update_info_buffer(infos, dones)
        else:
            update_info_buffer_at_ends(self, infos, dones)
        n_steps += 1

        if discrete:
            actions = actions.reshape(-1, 1)

        # truncated episodes: one value forward over their terminal observations (SB3 issue 633)
        boot = np.flatnonzero(step.truncated)
        if boot.size:
            terminal_obs = self.policy.obs_to_tensor(step.terminal_obs[boot])[0]
            with th.no_grad():
                # gamma * V as SB3 forms it: in torch for a tensor, in NumPy for a policy that returns an array
                terminal_values = self.gamma * self.policy.predict_values(terminal_obs)
            if isinstance(terminal_values, th.Tensor):
                terminal_values = terminal_values.cpu().numpy()
            rewards[boot] += terminal_values.reshape(rewards[boot].shape)

        rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs)
        self._last_obs = new_obs
        self._last_episode_starts = dones

    with th.no_grad():
        values = self.policy.predict_values(obs_as_tensor(new_obs, self.device))
    rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True


class ArrayRollouts:
    """Mixin for an SB3 ``OnPolicyAlgorithm``: :func:`collect_array_rollouts` on array-step VecEnvs.

    ``class MyPPO(ArrayRollouts, PPO)``; ``model.array_rollouts = False`` turns it off (SB3's own loop).
    """

    #: take :func:`collect_array_rollouts` when the env allows it
    array_rollouts = True

    def uses_array_rollouts(self, env=None) -> bool:
        """Whether ``collect_rollouts`` on ``env`` (default: the model's env) takes the array path."""
        env = self.env if env is None else env
        return bool(self.array_rollouts) and env is not None and array_step_env(env)

    def collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps: int) -> bool:
        if self.uses_array_rollouts(env):
            return collect_array_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)
        return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)


@functools.cache
def with_array_rollouts(cls: type) -> type:
    """``cls`` with :class:`ArrayRollouts` (one class per ``cls``, named like it), or ``cls`` itself when it
    already has it or collects its rollouts its own way (e.g. ``RecurrentPPO``, ``MaskablePPO``).

    :param cls: an ``OnPolicyAlgorithm`` subclass.
    :raises TypeError: for any other class.
    """
    if not (isinstance(cls, type) and issubclass(cls, OnPolicyAlgorithm)):
        raise TypeError(f"with_array_rollouts takes an SB3 OnPolicyAlgorithm subclass, got {cls!r}")
    if issubclass(cls, ArrayRollouts) or cls.collect_rollouts is not OnPolicyAlgorithm.collect_rollouts:
        return cls
    return type(cls.__name__, (ArrayRollouts, cls), {"__module__": __name__, "__doc__": cls.__doc__})
