"""The pipeline's steps as plain functions (no Prefect, no MLflow): the flow wraps each one.

The evaluation protocol, in the order the flow runs it:

1. tune on the training part, early-stopping and scoring on the validation part (MASE);
2. refit the chosen parameters on all history before the first backtest cutoff (train +
   validation) for the optimizer steps early stopping learnt, and backtest that model and the
   baselines on the same rolling-origin cutoffs;
3. refit on the whole history for serving (``registry.serve=refit``); a quantile model's
   intervals are calibrated on the backtest's errors (``seqlab.evaluation.conformal``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqlab.config import PipelineConfig
from seqlab.data.checks import ingest, required_length, validate_data  # noqa: F401 (re-exported)
from seqlab.data.series import SeriesData
from seqlab.errors import TrainingError
from seqlab.evaluation import Backtest, conformal, quantile_levels, score_backtest
from seqlab.evaluation.references import add_references
from seqlab.features.windows import PreparedData, backtest_offsets
from seqlab.forecaster import (  # noqa: F401 (re-exported: the steps' building blocks)
    FittedForecaster,
    central_levels,
    with_point_bands,
)
from seqlab.training.recipe import (  # noqa: F401 (re-exported: the steps' building blocks)
    build_from_config,
    prepare_fit,
    season_for,
    train_model,
    training_end,
)


def prepare_data(series: SeriesData, cfg: PipelineConfig) -> PreparedData:
    """Windows for tuning: train before the validation part, validate on its rolling windows
    (fewer on a series too short for ``window.val_windows``)."""
    return prepare_fit(
        series, cfg, cfg.val_size + cfg.test_size, cfg.val_size, cfg.val_step, cfg.min_val_size
    )


def learn_steps(
    series: SeriesData, cfg: PipelineConfig, deadline: float | None = None
) -> int | None:
    """Optimizer steps for a refit without tuning: early stopping's best on the validation
    part (stopped at ``deadline`` with the best so far), or ``None`` without early stopping
    (train ``max_epochs`` epochs)."""
    if cfg.train.patience is None:
        return None
    _, hist = train_model(prepare_data(series, cfg), cfg, deadline=deadline)
    return max(1, hist.best_steps)


def refit(
    series: SeriesData,
    cfg: PipelineConfig,
    epochs: int | None = None,
    holdout: int = 0,
    steps: int | None = None,
    deadline: float | None = None,
) -> FittedForecaster:
    """Train ``cfg`` on everything but the last ``holdout`` points, for ``epochs`` or exactly
    ``steps`` optimizer steps (the served refit repeats the evaluated model's steps, so the
    promoted model is the recipe the gate judged). ``deadline``: the run's time budget
    (:meth:`FittedForecaster.fit`)."""
    return FittedForecaster.fit(series, cfg, holdout, epochs=epochs, steps=steps, deadline=deadline)


def backtest_offsets_for(cfg: PipelineConfig) -> list[int]:
    return backtest_offsets(cfg.window.horizon, cfg.eval.backtest_windows, cfg.backtest_step)


def backtest_model(fitted: FittedForecaster, series: SeriesData, cfg: PipelineConfig) -> Backtest:
    """Rolling-origin backtest of a model trained before the first cutoff, and the baselines
    and ``eval.references`` on the same cutoffs, through the model's own prediction path.

    With ``eval.conformal``, the intervals are scored as served: calibrated, each window with
    margins from the others (a quantile network's own quantiles; a point network's
    ``eval.intervals`` bands around its forecast). Raises :class:`TrainingError` when the model
    forecasts non-finite values: such a model is never registered.
    """
    season = season_for(cfg, series.freq)
    frame = fitted.cross_validation(series, backtest_offsets_for(cfg), season)
    bad = frame[~np.isfinite(frame["model"])]
    if len(bad):
        row = bad.iloc[0]
        raise TrainingError(
            f"the trained model forecasts non-finite values ({row['model']} for series "
            f"{row['unique_id']!r} at {row['ds']}); it is not registered: lower train.lr, set "
            "train.grad_clip or rescale the data"
        )
    if cfg.eval.conformal:
        levels = quantile_levels(frame)
        if levels:  # a quantile network: its own levels, calibrated out of window
            frame = conformal.cross_calibrate(frame, levels)
        elif cfg.eval.intervals:  # a point network: split-conformal bands, out of window
            levels = out_of_window_levels(frame, central_levels(cfg.eval.intervals))
            if levels:
                frame = conformal.cross_calibrate(with_point_bands(frame, levels), levels)
                frame = frame.drop(columns=[conformal.RAW + conformal.column(q) for q in levels])
    frame = add_references(frame, series, cfg.eval.references, season)
    return score_backtest(frame, season)


def out_of_window_levels(frame: pd.DataFrame, levels: list[float]) -> list[float]:
    """The central intervals of a point model that every backtest window can be calibrated for
    from the other windows' errors (a 95% margin needs 19 of them): the others are left out of
    the backtest rather than reported at zero width."""
    bands = with_point_bands(frame, levels)
    kept = set(conformal.pairs(levels))
    for w in frame["window"].unique():
        found = conformal.margins(bands[bands["window"] != w], levels)
        kept = {pair for pair in kept if pair[0] in found}
    return sorted(q for pair in kept for q in pair)


def calibrate(
    fitted: FittedForecaster, bt: Backtest, cfg: PipelineConfig, series: SeriesData
) -> FittedForecaster:
    """The model with its intervals' conformal margins from every backtest window
    (``seqlab.evaluation.conformal``), which its forecasts apply in each series' scale over the data
    it trained on.

    The backtest's forecasts are out of sample for the model trained before the first cutoff;
    the served model repeats that recipe for the same number of optimizer steps on the whole
    history, so its margins are those of its recipe on unseen data, not of its own (it has no
    unseen data left to calibrate on)."""
    if not cfg.eval.conformal:
        return fitted
    return fitted.with_intervals(bt.frame, series, cfg.eval.intervals)
