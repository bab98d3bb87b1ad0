"""Drive the CARLA adapter against a real CARLA 0.9.x server with a trained, random or constant policy.

What it needs:

1. The client: ``pip install morl[carla]`` (the ``carla`` wheel exists for CPython 3.10-3.12 only;
   keep the client version equal to the server's, e.g. ``pip install carla==0.9.15`` for a 0.9.15 server).
2. A server, started separately, e.g. on a GPU machine::

       ./CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port=2000    # also uses ports 2001 and 2002

3. Then, from the project root::

       python scripts/run_carla.py --host localhost --port 2000 --town Town01 \\
           --route assets/routes/town01_route.json --dt 0.1 --traffic 20 --episodes 3 --policy random

   ``--policy runs/transfer/train`` (a run directory, or its ``model.zip``) drives a trained model, e.g. one
   trained in the built-in simulator: the CARLA adapter gives the same observation and action meaning, so it
   runs unchanged (the action type follows the model's action space).
   ``--route random`` drives a random route of ``--route-length`` metres from a random spawn point.
   ``--policy constant --accel 0.5 --steer 0`` holds one action; ``--action-type discrete`` drives the
   meta-actions (0 lane left, 1 idle, 2 lane right, 3 faster, 4 slower) with ``--meta 1``.

It prints every safety event as it happens (collision, off-road, red light, lost server) and, per episode,
its length, the return of each objective, route completion and how the episode ended. The world's
settings (synchronous mode, fixed step) are restored when the script ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from morl.envs.driving.carla_env import CarlaEnv  # noqa: E402

EVENTS = ("collision", "off_road", "red_light", "server_lost")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="localhost", help="CARLA server host")
    p.add_argument("--port", type=int, default=2000, help="CARLA RPC port (the server also uses port+1, port+2)")
    p.add_argument("--tm-port", type=int, default=8000, help="Traffic Manager port")
    p.add_argument("--town", default=None, help="map to load, e.g. Town01 (default: the route file's town, "
                                                "else the loaded map)")
    p.add_argument("--route", default="assets/routes/town01_route.json",
                   help="route JSON file ({'town', 'waypoints': [[x, y, z], ...]}) or 'random'")
    p.add_argument("--route-length", type=float, default=200.0, help="length of random routes (m)")
    p.add_argument("--dt", type=float, default=0.1, help="synchronous fixed_delta_seconds (s)")
    p.add_argument("--traffic", type=int, default=0, help="autopilot vehicles to spawn")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=600, help="steps before an episode is truncated")
    p.add_argument("--timeout", type=float, default=10.0, help="client time-out (s)")
    p.add_argument("--action-type", choices=("continuous", "discrete"), default="continuous")
    p.add_argument("--policy", default="random",
                   help="'random', 'constant', or a trained run directory / model.zip")
    p.add_argument("--agent", default=None, help="agent class of a bare model.zip (a run directory names its own)")
    p.add_argument("--accel", type=float, default=0.5, help="constant policy: acceleration in [-1, 1]")
    p.add_argument("--steer", type=float, default=0.0, help="constant policy: steering in [-1, 1]")
    p.add_argument("--meta", type=int, default=1, help="constant policy with --action-type discrete")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_policy(path: str, agent: str | None = None):
    """The model of a run directory (its ``config.yaml`` names the agent) or of a ``model.zip``."""
    from morl import experiment, registry

    p = Path(path)
    run, model_zip = (p, p / "model.zip") if p.is_dir() else (p.parent, p)
    if not model_zip.exists():
        raise FileNotFoundError(f"--policy {path!r}: no model at {model_zip}")
    if agent is None:
        if not (run / "config.yaml").exists():
            raise ValueError(f"--policy {path!r}: no config.yaml beside the model; name the agent with --agent")
        agent = experiment.load_run_config(run).agent.name
    return registry.resolve_agent(agent).load(model_zip, device="cpu")


def main(argv=None) -> int:
    args = parse_args(argv)
    model = None
    if args.policy not in ("random", "constant"):
        import gymnasium as gym

        model = load_policy(args.policy, args.agent)
        args.action_type = "discrete" if isinstance(model.action_space, gym.spaces.Discrete) else "continuous"
    env = CarlaEnv(host=args.host, port=args.port, tm_port=args.tm_port, town=args.town,
                   route=None if args.route == "random" else args.route, route_length=args.route_length,
                   dt=args.dt, n_traffic=args.traffic, max_steps=args.max_steps, action_type=args.action_type,
                   timeout=args.timeout)
    if model is not None and model.observation_space != env.observation_space:
        print(f"error: the model observes {model.observation_space}, CarlaEnv gives {env.observation_space}",
              file=sys.stderr)
        return 1
    env.action_space.seed(args.seed)
    if args.action_type == "continuous":
        constant = np.clip(np.array([args.accel, args.steer], dtype=np.float32), -1.0, 1.0)
    else:
        constant = int(args.meta)
    try:
        for episode in range(args.episodes):
            obs, info = env.reset(seed=args.seed + episode)
            print(f"episode {episode}: route {info['route_length']:.0f} m, speed limit "
                  f"{3.6 * info['speed_limit']:.0f} km/h")
            ret, steps = np.zeros(4), 0
            while True:
                if model is not None:
                    action = model.predict(obs, deterministic=True)[0]
                else:
                    action = env.action_space.sample() if args.policy == "random" else constant
                obs, r, terminated, truncated, info = env.step(action)
                ret += r
                steps += 1
                happened = [k for k in EVENTS if info.get(k)]
                if happened:
                    print(f"  step {steps}: {', '.join(happened)}"
                          + (f" with {info['collided_with']}" if info.get("collided_with") else ""))
                if terminated or truncated:
                    break
            end = ("success" if info["success"] else "server lost" if info["server_lost"]
                   else "hard infraction" if info["carl_hard_infraction"] else
                   "time limit" if truncated else "terminated")
            print(f"  {steps} steps, return " + ", ".join(f"{n} {v:+.2f}" for n, v in zip(env.objectives, ret))
                  + f", route completion {100 * info['route_completion']:.1f} %, ended by {end}")
    except KeyboardInterrupt:
        print("interrupted")
    except (ImportError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
