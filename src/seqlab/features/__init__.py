"""Features: the split, scalers fitted on the past, windows, seasonal indices, the calendar,
and the versioned feature spec that training windows and forecasts encode through.

- :mod:`~seqlab.features.calendar`: calendar features by frequency; inputs known ahead
- :mod:`~seqlab.features.seasonal`: classical seasonal indices per series
- :mod:`~seqlab.features.scaling`: per-series scalers fitted on the past, the MASE scale
- :mod:`~seqlab.features.windows`: split, windows, decoding -> ``PreparedData``
- :mod:`~seqlab.features.static`: static covariates' encoding (one-hot, standardised)
- :mod:`~seqlab.features.spec`: ``FeatureSpec``, everything fitted about a model's features
"""

from seqlab.features.calendar import (
    calendar_cycles,
    calendar_features,
    calendar_names,
    future_feature_indices,
)
from seqlab.features.seasonal import (
    Kind,
    Seasonality,
    acf,
    centred_moving_average,
    fit_seasonality,
    is_seasonal,
    seasonal_indices,
    steps_between,
)
from seqlab.features.spec import (
    SPEC_VERSION,
    FeatureSpec,
    ForecastInputs,
    horizon_dates,
    known_future,
    raw_features,
)
from seqlab.features.static import (
    StaticColumn,
    StaticEncoding,
    check_static,
    fit_static,
    with_static,
)
from seqlab.features.windows import (
    PreparedData,
    Scaler,
    append_future,
    apply_transform,
    backtest_offsets,
    decode_forecasts,
    fit_scaler,
    future_rows,
    invert_transform,
    min_length,
    model_inputs,
    normalise_windows,
    prepare,
    seasonal_mae,
    sliding_windows,
    target_windows,
    with_series_index,
)

__all__ = [
    "FeatureSpec",
    "ForecastInputs",
    "Kind",
    "PreparedData",
    "SPEC_VERSION",
    "Scaler",
    "Seasonality",
    "StaticColumn",
    "StaticEncoding",
    "acf",
    "append_future",
    "apply_transform",
    "backtest_offsets",
    "calendar_cycles",
    "calendar_features",
    "calendar_names",
    "check_static",
    "centred_moving_average",
    "decode_forecasts",
    "fit_scaler",
    "fit_seasonality",
    "fit_static",
    "future_feature_indices",
    "future_rows",
    "horizon_dates",
    "invert_transform",
    "is_seasonal",
    "known_future",
    "min_length",
    "model_inputs",
    "normalise_windows",
    "prepare",
    "raw_features",
    "seasonal_indices",
    "seasonal_mae",
    "sliding_windows",
    "steps_between",
    "target_windows",
    "with_series_index",
    "with_static",
]
