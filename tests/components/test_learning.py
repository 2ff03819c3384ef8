"""Learning checks: models trained to a score on data built for it (tens of seconds each, so
outside the unit lane): a known-future driver beats the same column as a past input; quantile
bands hold about their nominal share of unseen points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import promo_config, promo_frame
from seqlab.config import PipelineConfig, with_overrides
from seqlab.data import validate
from seqlab.pipeline import backtest_model, refit


def test_a_known_driver_beats_the_same_column_as_a_past_input() -> None:
    df = promo_frame()
    known = promo_config()
    past = with_overrides(
        known, {"data.covariates": ["temp", "promo"], "data.future_covariates": []}
    )
    scores = {}
    for name, cfg in (("known", known), ("past", past)):
        series = validate(df, cfg.data)
        bt = backtest_model(refit(series, cfg, 60, cfg.test_size), series, cfg)
        scores[name] = bt.mean["model"]["mase"]
    assert scores["known"] < 0.6 * scores["past"], scores


def test_quantile_forecasts_cover_a_noise_process_near_nominal() -> None:
    """On white noise around a level, the 10%-90% band should hold ~80% of unseen points."""
    rng = np.random.default_rng(3)
    n = 700
    frame = pd.DataFrame(
        {"ds": pd.date_range("2020-01-01", periods=n, freq="D"), "y": 10 + rng.normal(0, 1, n)}
    )
    cfg = with_overrides(
        PipelineConfig(),
        {
            "data.source": "x",
            "data.time_column": "ds",
            "data.target": "y",
            "window.input_size": 14,
            "window.horizon": 7,
            "model.hidden_size": 16,
            "train.patience": None,
            "train.lr": 0.01,
            "train.device": "cpu",
            "model.quantiles": [0.1, 0.5, 0.9],
            "train.loss": "pinball",
            "window.local_norm": "none",
            "train.max_epochs": 15,
            "eval.backtest_windows": 30,
        },
    )
    series = validate(frame, cfg.data)
    bt = backtest_model(refit(series, cfg, 15, cfg.test_size), series, cfg)
    assert bt.frame.shape[0] == 30 * 7
    assert bt.mean["model"]["coverage_80"] == pytest.approx(0.8, abs=0.1)  # calibrated
    assert 0 < bt.mean["model"]["raw_coverage_80"] <= 1  # the network's own, logged beside
    assert (bt.frame["q0.1"] <= bt.frame["model"]).all()
    assert (bt.frame["model"] <= bt.frame["q0.9"]).all()
    assert bt.mean["model"]["spl"] > 0
