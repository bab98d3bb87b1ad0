"""D2OC: density-driven optimal control (Seo & Lee, arXiv 2511.12756, IEEE T-SMC:S 2025).

Each agent point (an agent's position at one step) carries mass ``alpha = 1 / (N T)``; the reference
density is the weighted sample set ``sum_j beta_j delta_{q_j}``. Per step and agent, in the authors'
sequential agent order (their ``Main_D2OC.m``):

- **B** (weight update): the observed agent point takes mass ``alpha`` from its weight copy, nearest
  samples first (the exact OT of one capacity-limited point), and logs what it took;
- **C** (sharing): agents within ``comm_radius`` merge what they know: timestamped per-agent consumption
  logs (``sharing="log_gossip"``, the authors' code) or the element-wise minimum of their copies
  (``sharing="min_consensus"``, arXiv 2511.18579 / 2601.00548); ``sharing="centralised"`` keeps one shared
  copy (the reference the decentralised variants are compared with);
- **A-1** (local OT target): mass ``alpha`` is filled greedily from the copy ranked by ``d^2 / beta^2``
  (near and heavy first); the target ``x_g`` is the barycenter of the selected mass (Prop. 1 of
  arXiv 2511.18579: the local W2 cost is quadratic around it);
- **A-2** (control): ``u = K_x x + K_g x_g``, the first input of the finite-horizon tracking QP, from
  gains precomputed once (:mod:`morl.agents.d2oc.gains`, Thm. 1 of arXiv 2511.18579).

Stage B here runs at the start of the next decision, on the observed position, instead of right after
the agent's simulated move as in the MATLAB code; the sequence of operations per agent is the same
(B of step k precedes A-1 of step k + 1), and it stays correct when the env perturbs the motion.
An agent whose copy is empty tracks its own position (it stops), as the authors park such agents.

``predict_consumption=True`` (ours, off by default) lets stage A-1 discount what the agents out of contact
should have consumed since they were last heard of (:func:`morl.agents.d2oc.kernels._predicted_copy`).
"""

from __future__ import annotations

import numpy as np

from morl.agents.d2oc import kernels
from morl.agents.d2oc.base import CoverageController

__all__ = ["D2OC"]

_MODES = {"centralised": kernels.MODE_CENTRALISED, "log_gossip": kernels.MODE_LOG_GOSSIP,
          "min_consensus": kernels.MODE_MIN_CONSENSUS}


class D2OC(CoverageController):
    """Density-driven optimal control of N agents.

    :param env: a ``morl/Swarm-v0`` env (or VecEnv of them), or ``None`` with ``task``.
    :param task: the task when there is no env.
    :param sharing: ``"log_gossip"`` (default), ``"min_consensus"`` or ``"centralised"``.
    :param comm_radius: communication radius of stage C; ``None`` = the task's radius; ``inf`` = complete graph.
    :param predict_consumption: log gossip only (ours, not the paper's; default off): in stage A-1, agent i also
        discounts the mass each agent r should have taken since the last entry of r's log that i knows,
        ``(t - t_r) / (N T)``, nearest-first around where r was then. Out of contact, agents otherwise head for
        mass the others have already covered; the real log replaces the estimate at the next contact, and on a
        complete graph nothing is stale, so the result equals plain log gossip. Costs up to N - 1 extra fills
        per agent and step.
    :param known_starts: with ``predict_consumption`` (ours; default off): the agents know where the others
        start (a launch plan, shared before the mission), so an agent also discounts what the agents it has
        never met should have taken since the start, nearest-first around their starts. Without it an agent
        never met is not estimated at all.
    :param horizon: QP horizon H (the authors' ``Hor_Leng`` = 15).
    :param tracking_weight: target tracking weight (``None``: the agent-point mass ``1/(N T)``, as the local W2 cost).
    :param Q: state weight (default: the authors' ``param07`` for the quadrotor, else 0).
    :param R: input weight (default identity).
    :param u_max: input clip (default none).
    :param seed: kept for the interface (D2OC is deterministic).
    :param verbose: verbosity of ``learn``.
    :param device: ignored.
    """

    _params = CoverageController._params + ("sharing", "comm_radius", "predict_consumption", "known_starts")

    def __init__(self, env=None, task=None, sharing: str = "log_gossip", comm_radius: float | None = None,
                 horizon: int = 15, tracking_weight: float | None = None, Q=None, R=None, u_max: float | None = None,
                 seed: int | None = None, verbose: int = 0, device: str = "auto", predict_consumption: bool = False,
                 known_starts: bool = False):
        if sharing not in _MODES:
            raise ValueError(f"sharing must be one of {', '.join(_MODES)}, got {sharing!r}")
        if predict_consumption and sharing != "log_gossip":
            raise ValueError(f"predict_consumption needs sharing='log_gossip' (the logs it extrapolates), got {sharing!r}")
        if known_starts and not predict_consumption:
            raise ValueError("known_starts needs predict_consumption=True (it only seeds the prediction)")
        self.predict_consumption = bool(predict_consumption)
        self.known_starts = bool(known_starts)
        if comm_radius is not None and not comm_radius > 0:
            raise ValueError(f"comm_radius must be positive or None, got {comm_radius!r}")
        self.sharing = sharing
        self.comm_radius = None if comm_radius is None else float(comm_radius)
        super().__init__(env=env, task=task, horizon=horizon, tracking_weight=tracking_weight, Q=Q, R=R, u_max=u_max,
                         seed=seed, verbose=verbose, device=device)

    @property
    def effective_comm_radius(self) -> float:
        return float(self.task.comm_radius if self.comm_radius is None else self.comm_radius)

    def _reset_memory(self, k: int, states: np.ndarray) -> dict:
        task = self.task
        n, beta = task.n_agents, np.asarray(task.density.weights, dtype=np.float64)
        rows = 1 if self.sharing == "centralised" else n
        cap = 64
        return {
            "t": 0,
            "sx": np.ascontiguousarray(task.density.samples[:, 0], dtype=np.float64),
            "sy": np.ascontiguousarray(task.density.samples[:, 1], dtype=np.float64),
            "W": np.tile(beta, (rows, 1)),  # weight copies beta^i
            "known": np.zeros((n, n), dtype=np.int64),  # entries of agent r's log that agent i knows
            "ev": (np.zeros((n, cap), np.int64), np.zeros((n, cap), np.int64), np.zeros((n, cap))),
            "ev_n": np.zeros(n, dtype=np.int64),
            "consumed": np.zeros(n),
            "masses": np.zeros(n),
            "targets": np.zeros((n, 2)),
            "start_j": None,  # sample nearest each agent's start, set at t = 0 with known_starts
        }

    def _targets(self, mem: dict, states: np.ndarray) -> np.ndarray:
        r = self.effective_comm_radius
        comm_r2 = np.inf if not np.isfinite(r) else r * r
        pos = self.positions(states)
        if self.known_starts and mem["t"] == 0:
            d2 = ((pos[:, None, :] - self.task.density.samples[None, :, :2]) ** 2).sum(axis=-1)
            mem["start_j"] = np.ascontiguousarray(d2.argmin(axis=1), dtype=np.int64)
        mem["ev"] = kernels.d2oc_step(pos, mem["t"], mem["sx"], mem["sy"], mem["W"],
                                      _MODES[self.sharing], comm_r2, self.task.agent_mass, mem["known"], *mem["ev"],
                                      mem["ev_n"], mem["consumed"], mem["targets"], mem["masses"],
                                      self.predict_consumption, mem["start_j"])
        return mem["targets"]

    # helpers for analysis and tests -----------------------------------------------------------------

    def memory(self, k: int = 0) -> dict:
        """The controller's internal state of batch index ``k`` (weight copies ``W``, logs, ``consumed``)."""
        return self._memory[k]
