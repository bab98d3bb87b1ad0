"""Record an episode of the built-in driving simulator as a GIF or MP4 (imageio, frames drawn with numpy).

Policies: ``random``, ``idle`` (keep lane and speed) and ``rule`` (a small rule-based driver that reads
only the observation vector: it follows the speed limit, slows behind slower vehicles, overtakes when the
neighbouring lane is free and leaves a lane that ends). Example::

    python scripts/record_driving.py --scenario route --policy rule --out runs/route.gif
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

V_MAX = 40.0  # the simulator's default speed normaliser (morl.envs.driving.batch.default_params v_max)


def rule_policy(obs: np.ndarray, k_vehicles: int = 6) -> int:
    """A meta-action (0 left, 1 idle, 2 right, 3 faster, 4 slower) from one observation vector."""
    limit = obs[5] * V_MAX
    target = obs[8] * V_MAX
    left_ok, right_ok, lane_end = obs[10] > 0.5, obs[11] > 0.5, obs[12] * 200.0
    rows = obs[18:18 + 5 * k_vehicles].reshape(k_vehicles, 5)
    rows = rows[rows[:, 0] > 0.5]
    ds, dd, dv = rows[:, 1] * 60.0, rows[:, 2] * 10.0, rows[:, 3] * 20.0

    def lane_free(lo, hi):
        side = (dd > lo) & (dd < hi)
        return not np.any(side & (ds > -15.0) & (ds < 30.0))

    own = (np.abs(dd) < 2.0) & (ds > 0)
    gap = float(np.min(ds[own]) - 5.0) if own.any() else np.inf
    lead_dv = float(dv[own][np.argmin(ds[own])]) if own.any() else 0.0
    if lane_end < 150.0:
        if right_ok and lane_free(-6.0, -2.0):
            return 2
        gap = min(gap, lane_end - 3.0)
    speed = obs[0] * V_MAX
    if gap < 40.0 and speed + lead_dv < 0.9 * limit:
        if left_ok and lane_free(2.0, 6.0) and lane_end > 250.0:
            return 0
        if right_ok and lane_free(-6.0, -2.0):
            return 2
    want = 0.95 * limit
    if gap < 10.0 + 1.5 * speed:
        want = min(want, speed + lead_dv - 3.0 + 0.1 * gap)
    if abs(obs[9]) > 0.25:  # still changing lanes: do not speed up
        want = min(want, target)
    return 3 if target < want - 2.5 else 4 if target > want + 2.5 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="route", choices=["highway", "route"])
    parser.add_argument("--policy", default="rule", choices=["random", "idle", "rule"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--out", default="driving.gif", help="a .gif or .mp4 path (.mp4 needs imageio-ffmpeg)")
    args = parser.parse_args(argv)

    import imageio.v2 as imageio

    from morl.envs.driving import DrivingEnv

    if args.out.lower().endswith(".mp4"):
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            parser.error("--out: writing .mp4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); "
                         "use a .gif path with what is installed")

    env = DrivingEnv(args.scenario, render_mode="rgb_array")
    obs, _ = env.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    frames = [env.render()]
    returns = np.zeros(4)
    info = {}
    for _ in range(args.steps):
        if args.policy == "random":
            action = int(rng.integers(0, 5))
        elif args.policy == "idle":
            action = 1
        else:
            action = rule_policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        returns += reward
        frames.append(env.render())
        if terminated or truncated:
            break
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".mp4":
        imageio.mimsave(out, frames, fps=args.fps)
    else:
        imageio.mimsave(out, frames, duration=1000.0 / args.fps, loop=0)
    print(f"wrote {out} ({len(frames)} frames); returns {dict(zip(env.objectives, returns.round(2).tolist()))}; "
          f"collision {info.get('collision')}, off_road {info.get('off_road')}, success {info.get('success')}, "
          f"route_completion {info.get('route_completion', 0.0):.2f}")


if __name__ == "__main__":
    main()
