"""The pipeline's steps as plain functions (no Prefect, no MLflow): the flow wraps each one.

The evaluation protocol, in the order the flow runs it:

1. tune on the training part, early-stopping and scoring on the validation part (MASE);
2. refit the chosen parameters on all history before the first backtest cutoff (train +
   validation) for the epoch count early stopping learnt, and backtest that model and the
   baselines on the same rolling-origin cutoffs;
3. refit on the whole history for serving (``registry.serve=refit``); a quantile model's
   intervals are calibrated on the backtest's errors (``seqlab.conformal``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqlab import conformal
from seqlab.checks import ingest, required_length, validate_data  # noqa: F401 (re-exported)
from seqlab.config import PipelineConfig, with_overrides
from seqlab.data import SeriesData, season_length
from seqlab.devices import resolve_device
from seqlab.errors import TrainingError
from seqlab.evaluate import Backtest, backtest, quantile_levels, score_backtest
from seqlab.inference import forecast_series, model_meta, training_end
from seqlab.models import EnsembleForecaster, Forecaster, RecurrentForecaster, build_model
from seqlab.train import Callback, DeviceData, History, fit, seed_everything
from seqlab.windows import PreparedData, backtest_offsets, prepare, seasonal_mae


def season_for(cfg: PipelineConfig, freq: str) -> int:
    return cfg.eval.season_length or season_length(freq)


def prepare_fit(
    series: SeriesData, cfg: PipelineConfig, holdout: int, val_size: int = 0
) -> PreparedData:
    w = cfg.window
    return prepare(
        series,
        w.input_size,
        w.horizon,
        holdout,
        val_size,
        w.stride,
        w.scaler,
        w.transform,
        w.local_norm,
        season_for(cfg, series.freq),
        w.residual,
        w.pad,
        w.deseasonalize,
        w.calendar,
        cfg.model.series_embedding > 0,
    )


def prepare_data(series: SeriesData, cfg: PipelineConfig) -> PreparedData:
    """Windows for tuning: train before the validation part, validate on it."""
    return prepare_fit(series, cfg, cfg.val_size + cfg.test_size, cfg.val_size)


def build_from_config(prepared: PreparedData, cfg: PipelineConfig) -> RecurrentForecaster:
    m = cfg.model
    return build_model(
        prepared.n_features,
        prepared.horizon,
        m.cell,
        m.hidden_size,
        m.num_layers,
        m.dropout,
        m.quantiles,
        prepared.future_features,
        len(prepared.series_ids),
        m.series_embedding,
    )


def train_model(
    prepared: PreparedData, cfg: PipelineConfig, callbacks: Sequence[Callback] = ()
) -> tuple[RecurrentForecaster, History]:
    """Seeded model construction and training: same config + seed, same weights (on CPU)."""
    seed_everything(cfg.train.seed)
    model = build_from_config(prepared, cfg)
    data = DeviceData.from_prepared(prepared, resolve_device(cfg.train.device))
    history = fit(model, data, cfg.train, callbacks)
    return model, history


def learn_epochs(series: SeriesData, cfg: PipelineConfig) -> int:
    """Epochs for a refit: early stopping on the validation part, or ``max_epochs`` without it."""
    if cfg.train.patience is None:
        return cfg.train.max_epochs
    _, hist = train_model(prepare_data(series, cfg), cfg)
    return hist.best_epoch + 1


@dataclass
class FittedModel:
    """A model with what it needs to forecast: its scaler, its metadata, its training end."""

    model: Forecaster
    prepared: PreparedData
    meta: dict
    history: History
    known: pd.DataFrame | None = None
    """The data it was fitted from: known-future covariates for backtest forecasts."""

    def forecast(self, history: SeriesData) -> pd.DataFrame:
        return forecast_series(self.model, self.prepared.scaler, self.meta, history, self.known)


def refit(series: SeriesData, cfg: PipelineConfig, epochs: int, holdout: int) -> FittedModel:
    """Train ``cfg`` for ``epochs`` on everything but the last ``holdout`` points.

    With ``model.ensemble_size`` K > 1, K members train from seeds ``seed .. seed + K - 1`` and
    forecast their median; ``history`` is the first member's."""
    fixed = with_overrides(cfg, {"train.max_epochs": max(1, epochs), "train.patience": None})
    prepared = prepare_fit(series, fixed, holdout)
    members, hist = [], None
    for k in range(cfg.model.ensemble_size):  # member k trains from seed + k
        member_cfg = with_overrides(fixed, {"train.seed": fixed.train.seed + k}) if k else fixed
        member, member_hist = train_model(prepared, member_cfg)
        members.append(member.cpu())
        hist = hist or member_hist
    model: Forecaster = members[0] if len(members) == 1 else EnsembleForecaster(members)
    assert hist is not None
    meta = model_meta(
        model,
        prepared.scaler,
        cfg,
        series,
        training_end(series, holdout),
        epochs,
        prepared.season,
        prepared.seasonality,
    )
    return FittedModel(model, prepared, meta, hist, series.frame if series.future else None)


def backtest_offsets_for(cfg: PipelineConfig) -> list[int]:
    return backtest_offsets(cfg.window.horizon, cfg.eval.backtest_windows, cfg.backtest_step)


def backtest_model(fitted: FittedModel, series: SeriesData, cfg: PipelineConfig) -> Backtest:
    """Rolling-origin backtest of a model trained before the first cutoff, and the baselines.

    Raises :class:`TrainingError` when the model forecasts non-finite values: such a model is
    never registered.
    """
    bt = backtest(
        series,
        backtest_offsets_for(cfg),
        cfg.window.horizon,
        season_for(cfg, series.freq),
        fitted.forecast,
        min_history=1 if cfg.window.pad else cfg.window.input_size,
    )
    bad = bt.frame[~np.isfinite(bt.frame["model"])]
    if len(bad):
        row = bad.iloc[0]
        raise TrainingError(
            f"the trained model forecasts non-finite values ({row['model']} for series "
            f"{row['unique_id']!r} at {row['ds']}); it is not registered: lower train.lr, set "
            "train.grad_clip or rescale the data"
        )
    levels = quantile_levels(bt.frame)
    if levels and cfg.eval.conformal:  # intervals as served: calibrated, each window out of fold
        bt = score_backtest(conformal.cross_calibrate(bt.frame, levels), bt.season)
    return bt


def calibrate(
    fitted: FittedModel, bt: Backtest, cfg: PipelineConfig, series: SeriesData
) -> FittedModel:
    """The model with its intervals' conformal margins, from every backtest window, in its
    metadata, which forecasts apply: ``conformal`` (lower level -> margin in MASE-scale units)
    and ``conformal_scale`` (each series' scale over the data the model trained on, so a
    forecast's interval does not depend on how much history its caller passes)."""
    levels = quantile_levels(bt.frame)
    if not (levels and cfg.eval.conformal):
        return fitted
    found = conformal.margins(bt.frame, levels)
    season, ends = int(fitted.meta.get("season", 1)), fitted.meta["training_end"]
    scales = {}
    for sid, g in series.frame.groupby("unique_id", sort=False):
        seen = g.loc[g["ds"] <= pd.Timestamp(ends[str(sid)]), "y"].to_numpy("float64")
        scales[str(sid)] = seasonal_mae(seen, season)
    meta = {
        **fitted.meta,
        "conformal": {f"{q:g}": m for q, m in found.items()},
        "conformal_scale": {k: v for k, v in scales.items() if np.isfinite(v)},
    }
    return dataclasses.replace(fitted, meta=meta)
