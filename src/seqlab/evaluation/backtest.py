"""Rolling-origin backtests: the model and the naive baselines forecast from the same cutoffs.

MASE is scaled by the in-sample seasonal-naive MAE of each series' history before the cutoff
(Hyndman & Koehler 2006). A backtest scores forecasts made at several cutoffs (the shape of
statsforecast/neuralforecast ``cross_validation``: one row per series, cutoff and step); the
baselines are computed on the very same cutoffs. Means are over series, then over cutoffs.

Only observed actuals are scored: target points that the data policies filled
(:attr:`SeriesData.filled`) have ``y`` = NaN in the cross-validation frame, and every metric
skips NaN actuals; a window with no observed point scores NaN, which the means skip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqlab.data.series import SeriesData
from seqlab.evaluation.metrics import (
    METRICS,
    interval_metrics,
    mae,
    mase_scale,
    naive_forecast,
    quantile_levels,
    rmse,
    seasonal_naive_forecast,
    smape,
)
from seqlab.evaluation.references import COLUMNS as REFERENCES

# ---------------------------------------------------------------- rolling-origin backtests

ForecastFn = Callable[[SeriesData], pd.DataFrame]
"""History (validated, canonical) -> ``unique_id, ds, forecast`` for the next horizon: a fitted
model's or a baseline's predict (not a network: those are ``seqlab.models.Forecaster``)."""

BASELINES = ("naive", "seasonal_naive")
COMPARED = (*BASELINES, *REFERENCES)
"""What the model is scored beside, when the frame has the column: baselines, then references
(:mod:`seqlab.evaluation.references`)."""


def keep_series(series: SeriesData, ids: set) -> SeriesData:
    if len(ids) == series.frame["unique_id"].nunique():
        return series
    frame = series.frame[series.frame["unique_id"].isin(ids)].reset_index(drop=True)
    return dataclasses.replace(series, frame=frame)


def cross_validation(
    series: SeriesData,
    offsets: list[int],
    horizon: int,
    season: int,
    forecaster: ForecastFn,
    labels: list[int] | None = None,
    min_history: int = 1,
) -> pd.DataFrame:
    """Forecast at each cutoff (``offsets``: points before each series' end, oldest first;
    ``labels``: the window number of each, default 0, 1, ...).

    Returns one row per series, window and step: ``unique_id, window, cutoff, ds, y, model,
    naive, seasonal_naive, mase_scale`` (and the model's ``q<level>`` columns when it forecasts
    quantiles); ``cutoff`` is the last timestamp the forecast saw. ``y`` is NaN where the
    target was filled rather than observed (:attr:`SeriesData.filled`): those points are not
    scored.
    """
    from seqlab.inference import truncate

    parts = []
    lengths = series.frame.groupby("unique_id", sort=False).size()
    filled = pd.Series(series.filled_mask(series.frame), index=series.frame.index)
    for window, offset in zip(labels or range(len(offsets)), offsets):
        # A series with too little history before this cutoff is left out of this window.
        enough = set(lengths.index[lengths - offset >= min_history])
        if not enough:
            continue
        history = keep_series(truncate(series, offset), enough)
        out = forecaster(history).set_index(["unique_id", "ds"])
        fc, qcols = out["forecast"], [f"q{q:g}" for q in quantile_levels(out)]
        for sid, g in series.frame.groupby("unique_id", sort=False):
            if sid not in enough:
                continue
            past = g["y"].to_numpy("float64")[: len(g) - offset]
            future = g.iloc[len(g) - offset : len(g) - offset + horizon]
            where = pd.MultiIndex.from_arrays(
                [np.full(len(future), sid, dtype=object), future["ds"].to_numpy()]
            )
            actual = future["y"].to_numpy("float64").copy()
            actual[filled.loc[future.index].to_numpy()] = np.nan  # filled, not observed
            model = fc.reindex(where)
            quantiles = {c: out[c].reindex(where).to_numpy("float64") for c in qcols}
            parts.append(
                pd.DataFrame(
                    {
                        "unique_id": sid,
                        "window": window,
                        "cutoff": g["ds"].iloc[len(past) - 1],
                        "ds": future["ds"].to_numpy(),
                        "y": actual,
                        "model": model.to_numpy("float64"),
                        "naive": naive_forecast(past, horizon)[: len(future)],
                        "seasonal_naive": seasonal_naive_forecast(past, horizon, season)[
                            : len(future)
                        ],
                        "mase_scale": mase_scale(past, season),
                        **quantiles,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class Backtest:
    """Scores of a cross-validation frame: per window, per series and overall (mean)."""

    frame: pd.DataFrame  # the cross-validation frame
    per_window: pd.DataFrame  # window, cutoff, method, mae, rmse, smape, mase (mean over series)
    # (+ spl, coverage_<P> on the model's rows when it forecasts quantiles)
    per_series: pd.DataFrame  # unique_id, method, metrics (mean over windows)
    mean: dict[str, dict[str, float]]  # method -> metric -> mean over windows
    season: int

    @property
    def windows(self) -> list[int]:
        return sorted(self.frame["window"].unique().tolist())

    @property
    def cutoffs(self) -> list[str]:
        """The cutoff of each window (of the first series), as ISO strings."""
        first = self.frame.groupby("window", sort=True)["cutoff"].first()
        return [pd.Timestamp(c).isoformat() for c in first]

    def scores(self, method: str = "model", metric: str = "mase") -> list[float]:
        """One value per window, oldest first."""
        rows = self.per_window[self.per_window["method"] == method].sort_values("window")
        return [float(v) for v in rows[metric]]

    def flat(self, prefix: str = "test") -> dict[str, float]:
        """``{"test/mase": .., "test/seasonal_naive/mase": .., ...}`` (means over windows)."""
        out = {}
        for method, ms in self.mean.items():
            head = prefix if method == "model" else f"{prefix}/{method}"
            out.update({f"{head}/{k}": v for k, v in ms.items()})
        return out

    def beats(self, baseline: str = "seasonal_naive", metric: str = "mase") -> bool:
        return bool(self.mean["model"][metric] < self.mean[baseline][metric])

    def subset(self, windows: list[int]) -> Backtest:
        return score_backtest(self.frame[self.frame["window"].isin(windows)], self.season)


def _series_window_scores(frame: pd.DataFrame, method: str) -> pd.DataFrame:
    rows = []
    levels = quantile_levels(frame) if method == "model" else []
    for (sid, window), g in frame.groupby(["unique_id", "window"], sort=False):
        y, f = g["y"].to_numpy(), g[method].to_numpy()
        scale = g["mase_scale"].iloc[0]
        row = {"unique_id": sid, "window": window, "cutoff": g["cutoff"].iloc[0]}
        if not np.isfinite(f).all() and method in REFERENCES:
            # A reference that could not be fitted here is not scored here (it was warned of).
            rows.append({**row, **{m: float("nan") for m in METRICS}})
            continue
        if not np.isfinite(f).all():
            # A missing or non-finite forecast is infinitely wrong: it must never average away.
            rows.append({**row, **{m: float("inf") for m in METRICS}})
            continue
        row.update(
            {"mae": mae(y, f), "rmse": rmse(y, f), "smape": smape(y, f), "mase": mae(y, f) / scale}
        )
        if levels:
            qs = {q: g[f"q{q:g}"].to_numpy("float64") for q in levels}
            row.update(interval_metrics(y, qs, f, scale))
            if f"raw_q{levels[0]:g}" in g:  # conformally calibrated: the network's own too
                raw = {q: g[f"raw_q{q:g}"].to_numpy("float64") for q in levels}
                row.update({f"raw_{k}": v for k, v in interval_metrics(y, raw, f, scale).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def score_backtest(frame: pd.DataFrame, season: int) -> Backtest:
    methods = ["model", *[b for b in COMPARED if b in frame.columns]]
    per_window, per_series, mean = [], [], {}
    for method in methods:
        sw = _series_window_scores(frame, method)
        names = [c for c in sw.columns if c not in ("unique_id", "window", "cutoff")]
        pw = (
            sw.groupby("window", sort=True)
            .agg(cutoff=("cutoff", "first"), **{m: (m, "mean") for m in names})
            .reset_index()
        )
        pw.insert(2, "method", method)
        per_window.append(pw)
        ps = sw.groupby("unique_id", sort=False)[names].mean().reset_index()
        ps.insert(1, "method", method)
        per_series.append(ps)
        mean[method] = {
            m: float(np.nanmean(pw[m])) if pw[m].notna().any() else float("nan") for m in names
        }
    return Backtest(
        frame.reset_index(drop=True),
        pd.concat(per_window, ignore_index=True),
        pd.concat(per_series, ignore_index=True),
        mean,
        season,
    )


def backtest(
    series: SeriesData,
    offsets: list[int],
    horizon: int,
    season: int,
    forecaster: ForecastFn,
    labels: list[int] | None = None,
    min_history: int = 1,
) -> Backtest:
    """Cross-validate ``forecaster`` and the baselines on the same cutoffs and score them."""
    frame = cross_validation(series, offsets, horizon, season, forecaster, labels, min_history)
    return score_backtest(frame, season)
