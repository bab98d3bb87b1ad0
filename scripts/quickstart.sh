#!/usr/bin/env bash
# The main job: set up .venv if needed, then run configs/quickstart.yaml — the preordered agent
# (QD-IQN) against its scalarised baseline (IQN) on the built-in driving simulator — and say where
# the safety comparison plot is. Extra arguments go to `morl sweep` (e.g. --seeds 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
echo "training QD-IQN and IQN on the built-in driving simulator; morl sweep prints its progress on stderr" >&2
out=$(.venv/bin/morl sweep configs/quickstart.yaml "$@" | tail -n 1)
echo
echo "sweep directory:        $out"
echo "safety comparison plot: $out/plots/safety_comparison.png"
echo "per-method summary:     $out/summary_groups.csv"
