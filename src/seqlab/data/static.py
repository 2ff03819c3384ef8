"""Static covariates (``data.static_covariates``): attributes of a series constant over time.

:func:`static_table` reads them from the raw rows into one row per series (index ``unique_id``,
one column per attribute), refusing a column that changes within a series or is missing in one.
A numeric column stays numeric (float64); any other is text (categorical). numpy and pandas only.
"""

from __future__ import annotations

import pandas as pd

from seqlab.errors import DataError


def is_numeric(column: pd.Series) -> bool:
    """Whether a static column is read as a number (else as text: a category)."""
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def show(value: object) -> str:
    """A static value as an error message names it: text quoted, a number as written."""
    return repr(str(value)) if isinstance(value, str) else f"{float(value):g}"  # type: ignore[arg-type]


def static_table(ids: pd.Series, df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per series (``ids``: each raw row's series, sorted index ``unique_id``) holding
    each of ``columns``: its one value in that series. One-line :class:`DataError` for a missing
    value or a column whose value changes within a series."""
    out = pd.DataFrame(index=pd.Index(sorted(ids.unique()), name="unique_id"))
    for col in columns:
        values = (
            df[col] if is_numeric(df[col]) else df[col].where(df[col].isna(), df[col].astype(str))
        )
        missing = values.isna().to_numpy()
        if missing.any():
            sid = ids.to_numpy()[missing][0]
            raise DataError(
                f"static covariate {col!r} is missing in series {sid!r}: give every row of "
                "each series its value"
            )
        groups = values.groupby(ids.to_numpy(), sort=True)
        counts = groups.nunique()
        if (counts > 1).any():
            sid = counts.index[counts.to_numpy() > 1][0]
            first, second = values[(ids == sid).to_numpy()].unique()[:2]
            raise DataError(
                f"static covariate {col!r} changes within series {sid!r} ({show(first)} and "
                f"{show(second)}): give it one value per series, or make it a covariate"
            )
        first_values = groups.first()
        out[col] = (
            first_values.astype("float64") if is_numeric(df[col]) else first_values.astype(object)
        )
    return out
