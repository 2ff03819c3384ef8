"""Classical seasonal decomposition, fitted per series on the training part only.

``window.deseasonalize`` divides (``multiplicative``) or subtracts (``additive``) each series'
seasonal indices before scaling, so the network models the seasonally adjusted series, and the
forecasts get the indices back. This is the preprocessing that the M4 statistical benchmarks
(Theta, SES/Holt/Damped on adjusted data) and ES-RNN rely on, and that Makridakis et al. (2018)
found to help every machine-learning method on M3.

Indices come from the ratio (difference) of the series to its centred moving average, averaged
per phase and normalised to mean 1 (0). A series is only adjusted when it is seasonal: at least
three full seasons, and autocorrelation at the seasonal lag above the 90% limit (the M4
benchmarks' test); other series keep neutral indices. A multiplicative adjustment also needs
strictly positive values. The phase of a point counts steps of the data's frequency from the
first training point of its series (its *anchor*), so forecasts on any later history line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["none", "multiplicative", "additive"]


def acf(y: np.ndarray, lag: int) -> float:
    d = y - y.mean()
    denom = float(np.dot(d, d))
    return float(np.dot(d[lag:], d[:-lag]) / denom) if denom > 0 else 0.0


def is_seasonal(y: np.ndarray, season: int) -> bool:
    """Autocorrelation at lag ``season`` beyond the 90% Bartlett limit; needs 3 seasons."""
    if season < 2 or len(y) < 3 * season:
        return False
    r = [acf(y, k) for k in range(1, season + 1)]
    limit = 1.645 * np.sqrt((1 + 2 * sum(v * v for v in r[:-1])) / len(y))
    return abs(r[-1]) > limit


def centred_moving_average(y: np.ndarray, season: int) -> np.ndarray:
    """The trend: a centred MA of order ``season`` (2 x season for an even season); NaN at ends."""
    if season % 2:
        weights = np.full(season, 1.0 / season)
    else:
        weights = np.r_[0.5, np.ones(season - 1), 0.5] / season
    trend = np.full(len(y), np.nan)
    half = len(weights) // 2
    if len(y) >= len(weights):
        trend[half : len(y) - half] = np.convolve(y, weights, mode="valid")
    return trend


def seasonal_indices(y: np.ndarray, season: int, kind: Kind) -> np.ndarray | None:
    """Indices by phase (position mod ``season``), or ``None`` when ``y`` is not to be adjusted."""
    if kind == "none" or not is_seasonal(y, season):
        return None
    if kind == "multiplicative" and np.any(y <= 0):
        return None
    trend = centred_moving_average(y, season)
    detrended = y / trend if kind == "multiplicative" else y - trend
    phases = np.arange(len(y)) % season
    idx = np.array([np.nanmean(detrended[phases == p]) for p in range(season)])
    if not np.all(np.isfinite(idx)):
        return None
    if kind == "multiplicative":
        return idx / idx.mean() if np.all(idx > 0) else None
    return idx - idx.mean()


def steps_between(anchor: pd.Timestamp, ts: pd.Timestamp, freq: str) -> int:
    """Whole steps of ``freq`` from ``anchor`` to ``ts`` (negative when ``ts`` is earlier)."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if isinstance(offset, pd.offsets.Tick):  # a fixed-length step (hours, days, ...)
        return int(round((ts - anchor).value / offset.nanos))
    lo, hi = (anchor, ts) if ts >= anchor else (ts, anchor)
    n = len(pd.date_range(lo, hi, freq=offset)) - 1
    return n if ts >= anchor else -n


@dataclass(frozen=True)
class Seasonality:
    """Per-series seasonal indices (rows of neutral values where a series is not adjusted)."""

    kind: Kind
    season: int
    freq: str
    series_ids: tuple[str, ...]
    indices: np.ndarray  # (S, season)
    adjusted: tuple[bool, ...]
    anchors: tuple[str, ...]  # ISO time of each series' phase 0

    def factors(self, series_index: int | np.ndarray, phases: np.ndarray) -> np.ndarray:
        rows = self.indices[series_index]
        if np.ndim(series_index):
            return np.take_along_axis(rows, phases % self.season, axis=1)
        return rows[phases % self.season]

    def remove(self, values: np.ndarray, series_index: int, phases: np.ndarray) -> np.ndarray:
        f = self.factors(series_index, phases)
        return values / f if self.kind == "multiplicative" else values - f

    def restore(
        self, values: np.ndarray, series_index: int | np.ndarray, phases: np.ndarray
    ) -> np.ndarray:
        f = self.factors(series_index, phases)
        return values * f if self.kind == "multiplicative" else values + f

    def phase_of(self, series_index: int, ts: pd.Timestamp) -> int:
        return steps_between(pd.Timestamp(self.anchors[series_index]), ts, self.freq)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "season": self.season,
            "freq": self.freq,
            "series_ids": list(self.series_ids),
            "indices": self.indices.tolist(),
            "adjusted": list(self.adjusted),
            "anchors": list(self.anchors),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Seasonality:
        return cls(
            kind=d["kind"],
            season=int(d["season"]),
            freq=d["freq"],
            series_ids=tuple(d["series_ids"]),
            indices=np.asarray(d["indices"], dtype="float64"),
            adjusted=tuple(bool(a) for a in d["adjusted"]),
            anchors=tuple(d["anchors"]),
        )


def fit_seasonality(
    train_parts: list[np.ndarray],
    series_ids: list[str],
    anchors: list[pd.Timestamp],
    season: int,
    kind: Kind,
    freq: str,
) -> Seasonality:
    """Indices of each series from its training part (target values, after the transform)."""
    neutral = 1.0 if kind == "multiplicative" else 0.0
    rows, adjusted = [], []
    for part in train_parts:
        idx = seasonal_indices(np.asarray(part, "float64"), season, kind)
        adjusted.append(idx is not None)
        rows.append(idx if idx is not None else np.full(max(season, 1), neutral))
    return Seasonality(
        kind,
        max(season, 1),
        freq,
        tuple(series_ids),
        np.stack(rows) if rows else np.empty((0, max(season, 1))),
        tuple(adjusted),
        tuple(pd.Timestamp(a).isoformat() for a in anchors),
    )
