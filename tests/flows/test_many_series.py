"""A global model over series of very different lengths: the short ones are named, left out of
what they cannot reach, still forecast; per-series scores and the worst series are reported."""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
import pytest

from conftest import DEFAULT_CONFIG, sine_frame, tiny_overrides
from flows.training import training_pipeline

pytestmark = pytest.mark.integration


def test_short_series_are_reported_not_fatal(tmp_path, prefect_harness) -> None:
    frames = []
    for i, n in enumerate([120, 100, 30, 12]):  # the last two cannot fill a backtest window
        df = sine_frame(n=n, seed=i)
        df.insert(0, "store", f"s{i}")
        frames.append(df)
    path = tmp_path / "stores.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    overrides = tiny_overrides(
        tmp_path,
        **{
            "data.source": str(path),
            "data.time_column": "ds",
            "data.target": "y",
            "data.series_id": "store",
            "data.freq": "D",
            "window.transform": "none",
            "window.horizon": 7,
            "window.input_size": 14,
            "eval.season_length": 7,
            "tune.search_space": "{window.input_size: {type: categorical, choices: [14, 28]}}",
            "train.windows_per_epoch": 64,
            "registry.require_beat_baseline": False,
        },
    )
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("seqlab.data").addHandler(handler)
    try:
        summary = training_pipeline(DEFAULT_CONFIG, overrides)
    finally:
        logging.getLogger("seqlab.data").removeHandler(handler)
    assert any("2 of 4 series have fewer than" in m for m in seen), seen  # named up front
    assert summary.series == 4 and summary.version == "1"
    # 12 points reach no backtest window; s2 (30) only those its input size allows.
    assert "s3" in summary.not_evaluated and not {"s0", "s1"} & set(summary.not_evaluated)
    assert summary.worst_series in {"s0", "s1", "s2"} and summary.worst_mase > 0
    client = mlflow.tracking.MlflowClient(summary.tracking_uri)
    path = client.download_artifacts(summary.run_id, "backtest/per_series.csv", str(tmp_path))
    per_series = pd.read_csv(path)
    evaluated = {"s0", "s1", "s2"} - set(summary.not_evaluated)
    assert set(per_series["unique_id"]) == evaluated
    # Every series, short ones included, is forecast by the served model.
    from seqlab.registry.serving import load_forecaster

    model = load_forecaster(client, summary.model_name, "1")
    history = pd.read_csv(tmp_path / "stores.csv", parse_dates=["ds"])
    long_enough = history.groupby("store").filter(lambda g: len(g) >= 28)
    out = model.predict(long_enough)
    assert sorted(out["unique_id"].unique()) == ["s0", "s1", "s2"]
