"""Statistical references beside the baselines: statsforecast's AutoETS, AutoTheta, AutoARIMA.

Each reference listed in ``eval.references`` is fitted on every series' history before every
backtest cutoff (the very histories the model and the baselines forecast from) and forecasts
the window's horizon with the backtest's season; its forecasts become one column of the
cross-validation frame (``autoets``, ...), which :func:`seqlab.evaluation.score_backtest` scores
like the baselines. statsforecast is an optional extra (``pip install 'seqlab[stats]'``),
imported only when a reference is requested. A reference that cannot be fitted on a series
(too short, a statsforecast error) is NaN there, with one warning naming the series.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from seqlab.config import ConfigError
from seqlab.data import SeriesData

log = logging.getLogger("seqlab.references")

KNOWN = ("AutoETS", "AutoTheta", "AutoARIMA")
COLUMNS = tuple(name.lower() for name in KNOWN)
"""The cross-validation frame's column (and the metrics' method name) of each reference."""
MISSING = "eval.references needs statsforecast: pip install 'seqlab[stats]'"


def column(name: str) -> str:
    return name.lower()


def check_available(names: list[str]) -> None:
    """A :class:`ConfigError` (one line) when references are requested without statsforecast."""
    if not names:
        return
    try:
        import statsforecast.models  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING) from None


def reference_forecast(name: str, history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """``name`` (one of :data:`KNOWN`) fitted on ``history``: its mean forecast of ``horizon``."""
    from statsforecast import models

    model = getattr(models, name)(season_length=max(int(season), 1))
    out = np.asarray(model.forecast(y=history, h=horizon)["mean"], dtype="float64")
    if out.shape != (horizon,) or not np.isfinite(out).all():
        raise ValueError(f"non-finite or misshapen forecast {out[:3]}...")
    return out


def add_references(
    frame: pd.DataFrame, series: SeriesData, names: list[str], season: int
) -> pd.DataFrame:
    """The cross-validation ``frame`` with one column per reference in ``names``: each fitted
    on the history up to and including each row's ``cutoff`` (as the baselines are)."""
    if not names:
        return frame
    check_available(names)
    frame = frame.copy()
    for name in names:
        frame[column(name)] = np.nan
    by_series = {sid: g for sid, g in series.frame.groupby("unique_id", sort=False)}
    failed: dict[tuple[str, object], list[str]] = {}
    for (sid, window), rows in frame.groupby(["unique_id", "window"], sort=False):
        g = by_series[sid]
        seen = int((g["ds"] <= rows["cutoff"].iloc[0]).sum())  # the cutoff's point included
        past = g["y"].to_numpy("float64")[:seen]
        for name in names:
            try:
                fc = reference_forecast(name, past, len(rows), season)
            except Exception as e:  # noqa: BLE001 - a reference never fails the run
                failed.setdefault((name, sid), []).append(
                    f"window {window}: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
                    if str(e)
                    else f"window {window}: {type(e).__name__}"
                )
                continue
            frame.loc[rows.index, column(name)] = fc
    for (name, sid), why in failed.items():
        log.warning(
            "reference %s could not be fitted on series %r (%s): NaN there, left out of its scores",
            name,
            sid,
            "; ".join(why[:3]) + (" ..." if len(why) > 3 else ""),
        )
    return frame
