"""Ingestion and validation: CSV, Parquet and bundled datasets in long format.

Everything downstream sees one canonical frame, ``unique_id, ds, y, *covariates``, sorted, on a
regular time grid, with finite targets. Each problem found in the raw data raises a
:class:`DataError` whose one-line message names the problem and what to do about it.

Filling is causal: a filled value is computed from the points before it only, so nothing after a
backtest cutoff reaches the inputs at that cutoff. The filled target points are recorded
(:attr:`SeriesData.filled`) so that backtests do not score them as if they were actuals.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from seqlab.config import DataConfig
from seqlab.data.static import static_table
from seqlab.errors import DataError  # noqa: F401 (raised here, re-exported)

log = logging.getLogger("seqlab.data")
DEFAULT_SERIES_ID = "series_0"
BUNDLED = ("airpassengers",)


@dataclass(frozen=True)
class SeriesData:
    """Validated long-format data: ``unique_id, ds, y, *covariates`` on a regular grid."""

    frame: pd.DataFrame
    freq: str
    covariates: tuple[str, ...]
    digest: str
    source: str
    future: tuple[str, ...] = ()
    """Those of ``covariates`` known in advance (``data.future_covariates``)."""
    filled: frozenset[tuple[str, pd.Timestamp]] = frozenset()
    """``(unique_id, ds)`` of the target points that were not observed but filled
    (``data.fill``, ``data.nan_policy``): model inputs, never actuals to score."""
    static: pd.DataFrame | None = None
    """``data.static_covariates``: one row per series (index ``unique_id``), one column per
    attribute (float64, or text); ``None`` without them (:mod:`seqlab.data.static`)."""

    @property
    def series_ids(self) -> list[str]:
        return list(dict.fromkeys(self.frame["unique_id"]))

    def filled_mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` (``unique_id, ds``) hold a filled target point."""
        if not self.filled:
            return np.zeros(len(frame), dtype=bool)
        keys = pd.MultiIndex.from_arrays([frame["unique_id"], pd.DatetimeIndex(frame["ds"])])
        return np.asarray(keys.isin(list(self.filled)), dtype=bool)

    def lengths(self) -> dict[str, int]:
        return self.frame.groupby("unique_id", sort=False).size().to_dict()


# ---------------------------------------------------------------- reading


def resolve_source(source: str) -> Path:
    """A bundled dataset name, or a path to an existing CSV/Parquet file."""
    if source in BUNDLED:
        return Path(str(resources.files("seqlab.datasets").joinpath(f"{source}.csv")))
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data file not found: {source} (set data.source to a CSV/Parquet path or a bundled "
            f"dataset: {', '.join(BUNDLED)})"
        )
    if path.is_dir():
        raise DataError(f"data source {source} is a directory: point data.source at a file")
    return path


def read_table(path: Path, encoding: str = "utf-8", setting: str = "data.encoding") -> pd.DataFrame:
    """A CSV (in ``encoding``) or Parquet file as a frame; errors name ``setting``, where the
    user sets the encoding."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty: it needs a header and at least one row")
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".txt", ".gz"):
            df = pd.read_csv(path, encoding=encoding)
        else:
            raise DataError(
                f"unsupported data file type {suffix!r} for {path}: use .csv or .parquet"
            )
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(
            f"data file {path} is not {encoding} text (byte {e.object[e.start]:#04x} at position "
            f"{e.start}); set {setting} to its encoding, e.g. {setting}=latin-1"
        ) from None
    except LookupError:
        raise DataError(f"{setting} {encoding!r} is not a known text encoding") from None
    except pd.errors.EmptyDataError:
        raise DataError(
            f"data file {path} is empty: it needs a header and at least one row"
        ) from None
    except Exception as e:  # parser errors, corrupt parquet...
        raise DataError(f"cannot read data file {path}: {str(e).splitlines()[0]}") from None
    if df.empty:
        raise DataError(f"data file {path} has a header but no rows")
    return df


def load_raw(source: str, encoding: str = "utf-8", setting: str = "data.encoding") -> pd.DataFrame:
    return read_table(resolve_source(source), encoding, setting)


# ---------------------------------------------------------------- validation


def _first_bad(raw: pd.Series, parsed: pd.Series) -> str:
    bad = parsed.isna() & raw.notna()
    idx = bad.idxmax()
    return f"{raw.loc[idx]!r} at row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}"


def _check_columns(df: pd.DataFrame, cfg: DataConfig) -> None:
    cols = list(map(str, df.columns))
    roles = [("data.time_column", cfg.time_column), ("data.target", cfg.target)]
    if cfg.series_id:
        roles.append(("data.series_id", cfg.series_id))
    roles += [("data.covariates", c) for c in cfg.covariates]
    roles += [("data.future_covariates", c) for c in cfg.future_covariates]
    roles += [("data.static_covariates", c) for c in cfg.static_covariates]
    for key, col in roles:
        if col not in cols:
            raise DataError(
                f"column {col!r} ({key}) not found in the data; columns are: {', '.join(cols)}"
            )


def _to_numeric(df: pd.DataFrame, col: str, role: str) -> pd.Series:
    raw = df[col]
    parsed = pd.to_numeric(raw, errors="coerce")
    if (parsed.isna() & raw.notna()).any():
        raise DataError(
            f"{role} column {col!r} is not numeric (first bad value {_first_bad(raw, parsed)}); "
            "clean it or point the config at a numeric column"
        )
    return parsed.astype("float64")


def _stamp_pair(value: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    """One timestamp as (local wall-clock time, UTC), both without an offset."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return pd.NaT, pd.NaT
    if ts is pd.NaT or ts.tz is None:
        return ts, ts
    return ts.tz_localize(None), ts.tz_convert("UTC").tz_localize(None)


def _local_and_utc(raw: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """The timestamps as local wall-clock times and, when any carried a UTC offset, as UTC
    (``None`` when none did). Unparseable values are NaT."""
    try:
        with warnings.catch_warnings():  # pandas 2 warns (and returns objects) for mixed offsets
            warnings.simplefilter("ignore", FutureWarning)
            parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
    except (TypeError, ValueError) as e:
        if "utc=True" not in str(e) and "imezone" not in str(e):
            return pd.to_datetime(raw, errors="coerce"), None
        parsed = None  # pandas 3: mixed offsets raise
    if parsed is None or not pd.api.types.is_datetime64_any_dtype(parsed):
        # Offsets that change (daylight saving, several sources): parse each distinct value.
        pairs = {v: _stamp_pair(v) for v in pd.unique(raw)}
        local = pd.to_datetime(raw.map(lambda v: pairs[v][0]))
        utc = pd.to_datetime(raw.map(lambda v: pairs[v][1]))
        return local, utc
    if getattr(parsed.dt, "tz", None) is None:
        return parsed, None
    return parsed.dt.tz_localize(None), parsed.dt.tz_convert("UTC").dt.tz_localize(None)


def parse_times(df: pd.DataFrame, col: str) -> pd.Series:
    """The time column as naive timestamps.

    Timestamps with UTC offsets (``2024-03-01T00:00:00+01:00``) keep their local wall-clock time
    when every one of them falls at the same local time of day (daily, weekly, monthly... data):
    the offset is dropped (-> ``2024-03-01 00:00``), so a daylight-saving change does not move
    points off their grid. Sub-daily data (several local times of day) are converted to UTC
    instead, since local clock time repeats or skips an hour at a DST change.
    """
    raw = df[col]
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0]) + 1
        raise DataError(f"time column {col!r} has an empty timestamp at row {row}")
    local, utc = _local_and_utc(raw)
    if local.isna().any():
        raise DataError(
            f"time column {col!r} has unparseable timestamps (first {_first_bad(raw, local)}); "
            "use ISO dates such as 1960-01-01"
        )
    if utc is None or (local - local.dt.normalize()).nunique() <= 1:
        return local
    if (local - utc).nunique() > 1:
        log.warning(
            "time column %r mixes UTC offsets (e.g. %s and %s) in sub-daily data: normalised to "
            "UTC",
            col,
            raw.iloc[0],
            raw.iloc[-1],
        )
    return utc


def _infer_freq(ds: pd.DatetimeIndex) -> str | None:
    """``pd.infer_freq`` as a string alias, on every pandas version."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = pd.infer_freq(ds)
    return getattr(f, "freqstr", f)


def infer_frequency(ds: pd.DatetimeIndex) -> str | None:
    """The series' frequency alias; tolerant of a few gaps (most common over short runs)."""
    if len(ds) >= 3:
        freq = _infer_freq(ds)
        if freq:
            return freq
    votes: Counter[str] = Counter()
    for start in range(0, max(len(ds) - 4, 0) + 1):
        chunk = ds[start : start + 5]
        if len(chunk) >= 3:
            f = _infer_freq(chunk)
            if f:
                votes[f] += 1
    return votes.most_common(1)[0][0] if votes else None


def _when(ts: pd.Timestamp) -> object:
    """A date when the timestamp is midnight, else the timestamp."""
    return ts.date() if ts.time().isoformat() == "00:00:00" else ts


FILLED = "_filled"  # the working column that marks filled target points inside validate()


def _regularise(
    g: pd.DataFrame, sid: str, freq: str, cfg: DataConfig, value_cols: list[str]
) -> pd.DataFrame:
    """Put one series on its ``freq`` grid; fill missing timestamps per ``data.fill``.

    Every fill is causal (it reads only the points before the one it fills): ``ffill`` and
    ``interpolate`` carry the last observed value forward (``interpolate`` used to draw a line to
    the next observation, which lies after the point: a leak into backtests), ``zero`` writes 0.
    The grid starts at the first timestamp, so a gap always has a point before it.
    """
    ds = pd.DatetimeIndex(g["ds"])
    grid = pd.date_range(ds[0], ds[-1], freq=freq)
    off_grid = ds.difference(grid)
    if len(off_grid):
        raise DataError(
            f"series {sid!r} has timestamps off its {freq} grid (first {off_grid[0]}); "
            "resample the data or set data.freq to the right frequency"
        )
    missing = grid.difference(ds)
    if len(missing) == 0:
        return g
    if cfg.fill == "error":
        raise DataError(
            f"series {sid!r} has {len(missing)} missing timestamp(s) at frequency {freq} "
            f"(first {_when(missing[0])}); "
            "set data.fill to ffill, interpolate (both carry the last value forward) or zero "
            "to fill gaps"
        )
    full = g.set_index("ds").reindex(grid)
    full.index.name = "ds"
    full["unique_id"] = sid
    full[FILLED] = full["y"].isna()
    if cfg.fill in ("ffill", "interpolate"):
        full[value_cols] = full[value_cols].ffill()
    else:
        full[value_cols] = full[value_cols].fillna(0.0)
    return full.reset_index()[g.columns]


def _clean_nonfinite(frame: pd.DataFrame, cfg: DataConfig, value_cols: list[str]) -> pd.DataFrame:
    """Apply ``data.nan_policy`` to NaN/inf values: fail, or (``interpolate``) carry each series'
    last finite value forward, causally. Points at the start of a series with no finite value
    before them are dropped, with a warning: nothing in the past can fill them."""
    values = frame[value_cols].to_numpy(dtype="float64")
    bad = ~np.isfinite(values)
    if not bad.any():
        return frame
    row, col = map(int, np.argwhere(bad)[0])
    name = value_cols[col]
    label = cfg.target if name == "y" else name
    if cfg.nan_policy == "error":
        raise DataError(
            f"column {label!r} has {int(bad.sum())} NaN/inf value(s) (first at "
            f"{frame['ds'].iloc[row]} in series {frame['unique_id'].iloc[row]!r}); "
            "clean them or set data.nan_policy=interpolate (carries the last finite value "
            "forward)"
        )
    out = frame.copy()
    out[FILLED] = out[FILLED] | bad[:, 0]  # value_cols[0] is the target
    out[value_cols] = out[value_cols].replace([np.inf, -np.inf], np.nan)
    out[value_cols] = out.groupby("unique_id", sort=False)[value_cols].ffill()
    # What is still missing has no finite value before it: the head of a series.
    lead = out[value_cols].isna().any(axis=1)
    if lead.any():
        empty = out[value_cols].isna().groupby(out["unique_id"], sort=False).all()
        if empty.to_numpy().any():
            sid, name = empty.stack().pipe(lambda e: e[e].index[0])
            label = cfg.target if name == "y" else name
            raise DataError(f"column {label!r} has no finite value in series {sid!r} to fill from")
        first = out[lead].iloc[0]
        log.warning(
            "dropped %d point(s) at the start of %d series (first %r, up to %s) with no finite "
            "value before them to fill from (data.nan_policy=interpolate fills from the past only)",
            int(lead.sum()),
            out.loc[lead, "unique_id"].nunique(),
            first["unique_id"],
            out.loc[lead & (out["unique_id"] == first["unique_id"]), "ds"].max(),
        )
        out = out[~lead].reset_index(drop=True)
    return out


def digest_frame(
    frame: pd.DataFrame, filled: np.ndarray | None = None, static: pd.DataFrame | None = None
) -> str:
    """A stable content digest of the canonical frame (sha256, hex); ``filled`` (a boolean per
    row: the target was filled) counts when any point was filled, ``static`` (the per-series
    table of static covariates) when there is one."""
    h = hashlib.sha256()
    h.update(",".join(frame.columns).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    if filled is not None and filled.any():
        h.update(b"filled:" + np.packbits(np.asarray(filled, dtype=bool)).tobytes())
    if static is not None:
        h.update(("static:" + ",".join(static.columns)).encode())
        h.update(pd.util.hash_pandas_object(static, index=True).to_numpy().tobytes())
    return h.hexdigest()


def validate(
    df: pd.DataFrame, cfg: DataConfig, min_length: int | None = None, source: str = "<frame>"
) -> SeriesData:
    """Check and canonicalise raw long-format data; raise :class:`DataError` on any problem."""
    if df.empty:
        raise DataError(f"data from {source} has no rows")
    _check_columns(df, cfg)
    covs = [*cfg.covariates, *cfg.future_covariates]
    frame = pd.DataFrame(
        {
            "unique_id": df[cfg.series_id].astype(str) if cfg.series_id else DEFAULT_SERIES_ID,
            "ds": parse_times(df, cfg.time_column),
            "y": _to_numeric(df, cfg.target, "target"),
        }
    )
    for c in covs:
        frame[c] = _to_numeric(df, c, "covariate")
    static = None
    if cfg.static_covariates:
        static = static_table(frame["unique_id"], df, list(cfg.static_covariates))
    dup = frame.duplicated(["unique_id", "ds"])
    if dup.any():
        r = frame[dup].iloc[0]
        where = f" in series {r['unique_id']!r}" if cfg.series_id else ""
        raise DataError(
            f"duplicate timestamp {r['ds']}{where} ({int(dup.sum())} duplicate row(s)); "
            "aggregate or drop duplicates first"
            + ("" if cfg.series_id else ", or set data.series_id if the file holds several series")
        )
    frame = frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)

    freq = cfg.freq
    if freq is None:
        freqs = {
            sid: infer_frequency(pd.DatetimeIndex(g["ds"]))
            for sid, g in frame.groupby("unique_id", sort=False)
        }
        found = {f for f in freqs.values() if f}
        if len(found) != 1:
            detail = (
                "could not infer the frequency"
                if not found
                else f"series have different frequencies ({', '.join(sorted(found))})"
            )
            raise DataError(f"irregular timestamps: {detail}; set data.freq (e.g. MS, D, h)")
        freq = found.pop()
    try:
        pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        raise DataError(
            f"data.freq {freq!r} is not a pandas frequency alias (e.g. MS, D, h)"
        ) from None

    value_cols = ["y", *covs]
    frame[FILLED] = False
    parts = [
        _regularise(g.reset_index(drop=True), str(sid), freq, cfg, value_cols)
        for sid, g in frame.groupby("unique_id", sort=False)
    ]
    frame = pd.concat(parts, ignore_index=True)
    frame = _clean_nonfinite(frame, cfg, value_cols)

    if min_length is not None:
        lengths = frame.groupby("unique_id", sort=False).size()
        short = lengths[lengths < min_length]
        if len(short):
            sid, n = short.index[0], int(short.iloc[0])
            raise DataError(
                f"series {sid!r} has {n} points but needs at least {min_length} "
                "(input_size + horizon for one training window, + validation + backtest windows); "
                "shorten window.input_size/window.horizon or provide more history"
            )
    frame[value_cols] = frame[value_cols].astype("float64")
    filled = frame.pop(FILLED).to_numpy(dtype=bool)
    return SeriesData(
        frame=frame,
        freq=freq,
        covariates=tuple(covs),
        digest=digest_frame(frame, filled, static),
        source=source,
        future=tuple(cfg.future_covariates),
        filled=frozenset(
            zip(frame["unique_id"].to_numpy()[filled], pd.DatetimeIndex(frame["ds"])[filled])
        ),
        static=static,
    )


SEASON_BY_FREQ = {"h": 24, "D": 7, "B": 5, "W": 52, "M": 12, "Q": 4, "Y": 1, "A": 1, "min": 60}


def season_length(freq: str) -> int:
    """Season implied by a frequency alias (``MS`` -> 12, ``D`` -> 7, ``h`` -> 24...)."""
    base = pd.tseries.frequencies.to_offset(freq).rule_code.split("-")[0]
    for prefix in ("min", "h", "D", "B", "W", "M", "Q", "Y", "A"):
        stem = base.rstrip("SE") if prefix in ("M", "Q", "Y", "A") else base
        if stem == prefix or (prefix == "h" and base == "H") or (prefix == "min" and base == "T"):
            return SEASON_BY_FREQ[prefix]
    return 1
