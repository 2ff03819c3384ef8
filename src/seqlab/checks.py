"""Reading and checking the data against what a configuration needs, without torch or MLflow:
the command line runs these before any server starts, so a user error costs seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqlab.config import PipelineConfig
from seqlab.data import DataError, SeriesData, load_raw, validate
from seqlab.windows import min_length

MAX_ABS_VALUE = 1e150  # a standard deviation squares values: 1e154 overflows float64


def ingest(cfg: PipelineConfig) -> pd.DataFrame:
    """Read the configured source (bundled name, CSV or Parquet) as it is."""
    return load_raw(cfg.data.source, cfg.data.encoding)


def required_length(cfg: PipelineConfig) -> int:
    return min_length(cfg.window.input_size, cfg.window.horizon, cfg.val_size, cfg.test_size)


def validate_data(raw: pd.DataFrame, cfg: PipelineConfig) -> SeriesData:
    """Validate the data against what this configuration needs (lengths, the transform)."""
    series = validate(raw, cfg.data, min_length=required_length(cfg), source=cfg.data.source)
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
