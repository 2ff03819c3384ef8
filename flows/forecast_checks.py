"""The checks of ``seqlab forecast``'s inputs, without Prefect: the command runs them before
any Prefect server starts, and the forecast flow runs them again (scheduled runs). Each raises a
one-line :class:`~seqlab.errors.DataError` naming the command's own option (``--input``,
``--output``) and what to do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seqlab.data import BUNDLED, DataError, load_raw

OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq")


def check_input_path(path: str) -> None:
    """``--input`` names an existing file (or a bundled dataset)."""
    if path in BUNDLED:
        return
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"--input file not found: {path} (give the history to forecast from, "
            "a CSV or Parquet file)"
        )
    if p.is_dir():
        raise DataError(f"--input {path} is a directory: give a CSV or Parquet file")


def read_history(path: str, encoding: str = "utf-8") -> pd.DataFrame:
    """The ``--input`` file (CSV/Parquet, or a bundled dataset name) as it is."""
    check_input_path(path)
    return load_raw(path, encoding, setting="--encoding")


def check_output(output: str) -> None:
    """``--output`` must name a CSV or Parquet file."""
    if Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise DataError(f"--output {output} must end in .csv or .parquet")
    if Path(output).is_dir():
        raise DataError(f"--output {output} is a directory: give a file name")


def required_columns(meta: dict) -> list[tuple[str, str]]:
    """(column, role) pairs the model reads, in the user's column names."""
    cols = [(meta["time_column"], "time column"), (meta["target"], "target")]
    if meta.get("series_id"):
        cols.append((meta["series_id"], "series id"))
    future = list(meta.get("future_covariates") or [])
    cols += [(c, "covariate") for c in meta.get("covariates") or [] if c not in future]
    cols += [(c, "known-future covariate") for c in future]
    return cols


def check_columns(history: pd.DataFrame, meta: dict, source: str = "--input") -> None:
    """A one-line :class:`DataError` naming each column the model needs that is missing."""
    have = [str(c) for c in history.columns]
    missing = [(c, role) for c, role in required_columns(meta) if c not in have]
    if missing:
        named = ", ".join(f"{c!r} (its {role})" for c, role in missing)
        needs = ", ".join(c for c, _ in required_columns(meta))
        raise DataError(
            f"{source} lacks column{'s' if len(missing) > 1 else ''} {named}: the model reads "
            f"{needs}; the file has {', '.join(have)}"
        )


def check_history(model, history: pd.DataFrame, source: str = "--input") -> pd.DataFrame:
    """Check ``history`` against the model (columns, frequency, length per series, future rows
    of known-future covariates) by forecasting it: the canonical forecast, or a DataError."""
    meta = getattr(model.unwrap_python_model(), "meta", None)
    if meta is not None:
        check_columns(history, meta, source)
    from seqlab.registry import serving  # mlflow and torch: only once the cheap checks have passed

    return serving.predict_checked(model, history)
