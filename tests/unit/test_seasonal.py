"""Classical deseasonalisation: the test, the indices, phases, and the round trip through a fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from seqlab.config import with_overrides
from seqlab.data import SeriesData
from seqlab.features.seasonal import (
    Seasonality,
    centred_moving_average,
    fit_seasonality,
    is_seasonal,
    seasonal_indices,
    steps_between,
)
from seqlab.pipeline import prepare_data, refit

INDEX = np.array([0.8, 0.9, 1.2, 1.1])  # mean 1


def multiplicative(n: int = 48, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (100 + 2 * t) * INDEX[t % 4] * (1 + rng.normal(0, noise, n))


def test_seasonality_test_tells_seasonal_from_noise_and_needs_three_seasons() -> None:
    rng = np.random.default_rng(1)
    assert is_seasonal(multiplicative(40, noise=0.01), 4)
    assert not is_seasonal(rng.normal(size=200), 12)
    assert not is_seasonal(multiplicative(11), 4)  # under three seasons
    assert not is_seasonal(multiplicative(40), 1)


def test_centred_moving_average_of_a_linear_trend_is_the_trend() -> None:
    y = np.arange(20, dtype=float)
    for season in (4, 5):
        trend = centred_moving_average(y, season)
        ok = ~np.isnan(trend)
        np.testing.assert_allclose(trend[ok], y[ok])
        assert ok.sum() == 20 - 2 * (season // 2)


def test_indices_recover_the_seasonal_pattern() -> None:
    idx = seasonal_indices(multiplicative(48), 4, "multiplicative")
    assert idx is not None
    np.testing.assert_allclose(idx, INDEX, atol=0.01)
    assert idx.mean() == pytest.approx(1.0)
    t = np.arange(48)
    add = seasonal_indices(5 + 0.1 * t + np.array([-2, -1, 1, 2])[t % 4], 4, "additive")
    assert add is not None
    np.testing.assert_allclose(add, [-2, -1, 1, 2], atol=1e-9)


def test_series_that_cannot_be_adjusted_keep_neutral_indices() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(10, 1, 60)
    with_zero = multiplicative(48)
    with_zero[5] = 0.0
    s = fit_seasonality(
        [multiplicative(48), noise, with_zero],
        ["a", "b", "c"],
        [pd.Timestamp("2000-01-01")] * 3,
        4,
        "multiplicative",
        "QS",
    )
    assert s.adjusted == (True, False, False)
    np.testing.assert_array_equal(s.indices[1:], 1.0)
    assert seasonal_indices(multiplicative(48), 4, "none") is None


@pytest.mark.parametrize(
    "anchor, ts, freq, steps",
    [
        ("2000-01-01", "2001-03-01", "MS", 14),
        ("2001-03-01", "2000-01-01", "MS", -14),
        ("2000-01-01", "2002-07-01", "QS", 10),
        ("2024-01-01 00:00", "2024-01-03 05:00", "h", 53),
        ("2024-01-01", "2024-01-01", "D", 0),
    ],
)
def test_steps_between_counts_steps_of_the_frequency(anchor, ts, freq, steps) -> None:
    assert steps_between(pd.Timestamp(anchor), pd.Timestamp(ts), freq) == steps


def test_seasonality_serialises_exactly() -> None:
    s = fit_seasonality(
        [multiplicative(48)], ["a"], [pd.Timestamp("2000-01-01")], 4, "multiplicative", "QS"
    )
    back = Seasonality.from_dict(s.to_dict())
    np.testing.assert_array_equal(back.indices, s.indices)
    assert (back.kind, back.anchors, back.adjusted) == (s.kind, s.anchors, s.adjusted)


def quarterly(n: int = 48) -> SeriesData:
    frame = pd.DataFrame(
        {
            "unique_id": "q",
            "ds": pd.date_range("2000-01-01", periods=n, freq="QS"),
            "y": multiplicative(n),
        }
    )
    return SeriesData(frame, "QS", [], "digest", "test")


@pytest.mark.parametrize("kind", ["multiplicative", "additive"])
def test_prepared_windows_decode_back_to_the_data(tiny_config, kind: str) -> None:
    cfg = tiny_config(
        **{
            "window.input_size": 8,
            "window.horizon": 4,
            "window.deseasonalize": kind,
            "data.freq": "QS",
        }
    )
    p = prepare_data(quarterly(), cfg)
    assert p.seasonality is not None and p.seasonality.adjusted == (True,)
    # The targets, decoded as if they were forecasts, are the raw validation values.
    np.testing.assert_allclose(p.decode_val(p.y_val), p.val_target, rtol=1e-5)
    assert p.val_mase(p.y_val) < 1e-5
    # The network sees the adjusted series: the seasonal swing is gone from its inputs.
    plain = prepare_data(quarterly(), with_overrides(cfg, {"window.deseasonalize": "none"}))
    swing = np.ptp(p.x_train[:, :, 0], axis=1).mean()
    assert swing < 0.5 * np.ptp(plain.x_train[:, :, 0], axis=1).mean()


def test_forecasts_get_the_indices_of_their_own_dates_back(tiny_config) -> None:
    cfg = tiny_config(
        **{
            "window.input_size": 8,
            "window.horizon": 4,
            "window.deseasonalize": "multiplicative",
            "data.freq": "QS",
            "window.scaler": "none",
            "window.residual": "none",
        }
    )
    series = quarterly()
    fitted = refit(series, cfg, 1, holdout=0)
    with torch.no_grad():  # a network that forecasts "no change" in the adjusted series
        for p in fitted.network.head.parameters():
            p.zero_()
    idx = fitted.spec.seasonality.indices[0]
    for cut in (0, 1, 2, 3):  # histories ending in each quarter
        frame = series.frame.iloc[: len(series.frame) - cut]
        fc = fitted.predict(series.__class__(frame.reset_index(drop=True), "QS", [], "d", "t"))
        quarters = fc["ds"].dt.quarter.to_numpy() - 1  # phase 0 = Q1 (the anchor's quarter)
        level = frame["y"].iloc[-1] / idx[(len(frame) - 1) % 4]
        np.testing.assert_allclose(fc["forecast"].to_numpy(), level * idx[quarters], rtol=1e-5)
