"""The fitted forecaster: one object from fit to serving.

:class:`FittedForecaster` owns a trained network (or seed ensemble), its
:class:`~seqlab.features.spec.FeatureSpec` (split, scaler, seasonal indices, calendar, covariates,
padding, residual), the user's columns and data policies, how long it trained, and its interval
margins. Like neuralforecast's ``NeuralForecast`` it is fitted, predicts, cross-validates, and
saves and loads itself; tuning's scoring, the backtest, the promotion gate, explanations, the
MLflow pyfunc and ``seqlab forecast`` all forecast through :meth:`FittedForecaster.predict`, so a
model is scored exactly the way it is served.

Saved as two files: ``weights.pt`` and ``meta.json``, a versioned schema (``FORMAT``) checked on
load: a model in an older or foreign format is a one-line :class:`ModelFormatError`.

torch, numpy and pandas only (no MLflow, no Prefect).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqlab import __version__
from seqlab.budget import members_that_fit
from seqlab.config import DataConfig, PipelineConfig, with_overrides
from seqlab.data.series import DataError, SeriesData, parse_times, validate
from seqlab.errors import ModelFormatError  # noqa: F401 (raised here, re-exported)
from seqlab.evaluation import conformal
from seqlab.evaluation.conformal import central_levels, with_point_bands  # noqa: F401
from seqlab.features.spec import FeatureSpec
from seqlab.features.windows import seasonal_mae
from seqlab.models import EnsembleForecaster, Forecaster
from seqlab.redact import redact_tree
from seqlab.training.recipe import (
    prepare_fit,
    train_model,
    training_end,
)
from seqlab.training.trainer import History

FORMAT = 3
"""The version of ``meta.json``; bumped whenever its meaning changes."""


# ---------------------------------------------------------------- the user's columns


@dataclass(frozen=True)
class Columns:
    """The user's column names and data policies: what a history passed to the model holds."""

    time_column: str
    target: str
    series_id: str | None
    covariates: tuple[str, ...]
    future_covariates: tuple[str, ...]
    freq: str
    fill: str = "error"
    nan_policy: str = "error"
    encoding: str = "utf-8"

    @classmethod
    def of(cls, data: DataConfig, series: SeriesData) -> Columns:
        return cls(
            time_column=data.time_column,
            target=data.target,
            series_id=data.series_id,
            covariates=tuple(c for c in series.covariates if c not in set(series.future)),
            future_covariates=tuple(c for c in series.covariates if c in set(series.future)),
            freq=series.freq,
            fill=data.fill,
            nan_policy=data.nan_policy,
            encoding=data.encoding,
        )

    def data_config(self) -> DataConfig:
        return DataConfig(
            source="<history>",
            time_column=self.time_column,
            target=self.target,
            series_id=self.series_id,
            covariates=list(self.covariates),
            future_covariates=list(self.future_covariates),
            freq=self.freq,
            fill=self.fill,  # type: ignore[arg-type]
            nan_policy=self.nan_policy,  # type: ignore[arg-type]
            encoding=self.encoding,
        )

    def user_frame(self, series: SeriesData) -> pd.DataFrame:
        """A canonical frame back in the user's column names (what the served model takes)."""
        from seqlab.inference import user_frame

        return user_frame(series, self.data_config())


def split_future(frame: pd.DataFrame, dcfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History rows, and the rows after each series' last observed target (empty target): the
    known-future covariates of the horizon."""
    if dcfg.target not in frame.columns:
        return frame, frame.iloc[:0]
    observed = pd.to_numeric(frame[dcfg.target], errors="coerce").notna()
    times = pd.to_datetime(frame[dcfg.time_column], errors="coerce")
    keys = frame[dcfg.series_id] if dcfg.series_id else pd.Series(0, index=frame.index)
    last = times.where(observed).groupby(keys).transform("max")
    ahead = ~observed & (times > last)
    return frame[~ahead], frame[ahead]


# ---------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Intervals:
    """Conformal margins of the central intervals, in units of each series' MASE scale.

    ``margins``: lower level -> margin (``seqlab.evaluation.conformal``); ``scales``: each series'
    scale over the data the model trained on (an interval does not depend on how much history a
    caller passes); ``levels``: the quantile levels of the ``q<level>`` columns. A quantile
    network's own quantiles are widened by the margins; a point network's intervals are the point
    forecast plus or minus them (split conformal on absolute errors)."""

    margins: dict[float, float]
    scales: dict[str, float]
    levels: tuple[float, ...]

    def to_dict(self) -> dict:
        return {
            "margins": {f"{q:g}": m for q, m in self.margins.items()},
            "scales": self.scales,
            "levels": list(self.levels),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Intervals:
        return cls(
            {float(q): float(m) for q, m in d["margins"].items()},
            {str(k): float(v) for k, v in d["scales"].items()},
            tuple(float(q) for q in d["levels"]),
        )


def quantile_column(level: float) -> str:
    """The forecast column of a quantile level: ``q0.1``, ``q0.9`` (the median is ``forecast``)."""
    return f"q{level:g}"


# ---------------------------------------------------------------- the object


@dataclass
class FittedForecaster:
    """A trained network with everything it needs to forecast, be scored, saved and retrained."""

    network: Forecaster
    spec: FeatureSpec
    columns: Columns
    training_end: dict[str, str]
    """Last timestamp of each series the network trained on."""
    epochs: int
    steps: int
    """Optimizer steps each member trained: what a refit of this recipe repeats."""
    config: dict
    """The recipe: the configuration it was trained with (passwords redacted)."""
    intervals: Intervals | None = None
    known: pd.DataFrame | None = field(default=None, repr=False)
    """The data it was fitted from (not saved): known-future covariates for backtests."""
    history: History | None = field(default=None, repr=False)
    """The first member's training history (not saved)."""
    holdout: int = 0
    """Points at each series' end the fit did not train on."""

    # ------------------------------------------------------------ fit

    @classmethod
    def fit(
        cls,
        series: SeriesData,
        cfg: PipelineConfig,
        holdout: int,
        epochs: int | None = None,
        steps: int | None = None,
        deadline: float | None = None,
    ) -> FittedForecaster:
        """Train ``cfg`` on everything but the last ``holdout`` points of each series, for
        ``steps`` optimizer steps (a refit that repeats another fit's length) or ``epochs``.

        With ``model.ensemble_size`` K > 1, K members train from seeds ``seed .. seed + K - 1``
        and forecast their median; ``history`` is the first member's.

        ``deadline`` (``time.time()``, the time budget): the first member stops at it, and the
        ensemble keeps the members that fit (``config`` holds them, so a refit repeats them)."""
        if (epochs is None) == (steps is None):
            raise ValueError("give one of epochs or steps")
        fixed = with_overrides(
            cfg, {"train.max_epochs": max(1, epochs or 1), "train.patience": None}
        )
        prepared = prepare_fit(series, fixed, holdout)
        started = time.time()
        first, hist = train_model(prepared, fixed, max_steps=steps, deadline=deadline)
        members = [first.cpu()]
        wanted = members_that_fit(cfg.model.ensemble_size, time.time() - started, started, deadline)
        for k in range(1, wanted):  # member k trains from seed + k, as long as the first
            member_cfg = with_overrides(fixed, {"train.seed": fixed.train.seed + k})
            member, _ = train_model(prepared, member_cfg, max_steps=hist.steps)
            members.append(member.cpu())
        if wanted != cfg.model.ensemble_size:
            cfg = with_overrides(cfg, {"model.ensemble_size": wanted})
        network: Forecaster = members[0] if len(members) == 1 else EnsembleForecaster(members)
        return cls(
            network=network,
            spec=prepared.spec,
            columns=Columns.of(cfg.data, series),
            training_end=training_end(series, holdout),
            epochs=hist.epochs,
            steps=hist.steps,
            config=redact_tree(cfg.model_dump(mode="json")),
            known=series.frame if series.future else None,
            history=hist,
            holdout=holdout,
        )

    # ------------------------------------------------------------ properties

    @property
    def ensemble_size(self) -> int:
        """Members the network holds (fewer than asked when a time budget cut the ensemble)."""
        return int(self.config["model"]["ensemble_size"])

    @property
    def horizon(self) -> int:
        return self.spec.horizon

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def quantiles(self) -> list[float] | None:
        q = self.network.hparams.get("quantiles")
        return list(q) if q else None

    @property
    def levels(self) -> list[float]:
        """Quantile levels of the ``q<level>`` columns its forecasts carry (none: [])."""
        if self.quantiles:
            return [q for q in self.quantiles if q != 0.5]
        return list(self.intervals.levels) if self.intervals else []

    # ------------------------------------------------------------ predict

    def predict(self, history: SeriesData, future: pd.DataFrame | None = None) -> pd.DataFrame:
        """The next ``horizon`` steps after each series of ``history`` (canonical, validated):
        ``unique_id, ds, forecast`` and one ``q<level>`` column per interval level.

        ``future``: a canonical frame holding the known-future covariates over the horizon
        (default: the data the model was fitted from, for backtests)."""
        import torch

        inputs = self.spec.forecast_inputs(history, future if future is not None else self.known)
        self.network.eval()
        with torch.no_grad():
            out = self.network(torch.as_tensor(inputs.x, dtype=torch.float32))
        scaled = out.float().cpu().numpy()
        if scaled.ndim == 2:
            scaled = scaled[..., None]
        levels = self.quantiles or [0.5]
        decoded = {
            q: self.spec.decode(scaled[..., j], inputs.base, inputs.series_index, inputs.phases)
            for j, q in enumerate(levels)
        }
        point = decoded.pop(0.5)
        bands = self._bands(point, decoded, inputs.series_ids)
        rows = []
        for k, (sid, last) in enumerate(zip(inputs.series_ids, inputs.last)):
            row: dict[str, Any] = {
                "unique_id": sid,
                "ds": pd.date_range(last, periods=self.horizon + 1, freq=self.spec.freq)[1:],
                "forecast": point[k],
            }
            row.update({quantile_column(q): v[k] for q, v in bands.items()})
            rows.append(pd.DataFrame(row))
        return pd.concat(rows, ignore_index=True)

    def _bands(
        self, point: np.ndarray, quantiles: dict[float, np.ndarray], sids: list[str]
    ) -> dict[float, np.ndarray]:
        """The interval columns: a quantile network's own quantiles, widened by the conformal
        margins when it has them; a point network's point forecast plus or minus its margins."""
        if self.intervals is None:
            return quantiles
        scale = np.array([self.intervals.scales.get(s, np.nan) for s in sids], dtype="float64")[
            :, None
        ]
        raw = quantiles or {q: point for q in self.intervals.levels}
        return conformal.widen(raw, point, self.intervals.margins, scale)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecast a history in the user's columns (what the served model takes): checked
        against the model first, one-line :class:`DataError` for what does not fit (static
        covariates are optional: those the frame holds must be the values trained on)."""
        if not isinstance(frame, pd.DataFrame):
            raise DataError("forecast input must be a DataFrame in long format")
        held = [c for c in self.spec.static_columns if c in frame]
        dcfg = self.columns.data_config().model_copy(update={"static_covariates": held})
        past, ahead = split_future(frame, dcfg)
        series = validate(past, dcfg, min_length=None, source="history")
        future = None
        if len(ahead):
            future = pd.DataFrame(
                {
                    "unique_id": ahead[dcfg.series_id].astype(str)
                    if dcfg.series_id
                    else "series_0",
                    "ds": parse_times(ahead, dcfg.time_column),
                }
            )
            for c in self.columns.future_covariates:
                future[c] = pd.to_numeric(ahead[c], errors="coerce")
        elif self.columns.future_covariates:
            future = series.frame.iloc[:0]  # no rows: known_future names what is missing
        return self.predict(series, future)

    # ------------------------------------------------------------ evaluate

    def can_forecast(self, series: SeriesData, offset: int) -> dict[str, str]:
        """Series of ``series`` this model cannot forecast at the cutoff ``offset`` points
        before their end, each with the reason (empty: it can forecast them all)."""
        out = {}
        known = set(self.spec.series_ids)
        for sid, n in series.lengths().items():
            if str(sid) not in known:
                out[str(sid)] = "not in the model's training data"
            elif n - offset < self.spec.min_history():
                out[str(sid)] = (
                    f"{max(n - offset, 0)} points of history before the cutoff; the model "
                    f"reads {self.spec.min_history()}"
                )
        return out

    def cross_validation(
        self,
        series: SeriesData,
        offsets: list[int],
        season: int,
        labels: list[int] | None = None,
    ) -> pd.DataFrame:
        """Forecast from each cutoff (``offsets`` points before each series' end) the series it
        can forecast there, beside the baselines on the same cutoffs: the backtest frame of
        :func:`seqlab.evaluation.cross_validation` (``unique_id, window, cutoff, ds, y, model,
        naive, seasonal_naive, mase_scale`` and the interval columns)."""
        from seqlab.evaluation import cross_validation, keep_series

        known = set(self.spec.series_ids) & set(series.series_ids)
        if not known:
            raise DataError("none of the series was in the model's training data")
        return cross_validation(
            keep_series(series, known),
            offsets,
            self.horizon,
            season,
            self.predict,
            labels,
            min_history=self.spec.min_history(),
        )

    def with_intervals(
        self, frame: pd.DataFrame, series: SeriesData, coverages: Sequence[float]
    ) -> FittedForecaster:
        """This model with conformal margins from a backtest frame of out-of-sample forecasts
        (``y``, ``model``, ``mase_scale`` and, for a quantile network, its raw ``q`` columns):
        a quantile network's own levels, else the central intervals of ``coverages`` (%)."""
        levels = [q for q in self.quantiles if q != 0.5] if self.quantiles else None
        levels = levels or central_levels(coverages)
        calib = frame if self.quantiles else with_point_bands(frame, levels)
        found = conformal.margins(calib, levels)
        if not self.quantiles:  # a point model shows only the intervals it has a margin for
            levels = sorted(
                q for lo, hi in conformal.pairs(levels) if lo in found for q in (lo, hi)
            )
        season = self.spec.season
        scales = {}
        for sid, g in series.frame.groupby("unique_id", sort=False):
            end = self.training_end.get(str(sid))
            if end is None:
                continue
            seen = g.loc[g["ds"] <= pd.Timestamp(end), "y"].to_numpy("float64")
            scale = seasonal_mae(seen, season)
            if np.isfinite(scale):
                scales[str(sid)] = scale
        return dataclasses.replace(
            self, intervals=Intervals(found, scales, tuple(levels)) if found else None
        )

    # ------------------------------------------------------------ persistence

    def meta(self) -> dict[str, Any]:
        """``meta.json``: everything but the weights, as versioned JSON-able data."""
        c = self.columns
        return {
            "format": FORMAT,
            "seqlab_version": __version__,
            "network": self.network.hparams,
            "features": self.spec.to_dict(),
            "time_column": c.time_column,
            "target": c.target,
            "series_id": c.series_id,
            "covariates": list(c.covariates),
            "future_covariates": list(c.future_covariates),
            "freq": c.freq,
            "fill": c.fill,
            "nan_policy": c.nan_policy,
            "encoding": c.encoding,
            "horizon": self.horizon,
            "input_size": self.input_size,
            "training_end": self.training_end,
            "epochs": self.epochs,
            "steps": self.steps,
            "holdout": self.holdout,
            "intervals": self.intervals.to_dict() if self.intervals else None,
            "config": self.config,
        }

    @classmethod
    def from_meta(cls, meta: dict, network: Forecaster) -> FittedForecaster:
        check_format(meta)
        return cls(
            network=network,
            spec=FeatureSpec.from_dict(meta["features"]),
            columns=Columns(
                time_column=meta["time_column"],
                target=meta["target"],
                series_id=meta["series_id"],
                covariates=tuple(meta["covariates"]),
                future_covariates=tuple(meta["future_covariates"]),
                freq=meta["freq"],
                fill=meta["fill"],
                nan_policy=meta["nan_policy"],
                encoding=meta["encoding"],
            ),
            training_end=dict(meta["training_end"]),
            epochs=int(meta["epochs"]),
            steps=int(meta["steps"]),
            config=meta["config"],
            intervals=Intervals.from_dict(meta["intervals"]) if meta["intervals"] else None,
            holdout=int(meta["holdout"]),
        )

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``weights.pt`` and ``meta.json`` into ``folder``; returns their paths."""
        import torch

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        weights, meta = out / "weights.pt", out / "meta.json"
        torch.save({k: v.detach().cpu() for k, v in self.network.state_dict().items()}, weights)
        meta.write_text(json.dumps(self.meta(), indent=1))
        return weights, meta

    @classmethod
    def load(cls, weights: str | Path, meta: str | Path) -> FittedForecaster:
        """A saved model; :class:`ModelFormatError` (one line) when its format is not this
        seqlab's."""
        import torch

        from seqlab.models import from_hparams

        try:
            info = json.loads(Path(meta).read_text())
        except (OSError, ValueError) as e:
            raise ModelFormatError(f"cannot read the model's meta.json: {e}") from None
        check_format(info)
        network = from_hparams(info["network"])
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        network.eval()
        return cls.from_meta(info, network)


def check_format(meta: Any) -> None:
    """Raise a one-line :class:`ModelFormatError` unless ``meta`` is this seqlab's format."""
    if not isinstance(meta, dict) or "format" not in meta:
        raise ModelFormatError(
            "not a seqlab model: its meta.json has no format field; load it with the tool "
            "that wrote it"
        )
    fmt = meta["format"]
    if fmt != FORMAT:
        when = "an older" if isinstance(fmt, int) and fmt < FORMAT else "another"
        raise ModelFormatError(
            f"model format {fmt!r} was written by {when} seqlab (this one, "
            f"{__version__}, reads format {FORMAT}): retrain it with `seqlab run`"
        )
