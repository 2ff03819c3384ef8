"""The pipeline's steps as plain functions (no Prefect, no MLflow): the flow wraps each one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from seqlab.config import PipelineConfig
from seqlab.data import SeriesData, load_raw, min_series_length, season_length, validate
from seqlab.devices import resolve_device
from seqlab.evaluate import (
    Evaluation,
    evaluate_forecasts,
    forecast_frame,
    naive_forecast,
    plot_forecast,
    seasonal_naive_forecast,
)
from seqlab.models import RecurrentForecaster, build_model
from seqlab.train import Callback, DeviceData, History, fit, predict, seed_everything
from seqlab.windows import PreparedData, prepare


def ingest(cfg: PipelineConfig) -> pd.DataFrame:
    """Read the configured source (bundled name, CSV or Parquet) as it is."""
    return load_raw(cfg.data.source)


def validate_data(raw: pd.DataFrame, cfg: PipelineConfig) -> SeriesData:
    need = min_series_length(cfg.window.input_size, cfg.window.horizon, cfg.val_size)
    return validate(raw, cfg.data, min_length=need, source=cfg.data.source)


def prepare_data(series: SeriesData, cfg: PipelineConfig) -> PreparedData:
    w = cfg.window
    return prepare(series, w.input_size, w.horizon, cfg.val_size, w.stride, w.scaler, w.transform,
                   w.local_norm)


def build_from_config(prepared: PreparedData, cfg: PipelineConfig) -> RecurrentForecaster:
    m = cfg.model
    return build_model(prepared.n_features, prepared.horizon, m.cell, m.hidden_size,
                       m.num_layers, m.dropout)


def train_model(
    prepared: PreparedData, cfg: PipelineConfig, callbacks: Sequence[Callback] = ()
) -> tuple[RecurrentForecaster, History]:
    """Seeded model construction and training: same config + seed, same weights (on CPU)."""
    seed_everything(cfg.train.seed)
    model = build_from_config(prepared, cfg)
    data = DeviceData.from_prepared(prepared, resolve_device(cfg.train.device))
    history = fit(model, data, cfg.train, callbacks)
    return model, history


def forecast_test(model: RecurrentForecaster, prepared: PreparedData) -> np.ndarray:
    """Unscaled model forecasts (S, H) for each series' test window."""
    return prepared.decode_test(predict(model, prepared.x_test))


def season_for(cfg: PipelineConfig, freq: str) -> int:
    return cfg.eval.season_length or season_length(freq)


@dataclass(frozen=True)
class EvaluationResult:
    evaluation: Evaluation
    forecasts: np.ndarray  # (S, H) unscaled
    forecast_frame: pd.DataFrame
    baseline_forecasts: dict[str, np.ndarray]


def evaluate_on_test(
    forecasts: np.ndarray, prepared: PreparedData, cfg: PipelineConfig
) -> EvaluationResult:
    season = season_for(cfg, prepared.freq)
    ev = evaluate_forecasts(prepared.y_test, forecasts, prepared.train_target,
                            prepared.history_target, prepared.series_ids, season)
    h = prepared.horizon
    baselines = {
        "naive": np.stack([naive_forecast(x, h) for x in prepared.history_target]),
        "seasonal_naive": np.stack(
            [seasonal_naive_forecast(x, h, season) for x in prepared.history_target]
        ),
    }
    frame = forecast_frame(prepared.series_ids, prepared.test_start, prepared.freq, forecasts)
    frame["actual"] = prepared.y_test.reshape(-1)
    return EvaluationResult(ev, forecasts, frame, baselines)


def evaluate_model(model: RecurrentForecaster, prepared: PreparedData, cfg: PipelineConfig
                   ) -> EvaluationResult:
    return evaluate_on_test(forecast_test(model, prepared), prepared, cfg)


def save_plot(result: EvaluationResult, prepared: PreparedData, path: str, title: str) -> str:
    return str(plot_forecast(prepared.history_target, prepared.y_test, result.forecasts,
                             result.baseline_forecasts, prepared.series_ids, path, title))
