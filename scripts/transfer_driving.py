"""Train in the built-in driving simulator, evaluate zero-shot on highway-env (and fine-tune there).

1. Trains an agent from a config in the built-in ``highway`` scenario (``--config``, run directory
   ``OUT/train``), or loads a trained run (``--run DIR``).
2. Evaluates it, with no wrapper and no retraining, on the built-in simulator and on highway-env
   (``--targets``, each at the traffic densities ``--densities``, highway-env's ``vehicles_density``)
   through :class:`~morl.envs.driving.highway_adapter.HighwayEnvAdapter`, which gives the built-in simulator's
   observation and action meaning. Baselines on the same episodes: highway-env's own IDM + MOBIL driven ego
   (highway-env only) and a uniformly random policy.
3. Optionally fine-tunes the transferred weights on the first target for ``--finetune-steps`` steps and
   evaluates after each chunk (the curve).

The task is the same everywhere: complete a route of the built-in scenario's length (800 m) within its time
budget (``max_steps * dt``, 50 s), acting every ``dt`` (0.2 s; highway-env's ``policy_frequency`` is set to
``1 / dt``). Episodes are seeded ``--seed + i``. The table (collision, off-road, success, route completion,
mean speed, each with a 95 % bootstrap interval over episodes) is written to ``OUT/transfer.md`` and
``OUT/transfer.json``, the figure to ``OUT/transfer.png`` (and ``OUT/finetune.png``).

Example::

    python scripts/transfer_driving.py --config configs/driving_iqn.yaml --set train.total_timesteps=100000 \\
        --out runs/transfer --episodes 50 --targets highway-fast-v0 highway-v0 --densities 1 1.5

A config that trains on ``morl/Highway-v0`` (one Gymnasium env per vector slot) instead of the batched
scenario may vary the road and traffic per env (``env.kwargs.per_env``); configs/highway_transfer_iqn.yaml
randomises lanes (3 or 4), traffic count and traffic speed::

    python scripts/transfer_driving.py --config configs/highway_transfer_iqn.yaml --out runs/transfer_dr \\
        --finetune-steps 20000

Backends and policies can run in separate processes (``--targets``, ``--policies``); ``--combine
A/transfer.json B/transfer.json --out C`` merges their rows into one table and figure. ``--quick`` runs
every stage at a tiny budget (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

METRICS = ("collision_rate", "off_road_rate", "success_rate", "route_completion", "speed")
EVENTS = ("collision", "off_road", "success")
HIGHWAY_GYM_ID = "morl/Highway-v0"  # the built-in highway scenario as one Gymnasium env (per-env variations)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default="configs/driving_iqn.yaml", help="config trained in the 'highway' scenario")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides (after env.scenario=highway)")
    p.add_argument("--run", default=None, help="evaluate this trained run directory instead of training")
    p.add_argument("--out", default="runs/transfer", help="output directory")
    p.add_argument("--episodes", type=int, default=50, help="episodes per backend and policy")
    p.add_argument("--targets", nargs="+", default=["highway-fast-v0", "highway-v0"], help="highway-env ids")
    p.add_argument("--densities", nargs="+", type=float, default=[1.0, 1.5], help="highway-env vehicles_density")
    p.add_argument("--policies", nargs="+", default=["agent", "idm", "random"], choices=["agent", "idm", "random"])
    p.add_argument("--skip-builtin", action="store_true", help="evaluate on the highway-env targets only")
    p.add_argument("--finetune-steps", type=int, default=0, help="fine-tuning steps on the first target (0: none)")
    p.add_argument("--finetune-chunks", type=int, default=4, help="evaluations during fine-tuning")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first evaluation episode")
    p.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                   help="only merge the rows of these transfer.json files (runs of disjoint backends or "
                        "policies) into OUT's table and figure")
    p.add_argument("--quick", action="store_true", help="tiny budget for every stage (the test)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- agent
def train_agent(config: str, overrides, out: Path) -> Path:
    from morl import experiment
    from morl.config import load_config

    cfg = load_config(config, overrides)
    if cfg.env.id != HIGHWAY_GYM_ID:  # the batched simulator unless the config trains on morl/Highway-v0
        cfg = load_config(config, ["env.scenario=highway", *overrides])
    return experiment.train(cfg, run_dir=out / "train", source=config, evaluate_after=False)


def load_agent(run_dir: Path):
    """``(model, cfg)`` of a run directory."""
    from morl import experiment, registry

    cfg = experiment.load_run_config(run_dir)
    if cfg.env.scenario != "highway" and cfg.env.id != HIGHWAY_GYM_ID:
        raise ValueError(f"run {run_dir} was trained on {cfg.env.scenario or cfg.env.id!r}; transfer needs the "
                         "built-in 'highway' scenario (env.scenario or morl/Highway-v0)")
    model = registry.resolve_agent(cfg.agent.name).load(Path(run_dir) / "model.zip", device="cpu")
    return model, cfg


# ----------------------------------------------------------------------------- backends
def builtin_env(cfg, **kwargs):
    """The built-in highway scenario with the run's action type (and ``kwargs``), not its per-env variations."""
    from morl.envs.driving.env import DrivingEnv

    return DrivingEnv("highway", action_type=dict(cfg.env.kwargs or {}).get("action_type", "discrete"), **kwargs)


def task(cfg) -> dict:
    """Route length, time budget and step of the built-in scenario the agent was trained in."""
    env = builtin_env(cfg)
    from morl.envs.driving.traffic import P_DT, P_MAX_STEPS

    dt, steps = float(env.sim.P[P_DT]), int(env.sim.P[P_MAX_STEPS])
    return {"route_length": float(env.road.length), "dt": dt, "duration": dt * steps,
            "action": env.action_type}


def highway_env(target: str, density: float, spec: dict):
    from morl.envs.driving.highway_adapter import HighwayEnvAdapter

    return HighwayEnvAdapter(target, config={"vehicles_density": density, "duration": spec["duration"]},
                             action=spec["action"], policy_frequency=1.0 / spec["dt"],
                             route_length=spec["route_length"])


def _idm_ego(env) -> None:
    """Replace the adapter's ego by highway-env's IDM + MOBIL vehicle in the same state (it ignores actions)."""
    from highway_env.vehicle.behavior import IDMVehicle

    base = env.unwrapped
    old = base.vehicle
    new = IDMVehicle.create_from(old)
    base.road.vehicles[base.road.vehicles.index(old)] = new
    base.controlled_vehicles[0] = new


def run_episodes(env, policy: str, episodes: int, seed: int, model=None) -> list[dict]:
    """Episode records (``morl.metrics.episode_arrays`` format plus ``speed``)."""
    records = []
    env.action_space.seed(seed)
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        if policy == "idm":
            _idm_ego(env)
        events, ret, steps, speeds = dict.fromkeys(EVENTS, 0.0), np.zeros(4), 0, []
        while True:
            if policy == "agent":
                action = model.predict(obs, deterministic=True)[0]
            elif policy == "random":
                action = env.action_space.sample()
            else:
                action = 1  # IDLE; the IDM ego decides by itself
            obs, r, terminated, truncated, info = env.step(action)
            ret += r
            steps += 1
            speeds.append(float(info["speed"]))
            for key in EVENTS:
                events[key] += float(bool(info[key]))
            if terminated or truncated:
                break
        records.append({"seed": seed + i, "returns": dict(zip(env.objectives, map(float, ret))),
                        "length": steps, "events": events, "route_completion": float(info["route_completion"]),
                        "speed": float(np.mean(speeds))})
    return records


def summarise(records) -> dict:
    from morl.metrics import aggregate_runs, episode_metrics

    m = episode_metrics(records)
    out = {k: m[k] for k in METRICS if k in m}
    speed = aggregate_runs([r["speed"] for r in records])
    out["speed"] = {"value": speed["value"], "lo": speed["lo"], "hi": speed["hi"]}
    out["episodes"] = len(records)
    out["mean_length"] = float(np.mean([r["length"] for r in records]))
    return out


# ----------------------------------------------------------------------------- fine-tuning
def finetune(run_dir: Path, cfg, target: str, density: float, spec: dict, steps: int, chunks: int, episodes: int,
             seed: int) -> list[dict]:
    """Fine-tune on highway-env (the config's scalarisation and wrappers) and evaluate after each chunk."""
    from morl import experiment, registry

    kwargs = {"env": target, "config": {"vehicles_density": density, "duration": spec["duration"]},
              "action": spec["action"], "policy_frequency": 1.0 / spec["dt"], "route_length": spec["route_length"]}
    env_cfg = cfg.env.model_copy(update={"id": "morl/HighwayEnvAdapter-v0", "scenario": None, "kwargs": kwargs})
    ft_cfg = cfg.model_copy(update={"env": env_cfg})
    venv = experiment.make_vec_env(ft_cfg, 1, seed=seed)
    model = registry.resolve_agent(cfg.agent.name).load(Path(run_dir) / "model.zip", env=venv, device="cpu")
    if hasattr(model, "learning_starts"):  # the replay buffer starts empty on the new env
        model.learning_starts = model.num_timesteps + min(model.learning_starts, max(steps // 4, 1))
    curve, done = [], 0
    eval_env = highway_env(target, density, spec)
    for k in range(chunks + 1):
        if k:
            chunk = steps // chunks
            model.learn(chunk, reset_num_timesteps=False)
            done += chunk
        s = summarise(run_episodes(eval_env, "agent", episodes, seed, model))
        curve.append({"steps": done, **{m: s[m]["value"] for m in METRICS if m in s}})
        print(f"  fine-tune {done:6d} steps: collision {s['collision_rate']['value']:.2f}, "
              f"success {s['success_rate']['value']:.2f}", flush=True)
    venv.close()
    return curve


# ----------------------------------------------------------------------------- report
def _cell(m: dict, key: str) -> str:
    if key not in m:
        return "-"
    v = m[key]
    fmt = "{:.1f}" if key == "speed" else "{:.2f}"
    return f"{fmt.format(v['value'])} [{fmt.format(v['lo'])}, {fmt.format(v['hi'])}]"


def write_report(rows: list[dict], out: Path, header: str) -> str:
    lines = [header, "", "| backend | policy | episodes | collision | off-road | success | route completion | speed (m/s) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        m = row["metrics"]
        lines.append(f"| {row['backend']} | {row['policy']} | {m['episodes']} | " + " | ".join(
            _cell(m, k) for k in METRICS) + " |")
    text = "\n".join(lines) + "\n"
    (out / "transfer.md").write_text(text)
    return text


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("collision_rate", "success_rate", "route_completion")
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4.2), sharey=True)
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    width = 0.8 / len(policies)
    for ax, key in zip(axes, keys):
        for j, pol in enumerate(policies):
            xs, vs, errs = [], [], [[], []]
            for i, b in enumerate(backends):
                row = next((r for r in rows if r["backend"] == b and r["policy"] == pol), None)
                if row is None or key not in row["metrics"]:
                    continue
                m = row["metrics"][key]
                xs.append(i + (j - (len(policies) - 1) / 2) * width)
                vs.append(m["value"])
                errs[0].append(m["value"] - m["lo"])
                errs[1].append(m["hi"] - m["value"])
            ax.bar(xs, vs, width, yerr=errs, capsize=3, label=pol)
        ax.set_xticks(range(len(backends)))
        ax.set_xticklabels(backends, rotation=20, ha="right", fontsize=8)
        ax.set_title(key.replace("_", " "))
        ax.set_ylim(0, 1.05)
    axes[0].legend()
    fig.suptitle("zero-shot transfer from the built-in highway scenario (95 % bootstrap intervals)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [c["steps"] for c in curve]
    for key in ("collision_rate", "success_rate", "route_completion"):
        ax.plot(steps, [c[key] for c in curve], marker="o", label=key.replace("_", " "))
    ax.set_xlabel("fine-tuning steps on highway-env")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def combine(paths, out: Path) -> str:
    """Merge the rows of several ``transfer.json`` into one table and figure; a (backend, policy) row twice
    is an error."""
    rows, sources = [], []
    for path in paths:
        result = json.loads(Path(path).read_text())
        for row in result["rows"]:
            if any((r["backend"], r["policy"]) == (row["backend"], row["policy"]) for r in rows):
                raise ValueError(f"{path}: row ({row['backend']!r}, {row['policy']!r}) is already in an earlier file")
            rows.append(row)
        policies = sorted({r["policy"] for r in result["rows"]})
        agent = (f"; agent {result['agent']} from {result['run_dir']}, {result['num_timesteps']} steps"
                 if "agent" in policies else "")
        sources.append(f"{path} ({', '.join(policies)}{agent})")
    text = write_report(rows, out, "Rows from " + "; ".join(sources))
    plot(rows, out / "transfer.png")
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        print(combine(args.combine, out))
        return 0
    if args.quick:
        args.episodes = min(args.episodes, 2)
        args.targets, args.densities = args.targets[:1], args.densities[:1]
        args.finetune_steps, args.finetune_chunks = (40, 1) if args.finetune_steps else (0, 1)
        args.overrides = ["train.total_timesteps=64", "train.n_envs=2", "agent.learning_starts=32",
                          "train.checkpoint_every=null", *args.overrides]
    t0 = time.perf_counter()
    run_dir = Path(args.run) if args.run else train_agent(args.config, args.overrides, out)
    print(f"agent: {run_dir} ({time.perf_counter() - t0:.0f} s)", flush=True)
    model, cfg = load_agent(run_dir)
    spec = task(cfg)
    if args.quick:  # short episodes
        spec.update(route_length=60.0, duration=3.0)
    rows = []
    backends = [] if args.skip_builtin else [("built-in highway", None, None)]
    backends += [(f"{t} density {d:g}", t, d) for t in args.targets for d in args.densities]
    for name, target, density in backends:
        for policy in args.policies:
            if policy == "idm" and target is None:
                continue  # highway-env's IDM ego exists only there
            t1 = time.perf_counter()
            if target is None:
                env = builtin_env(cfg, **({"length": 60.0, "max_steps": 15} if args.quick else {}))
            else:
                env = highway_env(target, density, spec)
            m = summarise(run_episodes(env, policy, args.episodes, args.seed, model))
            env.close()
            rows.append({"backend": name, "policy": policy, "metrics": m})
            print(f"{name:32s} {policy:7s} collision {_cell(m, 'collision_rate'):20s} success "
                  f"{_cell(m, 'success_rate'):20s} ({time.perf_counter() - t1:.0f} s)", flush=True)
    header = (f"Agent {cfg.agent.name} from {run_dir}, trained {int(model.num_timesteps)} steps in the built-in "
              f"highway scenario; task: {spec['route_length']:.0f} m in {spec['duration']:.0f} s, a step every "
              f"{spec['dt']:g} s; {args.episodes} episodes per row, seeds {args.seed}..{args.seed + args.episodes - 1}")
    print(write_report(rows, out, header))
    plot(rows, out / "transfer.png")
    result = {"run_dir": str(run_dir), "agent": cfg.agent.name, "num_timesteps": int(model.num_timesteps),
              "task": spec, "rows": rows}
    if args.finetune_steps > 0:
        target, density = args.targets[0], args.densities[0]
        curve = finetune(run_dir, cfg, target, density, spec, args.finetune_steps, args.finetune_chunks,
                         args.episodes, args.seed)
        result["finetune"] = {"target": target, "density": density, "curve": curve}
        plot_curve(curve, out / "finetune.png", f"fine-tuning on {target} (density {density:g})")
    (out / "transfer.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out / 'transfer.md'}, {out / 'transfer.json'}, {out / 'transfer.png'} "
          f"({time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
