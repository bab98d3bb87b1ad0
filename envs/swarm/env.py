"""``morl/Swarm-v0``: N linear agents covering a reference density (the D2OC task, arXiv 2511.12756).

Observation: the ``(N, n_x)`` array of agent states (float64). Action: the ``(N, m)`` array of inputs.
The episode lasts ``max_steps`` steps (the agents' operation time, the authors' ``bat_life``) and then
terminates. The task (dynamics, reference samples and weights, horizon, communication radius) is
available as ``env.task`` (a :class:`SwarmTask`), which controllers read.

Vector reward, larger is better (the project's convention), objectives ``("coverage", "effort")``:

- ``coverage``: minus the greedy transport cost of this step's agent points (each takes mass
  ``1/(N T)`` from the nearest remaining reference mass); the episode sum is minus the cost of a
  feasible plan between the final time-averaged measure and the reference, an upper bound of ``W2^2``;
- ``effort``: ``-dt * sum_i ||u_i||^2``.

``info`` holds ``"W2"`` (POT, see :mod:`morl.envs.swarm.metrics`) every ``w2_every`` steps and at the end
of the episode (``w2_every=0``: only at the end; ``None``: never). ``env.adjacency()`` is the
communication graph by radius; ``env.trajectory()`` the positions so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from morl.envs.swarm.density import ReferenceDensity, make_density
from morl.envs.swarm.dynamics import LinearDynamics, make_dynamics
from morl.envs.swarm.metrics import coverage_w2, greedy_transport_cost

__all__ = ["SwarmTask", "SwarmEnv"]


@dataclass(frozen=True)
class SwarmTask:
    """What a coverage controller needs to know about the task.

    :param dynamics: the agents' (shared) linear model.
    :param density: the reference density (weighted samples).
    :param n_agents: number of agents N.
    :param max_steps: operation time T in steps; every agent point has mass ``1 / (N T)``.
    :param comm_radius: communication radius (``inf``: everyone talks to everyone).
    """

    dynamics: LinearDynamics
    density: ReferenceDensity
    n_agents: int
    max_steps: int
    comm_radius: float = float("inf")

    @property
    def agent_mass(self) -> float:
        return 1.0 / (self.n_agents * self.max_steps)


class SwarmEnv(gym.Env):
    """Multi-agent density coverage with linear agents.

    :param n_agents: number of agents N (>= 1).
    :param dynamics: ``"single_integrator"``, ``"double_integrator"``, ``"quadrotor"``, a mapping with
        ``A, B, C`` (and optionally ``dt``) or a :class:`LinearDynamics`.
    :param dt: sampling time used for the built-in models.
    :param density: ``"gmm"``, ``"random_gmm"``, ``"image:<name>"``, a mapping or a :class:`ReferenceDensity`.
    :param n_samples: number of reference samples M drawn from the density.
    :param domain: ``(lo, hi)`` of the square map in metres.
    :param max_steps: episode length T (operation time).
    :param comm_radius: communication radius (``None`` or ``inf``: complete graph).
    :param density_seed: seed of the reference samples (the map is fixed for an env instance).
    :param u_max: input bound per component (``None``: unbounded, as the authors' ``param07``); inputs are clipped.
    :param w2_every: steps between W2 evaluations in ``info`` (0: only at the end; ``None``: never).
    :param w2_method: ``"auto"``, ``"exact"`` or ``"sliced"`` (see :func:`~morl.envs.swarm.metrics.coverage_w2`).
    :param render_mode: ``"rgb_array"`` or ``None``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    objectives = ("coverage", "effort")

    def __init__(self, n_agents: int = 6, dynamics="quadrotor", dt: float = 0.1, density="gmm", n_samples: int = 2000,
                 domain=(0.0, 100.0), max_steps: int = 150, comm_radius: float | None = 25.0, density_seed: int = 0,
                 u_max: float | None = None, w2_every: int | None = 0, w2_method: str = "auto", render_mode=None):
        if not isinstance(n_agents, (int, np.integer)) or n_agents < 1:
            raise ValueError(f"n_agents must be an integer >= 1, got {n_agents!r}")
        if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        if comm_radius is None:
            comm_radius = float("inf")
        if not comm_radius > 0:
            raise ValueError(f"comm_radius must be positive, got {comm_radius!r}")
        if u_max is not None and not u_max > 0:
            raise ValueError(f"u_max must be positive or None, got {u_max!r}")
        if w2_every is not None and w2_every < 0:
            raise ValueError(f"w2_every must be >= 0 or None, got {w2_every!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        dyn = make_dynamics(dynamics, dt)
        dens = make_density(density, int(n_samples), tuple(domain), density_seed)
        self.task = SwarmTask(dyn, dens, int(n_agents), int(max_steps), float(comm_radius))
        self.u_max = None if u_max is None else float(u_max)
        self.w2_every, self.w2_method, self.render_mode = w2_every, w2_method, render_mode
        n, m = dyn.n_states, dyn.n_inputs
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n_agents, n), dtype=np.float64)
        bound = np.inf if u_max is None else self.u_max
        self.action_space = spaces.Box(-bound, bound, shape=(n_agents, m), dtype=np.float64)
        self.reward_space = spaces.Box(-np.inf, 0.0, shape=(2,), dtype=np.float32)
        self._pos_idx = list(dyn.position_indices())
        self._x = np.zeros((n_agents, n))
        self._traj = np.zeros((max_steps + 1, n_agents, 2))
        self._remaining = np.array(dens.weights)
        self._t = 0

    # ------------------------------------------------------------------------------------------------

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        task = self.task
        lo, hi = task.density.domain
        pos = None if options is None else options.get("positions")
        if pos is None:
            pos = lo + (hi - lo) * self.np_random.random((task.n_agents, 2))
        pos = np.asarray(pos, dtype=np.float64)
        if pos.shape != (task.n_agents, 2):
            raise ValueError(f"options['positions'] must have shape ({task.n_agents}, 2), got {pos.shape}")
        self._x = task.dynamics.state_from_position(pos)
        self._traj[:] = 0.0
        self._traj[0] = pos
        self._remaining = np.array(task.density.weights)
        self._t = 0
        return self._x.copy(), {"t": 0}

    def step(self, action):
        task = self.task
        u = np.asarray(action, dtype=np.float64).reshape(task.n_agents, task.dynamics.n_inputs)
        if not np.all(np.isfinite(u)):
            raise ValueError("action has non-finite entries")
        if self.u_max is not None:
            u = np.clip(u, -self.u_max, self.u_max)
        dyn = task.dynamics
        self._x = self._x @ dyn.A.T + u @ dyn.B.T
        self._t += 1
        pos = self._x[:, self._pos_idx]
        self._traj[self._t] = pos
        cost = greedy_transport_cost(pos, task.agent_mass, task.density.samples, self._remaining)
        reward = np.array([-cost, -dyn.dt * float(np.sum(u * u))], dtype=np.float32)
        terminated = self._t >= task.max_steps
        info = {"t": self._t}
        every = self.w2_every
        if every is not None and (terminated or (every > 0 and self._t % every == 0)):
            info["W2"] = self.w2()
        return self._x.copy(), reward, terminated, False, info

    # ------------------------------------------------------------------------------------------------

    def trajectory(self) -> np.ndarray:
        """Positions ``(t + 1, N, 2)`` from the reset up to the current step."""
        return self._traj[: self._t + 1].copy()

    def w2(self, method: str | None = None) -> float:
        """W2 between the time-averaged agent measure (steps ``1..t``) and the reference."""
        if self._t == 0:
            pts = self._traj[:1]
        else:
            pts = self._traj[1: self._t + 1]
        d = self.task.density
        return coverage_w2(pts.reshape(-1, 2), d.samples, d.weights, method=method or self.w2_method)

    def adjacency(self, positions=None) -> np.ndarray:
        """``(N, N)`` boolean communication graph: distance below ``comm_radius`` (no self-loops)."""
        pos = self._x[:, self._pos_idx] if positions is None else np.asarray(positions, float)
        d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
        adj = d < self.task.comm_radius
        np.fill_diagonal(adj, False)
        return adj

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
        d = self.task.density
        ax.scatter(d.samples[:, 0], d.samples[:, 1], s=1, c="0.7")
        traj = self.trajectory()
        for i in range(traj.shape[1]):
            ax.plot(traj[:, i, 0], traj[:, i, 1], lw=1)
        ax.set_xlim(*d.domain)
        ax.set_ylim(*d.domain)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return img
