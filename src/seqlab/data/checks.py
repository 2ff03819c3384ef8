"""Reading and checking the data against what a configuration needs, without torch or MLflow:
the command line runs these before any server starts, so a user error costs seconds."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from seqlab.config import PipelineConfig
from seqlab.data.series import DataError, SeriesData, load_raw, resolve_source, validate
from seqlab.features.windows import min_length, val_part, val_window_count

log = logging.getLogger("seqlab.data")
MAX_ABS_VALUE = 1e150  # a standard deviation squares values: 1e154 overflows float64


_LAST_READ: dict[tuple, pd.DataFrame] = {}


def ingest(cfg: PipelineConfig) -> pd.DataFrame:
    """Read the configured source (bundled name, CSV or Parquet) as it is.

    A file is read once per process while it does not change: ``seqlab run`` checks the data
    before any server starts, and the flow it then runs gets the same frame (a copy) instead of
    parsing the file again. The key holds the file's size and modification time."""
    key = _source_key(cfg.data.source, cfg.data.encoding)
    if key is not None and key in _LAST_READ:
        return _LAST_READ[key].copy()
    raw = load_raw(cfg.data.source, cfg.data.encoding)
    if key is not None:
        _LAST_READ.clear()  # one file at a time: the memory of one raw frame, no more
        _LAST_READ[key] = raw.copy()
    return raw


def _source_key(source: str, encoding: str) -> tuple | None:
    try:
        path = resolve_source(source)
        stat = path.stat()
    except (DataError, OSError):
        return None  # load_raw says what is wrong
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, encoding)


def required_length(cfg: PipelineConfig) -> int:
    """Points a series needs to be tuned on and evaluated: one training window, the validation
    part and the backtest windows (one observed input point is enough with window.pad). The
    validation part is the shortest one it may hold: one window with the default rolling
    windows (a longer series holds more), the whole ``window.val_size`` the user set."""
    observed = 1 if cfg.window.pad else cfg.window.input_size
    return min_length(observed, cfg.window.horizon, cfg.min_val_size, cfg.test_size)


def validation_windows(cfg: PipelineConfig, lengths: dict[str, int]) -> dict[str, int]:
    """Validation windows each series of these lengths holds in tuning and early stopping
    (:func:`seqlab.pipeline.prepare_data`); 0: too short to be tuned on."""
    observed = 1 if cfg.window.pad else cfg.window.input_size
    h, step = cfg.window.horizon, cfg.val_step
    return {
        sid: val_window_count(
            val_part(n, observed, h, cfg.test_size, cfg.val_size, cfg.min_val_size, step), h, step
        )
        for sid, n in lengths.items()
    }


def _warn_fewer_validation_windows(cfg: PipelineConfig, lengths: dict[str, int]) -> None:
    if cfg.window.val_size is not None:
        return  # the part the user set holds the same windows on every series that has it
    want = cfg.window.val_windows
    fewer = {sid: k for sid, k in validation_windows(cfg, lengths).items() if 0 < k < want}
    if not fewer:
        return
    using = ", ".join(f"{k} for {sid!r}" for sid, k in list(fewer.items())[:5])
    log.warning(
        "%s too short for %d validation windows: using %s%s; tuning and early stopping need "
        "one training window (%d points) before the validation windows (%d apart) and %d "
        "backtest points after them, so fewer windows leave their scores noisier",
        "series" if len(lengths) == 1 else f"{len(fewer)} of {len(lengths)} series",
        want,
        using,
        " ..." if len(fewer) > 5 else "",
        (1 if cfg.window.pad else cfg.window.input_size) + cfg.window.horizon,
        cfg.val_step,
        cfg.test_size,
    )


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
    _warn_fewer_validation_windows(cfg, {str(k): int(n) for k, n in lengths.items()})
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
