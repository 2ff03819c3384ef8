#!/usr/bin/env bash
# A separate virtualenv for the peer benchmark (benchmarks/vs_neuralforecast.py):
# neuralforecast (with its lightning/ray stack) never enters seqlab's own environment.
#   bash benchmarks/setup_neuralforecast.sh            # creates benchmarks/.venv-nf
#   PYTHON=python3.12 bash benchmarks/setup_neuralforecast.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=benchmarks/.venv-nf
TORCH=${TORCH:-torch==2.13.0}   # a CPU wheel here; any 2.x works

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
if ! "$VENV/bin/python" -c "import neuralforecast, optuna, torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "$TORCH"
  "$VENV/bin/python" -m pip install -q neuralforecast optuna pandas
fi
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
print("benchmarks/.venv-nf:", ", ".join(f"{p} {md.version(p)}" for p in
      ("neuralforecast", "optuna", "torch", "pytorch-lightning", "pandas")))
EOF
