"""Known-future inputs: calendar features, future covariates in windows, and at forecast time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import promo_config, promo_frame, sine_frame
from seqlab.config import ConfigError
from seqlab.data import DataError, validate
from seqlab.features import calendar_cycles, calendar_features, future_feature_indices
from seqlab.forecaster import split_future
from seqlab.inference import user_frame
from seqlab.pipeline import prepare_data, refit


@pytest.mark.parametrize(
    "freq, cycles",
    [
        ("MS", ["month"]),
        ("QS", ["quarter"]),
        ("W", ["week"]),
        ("D", ["dayofweek", "dayofyear"]),
        ("h", ["hour", "dayofweek"]),
        ("15min", ["minute", "hour", "dayofweek"]),
        ("YS", []),
    ],
)
def test_calendar_cycles_follow_the_frequency(freq: str, cycles: list[str]) -> None:
    assert calendar_cycles(freq) == cycles


def test_calendar_features_are_sine_cosine_positions() -> None:
    months = calendar_features(pd.date_range("2024-01-01", periods=13, freq="MS"), "MS")
    assert months.shape == (13, 2)
    np.testing.assert_allclose(months[0], [0.0, 1.0], atol=1e-12)  # January
    np.testing.assert_allclose(months[3], [1.0, 0.0], atol=1e-12)  # April: a quarter turn
    np.testing.assert_allclose(months[12], months[0], atol=1e-12)  # a year later, the same
    days = calendar_features(pd.date_range("2024-01-01", periods=8, freq="D"), "D")
    np.testing.assert_allclose(days[7, :2], days[0, :2], atol=1e-12)  # weekly cycle
    assert future_feature_indices(("temp", "promo"), ("promo",), 2) == [2, 3, 4]


def test_windows_carry_the_horizons_known_future_values() -> None:
    cfg = promo_config(**{"window.calendar": True, "window.scaler": "none"})
    series = validate(promo_frame(), cfg.data)
    assert series.covariates == ("temp", "promo") and series.future == ("promo",)
    p = prepare_data(series, cfg)
    L, H = 14, 7
    assert p.future_features == [2, 3, 4, 5, 6] and p.n_features == 7  # promo + 4 calendar
    assert p.x_train.shape[1:] == (L + H, 7)
    promo = series.frame["promo"].to_numpy()
    # Window k's target starts at k + L: its horizon rows hold promo at those very steps.
    for k in (0, 5, 40):
        np.testing.assert_allclose(p.x_train[k, L:, 2], promo[k + L : k + L + H])
    assert not p.x_train[:, L:, :2].any()  # the target and past-only columns stay unknown


def test_forecasting_needs_the_future_rows_and_names_the_missing_ones() -> None:
    cfg = promo_config()
    series = validate(promo_frame(), cfg.data)
    fitted = refit(series, cfg, 2, 0)
    history = user_frame(series, cfg.data).head(150)
    with pytest.raises(DataError) as err:
        fitted.predict_frame(history)
    msg = str(err.value)
    assert "\n" not in msg and "'series_0' lacks future values of promo" in msg
    assert "2024-05-30" in msg and "4 more" in msg
    future = user_frame(series, cfg.data).iloc[150:157].assign(y=np.nan)
    fc = fitted.predict_frame(pd.concat([history, future]))
    assert len(fc) == 7 and fc["ds"].iloc[0] == future["ds"].iloc[0]
    partial = pd.concat([history, future.head(4)])
    with pytest.raises(DataError, match="at 2024-06-03, 2024-06-04, 2024-06-05:"):
        fitted.predict_frame(partial)


def test_split_future_takes_rows_after_the_last_observed_target() -> None:
    cfg = promo_config()
    frame = user_frame(validate(promo_frame(30), cfg.data), cfg.data)
    frame.loc[3, "y"] = np.nan  # a gap inside the history stays history
    frame.loc[27:, "y"] = np.nan
    past, ahead = split_future(frame, cfg.data)
    assert len(past) == 27 and list(ahead.index) == [27, 28, 29]


def test_a_column_cannot_be_both_past_and_known_future() -> None:
    with pytest.raises(ConfigError, match="promo listed in both data.covariates"):
        promo_config(**{"data.covariates": ["promo"]})


def test_series_embedding_windows_carry_the_series_index_and_forecast() -> None:
    frames = []
    for i in range(3):
        d = sine_frame(n=80, seed=i)
        d.insert(0, "store", f"s{i}")
        frames.append(d)
    cfg = promo_config(
        **{
            "data.series_id": "store",
            "data.covariates": [],
            "data.future_covariates": [],
            "model.series_embedding": 3,
        }
    )
    series = validate(pd.concat(frames, ignore_index=True), cfg.data)
    p = prepare_data(series, cfg)
    assert p.series_index and p.x_train.shape[2] == p.n_features + 1 == 2
    np.testing.assert_array_equal(p.x_train[:, 0, -1], p.train_series)  # unscaled indices
    assert (p.x_train[:, :, -1] == p.x_train[:, :1, -1]).all()  # constant over the rows
    fitted = refit(series, cfg, 2, cfg.test_size)
    assert fitted.network.hparams["series_embedding"] == 3
    fc = fitted.predict(series)
    assert len(fc) == 3 * 7 and fc["forecast"].notna().all()
    with pytest.raises(ConfigError, match="model.series_embedding"):
        promo_config(**{"model.series_embedding": -1})
