"""Continuous-control coverage: reward = newly covered area (the paper's Ant exploration task).

:class:`MarginalCoverageReward` turns any env whose agent has a planar position into a submodular
coverage task: a boolean mask over ``[-extent, extent]^2`` in ``cell`` x ``cell`` squares; each step the
``patch`` x ``patch`` square around the agent is covered and the reward is the area newly covered,
the marginal gain ``F(s_{t+1} | tau)`` of the coverage function ``F(tau) = area(U patches)``.
``info["F"]`` is the covered area, ``info["modular_reward"]`` the patch area ``F({s})`` (what a
modular reward would pay), ``info["vector_reward"]`` the gain. Leaving the square terminates, as in
the authors' Ant task. The observation is extended with a coarse ``k x k`` map of covered fractions
and ``t / horizon`` so that an actor-critic sees the history the marginal gain depends on.

:class:`PointRobotEnv` is a small MuJoCo point robot (``assets/coverage/point_robot.xml``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.utils import EzPickle

from morl.envs.coverage.maps import ASSETS_DIR

__all__ = ["MarginalCoverageReward", "PointRobotEnv", "make_point_coverage", "make_ant_coverage"]


def _mujoco_xy(env: gym.Env) -> np.ndarray:
    return np.asarray(env.unwrapped.data.qpos[:2], dtype=np.float64)


class MarginalCoverageReward(gym.Wrapper):
    """Replace the reward by the newly covered area around the agent's ``(x, y)``.

    :param env: the environment.
    :param extent: half side of the covered square (m).
    :param cell: side of a mask cell (m).
    :param patch: side of the square covered at each step (m).
    :param scale: reward multiplier.
    :param coarse: side ``k`` of the coarse coverage map appended to the observation (0: none).
    :param horizon: steps per episode, for the ``t / horizon`` feature (needed when ``coarse > 0``).
    :param xy_fn: ``fn(env) -> (x, y)``; default: the first two MuJoCo ``qpos`` entries.
    :param reward: ``"marginal"`` (newly covered area, SubRL) or ``"modular"`` (the patch area ``F({s})``
        every step, the additive baseline's reward); ``info`` carries both either way.
    """

    def __init__(self, env: gym.Env, extent: float = 10.0, cell: float = 0.4, patch: float = 2.0, scale: float = 1.0,
                 coarse: int = 8, horizon: int = 400, xy_fn=None, reward: str = "marginal"):
        super().__init__(env)
        if reward not in ("marginal", "modular"):
            raise ValueError(f"unknown reward {reward!r}; expected 'marginal' or 'modular'")
        self.reward_mode = reward
        if extent <= 0 or cell <= 0 or patch <= 0:
            raise ValueError(f"extent, cell and patch must be > 0, got {extent}, {cell}, {patch}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.extent, self.cell, self.scale = float(extent), float(cell), float(scale)
        self.n = int(round(2 * extent / cell))
        self.side = max(1, int(round(patch / cell)))
        if coarse < 0 or (coarse and self.n % coarse):
            raise ValueError(f"coarse={coarse} must divide the mask side {self.n}")
        self.coarse, self.horizon = int(coarse), int(horizon)
        self.xy_fn = xy_fn or _mujoco_xy
        self.mask = np.zeros((self.n, self.n), dtype=bool)
        self.t = 0
        self._f0 = 0.0
        self.objectives = ("coverage",)
        self.reward_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        if self.coarse:
            base = env.observation_space
            extra = self.coarse * self.coarse + 1
            self.observation_space = spaces.Box(
                np.concatenate([np.broadcast_to(base.low, base.shape).ravel(), np.zeros(extra)]).astype(np.float32),
                np.concatenate([np.broadcast_to(base.high, base.shape).ravel(), np.ones(extra)]).astype(np.float32))

    def _index(self, xy) -> tuple[int, int]:
        i, j = np.floor((np.asarray(xy) + self.extent) / self.cell).astype(int)
        return int(i), int(j)

    def _cover(self, xy) -> tuple[float, float]:
        """Cover the patch centred on ``xy``; return (newly covered area, patch area inside the square)."""
        i, j = self._index(xy)
        i0, j0 = i - self.side // 2, j - self.side // 2
        sub = self.mask[max(i0, 0):max(min(i0 + self.side, self.n), 0), max(j0, 0):max(min(j0 + self.side, self.n), 0)]
        area = self.cell * self.cell
        new = float((~sub).sum()) * area
        sub[:] = True
        return new, float(sub.size) * area

    def covered_area(self) -> float:
        return float(self.mask.sum()) * self.cell * self.cell

    def _outside(self, xy) -> bool:
        return bool(np.any(np.abs(xy) >= self.extent))

    def _obs(self, obs):
        if not self.coarse:
            return obs
        k = self.n // self.coarse
        frac = self.mask.reshape(self.coarse, k, self.coarse, k).mean(axis=(1, 3)).ravel()
        return np.concatenate([np.ravel(obs), frac, [self.t / self.horizon]]).astype(np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.mask[:] = False
        self.t = 0
        self._cover(self.xy_fn(self.env))
        info["F"] = info["F0"] = self._f0 = self.covered_area()
        return self._obs(obs), info

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        self.t += 1
        xy = self.xy_fn(self.env)
        gain, modular = (0.0, 0.0) if self._outside(xy) else self._cover(xy)
        terminated = bool(terminated or self._outside(xy))
        truncated = bool(truncated or self.t >= self.horizon)
        info.update(F=self.covered_area(), F0=self._f0, modular_reward=modular * self.scale,
                    vector_reward=np.array([gain * self.scale], np.float32))
        r = gain if self.reward_mode == "marginal" else modular
        return self._obs(obs), float(r * self.scale), terminated, truncated, info


class PointRobotEnv(MujocoEnv, EzPickle):
    """A force-driven MuJoCo point robot; observation ``[x, y, vx, vy]``, action ``[-1, 1]^2``, reward 0.

    :param frame_skip: physics steps per action (timestep 0.02 s).
    :param reset_noise_scale: uniform noise on the start position / velocity.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"]}

    def __init__(self, frame_skip: int = 5, reset_noise_scale: float = 0.1, **kwargs):
        EzPickle.__init__(self, frame_skip, reset_noise_scale, **kwargs)
        self._noise = reset_noise_scale
        obs_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)
        MujocoEnv.__init__(self, str(ASSETS_DIR / "point_robot.xml"), frame_skip, observation_space=obs_space,
                           **kwargs)
        self.metadata = {**self.metadata, "render_fps": int(np.round(1.0 / self.dt))}

    def _get_obs(self):
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)

    def step(self, action):
        self.do_simulation(np.clip(action, -1.0, 1.0), self.frame_skip)
        return self._get_obs(), 0.0, False, False, {}

    def reset_model(self):
        qpos = self.init_qpos + self.np_random.uniform(-self._noise, self._noise, size=self.model.nq)
        qvel = self.init_qvel + self.np_random.uniform(-self._noise, self._noise, size=self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()


def make_point_coverage(horizon: int = 200, extent: float = 10.0, cell: float = 0.5, patch: float = 2.0,
                        coarse: int = 8, reward: str = "marginal", **kwargs) -> gym.Env:
    """``morl/PointCoverage-v0``: the point robot covering a 20 x 20 m square, reward = new area (m^2)."""
    return MarginalCoverageReward(PointRobotEnv(**kwargs), extent=extent, cell=cell, patch=patch, coarse=coarse,
                                  horizon=horizon, reward=reward)


def make_ant_coverage(horizon: int = 400, reward: str = "marginal", **kwargs) -> gym.Env:
    """``morl/AntCoverage-v0``: the authors' Ant task (40 x 40 m, 0.4 m cells, 2 m patch, 400 steps)."""
    ant = gym.make("Ant-v5", exclude_current_positions_from_observation=False, disable_env_checker=True,
                   max_episode_steps=horizon, **kwargs)
    return MarginalCoverageReward(ant, extent=20.0, cell=0.4, patch=2.0, scale=0.1 / 0.16, coarse=10, horizon=horizon,
                                  reward=reward)
