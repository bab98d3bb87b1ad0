"""SubPO: policy gradient on marginal gains of a submodular objective (Prajapat et al., ICLR 2024).

SubRL maximises ``J(pi) = E_tau[F(tau)]`` for a submodular F of the set of visited states. SubPO is
REINFORCE with the per-step reward ``r_j = F(s_{j+1} | tau_{0:j})`` (marginal gain) and reward-to-go
credit; the paper's estimator (the "SubPO gradient", Sec. 4 of arXiv 2307.13372):

    grad J = E_tau[ sum_i grad log pi(a_i | x_i) * ( sum_{j >= i} F(s_{j+1} | tau_{0:j}) - b(tau_{0:i}) ) ]

``credit="reward_to_go"`` implements it with a leave-one-out batch-mean baseline per step of the episode.
``credit="greedy_repo"`` matches the authors' released tabular code, which weights each log-prob by
the cumulative ``F(tau_{0:t+1})`` (no baseline): in expectation only the immediate marginal gain of
each action counts. ``ModPO`` is the same algorithm on the modular (additive) reward ``F({s_{t+1}})``.

Marginal gains come from the env's reward (the SubRL grid worlds and any env wrapped to return
marginal gains); ModPO reads ``info["modular_reward"]``. One rollout is ``n_steps`` steps of every
env (default: the env's horizon, so each rollout is one batch of whole episodes); one Adam step per
rollout, as the authors do (``n_epochs`` > 1 reuses the batch).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import obs_as_tensor

from morl.agents.subpo.policies import SubPOPolicy
from morl.agent_env import FitsVectorEnvOnLoad, agent_env

__all__ = ["SubPO", "ModPO", "CREDITS"]

CREDITS = ("reward_to_go", "greedy_repo")


def reward_to_go(rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """``G_t = sum_{j >= t} r_j`` within each episode, for ``[T, B]`` rewards and episode-end flags."""
    out = np.zeros_like(rewards, dtype=np.float64)
    acc = np.zeros(rewards.shape[1])
    for t in range(rewards.shape[0] - 1, -1, -1):
        acc = rewards[t] + acc * (1.0 - dones[t])
        out[t] = acc
    return out


def cumulative_return(rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """``C_t = sum_{j <= t} r_j`` within each episode (the authors' ``F(tau_{0:t+1})`` up to ``F({s_0})``)."""
    out = np.zeros_like(rewards, dtype=np.float64)
    acc = np.zeros(rewards.shape[1])
    for t in range(rewards.shape[0]):
        acc = acc + rewards[t]
        out[t] = acc
        acc = acc * (1.0 - dones[t])
    return out


def loo_baseline(returns: np.ndarray, episode_t: np.ndarray) -> np.ndarray:
    """Leave-one-out mean at each episode time step: the baseline of a sample at step ``k`` of its episode is the
    mean return-to-go of the rollout's other samples at step ``k`` of theirs (0 where it has none). It ignores the
    sample's own episode, so it is unbiased; keying by the episode's step, not the rollout's row, keeps that true
    when episodes end at different rows (early terminations, ``n_steps`` not the horizon).

    :param returns: ``(T, B)`` returns-to-go.
    :param episode_t: ``(T, B)`` integer step of each sample within its episode (0 at an episode's first step).
    """
    keys = np.asarray(episode_t, dtype=np.int64).ravel()
    if keys.shape != (returns.size,) or (keys < 0).any():
        raise ValueError(f"episode_t must be non-negative steps of the shape of returns {returns.shape}, "
                         f"got {np.shape(episode_t)}")
    sums = np.bincount(keys, weights=returns.ravel().astype(np.float64))
    counts = np.bincount(keys)
    others = counts[keys] - 1
    base = np.where(others > 0, (sums[keys] - returns.ravel()) / np.maximum(others, 1), 0.0)
    return base.reshape(returns.shape)


class SubPO(FitsVectorEnvOnLoad, BaseAlgorithm):
    """Submodular policy optimisation.

    :param policy: ``"MultiInputPolicy"`` (dict observations of the grid worlds), ``"MlpPolicy"`` (Box
        observations) or a :class:`SubPOPolicy` subclass; both names are :class:`SubPOPolicy`.
    :param env: a VecEnv whose reward is the marginal gain (e.g. ``morl.envs.coverage.make_vec``), or a Gym id.
    :param learning_rate: Adam learning rate (constant or schedule).
    :param n_steps: steps per env per rollout (default: the env's ``horizon`` attribute).
    :param credit: ``"reward_to_go"`` (paper) or ``"greedy_repo"`` (authors' code).
    :param baseline: ``"batch_mean"`` (leave-one-out per time step) or ``"none"`` (reward-to-go only).
    :param normalize_advantage: divide the weights by their batch std (rescales the step size only).
    :param ent_coef: entropy bonus coefficient.
    :param n_epochs: gradient steps per rollout.
    :param max_grad_norm: gradient clipping (``None``: off).
    :param reward: ``"marginal"`` (env reward) or ``"modular"`` (``info["modular_reward"]``, ModPO).
    :param policy_kwargs: passed to the policy (``features``, ``net_arch``, ...).
    :param stats_window_size: episodes in the rollout statistics window.
    :param tensorboard_log: TensorBoard log folder.
    :param verbose: 0 silent, 1 SB3 logger to stdout.
    :param seed: random seed.
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    policy_aliases: ClassVar[dict[str, type]] = {"MultiInputPolicy": SubPOPolicy, "MlpPolicy": SubPOPolicy}
    policy: SubPOPolicy

    def __init__(self, policy: str | type[SubPOPolicy] = "MultiInputPolicy", env=None, learning_rate=1e-3,
                 n_steps: int | None = None, credit: str = "reward_to_go", baseline: str = "batch_mean",
                 normalize_advantage: bool = True, ent_coef: float = 0.0, n_epochs: int = 1,
                 max_grad_norm: float | None = 1.0, reward: str = "marginal", policy_kwargs: dict | None = None,
                 stats_window_size: int = 100, tensorboard_log: str | None = None, verbose: int = 0,
                 seed: int | None = None, device: th.device | str = "auto", _init_setup_model: bool = True):
        if credit not in CREDITS:
            raise ValueError(f"unknown credit {credit!r}; expected one of {CREDITS}")
        if baseline not in ("batch_mean", "none"):
            raise ValueError(f"unknown baseline {baseline!r}; expected 'batch_mean' or 'none'")
        if reward not in ("marginal", "modular"):
            raise ValueError(f"unknown reward {reward!r}; expected 'marginal' or 'modular'")
        if n_steps is not None and n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if n_epochs < 1:
            raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
        env = agent_env(env, type(self).__name__, weights_needed=True)
        super().__init__(policy=policy, env=env, learning_rate=learning_rate, policy_kwargs=policy_kwargs,
                         stats_window_size=stats_window_size, tensorboard_log=tensorboard_log, verbose=verbose,
                         device=device, support_multi_env=True, seed=seed,
                         supported_action_spaces=(spaces.Discrete,))
        self.n_steps = n_steps
        self.credit = credit
        self.baseline = baseline
        self.normalize_advantage = normalize_advantage
        self.ent_coef = float(ent_coef)
        self.n_epochs = int(n_epochs)
        self.max_grad_norm = max_grad_norm
        self.reward = reward
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        if self.n_steps is None:
            horizon = None
            if self.env is not None:
                try:
                    horizon = self.env.get_attr("horizon")[0]
                except AttributeError:
                    horizon = None
            if horizon is None:
                raise ValueError("n_steps is required when the env has no 'horizon' attribute")
            self.n_steps = int(horizon)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule,
                                        **self.policy_kwargs).to(self.device)

    # ------------------------------------------------------------------------------------------------
    def _obs_tensor(self, obs):
        return obs_as_tensor(obs, self.device)

    def collect_rollout(self, callback) -> dict[str, Any] | None:
        """Run ``n_steps`` steps in every env with the current policy; ``None`` if a callback stopped."""
        env = self.env
        # step variables carry SB3's names (new_obs, rewards, dones, infos): callbacks read them from locals()
        obs_buf, act_buf, rew_buf, done_buf, finals, step_buf = [], [], [], [], [], []
        callback.on_rollout_start()
        for _ in range(self.n_steps):
            step_buf.append(self._episode_t.copy())
            with th.no_grad():
                obs_t = self._obs_tensor(self._last_obs)
                actions = self.policy.distribution(obs_t).sample().cpu().numpy()
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            if self.reward == "modular":
                credit = np.array([info["modular_reward"] for info in infos], dtype=np.float64)
            else:
                credit = np.asarray(rewards, dtype=np.float64)
            obs_buf.append(obs_t)
            act_buf.append(actions)
            rew_buf.append(credit)
            done_buf.append(np.asarray(dones, dtype=np.float64))
            for i in np.flatnonzero(dones):
                info = infos[i]
                finals.append(info.get("F", np.nan))
                if "episode" in info:
                    self.ep_info_buffer.extend([info["episode"]])
            self._last_obs = new_obs
            self._last_episode_starts = dones
            self._episode_t = np.where(dones, 0, self._episode_t + 1)
            callback.update_locals(locals())
            if not callback.on_step():
                return None
        callback.on_rollout_end()
        return {"obs": obs_buf, "actions": np.stack(act_buf), "rewards": np.stack(rew_buf),
                "dones": np.stack(done_buf), "final_F": np.array(finals, dtype=np.float64),
                "episode_t": np.stack(step_buf)}

    def _weights(self, rollout) -> np.ndarray:
        r, d = rollout["rewards"], rollout["dones"]
        if self.credit == "greedy_repo":
            # Authors' code: log pi(a_t | x_t) weighted by F(tau_{0:t+1}) (here without the action-independent
            # F({s_0}) term, which has zero expected gradient).
            return cumulative_return(r, d)
        g = reward_to_go(r, d)  # SubPO gradient: sum_{j >= i} F(s_{j+1} | tau_{0:j})
        if self.baseline == "batch_mean":
            g = g - loo_baseline(g, rollout["episode_t"])
        return g

    def train_on_rollout(self, rollout) -> dict[str, float]:
        """One (or ``n_epochs``) policy-gradient steps on a rollout; returns loss statistics."""
        self._update_learning_rate(self.policy.optimizer)
        weights = self._weights(rollout)
        if self.normalize_advantage:
            weights = weights / (weights.std() + 1e-8)
        w = th.as_tensor(weights, dtype=th.float32, device=self.device).reshape(-1)
        acts = th.as_tensor(rollout["actions"], device=self.device).reshape(-1)
        obs = rollout["obs"]
        if isinstance(obs[0], dict):
            batch = {k: th.cat([o[k] for o in obs]) for k in obs[0]}
        else:
            batch = th.cat(obs)
        loss = entropy = None
        for _ in range(self.n_epochs):
            dist = self.policy.distribution(batch)
            logp = dist.log_prob(acts)
            entropy = dist.entropy().mean()
            loss = -(logp * w).mean() - self.ent_coef * entropy
            self.policy.optimizer.zero_grad()
            loss.backward()
            if self.max_grad_norm is not None:
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += self.n_epochs
        if loss is None:
            return {}
        # Read back once, after the last epoch (whose values are logged): no sync per epoch on CUDA.
        return {"loss": float(loss.item()), "entropy": float(entropy.item())}

    def learn(self, total_timesteps: int, callback=None, log_interval: int = 1, tb_log_name: str = "SubPO",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        """Train for ``total_timesteps`` env steps (counted over all envs), SB3 style."""
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name,
                                                      progress_bar)
        if reset_num_timesteps or getattr(self, "_episode_t", None) is None:  # _setup_learn reset the envs
            self._episode_t = np.zeros(self.env.num_envs, dtype=np.int64)
        callback.on_training_start(locals(), globals())
        iteration = 0
        while self.num_timesteps < total_timesteps:
            rollout = self.collect_rollout(callback)
            if rollout is None:
                break
            iteration += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            stats = self.train_on_rollout(rollout)
            self._record(iteration, rollout, stats)
            if log_interval is not None and iteration % log_interval == 0:
                self.logger.dump(step=self.num_timesteps)
        callback.on_training_end()
        return self

    def _record(self, iteration: int, rollout, stats) -> None:
        f = rollout["final_F"]
        f = f[np.isfinite(f)]
        ret = rollout["rewards"].sum(axis=0)
        self.logger.record("rollout/return_mean", float(ret.mean()))
        if f.size:  # the authors log mean / max / median / min of F(tau) over the batch
            self.logger.record("rollout/F_mean", float(f.mean()))
            self.logger.record("rollout/F_max", float(f.max()))
            self.logger.record("rollout/F_median", float(np.median(f)))
            self.logger.record("rollout/F_min", float(f.min()))
        self.last_F = f
        elapsed = max(time.time_ns() - self.start_time, 1) / 1e9
        self.logger.record("time/iterations", iteration, exclude="tensorboard")
        self.logger.record("time/fps", int((self.num_timesteps - self._num_timesteps_at_start) / elapsed))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.record("train/loss", stats["loss"])
        self.logger.record("train/entropy", stats["entropy"])
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "last_F", "_episode_t"]

    def _get_torch_save_params(self):
        return ["policy", "policy.optimizer"], []


class ModPO(SubPO):
    """The modular baseline: SubPO's algorithm on the additive reward ``F({s_{t+1}})`` (``info["modular_reward"]``).

    Takes :class:`SubPO`'s arguments except ``reward``.
    """

    def __init__(self, policy="MultiInputPolicy", env=None, **kwargs):
        kwargs.pop("reward", None)
        super().__init__(policy, env, reward="modular", **kwargs)
