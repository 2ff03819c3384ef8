"""Forecasting with a trained model: the one prediction path.

The backtest, the promotion gate and the served MLflow model (``seqlab.serving``) all forecast
through :func:`forecast_series`, so a model is scored exactly the way it will be used. This
module needs torch, numpy and pandas only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from seqlab import conformal
from seqlab.config import DataConfig, PipelineConfig
from seqlab.data import DataError, SeriesData, validate
from seqlab.features import calendar_features
from seqlab.models import Forecaster
from seqlab.redact import redact_tree
from seqlab.seasonal import Seasonality
from seqlab.windows import (
    Scaler,
    apply_transform,
    decode_forecasts,
    model_inputs,
    seasonal_mae,
)

META_FORMAT = 2


def training_end(series: SeriesData, holdout: int) -> dict[str, str]:
    """Last timestamp each series' fit trained on (ISO strings), ``holdout`` points held out."""
    out = {}
    for sid, g in series.frame.groupby("unique_id", sort=False):
        out[str(sid)] = pd.Timestamp(g["ds"].iloc[len(g) - 1 - holdout]).isoformat()
    return out


def model_meta(
    model: Forecaster,
    scaler: Scaler,
    cfg: PipelineConfig,
    series: SeriesData,
    trained_until: dict[str, str],
    epochs: int,
    season: int = 1,
    seasonality: Seasonality | None = None,
) -> dict[str, Any]:
    """Everything needed to forecast with (and to retrain) a model, as JSON-able data."""
    return {
        "format": META_FORMAT,
        "hparams": model.hparams,
        "scaler": scaler.to_dict(),
        "input_size": cfg.window.input_size,
        "horizon": cfg.window.horizon,
        "freq": series.freq,
        "transform": cfg.window.transform,
        "local_norm": cfg.window.local_norm,
        "residual": cfg.window.residual,
        "pad": cfg.window.pad,
        "season": season,
        "seasonality": seasonality.to_dict() if seasonality is not None else None,
        "covariates": list(series.covariates),
        "future_covariates": list(series.future),
        "calendar": cfg.window.calendar,
        "time_column": cfg.data.time_column,
        "target": cfg.data.target,
        "series_id": cfg.data.series_id,
        "fill": cfg.data.fill,
        "nan_policy": cfg.data.nan_policy,
        "training_end": trained_until,
        "epochs": epochs,
        "config": redact_tree(cfg.model_dump(mode="json")),  # shipped with the model
    }


def data_config(meta: dict) -> DataConfig:
    """The model's own view of its input columns and data policies."""
    future = list(meta.get("future_covariates") or [])
    return DataConfig(
        source="<history>",
        time_column=meta["time_column"],
        target=meta["target"],
        series_id=meta["series_id"],
        covariates=[c for c in meta["covariates"] if c not in future],
        future_covariates=future,
        freq=meta["freq"],
        fill=meta.get("fill", "error"),
        nan_policy=meta.get("nan_policy", "error"),
    )


def user_frame(series: SeriesData, data_cfg: DataConfig) -> pd.DataFrame:
    """The canonical frame back in the user's column names (what the served model takes)."""
    out = pd.DataFrame(
        {data_cfg.time_column: series.frame["ds"], data_cfg.target: series.frame["y"]}
    )
    if data_cfg.series_id:
        out.insert(0, data_cfg.series_id, series.frame["unique_id"])
    for c in series.covariates:
        out[c] = series.frame[c]
    return out.reset_index(drop=True)


def with_future_rows(
    history: SeriesData, full: SeriesData, horizon: int, data_cfg: DataConfig
) -> pd.DataFrame:
    """``history`` in the user's columns, followed by each series' next ``horizon`` rows of
    ``full`` with the target emptied: the input a model with known-future covariates takes."""
    rows = []
    last = history.frame.groupby("unique_id", sort=False)["ds"].max()
    for sid, g in full.frame.groupby("unique_id", sort=False):
        if sid in last.index:
            rows.append(g[g["ds"] > last[sid]].head(horizon))
    ahead = pd.concat(rows, ignore_index=True) if rows else full.frame.iloc[:0]
    ahead = ahead.assign(y=np.nan)
    shown = dataclasses.replace(full, frame=ahead)
    return pd.concat(
        [user_frame(history, data_cfg), user_frame(shown, data_cfg)], ignore_index=True
    )


def truncate(series: SeriesData, offset: int) -> SeriesData:
    """The data up to ``offset`` points before each series' end (a backtest cutoff)."""
    if offset == 0:
        return series
    frame = series.frame
    pos = frame.groupby("unique_id", sort=False).cumcount(ascending=False)
    kept = frame[pos.to_numpy() >= offset].reset_index(drop=True)
    return dataclasses.replace(series, frame=kept)


def quantile_column(level: float) -> str:
    """The forecast column of a quantile level: ``q0.1``, ``q0.9`` (the median is ``forecast``)."""
    return f"q{level:g}"


def horizon_dates(last: pd.Timestamp, horizon: int, freq: str) -> pd.DatetimeIndex:
    return pd.date_range(last + pd.tseries.frequencies.to_offset(freq), periods=horizon, freq=freq)


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


def forecast_series(
    model: Forecaster,
    scaler: Scaler,
    meta: dict,
    series: SeriesData,
    future: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The next ``horizon`` steps after the end of each series: ``unique_id, ds, forecast``, and
    for a quantile model one ``q<level>`` column per level other than the median.

    ``future``: a canonical frame (``unique_id, ds`` and the covariates) holding the values of
    the known-future covariates over the horizon, for a model that reads them."""
    import torch

    L, H = meta["input_size"], meta["horizon"]
    seasonality = Seasonality.from_dict(meta["seasonality"]) if meta.get("seasonality") else None
    fidx = list(meta["hparams"].get("future_features") or [])
    future_cols = list(meta.get("future_covariates") or [])
    calendar = bool(meta.get("calendar"))
    xs, idxs, starts, sids, phases, scales = [], [], [], [], [], []
    fut: list[np.ndarray] = []
    ahead_of: dict[str, pd.DataFrame] = {}  # each series' known-future rows, split once
    if future_cols and future is not None:
        ahead_of = {str(k): v for k, v in future.groupby("unique_id", sort=False)}
    for sid, g in series.frame.groupby("unique_id", sort=False):
        try:
            idx = scaler.index_of(str(sid))
        except KeyError:
            known = ", ".join(scaler.series_ids[:5])
            raise DataError(
                f"series {sid!r} was not in the training data (known: {known}); "
                "forecast only series the model was trained on"
            ) from None
        if len(g) < L and not meta.get("pad"):
            raise DataError(
                f"series {sid!r} has {len(g)} points of history; the model reads the "
                f"last {L} (its input_size): provide at least {L}"
            )
        recent = g.tail(L)
        vals = recent[["y", *meta["covariates"]]].to_numpy("float64", copy=True)
        if calendar:
            vals = np.hstack([vals, calendar_features(recent["ds"], meta["freq"])])
        if len(vals) < L:  # a padded model: the series "was" its first value before it began
            vals = np.vstack([np.repeat(vals[:1], L - len(vals), axis=0), vals])
        vals[:, 0] = apply_transform(vals[:, 0], meta.get("transform", "none"))
        if seasonality is not None:  # phases of the input window, then of the horizon
            last = seasonality.phase_of(idx, g["ds"].iloc[-1])
            vals[:, 0] = seasonality.remove(vals[:, 0], idx, np.arange(last - L + 1, last + 1))
            phases.append(np.arange(last + 1, last + 1 + H))
        xs.append(scaler.transform(vals, idx))
        if fidx:  # the horizon's known-future features, scaled like the inputs
            dates = horizon_dates(g["ds"].iloc[-1], H, meta["freq"])
            block = np.tile(scaler.loc[idx], (H, 1))  # 0 once scaled: unknown columns
            cols = ["y", *meta["covariates"]]
            if future_cols:
                ahead = known_future(ahead_of.get(str(sid)), str(sid), dates, future_cols)
                block[:, [cols.index(c) for c in future_cols]] = ahead
            if calendar:
                cal = calendar_features(dates, meta["freq"])
                block[:, len(cols) :] = cal
            fut.append(scaler.transform(block, idx)[:, fidx])
        idxs.append(idx)
        sids.append(str(sid))
        if meta.get("conformal"):  # the series' scale of its calibrated intervals
            known_scale = (meta.get("conformal_scale") or {}).get(str(sid))  # from training
            scales.append(
                known_scale
                if known_scale is not None
                else seasonal_mae(g["y"].to_numpy("float64"), int(meta.get("season", 1)))
            )
        starts.append(g["ds"].iloc[-1] + pd.tseries.frequencies.to_offset(meta["freq"]))
    x, _, ref = model_inputs(
        np.stack(xs).astype(np.float32),
        None,
        np.stack(fut).astype(np.float32) if fut else np.empty((len(xs), H, 0), np.float32),
        np.array(idxs),
        future_features=fidx,
        series_index=bool(meta["hparams"].get("series_embedding")),
        local_norm=meta.get("local_norm", "none"),
        horizon=H,
        residual=meta.get("residual", "none"),
        season=int(meta.get("season", 1)),
    )
    model.eval()
    with torch.no_grad():
        scaled = model(torch.as_tensor(x, dtype=torch.float32)).float().cpu().numpy()
    levels = meta["hparams"].get("quantiles") or [0.5]
    if scaled.ndim == 2:
        scaled = scaled[..., None]
    decoded = [
        decode_forecasts(
            scaled[..., j],
            ref.astype("float64"),
            scaler,
            np.array(idxs),
            meta.get("transform", "none"),
            seasonality,
            np.stack(phases) if phases else None,
        )
        for j in range(scaled.shape[-1])
    ]
    point = levels.index(0.5)
    others = {q: decoded[j] for j, q in enumerate(levels) if j != point}
    if others and meta.get("conformal"):  # calibrated intervals (seqlab.conformal)
        others = conformal.widen(
            others,
            decoded[point],
            {float(q): m for q, m in meta["conformal"].items()},
            np.asarray(scales, dtype="float64")[:, None],
        )
    rows = []
    for k, (sid, start) in enumerate(zip(sids, starts)):
        row = {
            "unique_id": sid,
            "ds": pd.date_range(start, periods=H, freq=meta["freq"]),
            "forecast": decoded[point][k],
        }
        row.update({quantile_column(q): v[k] for q, v in others.items()})
        rows.append(pd.DataFrame(row))
    return pd.concat(rows, ignore_index=True)


def forecast_history(
    model: Forecaster, scaler: Scaler, meta: dict, history: pd.DataFrame
) -> pd.DataFrame:
    """Check a history frame in the user's columns against the model, then forecast it."""
    if not isinstance(history, pd.DataFrame):
        raise DataError("forecast input must be a DataFrame in long format")
    dcfg = data_config(meta)
    past, ahead = split_future(history, dcfg)
    series = validate(past, dcfg, min_length=None, source="history")
    future = None
    if len(ahead):
        future = pd.DataFrame(
            {
                "unique_id": ahead[dcfg.series_id].astype(str) if dcfg.series_id else "series_0",
                "ds": pd.to_datetime(ahead[dcfg.time_column]),
            }
        )
        for c in meta.get("future_covariates") or []:
            future[c] = pd.to_numeric(ahead[c], errors="coerce")
    return forecast_series(model, scaler, meta, series, future)


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
