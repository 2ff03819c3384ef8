"""One fit of a config: its windows and feature spec, a seeded network built from the config,
trained by :func:`~seqlab.training.trainer.fit` (the recipe :class:`FittedForecaster` and
tuning's trials follow)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from seqlab.config import PipelineConfig
from seqlab.data.series import SeriesData, season_length
from seqlab.features.windows import PreparedData, prepare
from seqlab.models import RecurrentForecaster, build_model
from seqlab.training.devices import resolve_device
from seqlab.training.trainer import Callback, DeviceData, History, fit, seed_everything


def season_for(cfg: PipelineConfig, freq: str) -> int:
    return cfg.eval.season_length or season_length(freq)


def prepare_fit(
    series: SeriesData,
    cfg: PipelineConfig,
    holdout: int,
    val_size: int = 0,
    val_step: int = 1,
    min_val_size: int | None = None,
) -> PreparedData:
    """The windows and feature spec of one fit of ``cfg`` holding out the last ``holdout``
    (validation windows as :func:`~seqlab.features.windows.prepare` takes them)."""
    w = cfg.window
    season = season_for(cfg, series.freq)
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
        season,
        cfg.residual_for(season),
        w.pad,
        w.deseasonalize,
        w.calendar,
        cfg.model.series_embedding > 0,
        val_step,
        min_val_size,
    )


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
    prepared: PreparedData,
    cfg: PipelineConfig,
    callbacks: Sequence[Callback] = (),
    max_steps: int | None = None,
    deadline: float | None = None,
) -> tuple[RecurrentForecaster, History]:
    """Seeded model construction and training: same config + seed, same weights (on CPU)."""
    seed_everything(cfg.train.seed)
    model = build_from_config(prepared, cfg)
    data = DeviceData.from_prepared(prepared, resolve_device(cfg.train.device))
    history = fit(model, data, cfg.train, callbacks, max_steps=max_steps, deadline=deadline)
    return model, history


def training_end(series: SeriesData, holdout: int) -> dict[str, str]:
    """Last timestamp each series' fit trained on (ISO strings), ``holdout`` points held out."""
    out = {}
    for sid, g in series.frame.groupby("unique_id", sort=False):
        if len(g) > holdout:
            out[str(sid)] = pd.Timestamp(g["ds"].iloc[len(g) - 1 - holdout]).isoformat()
    return out
