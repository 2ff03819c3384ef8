"""Quantile forecasts through the whole flow: trained with pinball loss, scored for coverage,
calibrated on the backtest, registered, and served with their intervals; an ensemble of
deseasonalised members reading a known-future covariate and calendar features alongside."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import DEFAULT_CONFIG, sine_frame, tiny_overrides
from flows.report import render_markdown
from flows.training import training_pipeline
from seqlab.data import DataError
from seqlab.registry import serving

pytestmark = pytest.mark.integration


def test_quantile_ensemble_is_backtested_registered_and_served_with_intervals(
    tmp_path, prefect_harness
) -> None:
    path = tmp_path / "sine.csv"
    frame = sine_frame(n=120)
    frame["promo"] = (np.random.default_rng(0).random(len(frame)) < 0.3).astype(float)
    frame["y"] += 2 * frame["promo"]
    frame.to_csv(path, index=False)
    overrides = tiny_overrides(
        tmp_path,
        **{
            "data.source": str(path),
            "data.time_column": "ds",
            "data.target": "y",
            "data.freq": "D",
            "window.transform": "none",
            "window.horizon": 7,
            "window.input_size": 14,
            "window.deseasonalize": "additive",
            "eval.season_length": 7,
            "model.quantiles": "[0.1, 0.5, 0.9]",
            "model.ensemble_size": 2,
            "train.loss": "pinball",
            "data.future_covariates": "[promo]",
            "window.calendar": True,
            "registry.require_beat_baseline": False,
        },
    )
    summary = training_pipeline(DEFAULT_CONFIG, overrides)
    assert summary.version == "1"
    note = render_markdown(summary)  # said in the summary, calibrated and raw
    assert "intervals: 80% band held" in note and "the network's own" in note
    client = mlflow.tracking.MlflowClient(summary.tracking_uri)
    run = client.get_run(summary.run_id)
    cv = pd.read_csv(
        client.download_artifacts(summary.run_id, "backtest/cross_validation.csv", str(tmp_path))
    )
    assert {"q0.1", "q0.9", "raw_q0.1", "raw_q0.9"} <= set(cv.columns)
    assert not np.allclose(cv["q0.1"], cv["raw_q0.1"])  # calibrated intervals differ from raw
    # The logged scores are those of the logged forecasts: per window, the share of actuals in
    # the calibrated (and the network's own) 80% band, and the scaled pinball loss.
    by_window = cv.groupby("window", sort=True)

    def inside(lo: str, hi: str) -> pd.Series:
        return by_window.apply(lambda g: ((g["y"] >= g[lo]) & (g["y"] <= g[hi])).mean())

    def spl(g: pd.DataFrame) -> float:
        levels = {0.1: g["q0.1"], 0.5: g["model"], 0.9: g["q0.9"]}
        d = {q: g["y"] - f for q, f in levels.items()}
        loss = [np.maximum(q * d[q], (q - 1) * d[q]).mean() for q in levels]
        return float(np.mean(loss) / g["mase_scale"].iloc[0])

    coverage = inside("q0.1", "q0.9")
    steps = client.get_metric_history(summary.run_id, "backtest/coverage_80")
    assert {m.step: m.value for m in steps} == pytest.approx(coverage.to_dict())  # per window
    assert sorted(coverage.index) == [0, 1, 2]  # one per backtest window
    metrics = run.data.metrics
    assert metrics["test/coverage_80"] == pytest.approx(coverage.mean())
    assert metrics["test/raw_coverage_80"] == pytest.approx(inside("raw_q0.1", "raw_q0.9").mean())
    assert metrics["test/spl"] == pytest.approx(by_window.apply(spl).mean())

    model = serving.load_forecaster(client, summary.model_name, summary.version)
    meta = model.unwrap_python_model().meta
    assert meta["network"]["ensemble_size"] == 2
    assert meta["network"]["quantiles"] == [0.1, 0.5, 0.9]
    assert meta["features"]["seasonality"]["kind"] == "additive"
    assert meta["future_covariates"] == ["promo"] and meta["features"]["calendar"] is True
    intervals = meta["intervals"]  # the 80% interval's margin, from the backtest
    assert set(intervals["margins"]) == {"0.1"} and intervals["levels"] == [0.1, 0.9]
    assert set(intervals["scales"]) == {"series_0"}  # in the scale of the data it saw
    data = pd.read_csv(path, parse_dates=["ds"])
    with pytest.raises(DataError, match="lacks future values of promo"):
        serving.predict_checked(model, data.tail(30))
    future = pd.DataFrame(
        {"ds": pd.date_range(data["ds"].iloc[-1], periods=8, freq="D")[1:], "promo": 1.0}
    )
    history = pd.concat([data.tail(30), future], ignore_index=True)  # target empty ahead
    fc = serving.predict_checked(model, history)
    assert list(fc.columns) == ["unique_id", "ds", "forecast", "q0.1", "q0.9"] and len(fc) == 7
    assert (fc["q0.1"] <= fc["forecast"]).all() and (fc["forecast"] <= fc["q0.9"]).all()
    served = model.predict(history)  # the pyfunc's own predict (signature-enforced): same values
    pd.testing.assert_frame_equal(
        served[["forecast", "q0.1", "q0.9"]], fc[["forecast", "q0.1", "q0.9"]], check_dtype=False
    )
