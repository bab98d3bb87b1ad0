"""Python side of the batched simulator: the kernels' parameter vector and the :class:`BatchSim` holder.

:func:`default_params` turns keyword arguments into the float64 vector the kernels of
:mod:`morl.envs.driving.sim` read (indices ``P_*`` of :mod:`morl.envs.driving.traffic`); :class:`BatchSim` owns the
per-env state arrays, seeds them, and calls :func:`~morl.envs.driving.sim.batch_reset` /
:func:`~morl.envs.driving.sim.batch_step` (optionally on several threads).
"""

from __future__ import annotations

import os
import threading
import weakref

import numpy as np

from morl.envs.driving import traffic as tr
from morl.envs.driving.sim import (N_EGO_FIELDS, N_INFO, batch_reset, batch_step, batch_step_shared, obs_size,
                              seed_envs)
from morl.envs.driving.traffic import (N_PARAMS, N_TRAFFIC_FIELDS, P_ACC_MAX, P_BACK, P_COMFORT_HOLD, P_CONTINUOUS,
                                  P_DT, P_EGO_ACTIVE, P_EGO_SPEED_OBS, P_FRONT, P_GRID_STEP, P_INIT_SPEED_F, P_K,
                                  P_LANE_W, P_LENGTH, P_MAX_STEER, P_MAX_STEPS, P_N_LANES, P_RECYCLE, P_SHOULDER,
                                  P_SPEED_STEP, P_STEP_REF, P_TTC_HOLD, P_V_MAX, P_VEH_LEN, P_VEH_WID, P_WHEELBASE)

__all__ = ["BatchSim", "default_params"]


def default_params(road, *, dt=0.2, v_max=40.0, acc_max=5.0, max_steer=0.2, wheelbase=2.8, vehicle_length=5.0,
                   vehicle_width=2.0, idm_a=2.0, idm_b=3.0, idm_s0=3.0, idm_time_headway=1.5, idm_delta=4.0,
                   mobil_politeness=0.3, mobil_threshold=0.3, mobil_b_safe=4.0, mobil_keep_right=0.1,
                   mobil_period=5, lane_change_time=3.0, back_range=60.0, front_range=250.0,
                   traffic_speed=(0.7, 0.95), max_steps=300, v_ref=None, carl_ttc_hold_s=50.0,
                   carl_comfort_hold_s=50.0, speed_step=5.0, ego_active=True, k_vehicles=6, continuous=False,
                   spawn_gap=18.0, decel_max=9.0, init_speed=0.8, recycle_traffic=True) -> np.ndarray:
    """Parameter vector of the kernels (float64, indices ``P_*``); the keyword defaults are the simulator's.

    :param road: the :class:`~morl.envs.driving.road.Road`.
    :param dt: step length (s).
    :param v_max: top speed of the ego (m/s), also the speed normaliser of observations.
    :param acc_max: ego acceleration at continuous action 1 (m/s^2); bound of the speed controller.
    :param max_steer: ego steering angle at continuous action 1 (rad).
    :param wheelbase: ego wheelbase (m).
    :param vehicle_length: length of every vehicle's box (m).
    :param vehicle_width: width of every vehicle's box (m).
    :param idm_a: IDM maximum acceleration (m/s^2).
    :param idm_b: IDM comfortable deceleration (m/s^2).
    :param idm_s0: IDM jam distance (m, bumper to bumper).
    :param idm_time_headway: IDM time headway (s).
    :param idm_delta: IDM acceleration exponent, a whole number (the kernels take an integer power).
    :param mobil_politeness: MOBIL politeness factor ``p``.
    :param mobil_threshold: MOBIL switching threshold (m/s^2).
    :param mobil_b_safe: MOBIL safe deceleration bound for the new follower (m/s^2).
    :param mobil_keep_right: MOBIL bias towards the right lane (m/s^2).
    :param mobil_period: steps between a vehicle's lane-change decisions.
    :param lane_change_time: time a traffic lane change takes (s).
    :param back_range: traffic further behind the ego than this (m) is respawned ahead.
    :param front_range: traffic is spawned up to this far ahead of the ego (m).
    :param traffic_speed: range of the traffic's desired speed as a fraction of the speed limit.
    :param max_steps: steps before truncation.
    :param v_ref: speed (m/s) at which ``progress`` is 1 per step; default: the road's highest limit.
    :param carl_ttc_hold_s: how long (s) CaRL's TTC factor stays 0.5 after a violation (CaRL: 500 ticks = 50 s).
    :param carl_comfort_hold_s: how long (s) a comfort violation counts in CaRL's comfort factor.
    :param speed_step: target-speed change of the FASTER / SLOWER meta-actions (m/s).
    :param ego_active: whether the ego takes part (False: traffic only, the view moves at constant speed).
    :param k_vehicles: vehicles in the observation.
    :param continuous: continuous ``(accel, steer)`` actions instead of meta-actions.
    :param spawn_gap: minimum centre distance (m) between vehicles spawned in one lane.
    :param decel_max: strongest traffic deceleration (m/s^2).
    :param init_speed: ego's initial speed as a fraction of the speed limit.
    :param recycle_traffic: respawn traffic that leaves the window around the ego.
    """
    lo, hi = traffic_speed
    if not (0 < lo <= hi):
        raise ValueError(f"traffic_speed must be (lo, hi) with 0 < lo <= hi, got {traffic_speed!r}")
    for name, value in (("dt", dt), ("v_max", v_max), ("acc_max", acc_max), ("max_steer", max_steer),
                        ("wheelbase", wheelbase), ("vehicle_length", vehicle_length),
                        ("vehicle_width", vehicle_width), ("lane_change_time", lane_change_time),
                        ("speed_step", speed_step)):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps!r}")
    if int(k_vehicles) < 0:
        raise ValueError(f"k_vehicles must be >= 0, got {k_vehicles!r}")
    if not (np.isfinite(idm_delta) and idm_delta == int(idm_delta) and 1 <= idm_delta <= 16):
        raise ValueError(f"idm_delta must be a whole number in [1, 16], got {idm_delta!r}")
    if int(mobil_period) < 1:
        raise ValueError(f"mobil_period must be >= 1, got {mobil_period!r}")
    v_ref = float(np.max(road.speed_limit)) if v_ref is None else float(v_ref)
    P = np.zeros(N_PARAMS, dtype=np.float64)
    P[P_DT] = dt
    P[P_LANE_W] = road.lane_width
    P[P_N_LANES] = road.n_lanes
    P[P_LENGTH] = road.length
    P[P_GRID_STEP] = road.grid_step
    P[P_SHOULDER] = road.shoulder
    P[P_V_MAX] = v_max
    P[P_ACC_MAX] = acc_max
    P[P_MAX_STEER] = max_steer
    P[P_WHEELBASE] = wheelbase
    P[P_VEH_LEN] = vehicle_length
    P[P_VEH_WID] = vehicle_width
    P[tr.P_IDM_A] = idm_a
    P[tr.P_IDM_B] = idm_b
    P[tr.P_IDM_S0] = idm_s0
    P[tr.P_IDM_T] = idm_time_headway
    P[tr.P_IDM_DELTA] = idm_delta
    P[tr.P_MOBIL_P] = mobil_politeness
    P[tr.P_MOBIL_TH] = mobil_threshold
    P[tr.P_MOBIL_BSAFE] = mobil_b_safe
    P[tr.P_MOBIL_BIAS] = mobil_keep_right
    P[tr.P_MOBIL_PERIOD] = int(mobil_period)
    P[tr.P_LC_TIME] = lane_change_time
    P[P_BACK] = back_range
    P[P_FRONT] = front_range
    P[tr.P_TF_LO] = lo
    P[tr.P_TF_HI] = hi
    P[P_MAX_STEPS] = int(max_steps)
    P[P_STEP_REF] = v_ref * dt
    P[P_TTC_HOLD] = carl_ttc_hold_s / dt
    P[P_COMFORT_HOLD] = carl_comfort_hold_s / dt
    P[P_SPEED_STEP] = speed_step
    P[P_EGO_ACTIVE] = 1.0 if ego_active else 0.0
    P[P_K] = int(k_vehicles)
    P[P_CONTINUOUS] = 1.0 if continuous else 0.0
    P[tr.P_SPAWN_GAP] = spawn_gap
    P[tr.P_DECEL_MAX] = decel_max
    P[P_INIT_SPEED_F] = init_speed
    P[P_RECYCLE] = 1.0 if recycle_traffic else 0.0
    P[P_EGO_SPEED_OBS] = v_max
    return P


class BatchSim:
    """Plain-data holder of a batch of ``n_envs`` simulations and the kernels' arguments.

    :param road: the road shared by the batch.
    :param n_envs: number of environments ``E``.
    :param n_vehicles: traffic vehicles per env ``V``.
    :param scales: reward scaling (:func:`morl.envs.driving.objectives.make_scales`).
    :param params: kernel parameters (:func:`default_params`).
    :param parallel: step the batch on ``n_threads`` threads, the calling one and ``n_threads - 1`` workers,
        which claim chunks of envs from a shared counter (:func:`~morl.envs.driving.sim.batch_step_shared`; the
        kernel releases the GIL); the result is the serial step's, bit for bit. (Not numba's ``prange``: its
        OpenMP layer measured 10x slower than serial with other jobs busy on the cores, and it is process-wide.)
    :param n_threads: threads for ``parallel`` (default: the CPU count).
    """

    def __init__(self, road, n_envs: int, n_vehicles: int, scales: np.ndarray, params: np.ndarray,
                 parallel: bool = False, n_threads: int | None = None):
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
        if isinstance(n_vehicles, bool) or not isinstance(n_vehicles, (int, np.integer)) or n_vehicles < 0:
            raise ValueError(f"n_vehicles must be an int >= 0, got {n_vehicles!r}")
        self.road = road
        self.n_envs = int(n_envs)
        self.n_vehicles = int(n_vehicles)
        self.scales = np.ascontiguousarray(scales, dtype=np.float64)
        self.P = np.ascontiguousarray(params, dtype=np.float64)
        self.continuous = bool(self.P[P_CONTINUOUS] > 0.5)
        self.parallel = bool(parallel)
        self.n_threads = max(1, min(int(n_threads or os.cpu_count() or 1), int(n_envs)))
        self._pool = None
        self._finalizer = self._counter = self._state_args = None
        self._chunk = 1
        self._generation = 0
        E, V = self.n_envs, self.n_vehicles
        self.ego = np.zeros((E, N_EGO_FIELDS))
        self.traf = np.zeros((E, N_TRAFFIC_FIELDS, V))
        self.order = np.zeros((E, V), dtype=np.int64)
        self.rng = np.zeros(E, dtype=np.uint64)
        self.obs_dim = obs_size(int(self.P[P_K]))
        self.obs = np.zeros((E, self.obs_dim), dtype=np.float32)
        self.rew = np.zeros((E, 4), dtype=np.float32)
        self.info = np.zeros((E, N_INFO), dtype=np.float32)
        self.terminated = np.zeros(E, dtype=bool)
        self.truncated = np.zeros(E, dtype=bool)
        self.terminal_obs = np.zeros((E, self.obs_dim), dtype=np.float32)
        self._road_args = (np.ascontiguousarray(road.curvature, dtype=np.float64),
                           np.ascontiguousarray(road.speed_limit, dtype=np.float64),
                           np.ascontiguousarray(road.lane_start, dtype=np.float64),
                           np.ascontiguousarray(road.lane_end, dtype=np.float64))
        self._no_d = np.zeros(0, dtype=np.int64)
        self._no_c = np.zeros((0, 2), dtype=np.float64)

    def seed(self, seeds) -> None:
        """Seed the envs' RNGs from ``(E,)`` integer seeds."""
        seeds = np.asarray(seeds, dtype=np.int64).reshape(self.n_envs)
        seed_envs(self.rng, seeds.astype(np.uint64))

    def reset(self, mask=None) -> np.ndarray:
        """Reset the envs in ``mask`` (all by default); returns the observation array (a view)."""
        mask = np.ones(self.n_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        batch_reset(mask, self.ego, self.traf, self.order, self.rng, self.P, *self._road_args, self.scales, self.obs)
        return self.obs

    def step(self, actions, auto_reset: bool = False):
        """One kernel call for the whole batch. ``actions``: ``(E,)`` ints or ``(E, 2)`` floats (already
        validated by the caller). Results are in ``obs``, ``rew``, ``info``, ``terminated``, ``truncated``
        and ``terminal_obs`` (overwritten at every step)."""
        if self.continuous:
            a_d, a_c = self._no_d, actions
        else:
            a_d, a_c = actions, self._no_c
        if not self.parallel or self.n_threads == 1:
            batch_step(a_d, a_c, self.ego, self.traf, self.order, self.rng, self.P, *self._road_args, self.scales,
                       self.obs, self.rew, self.info, self.terminated, self.truncated, self.terminal_obs, auto_reset)
            return
        if self._pool is None or self._generation != _fork_generation[0]:
            self._start_pool()
        # every thread, this one included, claims chunks of envs from a shared counter until none are left
        # (the kernel releases the GIL): no thread waits for a slower part
        self._counter[0] = 0
        args = (self._counter, self._chunk, a_d, a_c, *self._state_args, auto_reset)
        for w in self._pool:
            w.submit(batch_step_shared, args)
        try:
            batch_step_shared(*args)
        finally:
            errors = [w.wait() for w in self._pool]
        for error in errors:
            if error is not None:
                raise error

    def _start_pool(self) -> None:
        self.close()  # in a forked child: the parent's workers do not exist here (joining them returns at once)
        n = self.n_threads
        self._generation = _fork_generation[0]
        self._pool = [_Worker() for _ in range(n - 1)]
        self._finalizer = weakref.finalize(self, _stop_workers, self._pool)
        self._counter = np.zeros(1, dtype=np.int64)
        # small chunks balance the threads; a chunk still costs only one atomic add
        self._chunk = max(1, min(8, self.n_envs // (4 * n)))
        self._state_args = (self.ego, self.traf, self.order, self.rng, self.P, *self._road_args, self.scales,
                            self.obs, self.rew, self.info, self.terminated, self.truncated, self.terminal_obs)

    def close(self) -> None:
        """Stop the worker threads of ``parallel`` stepping (a later parallel step starts new ones)."""
        if self._pool is not None:
            self._finalizer()
            self._pool = self._finalizer = None

    def __getstate__(self):
        state = dict(self.__dict__)
        # threads do not pickle, and the argument tuple would unpickle as copies of the arrays: both are
        # rebuilt on the next parallel step
        state["_pool"] = state["_finalizer"] = state["_counter"] = state["_state_args"] = None
        return state


#: bumped in a child process after ``fork``: threads do not survive a fork, so a sim whose pool started in an
#: older generation starts a new one
_fork_generation = [0]


def _after_fork_in_child() -> None:
    _fork_generation[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Worker:
    """One thread that runs the jobs handed to it one at a time. Two locks hand the job over and back: a
    step pays two thread wake-ups, against a ``ThreadPoolExecutor``'s futures, queue and conditions."""

    def __init__(self):
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._job = None
        self._error = None
        self._thread = threading.Thread(target=self._run, name="driving-batch-worker", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            self._go.acquire()
            job = self._job
            self._job = None
            if job is None:
                return
            try:
                job[0](*job[1])
            except BaseException as exc:  # handed to the caller by wait()
                self._error = exc
            self._done.release()

    def submit(self, fn, args) -> None:
        self._job = (fn, args)
        self._go.release()

    def wait(self):
        """Block until the job submitted last is done; returns the exception it raised, or None."""
        self._done.acquire()
        error, self._error = self._error, None
        return error

    def stop(self) -> None:
        self._job = None
        self._go.release()
        self._thread.join()


def _stop_workers(workers) -> None:
    for w in workers:
        w.stop()
