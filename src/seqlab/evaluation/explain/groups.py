"""Groups of inputs: blocks of the target's lags, one covariate with its lags, the calendar, the
static covariates."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from seqlab.features.windows import PreparedData

if TYPE_CHECKING:
    pass


log = logging.getLogger("seqlab.explain")


TARGET_LAGS, COVARIATE = "target lags", "covariate"
GroupKind = Literal["target lags", "covariate"]


@dataclass(frozen=True)
class FeatureGroup:
    """Inputs permuted together: window rows ``positions`` (0 = the oldest step) of the input
    features ``features`` (0 = the target)."""

    name: str
    kind: GroupKind
    features: tuple[int, ...]
    positions: tuple[int, ...]


def lag_blocks(input_size: int, season: int, max_groups: int = 6) -> list[tuple[int, int]]:
    """Blocks of the target's lags as ``(first, last)`` lags, lag 1 = the last observed step.

    By season when the window holds more than one (``1 < season < input_size``): lags
    ``1..m, m+1..2m, ...``, the last block possibly shorter; beyond ``max_groups`` blocks the
    rest is one block. Otherwise (no season, or one season or less in the window) a few
    (``min(4, input_size)``) equal blocks.
    """
    lags = input_size
    if 1 < season < lags:
        starts = list(range(1, lags + 1, season))[:max_groups]
        ends = [s - 1 for s in starts[1:]] + [lags]
        return list(zip(starts, ends))
    parts = np.array_split(np.arange(1, lags + 1), min(4, lags, max(max_groups, 1)))
    return [(int(p[0]), int(p[-1])) for p in parts]


def feature_names(
    n_features: int,
    covariates: Sequence[str] = (),
    target: str = "y",
    n_calendar: int = 0,
    freq: str | None = None,
    static: Sequence[str] = (),
) -> list[str]:
    """Names of the model's input features: the target, the covariates (past-only, then known
    in advance, as ``SeriesData.covariates`` lists them), the calendar features, the encoded
    static covariates (``static``: their names, ``FeatureSpec.static.names``)."""
    calendar = [f"calendar{i + 1}" for i in range(n_calendar)]
    if n_calendar and freq:
        try:
            from seqlab.features.calendar import calendar_names

            named = calendar_names(freq)
            calendar = named if len(named) == n_calendar else calendar
        except ImportError:
            pass
    n_dynamic = n_features - len(static)
    names = [target, *covariates, *calendar][:n_dynamic]
    names += [f"feature{i}" for i in range(len(names), n_dynamic)]
    return names + list(static)


def feature_groups(
    input_size: int,
    n_features: int,
    covariates: Sequence[str] = (),
    season: int = 1,
    target: str = "y",
    max_lag_groups: int = 6,
    future_features: Sequence[int] = (),
    horizon: int = 0,
    n_calendar: int = 0,
    static: Sequence[str] = (),
) -> list[FeatureGroup]:
    """The target's lags in blocks (:func:`lag_blocks`), then each covariate with all its lags,
    then the calendar features together (one group), then the static covariates together
    (``static``: the names of their encoded inputs, the last features; one group).

    Feature 0 is the target, features ``1..`` the covariates in ``covariates`` order, then
    ``n_calendar`` calendar features (extra unnamed features are ``feature<i>``). Features in
    ``future_features`` are known for the horizon: their ``horizon`` rows after the input
    window belong to their group too."""
    groups = []
    for first, last in lag_blocks(input_size, season, max_lag_groups):
        name = f"{target} lag {first}" if first == last else f"{target} lags {first}-{last}"
        positions = tuple(range(input_size - last, input_size - first + 1))
        groups.append(FeatureGroup(name, TARGET_LAGS, (0,), positions))
    names = feature_names(n_features, covariates, target, n_calendar, static=static)
    rows = input_size + (horizon if future_features else 0)

    def span(features: Sequence[int]) -> tuple[int, ...]:
        known = any(f in future_features for f in features)
        return tuple(range(rows if known else input_size))

    first_static = n_features - len(static)
    first_calendar = first_static - n_calendar
    for i in range(1, first_calendar):
        groups.append(FeatureGroup(names[i], COVARIATE, (i,), span([i])))
    if n_calendar:
        features = tuple(range(first_calendar, first_static))
        groups.append(FeatureGroup("calendar", COVARIATE, features, span(features)))
    if static:
        features = tuple(range(first_static, n_features))
        groups.append(FeatureGroup("static", COVARIATE, features, span(features)))
    return groups


def groups_for(
    prepared: PreparedData,
    covariates: Sequence[str] = (),
    target: str = "y",
    max_lag_groups: int = 6,
) -> list[FeatureGroup]:
    """:func:`feature_groups` of a fit's windows (its season, known-future and calendar
    features)."""
    return feature_groups(
        prepared.input_size,
        prepared.n_features,  # a series-index column (series embedding) is never permuted
        covariates,
        prepared.season,
        target,
        max_lag_groups,
        getattr(prepared, "future_features", None) or (),
        prepared.horizon,
        getattr(prepared, "n_calendar", 0),
        static_names(prepared),
    )


def static_names(prepared: PreparedData) -> list[str]:
    """The names of a fit's encoded static inputs (none: [])."""
    static = getattr(getattr(prepared, "spec", None), "static", None)
    return static.names if static is not None else []
