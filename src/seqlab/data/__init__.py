"""Series data: read (CSV, Parquet, bundled), validate (one-line errors), causal filling;
the data checked against a config; the columns' roles guessed for `seqlab init`.

- :mod:`~seqlab.data.series`: ``SeriesData``, ``load_raw``, ``validate``, frequency and season
- :mod:`~seqlab.data.checks`: lengths, transform and overflow against a config, before any server
- :mod:`~seqlab.data.starter`: ``seqlab init``'s starter config
"""

from seqlab.data.checks import MAX_ABS_VALUE, ingest, required_length, validate_data
from seqlab.data.series import (
    BUNDLED,
    DEFAULT_SERIES_ID,
    FILLED,
    SEASON_BY_FREQ,
    SeriesData,
    digest_frame,
    infer_frequency,
    load_raw,
    read_table,
    resolve_source,
    season_length,
    validate,
)
from seqlab.data.starter import (
    HORIZON_BY_SEASON,
    MOSTLY_NUMERIC,
    PACKAGED_BASE,
    TARGET_NAMES,
    TIME_NAMES,
    Roles,
    guess_roles,
    search_space,
    starter_yaml,
)
from seqlab.errors import DataError

__all__ = [
    "BUNDLED",
    "DEFAULT_SERIES_ID",
    "DataError",
    "FILLED",
    "HORIZON_BY_SEASON",
    "MAX_ABS_VALUE",
    "MOSTLY_NUMERIC",
    "PACKAGED_BASE",
    "Roles",
    "SEASON_BY_FREQ",
    "SeriesData",
    "TARGET_NAMES",
    "TIME_NAMES",
    "digest_frame",
    "guess_roles",
    "infer_frequency",
    "ingest",
    "load_raw",
    "read_table",
    "required_length",
    "resolve_source",
    "search_space",
    "season_length",
    "starter_yaml",
    "validate",
    "validate_data",
]
