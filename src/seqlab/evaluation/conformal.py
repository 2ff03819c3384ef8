"""Conformal calibration of a quantile model's intervals on its backtest windows.

A network trained with pinball loss learns its quantiles on the windows it trained on, where it
fits best, so its intervals tend to be too narrow on unseen data. Conformalized quantile
regression (Romano, Patterson and Candes, 2019) corrects that with out-of-sample errors: for the
central interval of levels ``(l, 1 - l)``, the conformity score of an actual ``y`` is
``max(q_l - y, y - q_{1-l}) / s``, in units of the series' MASE scale ``s`` (its in-sample
seasonal-naive MAE) so that series of any size pool; the interval becomes
``[q_l - m s, q_{1-l} + m s]``, with ``m`` the ``ceil((n + 1)(1 - 2l)) / n`` empirical quantile of
``n`` such scores. ``m`` is negative when the raw interval was too wide.

The backtest forecasts are out of sample for the model trained before the first cutoff, so they
are the calibration set of the served model, which stores the margins and each series' scale over
its training data (so an interval does not depend on how much history a caller passes). The
backtest itself reports coverage honestly by calibrating each window on the others
(cross-conformal), and keeps the network's own intervals as ``raw_q<level>`` columns
(``raw_coverage_<P>`` metrics). Scores pool over series, windows and horizon steps (a few
windows hold too few points for a margin per step).

numpy and pandas only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

RAW = "raw_"


def column(level: float) -> str:
    return f"q{level:g}"


def pairs(levels: list[float]) -> list[tuple[float, float]]:
    """The central intervals ``(l, 1 - l)`` among quantile levels, innermost last."""
    have = {round(q, 10) for q in levels}
    return [(q, round(1 - q, 10)) for q in sorted(levels) if q < 0.5 and round(1 - q, 10) in have]


def scores(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """CQR conformity scores in MASE-scale units; points without a finite score are dropped."""
    s = np.maximum(lo - y, y - hi) / scale
    return s[np.isfinite(s)]


def margin(conformity: np.ndarray, coverage: float) -> float | None:
    """The split-conformal margin for a ``coverage`` interval: the ``ceil((n + 1) coverage)``-th
    smallest of ``n`` scores; ``None`` when ``n`` is too small for that guarantee."""
    n = len(conformity)
    k = math.ceil((n + 1) * coverage)
    if n == 0 or k > n:
        return None
    return float(np.sort(conformity)[k - 1])


def margins(frame: pd.DataFrame, levels: list[float]) -> dict[float, float]:
    """Margin of each central interval (keyed by its lower level) from a backtest frame's model
    rows: ``y``, ``mase_scale`` and the network's own quantile columns (``raw_q<level>`` when
    present, else ``q<level>``). Intervals with too few points for a margin are left out."""
    out = {}
    for lo, hi in pairs(levels):
        cols = [RAW + column(q) if RAW + column(q) in frame else column(q) for q in (lo, hi)]
        conformity = scores(
            frame["y"].to_numpy("float64"),
            frame[cols[0]].to_numpy("float64"),
            frame[cols[1]].to_numpy("float64"),
            frame["mase_scale"].to_numpy("float64"),
        )
        m = margin(conformity, 1 - 2 * lo)
        if m is not None:
            out[lo] = m
    return out


def widen(
    quantiles: dict[float, np.ndarray],
    point: np.ndarray,
    found: dict[float, float],
    scale: np.ndarray,
) -> dict[float, np.ndarray]:
    """Quantile forecasts with each central interval moved out by its margin times the series'
    scale (``scale`` per value; no move where it is not finite), kept ordered around the point
    forecast and nested (an outer level never inside an inner one)."""
    s = np.where(np.isfinite(scale), scale, 0.0)
    out = {q: np.asarray(v, dtype="float64").copy() for q, v in quantiles.items()}
    for lo, hi in pairs(list(quantiles)):
        m = found.get(lo)
        if m is not None:
            out[lo] = out[lo] - m * s
            out[hi] = out[hi] + m * s
    inner_lo = inner_hi = np.asarray(point, dtype="float64")
    for lo, hi in reversed(pairs(list(quantiles))):  # from the innermost interval outwards
        out[lo] = inner_lo = np.minimum(out[lo], inner_lo)
        out[hi] = inner_hi = np.maximum(out[hi], inner_hi)
    return out


def cross_calibrate(frame: pd.DataFrame, levels: list[float]) -> pd.DataFrame:
    """A backtest frame whose ``q<level>`` columns are calibrated out of window (each window's
    intervals with margins from the other windows' scores), the network's own kept as
    ``raw_q<level>``. A window whose others hold too few points keeps its raw intervals."""
    out = frame.copy()
    for q in levels:
        out[RAW + column(q)] = frame[column(q)]
    for w in frame["window"].unique():
        rows = (frame["window"] == w).to_numpy()
        found = margins(out[~rows], levels)
        moved = widen(
            {q: frame.loc[rows, column(q)].to_numpy("float64") for q in levels},
            frame.loc[rows, "model"].to_numpy("float64"),
            found,
            frame.loc[rows, "mase_scale"].to_numpy("float64"),
        )
        for q, v in moved.items():
            out.loc[rows, column(q)] = v
    return out


def central_levels(coverages: Sequence[float]) -> list[float]:
    """Quantile levels of central intervals given as coverages in percent: 80 -> 0.1, 0.9."""
    lows = sorted({round((1 - c / 100) / 2, 10) for c in coverages})
    return sorted([*lows, *(round(1 - q, 10) for q in lows)])


def with_point_bands(frame: pd.DataFrame, levels: Sequence[float]) -> pd.DataFrame:
    """A backtest frame of a point model with zero-width ``q<level>`` columns at its point
    forecast: conformalising them (``seqlab.evaluation.conformal``) gives split-conformal intervals
    on the absolute errors, the intervals statsforecast's and neuralforecast's
    ``PredictionIntervals`` give point models."""
    out = frame.copy()
    for q in levels:
        out[column(q)] = frame["model"]
    return out
