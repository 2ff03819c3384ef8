"""Statistical references for the covariates benchmark, on US quarterly macro growth rates.

Runs in the references' own virtualenv (``benchmarks/setup_accuracy.sh``), never in seqlab's::

    benchmarks/.venv-accuracy/bin/python benchmarks/covariate_references.py

Data: statsmodels' ``macrodata`` (US quarterly, 1959Q1-2009Q3, shipped inside the statsmodels
wheel), turned into an fpp3 ``uschange``-like frame of quarter-on-quarter changes (202 rows,
1959Q2-2009Q3; ``ds`` = quarter start):

* ``y``            = 100 * diff(log(realcons))   consumption growth, %
* ``income``       = 100 * diff(log(realdpi))    real disposable income growth, %
* ``investment``   = 100 * diff(log(realinv))    real investment growth, %
* ``unemployment`` = diff(unemp)                  change of the unemployment rate, points

References, each with ``StatsForecast.cross_validation(h, n_windows, step_size)`` (expanding
window, refit at every cutoff):

* ``SeasonalNaive``  SeasonalNaive(season_length=season)
* ``AutoARIMA``      AutoARIMA(season_length=season), the target alone
* ``AutoARIMA_exog`` the same with income, investment and unemployment as regressors
  (regression with ARIMA errors). statsforecast's ``cross_validation`` treats every extra
  column of ``df`` as an exogenous regressor: at each cutoff the model is fitted on the
  history's ``X`` and forecast with ``X_future`` = the *actual* values of those columns over
  the next ``h`` steps (``core.py``: ``X_future = y_test[:, 1:]``). That is an ex-post
  (conditional) forecast: the regressors' future is assumed known, the same information
  seqlab's ``data.future_covariates`` arm is given.
* ``AutoETS``        AutoETS(season_length=season), the target alone

Outputs (read by ``benchmarks/covariates.py`` in seqlab's venv, which does all the scoring):

* ``--data``: the frame, ``unique_id, ds, y, income, investment, unemployment`` (ISO dates);
* ``--forecasts``: ``unique_id, ds, cutoff, y`` and one column per method;
* ``--out``: JSON with the seconds of each method (cross-validation wall time), the cutoffs,
  package versions and the warnings each method raised.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
COVARIATES = ["income", "investment", "unemployment"]
METHODS = ("SeasonalNaive", "AutoARIMA", "AutoARIMA_exog", "AutoETS")


def uschange() -> pd.DataFrame:
    """The uschange-like frame from statsmodels' bundled macrodata (no download)."""
    from statsmodels.datasets import macrodata

    raw = macrodata.load_pandas().data
    ds = pd.to_datetime(
        {
            "year": raw["year"].astype(int),
            "month": 3 * (raw["quarter"].astype(int) - 1) + 1,
            "day": 1,
        }
    )

    def growth(col: str) -> np.ndarray:
        return 100 * np.diff(np.log(raw[col].to_numpy("float64")))

    frame = pd.DataFrame(
        {
            "unique_id": "US",
            "ds": ds.iloc[1:].to_numpy(),
            "y": growth("realcons"),
            "income": growth("realdpi"),
            "investment": growth("realinv"),
            "unemployment": np.diff(raw["unemp"].to_numpy("float64")),
        }
    )
    if len(frame) != 202 or pd.infer_freq(frame["ds"]) != "QS-OCT":
        raise ValueError(
            f"unexpected macrodata: {len(frame)} rows, freq {pd.infer_freq(frame['ds'])}"
        )
    if not np.isfinite(frame[["y", *COVARIATES]].to_numpy()).all():
        raise ValueError("non-finite values in the uschange frame")
    return frame


def make_model(method: str, season: int):
    from statsforecast.models import AutoARIMA, AutoETS, SeasonalNaive

    if method == "SeasonalNaive":
        return SeasonalNaive(season_length=season)
    if method == "AutoARIMA":
        return AutoARIMA(season_length=season)
    if method == "AutoARIMA_exog":
        return AutoARIMA(season_length=season, alias="AutoARIMA_exog")
    if method == "AutoETS":
        return AutoETS(season_length=season)
    raise KeyError(method)


def cross_validate(
    frame: pd.DataFrame, method: str, h: int, windows: int, step: int, season: int, freq: str
) -> tuple[pd.DataFrame, float, list[str]]:
    from statsforecast import StatsForecast

    # Only the exogenous variant sees the covariates: every extra column is a regressor.
    cols = ["unique_id", "ds", "y", *(COVARIATES if method == "AutoARIMA_exog" else [])]
    sf = StatsForecast(models=[make_model(method, season)], freq=freq, n_jobs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        cv = sf.cross_validation(df=frame[cols], h=h, n_windows=windows, step_size=step)
        seconds = time.perf_counter() - t0
    cv = cv.reset_index() if "unique_id" not in cv.columns else cv
    msgs = sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught})
    return cv, seconds, msgs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--horizon", type=int, default=4)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--step", type=int, default=4)
    ap.add_argument("--season", type=int, default=4)
    ap.add_argument("--freq", default="QS")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks/data/uschange.csv")
    ap.add_argument(
        "--forecasts", type=Path, default=ROOT / "benchmarks/results/covariates_references.csv"
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/covariates_references.json"
    )
    args = ap.parse_args(argv)

    frame = uschange()
    args.data.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(ds=frame["ds"].dt.strftime("%Y-%m-%d")).to_csv(
        args.data, index=False, float_format="%.12g"
    )

    merged, meta_methods = None, {}
    for method in args.methods:
        cv, seconds, msgs = cross_validate(
            frame, method, args.horizon, args.windows, args.step, args.season, args.freq
        )
        col = [c for c in cv.columns if c not in ("unique_id", "ds", "cutoff", "y")]
        if col != [method]:
            raise ValueError(f"{method}: unexpected forecast columns {col}")
        if not np.isfinite(cv[method].to_numpy("float64")).all():
            raise ValueError(f"{method} forecasts non-finite values")
        meta_methods[method] = {"seconds": round(seconds, 3), "warnings": msgs[:5]}
        if merged is None:
            merged = cv[["unique_id", "ds", "cutoff", "y", method]]
        else:
            nxt = merged.merge(
                cv[["unique_id", "ds", "cutoff", method]],
                on=["unique_id", "ds", "cutoff"],
                how="outer",
                validate="one_to_one",
            )
            if len(nxt) != len(merged):
                raise ValueError(f"{method}: cutoffs or dates differ from the other methods")
            merged = nxt
        print(f"  {method:15s} {seconds:7.2f} s", flush=True)
    assert merged is not None
    cutoffs = sorted(pd.to_datetime(merged["cutoff"]).unique())
    if len(cutoffs) != args.windows or len(merged) != args.windows * args.horizon:
        raise ValueError(
            f"expected {args.windows} windows of {args.horizon}: got {len(merged)} rows"
        )

    args.forecasts.parent.mkdir(parents=True, exist_ok=True)
    out = merged.sort_values(["unique_id", "cutoff", "ds"]).assign(
        ds=lambda d: pd.to_datetime(d["ds"]).dt.strftime("%Y-%m-%d"),
        cutoff=lambda d: pd.to_datetime(d["cutoff"]).dt.strftime("%Y-%m-%d"),
    )
    out.to_csv(args.forecasts, index=False, float_format="%.12g")
    meta = {
        "python": platform.python_version(),
        "versions": {p: md.version(p) for p in ("statsforecast", "statsmodels", "pandas", "numpy")},
        "data": str(args.data),
        "rows": len(frame),
        "first": str(frame["ds"].iloc[0].date()),
        "last": str(frame["ds"].iloc[-1].date()),
        "horizon": args.horizon,
        "windows": args.windows,
        "step": args.step,
        "season": args.season,
        "cutoffs": [str(pd.Timestamp(c).date()) for c in cutoffs],
        "exogenous": COVARIATES,
        "methods": meta_methods,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
