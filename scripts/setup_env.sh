#!/usr/bin/env bash
# Create .venv (if missing) and install morl with its test and Ray extras.
# A machine without an NVIDIA GPU gets PyTorch's CPU build, never the multi-GB CUDA build.
# Re-running is cheap: the install is skipped while setup.cfg is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.morl-installed
want=$(sha256sum setup.cfg | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c "import morl, torch" 2>/dev/null; then
    exit 0
fi
"$VPY" -m pip install -q --upgrade pip
if ! "$VPY" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "[setup] NVIDIA GPU found: installing the CUDA build of PyTorch"
        "$VPY" -m pip install -q "torch>=2.3,<2.15"
    else
        echo "[setup] no GPU: installing the CPU build of PyTorch"
        "$VPY" -m pip install -q --retries 0 --timeout 10 "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
            || "$VPY" -m pip install -q "torch==2.13.0"
    fi
fi
echo "[setup] installing morl and its dependencies"
"$VPY" -m pip install -q -e ".[dev,ray]"
echo "$want" > "$stamp"
