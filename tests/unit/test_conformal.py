"""Conformal calibration of quantile intervals: the finite-sample margin, widening that keeps
quantiles ordered, out-of-window calibration of a backtest, and margins applied at forecast
time in each series' own scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seqlab.evaluation import conformal, score_backtest


def test_margin_is_the_finite_sample_conformal_quantile() -> None:
    scores = np.arange(1.0, 10.0)  # 9 scores: ceil(10 * 0.8) = 8th smallest
    assert conformal.margin(scores, 0.8) == 8.0
    assert conformal.margin(scores, 0.5) == 5.0
    assert conformal.margin(scores[:3], 0.8) is None  # ceil(4 * 0.8) = 4 > 3 points
    assert conformal.margin(np.array([]), 0.8) is None


def test_scores_are_in_scale_units_and_negative_inside_the_interval() -> None:
    y = np.array([0.0, 5.0, -4.0, np.nan])
    s = conformal.scores(y, np.full(4, -1.0), np.full(4, 1.0), np.array([1.0, 2.0, 1.0, 1.0]))
    np.testing.assert_allclose(s, [-1.0, 2.0, 3.0])  # inside; 4 above / 2; 3 below; NaN dropped


def test_pairs_are_central_intervals_innermost_last() -> None:
    assert conformal.pairs([0.05, 0.1, 0.5, 0.9, 0.95]) == [(0.05, 0.95), (0.1, 0.9)]
    assert conformal.pairs([0.1, 0.5, 0.8]) == []  # 0.1 has no partner


def test_widen_moves_by_margin_times_scale_and_keeps_order() -> None:
    point = np.array([10.0, 10.0])
    qs = {0.05: np.array([8.0, 8.0]), 0.1: np.array([9.0, 9.0]), 0.9: np.array([11.0, 11.0])}
    qs[0.95] = np.array([12.0, 12.0])
    out = conformal.widen(qs, point, {0.1: 0.5, 0.05: -1.0}, np.array([2.0, np.nan]))
    np.testing.assert_allclose(out[0.1], [8.0, 9.0])  # 9 - 0.5 * 2; no scale: unmoved
    np.testing.assert_allclose(out[0.9], [12.0, 11.0])
    # The 90% interval narrowed by 1 * 2 would sit inside the widened 80% one: kept nested.
    np.testing.assert_allclose(out[0.05], [8.0, 8.0])
    np.testing.assert_allclose(out[0.95], [12.0, 12.0])
    shrunk = conformal.widen(qs, point, {0.1: -5.0}, np.array([1.0, 1.0]))
    np.testing.assert_allclose(shrunk[0.1], point)  # never past the point forecast
    np.testing.assert_allclose(shrunk[0.9], point)
    np.testing.assert_allclose(qs[0.1], [9.0, 9.0])  # the input is left as it was


def too_narrow_backtest(windows: int = 6, n_series: int = 4, horizon: int = 12) -> pd.DataFrame:
    """Actuals ~ N(0, s) per series, intervals of a network that learnt +-0.5 s: ~38% coverage
    where 80% was asked for."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_series):
        s = 10.0**i  # series of very different sizes pool through the MASE scale
        for w in range(windows):
            y = rng.normal(0, s, horizon)
            rows.append(
                pd.DataFrame(
                    {
                        "unique_id": f"s{i}",
                        "window": w,
                        "cutoff": pd.Timestamp("2024-01-01") + pd.Timedelta(days=w),
                        "ds": pd.date_range("2024-02-01", periods=horizon) + pd.Timedelta(days=w),
                        "y": y,
                        "model": np.zeros(horizon),
                        "naive": np.zeros(horizon),
                        "seasonal_naive": np.zeros(horizon),
                        "mase_scale": s,
                        "q0.1": np.full(horizon, -0.5 * s),
                        "q0.9": np.full(horizon, 0.5 * s),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_cross_calibration_brings_coverage_near_nominal_out_of_window() -> None:
    frame = too_narrow_backtest()
    raw = score_backtest(frame, 1).mean["model"]["coverage_80"]
    calibrated = conformal.cross_calibrate(frame, [0.1, 0.9])
    bt = score_backtest(calibrated, 1)
    assert raw < 0.5
    assert bt.mean["model"]["coverage_80"] == pytest.approx(0.8, abs=0.06)
    assert bt.mean["model"]["raw_coverage_80"] == pytest.approx(raw)  # the network's own, kept
    pd.testing.assert_series_equal(calibrated["raw_q0.1"], frame["q0.1"], check_names=False)
    # Each window's margin comes from the others: a window's own actuals never set its interval.
    moved = calibrated["q0.9"] - frame["q0.9"]
    for w in range(6):
        rows = calibrated["window"] == w
        others = conformal.margins(calibrated[~rows], [0.1, 0.9])[0.1]
        np.testing.assert_allclose(moved[rows], others * calibrated.loc[rows, "mase_scale"])


def test_margins_use_the_networks_own_intervals_and_skip_too_few_points() -> None:
    frame = too_narrow_backtest(windows=1, n_series=1, horizon=3)
    assert conformal.margins(frame, [0.1, 0.9]) == {}  # 3 points cannot certify 80%
    calibrated = conformal.cross_calibrate(too_narrow_backtest(), [0.1, 0.9])
    # From raw_q columns, not the already calibrated ones: the same as on the original frame.
    assert conformal.margins(calibrated, [0.1, 0.5, 0.9]) == conformal.margins(
        too_narrow_backtest(), [0.1, 0.9]
    )
