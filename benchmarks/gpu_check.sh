#!/usr/bin/env bash
# One command for a CUDA host (torch, numpy and pandas installed; optuna, prefect, mlflow maybe
# not): the CUDA-path tests, then both throughput benchmarks, all figures in one file.
#   bash benchmarks/gpu_check.sh                 # report: $OUT/gpu_check.txt, else benchmarks/results/
#   PYTHON=python3.12 bash benchmarks/gpu_check.sh
# Missing optuna/pydantic/pyyaml are installed from benchmarks/wheels/ (no index needed; fill it
# beforehand with `bash benchmarks/fetch_wheels.sh` on a machine that reaches PyPI).
# Without a GPU it still runs, with the benchmarks' --quick sizes (a smoke test, not figures).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
RESULTS=${OUT:-benchmarks/results}
mkdir -p "$RESULTS"
REPORT=$RESULTS/gpu_check.txt
: > "$REPORT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=true
export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore::FutureWarning,ignore::UserWarning}
FAILED=()

say() { echo "$*" | tee -a "$REPORT"; }
# Run a step, its output into the report; remember failures but go on to the next step.
step() {
  local name=$1; shift
  say ""
  say "== $name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$REPORT"
  local rc=${PIPESTATUS[0]}
  say "-- $name: exit $rc in $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || FAILED+=("$name")
  return 0
}

say "# seqlab gpu_check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name --format=csv 2>&1 | tee -a "$REPORT"
else
  say "nvidia-smi: not found (no NVIDIA driver here)"
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$REPORT"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, "
      f"cuda available: {torch.cuda.is_available()}, cpu cores: {__import__('os').cpu_count()}")
EOF
CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)

# --- dependencies of the tuning core: install what is missing from the carried wheels
missing=()
for mod_pkg in optuna:optuna pydantic:pydantic yaml:pyyaml pytest:pytest pytest_timeout:pytest-timeout; do
  "$PY" -c "import ${mod_pkg%%:*}" 2>/dev/null || missing+=("${mod_pkg##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if ls benchmarks/wheels/*.whl >/dev/null 2>&1; then
    say "installing ${missing[*]} from benchmarks/wheels"
    pipi() { "$PY" -m pip install -q --no-index --find-links benchmarks/wheels "$@" "${missing[@]}"; }
    { pipi 2>/dev/null || pipi --user 2>/dev/null || pipi --break-system-packages; } 2>&1 \
      | tee -a "$REPORT"
  else
    say "missing ${missing[*]} and no benchmarks/wheels/*.whl: run benchmarks/fetch_wheels.sh first"
  fi
fi

step core-imports "$PY" -c '
import sys, seqlab.tuning, seqlab.pipeline
print("seqlab.tuning and seqlab.pipeline import;", "prefect loaded:", "prefect" in sys.modules,
      "| mlflow loaded:", "mlflow" in sys.modules)'

if [ -f tests/components/test_gpu.py ]; then
  if "$PY" -c 'import pytest' 2>/dev/null; then
    step tests "$PY" -m pytest -q -p no:cacheprovider tests/components/test_gpu.py
  else
    say ""
    say "== tests: pytest is not installed here: skipping tests/components/test_gpu.py"
  fi
else
  say ""
  say "== tests: tests/components/test_gpu.py not present: nothing to run"
fi

if [ "$CUDA" = 1 ]; then QUICK=(); else
  QUICK=(--quick)
  say ""
  say "No CUDA device: CPU fallback with --quick benchmark sizes (a smoke test, not figures)."
fi
step train_throughput "$PY" benchmarks/train_throughput.py "${QUICK[@]}" \
  --out "$RESULTS/train_throughput.json"
step tune_throughput "$PY" benchmarks/tune_throughput.py "${QUICK[@]}" \
  --out "$RESULTS/tune_throughput.json"

say ""
if [ ${#FAILED[@]} -eq 0 ]; then
  say "gpu_check: all steps passed; report in $REPORT"
else
  say "gpu_check: FAILED steps: ${FAILED[*]}; report in $REPORT"
  exit 1
fi
