"""The wider bad-input matrix: each case read, or refused in one line naming the fix."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_tiny_config, sine_frame
from seqlab.config import DataConfig
from seqlab.data import DataError, load_raw, validate
from seqlab.data.checks import validate_data
from seqlab.errors import TrainingError
from seqlab.evaluation import backtest
from seqlab.inference import user_frame
from seqlab.pipeline import backtest_model, refit
from seqlab.registry.promotion import decide

CFG = DataConfig(source="x", time_column="ds", target="y")


def test_mixed_utc_offsets_are_normalised_to_utc_and_said(caplog) -> None:
    # Hourly readings across the switch to summer time: local offsets +01:00, then +02:00.
    df = pd.DataFrame(
        {
            "ds": [
                "2024-03-31T01:00:00+01:00",
                "2024-03-31T02:00:00+01:00",
                "2024-03-31T04:00:00+02:00",
                "2024-03-31T05:00:00+02:00",
            ],
            "y": [1.0, 2.0, 3.0, 4.0],
        }
    )
    with caplog.at_level(logging.WARNING, logger="seqlab.data"):
        s = validate(df, CFG)
    assert "mixes UTC offsets" in caplog.text and "normalised to UTC" in caplog.text
    assert s.frame["ds"].dt.tz is None and s.freq == "h"
    assert list(s.frame["ds"]) == list(pd.date_range("2024-03-31", periods=4, freq="h"))


def test_latin1_file_names_the_encoding_option_and_reads_with_it(tmp_path: Path) -> None:
    path = tmp_path / "ventes.csv"
    df = sine_frame(n=30)
    df["région"] = "Île-de-France"
    path.write_bytes(df.to_csv(index=False).encode("latin-1"))
    with pytest.raises(DataError, match="not utf-8 text .*data.encoding=latin-1"):
        load_raw(str(path))
    assert load_raw(str(path), "latin-1")["région"].iloc[0] == "Île-de-France"
    with pytest.raises(DataError, match="not a known text encoding"):
        load_raw(str(path), "klingon")


def test_values_that_overflow_scaling_are_refused(tmp_path: Path) -> None:
    cfg = make_tiny_config(tmp_path)
    df = sine_frame(n=90)
    df.loc[40, "y"] = 1e300
    with pytest.raises(DataError, match="values up to 1e\\+300.*rescale it"):
        validate_data(df, cfg)


def test_a_model_forecasting_non_finite_values_is_refused(tmp_path: Path) -> None:
    cfg = make_tiny_config(tmp_path)
    series = validate_data(sine_frame(n=90), cfg)
    fitted = refit(series, cfg, 2, cfg.test_size)
    with torch.no_grad():
        fitted.network.head.bias.fill_(float("inf"))  # as after a diverged update
    with pytest.raises(TrainingError, match="non-finite values .*not registered"):
        backtest_model(fitted, series, cfg)


def test_constant_series_has_undefined_mase_and_says_so() -> None:
    df = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=40), "y": 5.0})
    series = validate(df, CFG)

    def flat(history):
        g = history.frame
        ds = pd.date_range(g["ds"].iloc[-1] + pd.Timedelta(days=1), periods=3)
        return pd.DataFrame({"unique_id": "series_0", "ds": ds, "forecast": 5.5})

    bt = backtest(series, [6, 3], 3, 7, flat)
    assert np.isnan(bt.mean["model"]["mase"]) and bt.mean["model"]["mae"] == pytest.approx(0.5)
    d = decide(bt, "mase")
    assert not d.promote and "mase is undefined" in d.reason and "registry.metric=mae" in d.reason


# ---------------------------------------------------------------- serve what was trained


def fitted_and_series(tmp_path: Path, **overrides):
    cfg = make_tiny_config(tmp_path, **overrides)
    frame = sine_frame(n=90, series=2, covariate=True)
    series = validate_data(frame, cfg)
    return refit(series, cfg, 2, 0), series, cfg


def test_forecast_applies_the_trained_fill_policy(tmp_path: Path) -> None:
    fitted, series, cfg = fitted_and_series(
        tmp_path, **{"data.series_id": "store", "data.covariates": ["temp"], "data.fill": "ffill"}
    )
    assert fitted.columns.fill == "ffill" and fitted.columns.covariates == ("temp",)
    history = user_frame(series, cfg.data).drop(index=[50, 51])  # gaps, as in training data
    out = fitted.predict_frame(history)
    assert sorted(out["unique_id"].unique()) == ["s0", "s1"] and len(out) == 2 * 7
    assert np.isfinite(out["forecast"]).all()
    last = series.frame.groupby("unique_id")["ds"].max()
    assert (out.groupby("unique_id")["ds"].min() == last + pd.Timedelta(days=1)).all()


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (
            lambda h: h.assign(store=h["store"].replace("s0", "s9")),
            "series 's9' was not in the training data",
        ),
        (lambda h: h.groupby("store").tail(5), "the model reads the last 14 (its input_size)"),
        (lambda h: h.drop(columns=["temp"]), "column 'temp' (data.covariates) not found"),
    ],
)
def test_forecast_errors_speak_of_the_model(tmp_path: Path, mutate, fragment) -> None:
    fitted, series, cfg = fitted_and_series(
        tmp_path, **{"data.series_id": "store", "data.covariates": ["temp"]}
    )
    history = mutate(user_frame(series, cfg.data))
    with pytest.raises(DataError, match=re.escape(fragment)):
        fitted.predict_frame(history)
