"""``seqlab init``: a starter config for the user's own data, with the columns' roles guessed.

The guesses are written into the file with comments, so the user checks them rather than
discovering them: the time column (the first that parses as dates), a series id (a text column
that repeats), the target (a numeric column named like one, else the first numeric), other
numeric columns listed as candidate covariates, and a horizon suited to the frequency.
When the obvious target (named like one, or a column of numbers before the guessed one) holds a
value that is not a number, the guess falls on another column: ``Roles.warnings`` says so, naming
the bad value and its row.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import yaml

from seqlab.data.series import DataError, infer_frequency, season_length

TIME_NAMES = re.compile(r"^(ds|date|time|timestamp|datetime|day|week|month|period|year)$", re.I)
TARGET_NAMES = re.compile(
    r"^(y|value|target|sales|demand|load|units|count|volume|price|close)$", re.I
)
PACKAGED_BASE = "seqlab:base.yaml"
HORIZON_BY_SEASON = {12: 12, 4: 4, 52: 13, 7: 14, 5: 10, 24: 24, 60: 60, 1: 3}


@dataclass(frozen=True)
class Roles:
    time_column: str
    target: str
    series_id: str | None = None
    covariates: list[str] = field(default_factory=list)
    freq: str | None = None
    warnings: list[str] = field(default_factory=list)
    """Guesses the user should check (printed by ``seqlab init``)."""


MOSTLY_NUMERIC = 0.9  # share of a text column's values that parse as numbers: "numbers, mostly"


def _bad_numbers(s: pd.Series) -> tuple[float, str] | None:
    """For a text column: the share of its values that parse as numbers, and its first value
    that does not (``'n/a' at row 57``, rows counted from 1 after the header); None when the
    column is numeric or holds no value that is not a number."""
    if pd.api.types.is_numeric_dtype(s):
        return None
    parsed = pd.to_numeric(s, errors="coerce")
    bad = parsed.isna() & s.notna()
    if not bad.any():
        return None
    pos = int(np.flatnonzero(bad.to_numpy())[0])
    share = float(parsed.notna().sum()) / max(int(s.notna().sum()), 1)
    return share, f"{s.iloc[pos]!r} at row {pos + 1}"


def _target_warning(df: pd.DataFrame, cols: list[str], time_col: str, target: str) -> str | None:
    """A warning when the obvious target is a text column holding a bad value: a column named
    like a target (sales, value, y...), or a column of mostly numbers before the guessed target
    (which the first-numeric-column fallback would have taken, were it clean)."""
    before = cols[: cols.index(target)]
    for c in cols:
        if c in (time_col, target) or (found := _bad_numbers(df[c])) is None:
            continue
        share, first_bad = found
        named = bool(TARGET_NAMES.match(c))
        if named or (share >= MOSTLY_NUMERIC and c in before):
            why = "is named like a target" if named else f"holds {share:.0%} numbers"
            return (
                f"column {c!r} {why} but is not numeric (first bad value {first_bad}); "
                f"guessed {target!r} as the target instead: fix that value and rerun "
                "`seqlab init --force`, or set data.target"
            )
    return None


def _parses_as_time(s: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(s):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(s, errors="coerce", format="mixed")
    return bool(len(s)) and parsed.notna().mean() > 0.95


def guess_roles(df: pd.DataFrame) -> Roles:
    """Guess which column is what; raise :class:`DataError` when there is no time or number."""
    cols = [str(c) for c in df.columns]
    times = [c for c in cols if TIME_NAMES.match(c) and _parses_as_time(df[c])]
    times = times or [c for c in cols if _parses_as_time(df[c])]
    if not times:
        raise DataError(
            f"no column parses as dates (columns: {', '.join(cols)}); "
            "add a time column, e.g. 2024-01-31"
        )
    time_col = times[0]
    numeric = [c for c in cols if c != time_col and pd.api.types.is_numeric_dtype(df[c])]
    if not numeric:
        raise DataError(f"no numeric column to forecast (columns: {', '.join(cols)})")
    target = next((c for c in numeric if TARGET_NAMES.match(c)), numeric[0])
    warning = _target_warning(df, cols, time_col, target)
    # Series ids are text; a column of numbers with a bad value is not one.
    texts = [
        c
        for c in cols
        if c not in (time_col, *numeric)
        and not (
            (bad := _bad_numbers(df[c])) and (bad[0] >= MOSTLY_NUMERIC or TARGET_NAMES.match(c))
        )
    ]
    series_id = next((c for c in texts if df[c].nunique() < len(df)), None)
    covariates = [c for c in numeric if c != target]
    freq = None
    ds = pd.to_datetime(df[time_col], errors="coerce", format="mixed")
    first = ds[df[series_id] == df[series_id].iloc[0]] if series_id else ds
    idx = pd.DatetimeIndex(first.dropna().sort_values().unique())
    if len(idx) >= 3:
        freq = infer_frequency(idx)
    return Roles(time_col, target, series_id, covariates, freq, [warning] if warning else [])


def search_space(horizon: int) -> dict[str, str]:
    """The shipped search space (seqlab:base.yaml), with input sizes of 1-3 horizons."""
    from seqlab.config import load_config

    space = {
        k: v.model_dump(exclude_none=True, exclude_defaults=True) | {"type": v.type}
        for k, v in load_config(PACKAGED_BASE).tune.search_space.items()
    }
    for spec in space.values():
        if spec["type"] == "int":
            spec.update({k: int(spec[k]) for k in ("low", "high") if k in spec})
    if "window.input_size" in space:
        space["window.input_size"] = {
            "type": "categorical",
            "choices": [horizon, 2 * horizon, 3 * horizon],
        }
    return {
        k: yaml.safe_dump(v, default_flow_style=True, sort_keys=False).strip()
        for k, v in space.items()
    }


def starter_yaml(source: str, roles: Roles, base: str = "seqlab:base.yaml") -> str:
    """The starter config's text: the guessed roles, a horizon for the frequency, comments."""
    season = season_length(roles.freq) if roles.freq else None
    horizon = HORIZON_BY_SEASON.get(season or 0, 12)
    covs = ", ".join(roles.covariates)
    lines = [
        f"# Starter config for {source}, written by `seqlab init`: check the guesses, then",
        "#   seqlab run <this file>          (any key can also be set as key=value)",
        "# Every setting not here comes from seqlab's defaults (the `defaults:` line).",
        f"defaults: [{base}]",
        "",
        "data:",
        f"  source: {source}",
        f"  time_column: {roles.time_column}",
        f"  target: {roles.target}",
        f"  series_id: {roles.series_id or 'null'}"
        + ("          # one global model over all series" if roles.series_id else ""),
        f"  covariates: []       # numeric columns you could add as inputs: [{covs}]"
        if covs
        else "  covariates: []",
        f"  freq: {roles.freq or 'null'}" + ("" if roles.freq else "  # set it: MS, W, D, h..."),
        "  fill: error          # gaps: error | ffill | interpolate | zero",
        "",
        "window:",
        f"  horizon: {horizon}          # steps to forecast",
        f"  input_size: {2 * horizon}       # steps the model reads (tuning searches it, below)",
        "  transform: none      # log suits positive series with multiplicative seasonality",
        "",
        "tune:",
        "  search_space:        # seqlab's default space, input sizes around your horizon",
        *(f"    {key}: {spec}" for key, spec in search_space(horizon).items()),
        "",
        "eval:",
        f"  season_length: {season or 'null'}     # for seasonal naive and MASE",
        "  backtest_windows: 3  # rolling-origin test windows at the end of each series",
        "",
    ]
    return "\n".join(lines)
