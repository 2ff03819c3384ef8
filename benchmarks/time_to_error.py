"""Time from `seqlab run` to its one-line error, over the bad-input cases (target: <= 3 s on
2 cores). Each case runs the real command in a fresh folder; the figure is wall time, median
of --repeats runs:

    .venv/bin/python benchmarks/time_to_error.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
AIR = ROOT / "src/seqlab/datasets/airpassengers.csv"
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
}


def cases(tmp: Path) -> dict[str, list[str]]:
    df = pd.read_csv(AIR)
    files = {
        "missing column": df.rename(columns={"passengers": "pax"}),
        "gap": df.drop(index=[50]),
        "series too short": df.head(40),
        "non-numeric target": df.astype({"passengers": object}).assign(
            passengers=lambda d: d["passengers"].where(d.index != 7, "seven")
        ),
    }
    out = {}
    for name, frame in files.items():
        path = tmp / f"{name.replace(' ', '_')}.csv"
        frame.to_csv(path, index=False)
        out[name] = [f"data.source={path}"]
    out["missing file"] = ["data.source=nope.csv"]
    out["horizon too long"] = ["window.horizon=100"]
    out["unknown key"] = ["model.cel=gru"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    env = {**os.environ, **QUIET}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases(Path(tmp)).items():
            times, last = [], None
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                last = subprocess.run(
                    [sys.executable, "-m", "flows.cli", "run", *args],
                    cwd=tmp,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                times.append(time.perf_counter() - t0)
            line = last.stderr.strip().splitlines()[-1] if last.stderr.strip() else ""
            rows.append((name, statistics.median(times), last.returncode, line))
    print(f"{'case':<20} {'seconds':>7}  exit  error")
    for name, sec, rc, line in rows:
        print(f"{name:<20} {sec:7.2f}  {rc:>4}  {line[:90]}")
    worst = max(r[1] for r in rows)
    print(f"worst median {worst:.2f} s (target <= 3 s): {'met' if worst <= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
