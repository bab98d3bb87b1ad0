"""Where policies fail on the route scenario: episode outcomes by the lane the ego starts in.

The route's left lane (lane 2 of 0..2) ends at 55 % of the route; a third of the episodes start in it. For each
run directory (its ``model.zip``, on its own config's env) and for ``--rule-driver``
(:class:`morl.envs.driving.RuleDriver`, no learning), the deterministic policy drives ``--episodes`` held-out
episodes (seeds ``--first-seed`` + i) side by side; the table gives, per start lane, the share of episodes that
succeed, collide, leave the road and time out, and where the off-road endings happened (median route position).
Example::

    python scripts/route_failures.py runs/carl_route/<timestamp> --rule-driver --episodes 300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl import experiment, registry  # noqa: E402
from morl.periodic import PERIODIC_SEED_BASE  # noqa: E402

OUTCOMES = ("success", "collision", "off_road", "timeout")


def _sim(venv):
    """The batched simulator under any VecEnv wrappers."""
    while not hasattr(venv, "sim"):
        if not hasattr(venv, "venv"):
            raise ValueError(f"{type(venv).__name__} is not the built-in driving simulator (route scenario)")
        venv = venv.venv
    return venv.sim


def outcomes(policy, venv, first_seed: int) -> list[dict]:
    """One episode per env of ``venv`` (seeded ``first_seed + i``): start lane, outcome, final route position."""
    from morl.envs.driving.sim import E_S, E_TLANE

    sim = _sim(venv)
    venv.seed(first_seed)
    obs = venv.reset()
    start = sim.ego[:, E_TLANE].astype(int).copy()
    records: list[dict | None] = [None] * venv.num_envs
    while any(r is None for r in records):
        action, _ = policy.predict(obs, deterministic=True)
        position = sim.ego[:, E_S].copy()
        obs, _, dones, infos = venv.step(action)
        for i in np.flatnonzero(dones):
            if records[i] is None:
                info = infos[i]
                kind = next((k for k in OUTCOMES[:3] if info.get(k)), "timeout")
                records[i] = {"start_lane": int(start[i]), "outcome": kind, "s": float(position[i])}
    return records


def table(rows: dict[str, list[dict]]) -> str:
    lines = ["| policy | start lane | episodes | " + " | ".join(OUTCOMES) + " | off-road at (m, median) |",
             "|---|---|---|" + "---|" * len(OUTCOMES) + "---|"]
    for name, records in rows.items():
        for lane in sorted({r["start_lane"] for r in records}):
            rs = [r for r in records if r["start_lane"] == lane]
            off = [r["s"] for r in rs if r["outcome"] == "off_road"]
            shares = " | ".join(f"{sum(r['outcome'] == k for r in rs) / len(rs):.2f}" for k in OUTCOMES)
            at = f"{np.median(off):.0f}" if off else "-"
            lines.append(f"| {name} | {lane} | {len(rs)} | {shares} | {at} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", type=Path, help="run directories (model.zip and config.yaml)")
    p.add_argument("--rule-driver", action="store_true", help="add the rule-based driver's row")
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--first-seed", type=int, default=PERIODIC_SEED_BASE)
    args = p.parse_args(argv)
    if not args.runs and not args.rule_driver:
        p.error("give run directories, --rule-driver, or both")
    rows: dict[str, list[dict]] = {}
    for run in args.runs:
        cfg = experiment.load_run_config(run)
        if cfg.env.scenario != "route":
            p.error(f"{run}: env.scenario is {cfg.env.scenario!r}; this script reads the route scenario")
        venv = experiment.make_vec_env(cfg, args.episodes, seed=None, monitor=False)
        model = registry.resolve_agent(cfg.agent.name).load(run / "model.zip", env=venv, device="cpu")
        rows[f"{cfg.agent.name} ({run})"] = outcomes(model, venv, args.first_seed)
        venv.close()
    if args.rule_driver:
        from morl.envs.driving import RuleDriver, make_vec

        venv = make_vec("route", args.episodes)
        rows["RuleDriver"] = outcomes(RuleDriver(), venv, args.first_seed)
        venv.close()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
