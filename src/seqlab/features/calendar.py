"""Known-future inputs: calendar features derived from timestamps, and the feature layout.

A model's input features are, in order: the target, the data's covariates (``data.covariates``,
past-only, then ``data.future_covariates``, known in advance), then the calendar features
(``window.calendar``). Features known in advance are also fed for the forecast horizon.

Calendar features are chosen by the data's frequency, each cyclical one as a sine/cosine pair
(so December sits next to January): month of year for monthly data, quarter of year for
quarterly, week of year for weekly, day of week and day of year for daily, hour of day and day
of week for hourly and finer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# name -> (period, how to read the position in the cycle, 0-based)
_CYCLES = {
    "month": (12, lambda ds: ds.month - 1),
    "quarter": (4, lambda ds: ds.quarter - 1),
    "week": (53, lambda ds: ds.isocalendar().week.to_numpy() - 1),
    "dayofweek": (7, lambda ds: ds.day_of_week),
    "dayofyear": (366, lambda ds: ds.day_of_year - 1),
    "hour": (24, lambda ds: ds.hour),
    "minute": (60, lambda ds: ds.minute),
}


def calendar_cycles(freq: str) -> list[str]:
    """The calendar cycles worth feeding at this frequency (none for yearly data)."""
    offset = pd.tseries.frequencies.to_offset(freq)
    name = type(offset).__name__
    if name == "Day":  # not a Tick in every pandas release
        return ["dayofweek", "dayofyear"] if offset.n < 7 else ["week"]
    if isinstance(offset, pd.offsets.Tick):
        seconds = pd.Timedelta(offset).total_seconds()
        if seconds < 3600:
            return ["minute", "hour", "dayofweek"]
        if seconds < 86400:
            return ["hour", "dayofweek"]
        if seconds < 7 * 86400:
            return ["dayofweek", "dayofyear"]
        return ["week"]
    if name.startswith("Week"):
        return ["week"]
    if name.startswith("Month") or name.startswith("SemiMonth") or "BusinessMonth" in name:
        return ["month"]
    if name.startswith("Quarter") or "BusinessQuarter" in name:
        return ["quarter"]
    if name.startswith("Business") or name.startswith("CustomBusinessDay"):
        return ["dayofweek", "dayofyear"]
    return []


def calendar_names(freq: str) -> list[str]:
    return [f"{c}_{f}" for c in calendar_cycles(freq) for f in ("sin", "cos")]


def calendar_features(ds: pd.DatetimeIndex | pd.Series, freq: str) -> np.ndarray:
    """(T, 2 * cycles) sine/cosine of each timestamp's position in each calendar cycle."""
    idx = pd.DatetimeIndex(ds)
    cols = []
    for cycle in calendar_cycles(freq):
        period, position = _CYCLES[cycle]
        angle = 2 * np.pi * np.asarray(position(idx), dtype="float64") / period
        cols += [np.sin(angle), np.cos(angle)]
    return np.stack(cols, axis=1) if cols else np.empty((len(idx), 0))


def future_feature_indices(
    covariates: tuple[str, ...] | list[str], future: tuple[str, ...] | list[str], n_calendar: int
) -> list[int]:
    """Positions, among the model's input features, of those known for the horizon."""
    known = [1 + i for i, c in enumerate(covariates) if c in set(future)]
    first_calendar = 1 + len(covariates)
    return known + list(range(first_calendar, first_calendar + n_calendar))
