"""Reading and checking the data against what a configuration needs, without torch or MLflow:
the command line runs these before any server starts, so a user error costs seconds."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from seqlab.config import PipelineConfig
from seqlab.data.series import DataError, SeriesData, load_raw, validate
from seqlab.features.windows import min_length

log = logging.getLogger("seqlab.data")
MAX_ABS_VALUE = 1e150  # a standard deviation squares values: 1e154 overflows float64


def ingest(cfg: PipelineConfig) -> pd.DataFrame:
    """Read the configured source (bundled name, CSV or Parquet) as it is."""
    return load_raw(cfg.data.source, cfg.data.encoding)


def required_length(cfg: PipelineConfig) -> int:
    """Points a series needs to be tuned on and evaluated: one training window, the validation
    part and the backtest windows (one observed input point is enough with window.pad)."""
    observed = 1 if cfg.window.pad else cfg.window.input_size
    return min_length(observed, cfg.window.horizon, cfg.val_size, cfg.test_size)


def validate_data(raw: pd.DataFrame, cfg: PipelineConfig) -> SeriesData:
    """Validate the data against what this configuration needs (lengths, the transform).

    With several series, some may be too short to tune on or evaluate: they are named in a
    warning, still trained on where they can be and forecast, and left out of the metrics they
    cannot reach. Only when every series is too short is it an error.
    """
    need = required_length(cfg)
    series = validate(raw, cfg.data, min_length=None, source=cfg.data.source)
    lengths = series.frame.groupby("unique_id", sort=False).size()
    short = lengths[lengths < need]
    if len(short) == len(lengths):
        sid, n = short.index[0], int(short.iloc[0])
        raise DataError(
            f"series {sid!r} has {n} points but needs at least {need} (input_size + horizon "
            "for one training window, + validation + backtest windows); shorten "
            "window.input_size/window.horizon or eval.backtest_windows, set window.pad=true, "
            "or provide more history"
        )
    if len(short):
        names = ", ".join(map(str, short.index[:5])) + (" ..." if len(short) > 5 else "")
        log.warning(
            "%d of %d series have fewer than %d points (%s): too short to tune on or evaluate, "
            "they are left out of those metrics, trained on where they can be, and forecast",
            len(short),
            len(lengths),
            need,
            names,
        )
    values = series.frame[["y", *series.covariates]].to_numpy("float64")
    if np.abs(values).max() > MAX_ABS_VALUE:
        col = ["y", *series.covariates][int(np.abs(values).max(axis=0).argmax())]
        name = cfg.data.target if col == "y" else col
        raise DataError(
            f"column {name!r} holds values up to {np.abs(values).max():.3g}, beyond what scaling "
            f"can square without overflow (|x| <= {MAX_ABS_VALUE:.0e}); rescale it (e.g. divide "
            "by 1e6) before training"
        )
    if cfg.window.transform == "log" and (series.frame["y"] <= 0).any():
        row = series.frame[series.frame["y"] <= 0].iloc[0]
        raise DataError(
            f"window.transform=log needs a positive target; {cfg.data.target} is "
            f"{row['y']:g} at {row['ds']} in series {row['unique_id']!r}: set window.transform=none"
        )
    return series
