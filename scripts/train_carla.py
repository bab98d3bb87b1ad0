"""Train CaRL PPO on CARLA (``configs/carla_carl.yaml``), one server per env, resuming after server crashes.

Training goes through :mod:`morl.experiment` (``train`` / ``resume``), so the run directory is the usual
one (``config.yaml``, ``checkpoints/``, ``model.zip``, ``progress.csv``, ``eval.json``). A server that drops
for a moment costs one truncated episode: the adapter reconnects with exponential backoff. A server that
stays away makes the reconnection give up (``ConnectionError``) or the client time out (``RuntimeError``
"time-out ..."); then this script waits ``--restart-delay`` seconds and resumes the run from its last
checkpoint, at most ``--max-restarts`` times, saying what happened each time. Any other error (a bug, a
diverged loss) stops it at once.

Running with real servers:

1. The client: ``pip install -e ".[carla]"`` (CPython 3.10-3.12; keep the client's version equal to the
   server's, e.g. ``pip install carla==0.9.15`` for a 0.9.15 server).
2. One ``CarlaUE4.sh`` per env. A server with ``-carla-rpc-port=P`` also takes ``P+1`` and ``P+2``, so the
   RPC ports are 3 apart (env ``i`` uses ``--base-port + 3*i``, and Traffic Manager port ``--tm-base-port + i``).
   Keep each one alive with a loop, so a crashed server comes back and the resumed run finds it::

       for i in 0 1 2 3; do
         (while true; do ./CarlaUE4.sh -RenderOffScreen -nosound -carla-rpc-port=$((2000 + 3*i)); sleep 5; done) &
       done

   (several servers on one GPU: add ``-graphicsadapter=N`` to spread them over GPUs).
3. Then, from the project root::

       python scripts/train_carla.py --host localhost --base-port 2000 --n-envs 4 --timesteps 10000000

   ``--ports 2000,2003,2010`` gives the ports one by one (and sets ``--n-envs`` to their number);
   ``--set KEY=VALUE`` overrides any config entry (``--set env.kwargs.n_traffic=40``); ``--run-dir`` names
   the run directory; ``--resume RUN_DIR`` continues a run (its own ``config.yaml``, with the overrides).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from morl import experiment  # noqa: E402
from morl.checkpoints import read_checkpoint_state  # noqa: E402
from morl.config import ConfigError, apply_overrides, load_config  # noqa: E402
from morl.experiment import PER_ENV  # noqa: E402

#: A CARLA server with RPC port P also uses P+1 (streaming) and P+2 (secondary).
PORT_STRIDE = 3


def server_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says a CARLA server went away (worth a resume), not a bug or a diverged run."""
    if isinstance(exc, ConnectionError):  # CarlaEnv's reconnection gave up
        return True
    # the client's own time-out ("time-out of 10000ms while waiting for the simulator ...")
    return type(exc) is RuntimeError and "time-out" in str(exc)


def _ports(text: str) -> list[int]:
    try:
        ports = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ports must be comma-separated integers, got {text!r}") from None
    if not ports or len(set(ports)) != len(ports):
        raise argparse.ArgumentTypeError(f"--ports must list distinct ports, got {text!r}")
    return ports


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "carla_carl.yaml")
    p.add_argument("--host", default=None, help="CARLA host (default: the config's)")
    ports = p.add_mutually_exclusive_group()
    ports.add_argument("--ports", type=_ports, default=None, help="RPC port of each env's server, comma-separated")
    ports.add_argument("--base-port", type=int, default=None,
                       help=f"env i uses port BASE + {PORT_STRIDE}*i (default: the config's first port)")
    p.add_argument("--tm-base-port", type=int, default=None,
                   help="env i runs its Traffic Manager on port TM + i (default: the config's first)")
    p.add_argument("--n-envs", type=int, default=None, help="envs, one server each (default: the config's)")
    p.add_argument("--timesteps", type=int, default=None, help="train.total_timesteps")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default runs/<name>/<timestamp>)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue this run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--max-restarts", type=int, default=10, help="resumes after lost servers before giving up")
    p.add_argument("--restart-delay", type=float, default=30.0, help="seconds to wait before a resume")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    args = p.parse_args(argv)
    if args.n_envs is not None and args.n_envs < 1:
        p.error(f"--n-envs must be >= 1, got {args.n_envs}")
    if args.ports and args.n_envs is not None and len(args.ports) != args.n_envs:
        p.error(f"--ports lists {len(args.ports)} ports but --n-envs is {args.n_envs}")
    if args.max_restarts < 0 or args.restart_delay < 0:
        p.error("--max-restarts and --restart-delay must be >= 0")
    return args


def overrides_for(args, data: dict) -> list:
    """The experiment overrides the arguments ask for, on top of the config ``data``: ``--set``, total steps,
    host, env count, and per-env ports (``env.kwargs.per_env.port`` / ``tm_port``)."""
    out: list = list(args.set)
    if args.timesteps is not None:
        out.append(("train.total_timesteps", args.timesteps))
    if args.host is not None:
        out.append(("env.kwargs.host", args.host))
    n_envs = len(args.ports) if args.ports else args.n_envs
    if n_envs is not None:
        out.append(("train.n_envs", n_envs))
    if args.ports or args.base_port is not None or args.tm_base_port is not None or n_envs is not None:
        resolved = apply_overrides(data, out)
        n = int(resolved.get("train", {}).get("n_envs", 1))
        per_env = (resolved.get("env", {}).get("kwargs") or {}).get(PER_ENV) or {}
        base = args.base_port if args.base_port is not None else (per_env.get("port") or [2000])[0]
        tm = args.tm_base_port if args.tm_base_port is not None else (per_env.get("tm_port") or [8000])[0]
        out.append((f"env.kwargs.{PER_ENV}.port", args.ports or [base + PORT_STRIDE * i for i in range(n)]))
        out.append((f"env.kwargs.{PER_ENV}.tm_port", [tm + i for i in range(n)]))
    return out


def _describe(cfg) -> str:
    rows = []
    for i in range(cfg.train.n_envs):
        kw = experiment.env_kwargs(cfg, i)
        rows.append(f"  env {i}: CARLA server {kw.get('host', 'localhost')}:{kw.get('port', 2000)} "
                    f"(Traffic Manager {kw.get('tm_port', 8000)})")
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    source = args.resume / "config.yaml" if args.resume else args.config
    try:
        data = yaml.safe_load(Path(source).read_text())
    except OSError as exc:
        print(f"error: cannot read {source}: {exc}", file=sys.stderr)
        return 2
    overrides = overrides_for(args, data)
    try:
        cfg = (experiment.load_run_config(args.resume, overrides) if args.resume
               else load_config(args.config, overrides))
        experiment.check_config(cfg, str(source))  # builds one env: CarlaEnv connects only at reset
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = args.resume or args.run_dir or experiment.new_run_dir(cfg)
    print(f"run directory {run_dir}\n{_describe(cfg)}", flush=True)
    restarts, evaluate = 0, not args.no_eval
    while True:
        state = read_checkpoint_state(run_dir) if Path(run_dir).exists() else None
        try:
            if args.resume or state is not None:
                if state is not None and restarts == 0:  # after a restart its message said so
                    print(f"resuming from the checkpoint at timestep {state['num_timesteps']}", flush=True)
                experiment.resume(run_dir, overrides, evaluate_after=evaluate)
            else:
                experiment.train(cfg, run_dir=run_dir, source=str(args.config), evaluate_after=evaluate)
            break
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            if not server_lost(exc):
                raise
            print(f"CARLA server lost: {type(exc).__name__}: {exc}", flush=True)
            if restarts >= args.max_restarts:
                print(f"giving up after {restarts} restart(s); continue later with: "
                      f"python scripts/train_carla.py --resume {run_dir}", file=sys.stderr)
                return 1
            restarts += 1
            state = read_checkpoint_state(run_dir) if Path(run_dir).exists() else None
            where = (f"resuming from the checkpoint at timestep {state['num_timesteps']}" if state
                     else "no checkpoint yet: training again from the start")
            print(f"restart {restarts}/{args.max_restarts} in {args.restart_delay:g} s, {where}", flush=True)
            time.sleep(args.restart_delay)
    state = read_checkpoint_state(run_dir)
    steps = state["num_timesteps"] if state else cfg.train.total_timesteps
    print(f"done: {steps} timesteps, {restarts} restart(s); model {Path(run_dir) / 'model.zip'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
