"""What the coverage controllers (D2OC, Lloyd, SMC) share: the SB3-style interface and the tracking gains.

The controllers are not learners; they follow stable-baselines3's ``BaseAlgorithm`` interface so the
project's experiment layer and evaluation tools apply unchanged: ``predict(obs, state, episode_start,
deterministic) -> (actions, state)``, ``learn(total_timesteps, callback, ...)`` (runs the controller on
the env and logs the coverage W2 of each finished episode), ``save``/``load`` of the parameters as a zip,
``set_random_seed``, ``get_env``/``set_env``, ``logger``/``set_logger`` and ``num_timesteps``.

The task (dynamics, reference samples, horizon T, communication radius) comes from the env's ``task``
attribute (:class:`morl.envs.swarm.SwarmTask`, duck-typed: ``dynamics.A/B/C``, ``density.samples/weights/domain``,
``n_agents``, ``max_steps``, ``comm_radius``, ``agent_mass``) or is given as ``task=``. Every method
turns its high-level target ``x_g`` per agent into inputs with the same precomputed finite-horizon
tracking gains (:mod:`morl.agents.d2oc.gains`), so the comparison isolates the choice of targets.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from morl.agents.d2oc.gains import tracking_gains

__all__ = ["CoverageController"]


class CoverageController:
    """Base of the coverage controllers (not used directly).

    :param env: a Gymnasium env or SB3 VecEnv exposing ``task`` (optional when ``task`` is given).
    :param task: the task, when there is no env.
    :param horizon: prediction horizon H of the tracking QP (the authors' ``Hor_Leng`` = 15).
    :param tracking_weight: weight of the target tracking term; ``None`` = the agent-point mass ``1/(N T)``
        (the transported mass, as in D2OC's local W2 cost).
    :param Q: state weight of the QP (default: the authors' ``param07`` for the quadrotor, small weights
        on velocities and angles; zero otherwise).
    :param R: input weight (default identity, ``param07``).
    :param u_max: input clip per component (``None``: none).
    :param seed: random seed (the controllers are deterministic; kept for the interface).
    :param verbose: 0 silent, 1 prints episode summaries in ``learn``.
    :param device: ignored (numpy/numba), accepted for the SB3 interface.
    """

    #: constructor arguments saved by :meth:`save` (subclasses extend)
    _params = ("horizon", "tracking_weight", "Q", "R", "u_max")

    def __init__(self, env=None, task=None, horizon: int = 15, tracking_weight: float | None = None, Q=None, R=None,
                 u_max: float | None = None, seed: int | None = None, verbose: int = 0, device: str = "auto"):
        if env is None and task is None:
            raise ValueError("give env (exposing .task) or task")
        if not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        if tracking_weight is not None and not tracking_weight > 0:
            raise ValueError(f"tracking_weight must be positive or None, got {tracking_weight!r}")
        if u_max is not None and not u_max > 0:
            raise ValueError(f"u_max must be positive or None, got {u_max!r}")
        self.horizon, self.tracking_weight, self.u_max = int(horizon), tracking_weight, u_max
        self.Q = None if Q is None else np.asarray(Q, dtype=np.float64).tolist()
        self.R = None if R is None else np.asarray(R, dtype=np.float64).tolist()
        self.seed, self.verbose, self.device = seed, verbose, device
        self.num_timesteps = 0
        self._logger = None
        self.env = None
        self.task = None
        self._memory: dict[int, dict] = {}
        if env is not None:
            self.set_env(env)
        else:
            self._set_task(task)

    # ------------------------------------------------------------------------------------------------
    # task and gains

    def _set_task(self, task) -> None:
        dyn = task.dynamics
        if task.n_agents < 1:
            raise ValueError(f"task.n_agents must be >= 1, got {task.n_agents}")
        self.task = task
        w = self.tracking_weight if self.tracking_weight is not None else task.agent_mass
        Q = self.Q
        if Q is None and getattr(dyn, "name", "") == "quadrotor":
            Q = np.diag([0, 1e-5, 1e-5, 1e-5, 0, 1e-5, 1e-5, 1e-5])  # param07 of the authors' param.mat
        self.K_x, self.K_g = tracking_gains(dyn.A, dyn.B, dyn.C, self.horizon, w, Q, self.R)
        self._pos_idx = [int(np.flatnonzero(row)[0]) for row in np.asarray(dyn.C)]
        self._memory = {}

    def set_env(self, env) -> None:
        """Attach an env and read its task.

        A plain Gymnasium env with a vector reward is scalarised (:func:`morl.agent_env.agent_env`: its
        declared ``reward_weights``, else unit weights; the vector stays in ``info["vector_reward"]``) and put
        in a ``DummyVecEnv``, as the experiment layer does.
        """
        from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

        from morl.agent_env import agent_env

        if not isinstance(env, VecEnv):
            # a controller: the reward is not learnt; no MOEpisodeStatistics (learn reads a scalar info["episode"])
            env = agent_env(env, type(self).__name__, weights_needed=False, episode_statistics=False)
            env = DummyVecEnv([lambda e=env: e])
        self.env = env
        self._set_task(env.get_attr("task")[0])

    def get_env(self):
        return self.env

    @property
    def logger(self):
        if self._logger is None:
            from stable_baselines3.common.logger import configure

            self._logger = configure(None, [""])
        return self._logger

    def set_logger(self, logger) -> None:
        self._logger = logger

    def set_random_seed(self, seed: int | None = None) -> None:
        self.seed = seed

    # ------------------------------------------------------------------------------------------------
    # control

    def positions(self, states: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(states[:, self._pos_idx])

    def control(self, states: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``u_0 = K_x x + K_g x_g`` for all agents (Stage A-2), clipped to ``u_max``."""
        u = states @ self.K_x.T + targets @ self.K_g.T
        if self.u_max is not None:
            u = np.clip(u, -self.u_max, self.u_max)
        return u

    def _reset_memory(self, k: int, states: np.ndarray) -> dict:
        raise NotImplementedError

    def _targets(self, mem: dict, states: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """Inputs for the observed agent states.

        :param observation: ``(N, n_x)`` or a batch ``(n_envs, N, n_x)``.
        :param state: unused (the controller's memory is kept internally, per batch index).
        :param episode_start: ``(n_envs,)`` booleans; a new episode resets that index's memory (the first
            call for an index always does).
        :param deterministic: unused (the controllers are deterministic).
        :return: ``(actions, None)`` with the shape of ``observation`` but ``m`` inputs per agent.
        """
        obs = np.asarray(observation, dtype=np.float64)
        single = obs.ndim == 2
        batch = obs[None] if single else obs
        n, nx = self.task.n_agents, self.K_x.shape[1]
        if batch.ndim != 3 or batch.shape[1:] != (n, nx):
            raise ValueError(f"observation must have shape ({n}, {nx}) or (n_envs, {n}, {nx}), got {obs.shape}")
        starts = np.zeros(len(batch), bool) if episode_start is None else np.asarray(episode_start, bool).reshape(-1)
        actions = np.empty((len(batch), n, self.K_x.shape[0]))
        for k, states in enumerate(batch):
            if k not in self._memory or (k < len(starts) and starts[k]):
                self._memory[k] = self._reset_memory(k, states)
            targets = self._targets(self._memory[k], states)
            actions[k] = self.control(states, targets)
            self._memory[k]["t"] += 1
        return (actions[0] if single else actions), None

    # ------------------------------------------------------------------------------------------------
    # SB3-style run loop

    def learn(self, total_timesteps: int, callback=None, log_interval: int | None = None, tb_log_name: str = "",
              reset_num_timesteps: bool = True, progress_bar: bool = False):
        """Run the controller for ``total_timesteps`` env steps (nothing is learned) and log each episode.

        Logs ``coverage/W2`` (when the env reports ``info["W2"]``), ``coverage/final_W2_mean`` and the
        per-objective returns the env wrappers report, through the SB3 logger and callbacks.
        """
        from stable_baselines3.common.callbacks import BaseCallback, CallbackList

        if self.env is None:
            raise ValueError("learn needs an env (pass env= or call set_env)")
        if reset_num_timesteps:
            self.num_timesteps = 0
        if isinstance(callback, (list, tuple)):
            callback = CallbackList(list(callback))
        if callback is not None and not isinstance(callback, BaseCallback):
            raise ValueError(f"callback must be an SB3 BaseCallback or a list of them, got {type(callback).__name__}")
        if callback is not None:
            callback.init_callback(self)
            callback.on_training_start(locals(), globals())
        venv = self.env
        obs = venv.reset()
        starts = np.ones(venv.num_envs, bool)
        t0, episodes, w2s = time.time(), 0, []
        goal = self.num_timesteps + total_timesteps
        while self.num_timesteps < goal:
            actions, _ = self.predict(obs, episode_start=starts)
            obs, rewards, dones, infos = venv.step(actions)
            starts = dones
            self.num_timesteps += venv.num_envs
            if callback is not None:
                callback.update_locals(locals())
                if not callback.on_step():
                    break
            for done, info in zip(dones, infos):
                if not done:
                    continue
                episodes += 1
                if "W2" in info:
                    w2s.append(float(info["W2"]))
                    self.logger.record("coverage/W2", w2s[-1])
                    self.logger.record("coverage/final_W2_mean", float(np.mean(w2s[-100:])))
                ep = info.get("episode")
                if ep is not None:
                    self.logger.record("rollout/ep_rew_mean", float(ep["r"]))
                    self.logger.record("rollout/ep_len_mean", float(ep["l"]))
                self.logger.record("time/episodes", episodes)
                self.logger.record("time/fps", int(self.num_timesteps / max(time.time() - t0, 1e-9)))
                self.logger.dump(step=self.num_timesteps)
                if self.verbose:
                    print(f"episode {episodes}: W2 {w2s[-1] if w2s else float('nan'):.3f}")
        if callback is not None:
            callback.on_training_end()
        return self

    # ------------------------------------------------------------------------------------------------
    # persistence

    def get_parameters(self) -> dict:
        out = {name: getattr(self, name) for name in self._params}
        out["num_timesteps"] = int(self.num_timesteps)
        return out

    def save(self, path) -> None:
        """A zip with ``params.json`` (constructor arguments) and ``gains.npz`` (``K_x``, ``K_g``)."""
        buf = io.BytesIO()
        np.savez(buf, K_x=self.K_x, K_g=self.K_g)
        if isinstance(path, (str, Path)):
            path = Path(path)
            if path.suffix != ".zip":
                path = path.with_suffix(".zip")
            path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("params.json", json.dumps({"class": type(self).__name__, **self.get_parameters()}))
            zf.writestr("gains.npz", buf.getvalue())

    @classmethod
    def load(cls, path, env=None, device: str = "auto", task=None, **kwargs):
        """Rebuild a controller from :meth:`save`'s zip on ``env`` (or ``task``); ``kwargs`` override parameters."""
        if isinstance(path, (str, Path)) and not Path(path).exists() and Path(str(path) + ".zip").exists():
            path = str(path) + ".zip"
        with zipfile.ZipFile(path) as zf:
            params = json.loads(zf.read("params.json"))
        saved_cls = params.pop("class", cls.__name__)
        if saved_cls != cls.__name__:
            raise ValueError(f"{path} holds a {saved_cls}, not a {cls.__name__}")
        steps = params.pop("num_timesteps", 0)
        params.update(kwargs)
        model = cls(env=env, task=task, device=device, **params)
        model.num_timesteps = steps
        return model

    def __getstate__(self):  # the env and logger are not part of a pickled controller
        state = dict(self.__dict__)
        state["env"], state["_logger"] = None, None
        return state
