"""The feature spec: how a model's raw history becomes network inputs, and its outputs forecasts.

One typed object holds every fitted piece of the featurisation (the target transform, the
seasonal indices and the scaler fitted on the training part, the calendar and known-future
features, the encoded static covariates, the window normalisation, padding and residual) and the
two operations built on them:
:meth:`FeatureSpec.encode` (raw rows of one series -> scaled features) and
:meth:`FeatureSpec.decode` (network outputs -> the data's units). Training windows
(:func:`seqlab.features.windows.prepare`) and forecasts (:meth:`FeatureSpec.forecast_inputs`) both
encode through it, so a served model sees exactly the inputs it was trained and scored on.

numpy and pandas only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from seqlab.data.series import DataError, SeriesData
from seqlab.features.calendar import calendar_features, future_feature_indices
from seqlab.features.seasonal import Seasonality
from seqlab.features.static import StaticEncoding, check_static
from seqlab.features.windows import Scaler, apply_transform, decode_forecasts, model_inputs

SPEC_VERSION = 2
"""2: static covariates (``static``); version 1 specs (none) still read."""


def raw_features(
    frame: pd.DataFrame, freq: str, covariates: tuple[str, ...] | list[str], calendar: bool
) -> np.ndarray:
    """(T, F) float64 features of one series' rows in the data's units: the target, then the
    covariates, then the calendar features of each timestamp. A missing value stays NaN."""
    values = frame[["y", *covariates]].to_numpy("float64", copy=True)
    if calendar:
        values = np.hstack([values, calendar_features(frame["ds"], freq)])
    return values


def horizon_dates(last: pd.Timestamp, horizon: int, freq: str) -> pd.DatetimeIndex:
    return pd.date_range(last + pd.tseries.frequencies.to_offset(freq), periods=horizon, freq=freq)


@dataclass(frozen=True)
class ForecastInputs:
    """Network inputs for the next horizon of each series, and what decodes its outputs."""

    x: np.ndarray  # (N, R, F') as the network takes it
    base: np.ndarray  # (N, H) baseline added back to outputs, scaled units
    series_index: np.ndarray  # (N,) each row's series in the spec
    phases: np.ndarray | None  # (N, H) seasonal phase of each horizon step
    series_ids: list[str]
    last: list[pd.Timestamp]  # each series' last observed timestamp


@dataclass(frozen=True)
class FeatureSpec:
    """Everything fitted about a model's features; versioned (``SPEC_VERSION``) and JSON-able."""

    series_ids: tuple[str, ...]
    freq: str
    input_size: int
    horizon: int
    covariates: tuple[str, ...]
    future_covariates: tuple[str, ...]
    calendar: bool
    n_calendar: int
    transform: str
    scaler: Scaler
    seasonality: Seasonality | None
    local_norm: str
    residual: str
    season: int
    pad: bool
    series_index: bool
    static: StaticEncoding | None = None
    """The static covariates' encoding, fitted on the training series (none: ``None``)."""

    @property
    def static_columns(self) -> list[str]:
        """The user's static covariates (``data.static_covariates``) it reads."""
        return [c.name for c in self.static.columns] if self.static is not None else []

    @property
    def n_static(self) -> int:
        return self.static.width if self.static is not None else 0

    @property
    def n_features(self) -> int:
        """Input features per step: target, covariates, calendar, encoded static covariates."""
        return 1 + len(self.covariates) + self.n_calendar + self.n_static

    @property
    def future_features(self) -> list[int]:
        return future_feature_indices(self.covariates, self.future_covariates, self.n_calendar)

    def index_of(self, series_id: str) -> int:
        try:
            return self.series_ids.index(series_id)
        except ValueError:
            known = ", ".join(self.series_ids[:5]) + (" ..." if len(self.series_ids) > 5 else "")
            raise DataError(
                f"series {series_id!r} was not in the training data (known: {known}); "
                "forecast only series the model was trained on"
            ) from None

    def min_history(self) -> int:
        """Points of history a series needs to be forecast."""
        return 1 if self.pad else self.input_size

    # ------------------------------------------------------------ encode / decode

    def encode(self, raw: np.ndarray, series_index: int, phases: np.ndarray) -> np.ndarray:
        """Raw features (T, F) of one series at seasonal ``phases`` (T,) -> scaled (T, F):
        transform the target, remove its seasonal indices, scale with the training statistics."""
        values = np.array(raw, dtype="float64", copy=True)
        values[:, 0] = apply_transform(values[:, 0], self.transform)
        if self.seasonality is not None:
            values[:, 0] = self.seasonality.remove(values[:, 0], series_index, phases)
        return self.scaler.transform(values, series_index)

    def network_inputs(
        self, x: np.ndarray, y: np.ndarray | None, future: np.ndarray, series: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Scaled windows -> the network's inputs (and targets), and the baseline to add back."""
        return model_inputs(
            x,
            y,
            future,
            series,
            future_features=self.future_features,
            static=self.static.matrix if self.static is not None else None,
            series_index=self.series_index,
            local_norm=self.local_norm,
            horizon=self.horizon,
            residual=self.residual,
            season=self.season,
        )

    def decode(
        self,
        outputs: np.ndarray,
        base: np.ndarray,
        series_index: np.ndarray,
        phases: np.ndarray | None,
    ) -> np.ndarray:
        """Network outputs (N, H) of one level -> forecasts in the data's units."""
        return decode_forecasts(
            outputs, base, self.scaler, series_index, self.transform, self.seasonality, phases
        )

    # ------------------------------------------------------------ forecasting

    def forecast_inputs(
        self, history: SeriesData, future: pd.DataFrame | None = None
    ) -> ForecastInputs:
        """The inputs for the next ``horizon`` steps after each series of ``history`` (canonical,
        validated). ``future``: a canonical frame holding the known-future covariates' values
        over the horizon (other rows are ignored). One-line :class:`DataError` for a series the
        model does not know, a history shorter than it reads, missing known-future rows, or a
        static covariate ``history`` holds with another value than the one trained on (the
        trained values are the inputs: a history need not hold them)."""
        L, H = self.input_size, self.horizon
        fidx = self.future_features
        future_of: dict[str, pd.DataFrame] = {}
        if self.future_covariates and future is not None:
            future_of = {str(k): v for k, v in future.groupby("unique_id", sort=False)}
        xs, fut, idxs, phases, sids, lasts = [], [], [], [], [], []
        for sid, g in history.frame.groupby("unique_id", sort=False):
            idx = self.index_of(str(sid))
            if len(g) < self.min_history():
                raise DataError(
                    f"series {sid!r} has {len(g)} points of history; the model reads the "
                    f"last {L} (its input_size): provide at least {L}"
                )
            recent = g.tail(L)
            last = pd.Timestamp(g["ds"].iloc[-1])
            last_phase = self.seasonality.phase_of(idx, last) if self.seasonality else 0
            steps = np.arange(last_phase - len(recent) + 1, last_phase + 1)
            scaled = self.encode(
                raw_features(recent, self.freq, self.covariates, self.calendar), idx, steps
            )
            if len(scaled) < L:  # a padded model: the series "was" its first value before
                scaled = np.vstack([np.repeat(scaled[:1], L - len(scaled), axis=0), scaled])
            xs.append(scaled)
            if fidx:
                dates = horizon_dates(last, H, self.freq)
                ahead = pd.DataFrame({"ds": dates, "y": np.nan})
                for c in self.covariates:
                    ahead[c] = np.nan
                if self.future_covariates:
                    cols = list(self.future_covariates)
                    ahead[cols] = known_future(future_of.get(str(sid)), str(sid), dates, cols)
                raw = raw_features(ahead, self.freq, self.covariates, self.calendar)
                horizon_phases = np.arange(last_phase + 1, last_phase + 1 + H)
                fut.append(self.encode(raw, idx, horizon_phases)[:, fidx])
            idxs.append(idx)
            phases.append(np.arange(last_phase + 1, last_phase + 1 + H))
            sids.append(str(sid))
            lasts.append(last)
        if not xs:
            raise DataError("the history holds no series to forecast")
        if self.static is not None and history.static is not None:
            check_static(self.static, history.static, sids, idxs)
        index = np.asarray(idxs, dtype=np.int64)
        x, _, base = self.network_inputs(
            np.stack(xs).astype(np.float32),
            None,
            np.stack(fut).astype(np.float32) if fut else np.empty((len(xs), H, 0), np.float32),
            index,
        )
        return ForecastInputs(
            x=x,
            base=base.astype("float64"),
            series_index=index,
            phases=np.stack(phases) if self.seasonality is not None else None,
            series_ids=sids,
            last=lasts,
        )

    # ------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        return {
            "version": SPEC_VERSION,
            "series_ids": list(self.series_ids),
            "freq": self.freq,
            "input_size": self.input_size,
            "horizon": self.horizon,
            "covariates": list(self.covariates),
            "future_covariates": list(self.future_covariates),
            "calendar": self.calendar,
            "n_calendar": self.n_calendar,
            "transform": self.transform,
            "scaler": self.scaler.to_dict(),
            "seasonality": None if self.seasonality is None else self.seasonality.to_dict(),
            "local_norm": self.local_norm,
            "residual": self.residual,
            "season": self.season,
            "pad": self.pad,
            "series_index": self.series_index,
            "static": None if self.static is None else self.static.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        if d.get("version") not in (1, SPEC_VERSION):
            raise ValueError(
                f"feature spec version {d.get('version')!r} is not the one this seqlab reads "
                f"({SPEC_VERSION})"
            )
        return cls(
            series_ids=tuple(d["series_ids"]),
            freq=d["freq"],
            input_size=int(d["input_size"]),
            horizon=int(d["horizon"]),
            covariates=tuple(d["covariates"]),
            future_covariates=tuple(d["future_covariates"]),
            calendar=bool(d["calendar"]),
            n_calendar=int(d["n_calendar"]),
            transform=d["transform"],
            scaler=Scaler.from_dict(d["scaler"]),
            seasonality=Seasonality.from_dict(d["seasonality"]) if d["seasonality"] else None,
            local_norm=d["local_norm"],
            residual=d["residual"],
            season=int(d["season"]),
            pad=bool(d["pad"]),
            series_index=bool(d["series_index"]),
            static=StaticEncoding.from_dict(d["static"]) if d.get("static") else None,
        )


def known_future(
    future: pd.DataFrame | None, sid: str, dates: pd.DatetimeIndex, columns: list[str]
) -> np.ndarray:
    """(H, len(columns)) values of the known-future covariates at ``dates``, from ``future``
    (series ``sid``'s rows); a :class:`DataError` naming the missing rows when some are absent."""
    rows = pd.DataFrame(index=dates, columns=columns, dtype="float64")
    if future is not None and len(future):
        rows = future.set_index("ds").reindex(dates)[columns].astype("float64")
    missing = rows.index[rows.isna().any(axis=1)]
    if len(missing):
        shown = ", ".join(str(pd.Timestamp(t).date()) for t in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataError(
            f"series {sid!r} lacks future values of {', '.join(columns)} at {shown}{more}: add "
            f"a row for each of the {len(dates)} steps after its history, with an empty target"
        )
    return rows.to_numpy("float64")
