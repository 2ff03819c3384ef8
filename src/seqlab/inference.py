"""History helpers around the one prediction path (:class:`seqlab.forecaster.FittedForecaster`):
cutting a history at a backtest cutoff, and a canonical frame back in the user's columns.

numpy and pandas only.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from seqlab.config import DataConfig
from seqlab.data.series import SeriesData


def user_frame(series: SeriesData, data_cfg: DataConfig) -> pd.DataFrame:
    """The canonical frame back in the user's column names (what the served model takes)."""
    out = pd.DataFrame(
        {data_cfg.time_column: series.frame["ds"], data_cfg.target: series.frame["y"]}
    )
    if data_cfg.series_id:
        out.insert(0, data_cfg.series_id, series.frame["unique_id"])
    for c in series.covariates:
        out[c] = series.frame[c]
    return out.reset_index(drop=True)


def truncate(series: SeriesData, offset: int) -> SeriesData:
    """The data up to ``offset`` points before each series' end (a backtest cutoff)."""
    if offset == 0:
        return series
    frame = series.frame
    pos = frame.groupby("unique_id", sort=False).cumcount(ascending=False)
    kept = frame[pos.to_numpy() >= offset].reset_index(drop=True)
    return dataclasses.replace(series, frame=kept)
