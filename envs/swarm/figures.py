"""Swarm figures (matplotlib Agg): trajectories over the density map and W2 versus time.

:func:`coverage_figure` draws one or several methods side by side; :func:`w2_curves` computes W2 of the
time-averaged measure at a few steps of a trajectory. The domain figure ``swarm_coverage`` is
registered with :mod:`morl.plots`, so ``morl plot`` / ``morl eval`` on a ``morl/Swarm-*`` run replays one
evaluation episode of the saved controller (the replay the experiment layer hands to the figure) and draws it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from morl.envs.swarm.metrics import coverage_w2
from morl.plots import register_domain_figure

__all__ = ["w2_curves", "coverage_figure"]


def w2_curves(trajectory: np.ndarray, density, steps=None, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """W2 of the time-averaged measure of ``trajectory`` ``(T + 1, N, 2)`` (row 0 = initial) at ``steps``."""
    T = len(trajectory) - 1
    if steps is None:
        steps = np.unique(np.linspace(1, T, 10).round().astype(int))
    vals = [coverage_w2(trajectory[1:t + 1].reshape(-1, 2), density.samples, density.weights, method=method)
            for t in steps]
    return np.asarray(steps), np.asarray(vals)


def coverage_figure(density, trajectories: dict, curves: dict | None = None, path=None, title: str | None = None):
    """One map panel per method (samples in grey, one coloured trajectory per agent) and a W2-vs-time panel.

    :param density: a :class:`~morl.envs.swarm.density.ReferenceDensity`.
    :param trajectories: ``{method: (T + 1, N, 2) array}``.
    :param curves: ``{method: (steps, W2) or list of them}``; several curves per method are drawn as mean and band.
    :param path: PNG file to write (``None``: return the figure).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(trajectories) + (1 if curves else 0)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    axes = axes[0]
    lo, hi = density.domain
    for ax, (name, traj) in zip(axes, trajectories.items()):
        ax.scatter(density.samples[:, 0], density.samples[:, 1], s=2.0 * density.weights * len(density.samples),
                   c="0.7", lw=0)  # marker area proportional to the sample weight
        for i in range(traj.shape[1]):
            line, = ax.plot(traj[:, i, 0], traj[:, i, 1], lw=0.9)
            ax.plot(traj[0, i, 0], traj[0, i, 1], "o", ms=3, color=line.get_color())
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    if curves:
        ax = axes[-1]
        for name, c in curves.items():
            runs = c if isinstance(c, list) else [c]
            steps = runs[0][0]
            vals = np.array([r[1] for r in runs])
            line, = ax.plot(steps, vals.mean(axis=0), label=name)
            if len(runs) > 1:
                ax.fill_between(steps, vals.min(axis=0), vals.max(axis=0), color=line.get_color(), alpha=0.2)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("W2(time-averaged agents, reference)", fontsize=8)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is None:
        return fig
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@register_domain_figure("swarm_coverage", env_pattern="morl/Swarm-*", replay=True)
def _run_figure(run_dir, eval_data: dict, out_dir, replay) -> Path:
    """Replay the first evaluation episode of a run's saved controller and draw it."""
    seed = eval_data["episodes"][0]["seed"]
    episode = replay(seed)
    env = episode["env"]
    pos_idx = list(env.task.dynamics.position_indices())
    traj = np.asarray([obs[:, pos_idx] for obs in episode["observations"]])
    name = eval_data["agent"]
    curve = w2_curves(traj, env.task.density)
    return coverage_figure(env.task.density, {name: traj}, {name: curve}, Path(out_dir) / "swarm_coverage.png",
                           title=f"{Path(run_dir).name}: final W2 {curve[1][-1]:.2f} (seed {seed})")
