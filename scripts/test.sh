#!/usr/bin/env bash
# Set up .venv if needed, then run the whole test suite (doctests included) on 2 workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -n 2 "$@"
