"""Point-forecast metrics, naive baselines and the forecast-vs-actual plot.

MASE is scaled by the in-sample seasonal-naive MAE of each series' training part (Hyndman &
Koehler 2006); metrics over several series are the mean of the per-series values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("mae", "rmse", "smape", "mase")


def mae(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(np.abs(y - f)))


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - f) ** 2)))


def smape(y: np.ndarray, f: np.ndarray) -> float:
    """Symmetric MAPE in percent (0..200); a 0/0 term counts as 0."""
    denom = np.abs(y) + np.abs(f)
    ratio = np.divide(2 * np.abs(y - f), denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return float(100 * np.mean(ratio))


def mase_scale(train: np.ndarray, season: int) -> float:
    """In-sample seasonal-naive MAE of the training part (falls back to lag 1 when too short)."""
    m = season if len(train) > season else 1
    if len(train) <= m:
        return float("nan")
    scale = float(np.mean(np.abs(train[m:] - train[:-m])))
    return scale if scale > 0 else float("nan")


def mase(y: np.ndarray, f: np.ndarray, scale: float) -> float:
    return mae(y, f) / scale


def naive_forecast(history: np.ndarray, horizon: int) -> np.ndarray:
    return np.repeat(history[-1], horizon)


def seasonal_naive_forecast(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    if season <= 1 or len(history) < season:
        return naive_forecast(history, horizon)
    last = history[-season:]
    return np.resize(last, horizon)  # repeats the last season as often as needed


def score(y: np.ndarray, f: np.ndarray, train: np.ndarray, season: int) -> dict[str, float]:
    """All metrics of one series' forecast."""
    return {
        "mae": mae(y, f),
        "rmse": rmse(y, f),
        "smape": smape(y, f),
        "mase": mase(y, f, mase_scale(train, season)),
    }


@dataclass(frozen=True)
class Evaluation:
    """Metrics of the model and of each baseline on the test window, mean over series."""

    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    per_series: dict[str, dict[str, float]]
    season: int

    def flat(self, prefix: str = "test") -> dict[str, float]:
        """``{"test/mase": .., "test/naive/mase": .., "test/seasonal_naive/mase": ..}``."""
        out = {f"{prefix}/{k}": v for k, v in self.model.items()}
        for name, ms in self.baselines.items():
            out.update({f"{prefix}/{name}/{k}": v for k, v in ms.items()})
        return out

    def beats_baselines(self, metric: str = "mase") -> bool:
        return all(self.model[metric] < b[metric] for b in self.baselines.values())


def _mean(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Mean over series, ignoring undefined (NaN) values; NaN when all are undefined."""
    out = {}
    for k in dicts[0]:
        vals = np.array([d[k] for d in dicts], dtype=float)
        finite = vals[~np.isnan(vals)]
        out[k] = float(finite.mean()) if finite.size else float("nan")
    return out


def evaluate_forecasts(
    y_test: np.ndarray,
    forecasts: np.ndarray,
    train_parts: list[np.ndarray],
    history_parts: list[np.ndarray],
    series_ids: list[str],
    season: int,
) -> Evaluation:
    """Score model forecasts (S, H) and the naive baselines against the actual test values."""
    horizon = y_test.shape[1]
    model_scores, naive_scores, snaive_scores, per_series = [], [], [], {}
    for i, sid in enumerate(series_ids):
        y, train, hist = y_test[i], train_parts[i], history_parts[i]
        s = score(y, forecasts[i], train, season)
        model_scores.append(s)
        naive_scores.append(score(y, naive_forecast(hist, horizon), train, season))
        snaive_scores.append(score(y, seasonal_naive_forecast(hist, horizon, season), train, season))
        per_series[sid] = s
    return Evaluation(
        model=_mean(model_scores),
        baselines={"naive": _mean(naive_scores), "seasonal_naive": _mean(snaive_scores)},
        per_series=per_series,
        season=season,
    )


def forecast_frame(
    series_ids: list[str], starts: list[pd.Timestamp], freq: str, values: np.ndarray
) -> pd.DataFrame:
    """Long-format forecast: ``unique_id, ds, forecast`` for each series' horizon."""
    rows = []
    for sid, start, vals in zip(series_ids, starts, values):
        ds = pd.date_range(start, periods=len(vals), freq=freq)
        rows.append(pd.DataFrame({"unique_id": sid, "ds": ds, "forecast": vals.astype(float)}))
    return pd.concat(rows, ignore_index=True)


def plot_forecast(
    history: list[np.ndarray],
    y_test: np.ndarray,
    forecasts: np.ndarray,
    baselines: dict[str, np.ndarray],
    series_ids: list[str],
    path: str | Path,
    title: str = "",
    max_series: int = 6,
) -> Path:
    """Forecast vs actual (and baselines) for up to ``max_series`` series, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(series_ids), max_series)
    fig, axes = plt.subplots(n, 1, figsize=(10, 3.2 * n), squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        hist = history[i]
        h = y_test.shape[1]
        t_hist = np.arange(len(hist))
        t_test = np.arange(len(hist), len(hist) + h)
        ax.plot(t_hist, hist, color="0.3", lw=1, label="history")
        ax.plot(t_test, y_test[i], color="black", lw=2, label="actual")
        ax.plot(t_test, forecasts[i], color="tab:blue", lw=2, label="model")
        for (name, bf), color in zip(baselines.items(), ("tab:orange", "tab:green")):
            ax.plot(t_test, bf[i], color=color, lw=1, ls="--", label=name)
        ax.set_title(f"{title} {series_ids[i]}".strip())
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
