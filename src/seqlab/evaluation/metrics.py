"""Point and interval metrics and the naive baselines (pure numpy; NaN actuals are skipped).

MASE is scaled by the in-sample seasonal-naive MAE of each series' history before the cutoff
(Hyndman & Koehler 2006).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqlab.features.windows import seasonal_mae

METRICS = ("mae", "rmse", "smape", "mase")


def quantile_levels(frame: pd.DataFrame) -> list[float]:
    """Levels of the ``q<level>`` columns of a forecast or cross-validation frame."""
    out = []
    for c in frame.columns:
        if isinstance(c, str) and c.startswith("q"):
            try:
                out.append(float(c[1:]))
            except ValueError:
                continue
    return sorted(out)


def _observed(y: np.ndarray, *forecasts: np.ndarray) -> tuple[np.ndarray, ...]:
    """``y`` and the forecasts at the points with an observed (non-NaN) actual."""
    y = np.asarray(y, dtype="float64")
    seen = ~np.isnan(y)
    return (y[seen], *(np.asarray(f, dtype="float64")[seen] for f in forecasts))


def _mean(values: np.ndarray) -> float:
    """The mean, NaN over no values (no warning)."""
    return float(np.mean(values)) if len(values) else float("nan")


def pinball(y: np.ndarray, f: np.ndarray, level: float) -> float:
    """Mean pinball loss over the observed (non-NaN) actuals."""
    y, f = _observed(y, f)
    diff = y - f
    return _mean(np.maximum(level * diff, (level - 1) * diff))


def interval_metrics(
    y: np.ndarray, quantiles: dict[float, np.ndarray], median: np.ndarray, scale: float
) -> dict[str, float]:
    """``spl``: the pinball loss averaged over the levels (the median included), scaled like
    MASE; ``coverage_<P>``: share of actuals inside each central P% interval (levels q, 1 - q).
    Over the observed (non-NaN) actuals only; NaN when there are none."""
    levels = {**quantiles, 0.5: median}
    out = {"spl": float(np.mean([pinball(y, f, q) for q, f in levels.items()])) / scale}
    for q, lo in quantiles.items():
        hi = quantiles.get(round(1 - q, 10))
        if q < 0.5 and hi is not None:
            ys, los, his = _observed(y, lo, hi)
            out[f"coverage_{round(100 * (1 - 2 * q)):d}"] = _mean((ys >= los) & (ys <= his))
    return out


def mae(y: np.ndarray, f: np.ndarray) -> float:
    """Mean absolute error over the observed (non-NaN) actuals; NaN when there are none."""
    y, f = _observed(y, f)
    return _mean(np.abs(y - f))


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    """Root mean squared error over the observed (non-NaN) actuals; NaN when there are none."""
    y, f = _observed(y, f)
    return float(np.sqrt(_mean((y - f) ** 2)))


def smape(y: np.ndarray, f: np.ndarray) -> float:
    """Symmetric MAPE in percent (0..200) over the observed (non-NaN) actuals; a 0/0 term
    counts as 0; NaN when there are no observed actuals."""
    y, f = _observed(y, f)
    denom = np.abs(y) + np.abs(f)
    ratio = np.divide(
        2 * np.abs(y - f), denom, out=np.zeros_like(denom, dtype=float), where=denom > 0
    )
    return 100 * _mean(ratio)


def mase_scale(train: np.ndarray, season: int) -> float:
    """In-sample seasonal-naive MAE of the training part (falls back to lag 1 when too short)."""
    return seasonal_mae(train, season)


def mase(y: np.ndarray, f: np.ndarray, scale: float) -> float:
    return mae(y, f) / scale


def naive_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(history[-1], horizon)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    if season <= 1 or len(history) < season:
        return naive_forecast(history, horizon)
    last = history[-season:]
    return np.resize(last, horizon)  # repeats the last season as often as needed
