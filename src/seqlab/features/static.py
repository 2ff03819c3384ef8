"""Static covariates as network inputs: their encoding, fitted on the training series.

A text column is one-hot encoded over its sorted levels; a numeric column is standardised with
the mean and standard deviation of its per-series values (a standard deviation of 0 counts as
1). :class:`StaticEncoding` holds that fit, the values each series of the spec trained with and
their encoded (S, K) matrix; :func:`with_static` appends a window's K values to every input step
(:func:`seqlab.features.windows.model_inputs`, for training windows and forecasts alike), and
:func:`check_static` refuses a history whose attributes differ from those trained on.

numpy and pandas only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from seqlab.data.static import show
from seqlab.errors import DataError

StaticKind = Literal["numeric", "text"]


@dataclass(frozen=True)
class StaticColumn:
    """How one static covariate is encoded: one-hot over ``levels`` (text), or ``(v - mean) /
    std`` (numeric)."""

    name: str
    kind: StaticKind
    levels: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    @property
    def names(self) -> list[str]:
        """The names of its encoded inputs: ``region=north``..., or the column's name."""
        return [f"{self.name}={lv}" for lv in self.levels] if self.kind == "text" else [self.name]

    def encode(self, values: Sequence[object]) -> np.ndarray:
        """(len(values), width) encoded values; an unknown level is all zeros."""
        if self.kind == "text":
            return np.array([[str(v) == lv for lv in self.levels] for v in values], "float64")
        return ((np.asarray(values, "float64") - self.mean) / self.std)[:, None]

    def same(self, a: object, b: object) -> bool:
        """Whether two values of this column are the one value (text as text, numbers close)."""
        if self.kind == "text":
            return str(a) == str(b)
        try:
            return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False


@dataclass(frozen=True)
class StaticEncoding:
    """The static covariates of a spec's series: each column's encoding, the values each series
    (in spec order) trained with, and their encoded (S, K) matrix. JSON-able."""

    columns: tuple[StaticColumn, ...]
    values: tuple[tuple[object, ...], ...]  # (S, len(columns)): str or float
    matrix: np.ndarray  # (S, K) float64

    @property
    def width(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def names(self) -> list[str]:
        return [n for c in self.columns for n in c.names]

    def to_dict(self) -> dict:
        return {
            "columns": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "levels": list(c.levels),
                    "mean": c.mean,
                    "std": c.std,
                }
                for c in self.columns
            ],
            "values": [list(v) for v in self.values],
            "matrix": self.matrix.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> StaticEncoding:
        columns = tuple(
            StaticColumn(
                name=c["name"],
                kind=c["kind"],
                levels=tuple(c["levels"]),
                mean=float(c["mean"]),
                std=float(c["std"]),
            )
            for c in d["columns"]
        )
        matrix = np.asarray(d["matrix"], dtype="float64").reshape(len(d["values"]), -1)
        return cls(columns, tuple(tuple(v) for v in d["values"]), matrix)


def fit_column(name: str, values: pd.Series) -> StaticColumn:
    """The encoding of one static column from its per-series values."""
    if pd.api.types.is_numeric_dtype(values):
        v = values.to_numpy("float64")
        std = float(v.std())
        return StaticColumn(name, "numeric", mean=float(v.mean()), std=std if std > 1e-12 else 1.0)
    return StaticColumn(name, "text", levels=tuple(sorted({str(x) for x in values})))


def fit_static(table: pd.DataFrame, series_ids: Sequence[str]) -> StaticEncoding:
    """Fit the encoding on the static table (index ``unique_id``) of the training series, and
    encode those series in ``series_ids`` order."""
    rows = table.reindex(list(series_ids))
    columns = tuple(fit_column(str(c), rows[c]) for c in rows.columns)
    values = tuple(
        tuple(float(v) if c.kind == "numeric" else str(v) for c, v in zip(columns, row))
        for row in rows.itertuples(index=False)
    )
    parts = [c.encode([v[j] for v in values]) for j, c in enumerate(columns)]
    matrix = np.hstack(parts) if parts else np.zeros((len(values), 0))
    return StaticEncoding(columns, values, matrix)


def with_static(x: np.ndarray, matrix: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Inputs (N, R, F) followed by each window's encoded static values (``matrix[series]``,
    K columns) on every step: (N, R, F + K)."""
    rows = matrix[series].astype(x.dtype)  # (N, K)
    static = np.broadcast_to(rows[:, None, :], (x.shape[0], x.shape[1], rows.shape[1]))
    return np.concatenate([x, static], axis=2)


def check_static(
    encoding: StaticEncoding, table: pd.DataFrame, series_ids: Sequence[str], index: Sequence[int]
) -> None:
    """One-line :class:`DataError` when a history's static table (index ``unique_id``, the
    columns it holds) gives series ``series_ids`` (at spec rows ``index``) another value than
    the one they trained with."""
    for j, col in enumerate(encoding.columns):
        if col.name not in table.columns:
            continue
        for sid, i in zip(series_ids, index):
            if sid not in table.index:
                continue
            new, old = table.at[sid, col.name], encoding.values[i][j]
            if not col.same(new, old):
                raise DataError(
                    f"series {sid!r} has static covariate {col.name!r} = {show(new)}, but the "
                    f"model trained on {show(old)}: retrain to use the new value"
                )
