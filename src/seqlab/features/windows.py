"""Time split, scaling fitted on the past only, and vectorised sliding windows.

Positions count from each series' end, so series of different lengths line up on their last
point. With H = horizon, V = validation size, W backtest windows ``step`` apart, a series of
length T is split as

    [0 .......... v) train    [v ...... c0) validation    [c0 ............ T) backtest
                               v = c0 - V                  cutoffs c_k = c0 + k * step

Every window's *target* lies wholly inside one part: training targets end before ``v``,
validation targets lie inside ``[v, c0)`` (their inputs reach back into training, which is the
past), so no target point is both fitted and validated on. The validation part holds rolling
windows, origins ``val_step`` apart with the last target ending at ``c0`` (by default 3 windows
``max(1, H // 2)`` apart: ``V = H + 2 * val_step``; a series too short for them after one
training window holds fewer, down to one: ``min_val_size``). A fit is described by ``holdout``,
the points at the end it must not train on, and ``val_size``, how many of those it validates
on: tuning holds out ``V + test``, the evaluated refit ``test``, the served refit nothing.
Scalers see only the training part of the fit they belong to.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from seqlab.data.series import SeriesData
from seqlab.features.scaling import Scaler, fit_scaler, seasonal_mae
from seqlab.features.seasonal import Kind, Seasonality, fit_seasonality
from seqlab.features.static import fit_static, with_static

if TYPE_CHECKING:
    from seqlab.features.spec import FeatureSpec


# ---------------------------------------------------------------- where the parts are


def backtest_offsets(horizon: int, windows: int, step: int) -> list[int]:
    """Cutoffs as points before each series' end, oldest first: ``[H + (W-1)s, ..., H]``."""
    return [horizon + (windows - 1 - k) * step for k in range(windows)]


def min_length(input_size: int, horizon: int, val_size: int, test_size: int) -> int:
    """Points a series needs: one training window, the validation part, the backtest part."""
    return input_size + horizon + val_size + test_size


def val_part(
    length: int,
    input_size: int,
    horizon: int,
    test_size: int,
    val_size: int,
    min_val_size: int,
    step: int,
) -> int:
    """The validation part a series of ``length`` points holds: ``val_size``, or where the series
    is too short for it after one training window, shorter by whole steps down to
    ``min_val_size`` (one window fewer each); 0 when not even ``min_val_size`` fits."""
    room = length - test_size - input_size - horizon - min_val_size
    if room < 0:
        return 0
    return min(val_size, min_val_size + room // step * step)


def val_window_count(part: int, horizon: int, step: int) -> int:
    """Validation windows ``step`` apart whose targets lie in a part of ``part`` points."""
    return (part - horizon) // step + 1 if part >= horizon else 0


# ---------------------------------------------------------------- windows


def sliding_windows(
    values: np.ndarray, input_size: int, horizon: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All windows of a (T, F) array: inputs (N, input_size, F) and targets (N, horizon).

    Feature 0 is the target. Built as strided views (no Python loop over samples).
    """
    length = input_size + horizon
    if values.shape[0] < length:
        f = values.shape[1]
        return np.empty((0, input_size, f), values.dtype), np.empty((0, horizon), values.dtype)
    win = sliding_window_view(values, length, axis=0)[::stride]  # (N, F, L+H)
    win = np.moveaxis(win, -1, 1)  # (N, L+H, F)
    return win[:, :input_size, :], win[:, input_size:, 0]


def target_windows(
    values: np.ndarray,
    input_size: int,
    horizon: int,
    target_start: int,
    target_end: int,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows whose whole target lies in ``[target_start, target_end)``.

    Returns inputs (N, L, F), targets (N, H) and each target's first position (N,).
    """
    first = max(target_start - input_size, 0)  # first input start
    x, y = sliding_windows(values[first:target_end], input_size, horizon, stride)
    starts = first + input_size + stride * np.arange(len(x))
    return x, y, starts


def future_rows(
    values: np.ndarray, starts: np.ndarray, horizon: int, features: list[int]
) -> np.ndarray:
    """(N, H, len(features)): the known-future features over each window's target steps."""
    if len(starts) == 0 or not features:
        return np.empty((len(starts), horizon, len(features)), values.dtype)
    view = sliding_window_view(values[:, features], horizon, axis=0)  # (T-H+1, Ff, H)
    return np.moveaxis(view[starts], -1, 1)


def append_future(x: np.ndarray, fut: np.ndarray, features: list[int]) -> np.ndarray:
    """Inputs (N, L, F) followed by H rows holding only the known-future features: (N, L+H, F).

    The model reads the first L rows as the input window and the known-future features of the
    last H rows as the horizon's (``RecurrentForecaster(future_features=...)``)."""
    if not features:
        return x
    out = np.zeros((x.shape[0], x.shape[1] + fut.shape[1], x.shape[2]), x.dtype)
    out[:, : x.shape[1]] = x
    out[:, x.shape[1] :, features] = fut
    return out


def with_series_index(x: np.ndarray, series: np.ndarray) -> np.ndarray:
    """Inputs (N, R, F) with a last column holding each window's series index: (N, R, F + 1)."""
    ids = np.broadcast_to(series.astype(x.dtype)[:, None, None], (x.shape[0], x.shape[1], 1))
    return np.concatenate([x, ids], axis=2)


def model_inputs(
    x: np.ndarray,
    y: np.ndarray | None,
    future: np.ndarray,
    series: np.ndarray,
    *,
    future_features: list[int],
    static: np.ndarray | None = None,
    series_index: bool,
    local_norm: str,
    horizon: int,
    residual: str,
    season: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Scaled windows (N, L, F) as the network takes them, for training and forecasting alike:
    relative to their baseline (:func:`normalise_windows`), with the encoded ``static``
    covariates of each window's series ((S, K), on every input step), followed by the horizon's
    known-future rows ``future`` (N, H, len(future_features)), with a last column of each
    window's ``series`` index when ``series_index``. Returns inputs, targets and the baseline."""
    x, y, base = normalise_windows(x, y, local_norm, horizon, residual, season)
    if static is not None and static.shape[1]:
        x = with_static(x, static, series)
    x = append_future(x, future, future_features)
    if series_index:
        x = with_series_index(x, series)
    return x, y, base


def apply_transform(target: np.ndarray, transform: str) -> np.ndarray:
    if transform == "log":
        if np.any(target <= 0):
            raise ValueError("window.transform=log needs a strictly positive target; use none")
        return np.log(target)
    return target


def invert_transform(target: np.ndarray, transform: str) -> np.ndarray:
    return np.exp(target) if transform == "log" else target


def normalise_windows(
    x: np.ndarray,
    y: np.ndarray | None,
    local_norm: str,
    horizon: int | None = None,
    residual: str = "none",
    season: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Express windows relative to a per-window baseline; returns it to add back to forecasts.

    ``local_norm=last``: inputs and targets relative to the window's last observed target, so
    the network learns changes, not levels. ``residual=seasonal_naive``: targets relative to the
    seasonal-naive forecast read from the input window as well, so the network learns the
    correction to it. x: (N, L, F), y: (N, H) -> same shapes, and base: (N, H).
    """
    n, length = x.shape[0], x.shape[1]
    h = y.shape[1] if y is not None else int(horizon or 0)
    ref = x[:, -1, 0].copy() if local_norm == "last" else np.zeros(n, x.dtype)
    if local_norm == "last":
        x = x.copy()
        x[:, :, 0] -= ref[:, None]
    base = np.repeat(ref[:, None], h, axis=1)
    if residual == "seasonal_naive":
        if season > length:
            raise ValueError(
                f"window.residual=seasonal_naive needs window.input_size >= the season ({season}); "
                f"got {length}"
            )
        steps = length - season + (np.arange(h) % season)  # the last season, repeated
        base = base + x[:, steps, 0]
    y = None if y is None else y - base
    return x, y, base


def decode_forecasts(
    scaled: np.ndarray,
    ref: np.ndarray,
    scaler: Scaler,
    series_index: np.ndarray,
    transform: str,
    seasonality: Seasonality | None = None,
    phases: np.ndarray | None = None,
) -> np.ndarray:
    """Model outputs (N, H) back to the data's units: add the baseline ((N, H), or a per-window
    reference (N,)), unscale, put the seasonal indices back (at ``phases``, (N, H)),
    untransform."""
    base = ref if np.ndim(ref) == 2 else ref[:, None]
    levels = scaler.inverse_target(scaled.astype("float64") + base, series_index)
    if seasonality is not None and seasonality.kind != "none" and phases is not None:
        levels = seasonality.restore(levels, series_index, phases)
    return invert_transform(levels, transform)


@dataclass
class PreparedData:
    """The windows of one fit, as float32 arrays, its :class:`~seqlab.features.spec.FeatureSpec`,
    and what scores validation forecasts.

    Validation forecasts are decoded to the data's units through the spec and scored with MASE
    (``val_target`` raw, ``val_ref`` the baseline, ``mase_scale`` per series), so that trials with
    different losses, scalers or transforms are compared on one scale: the mean over each
    series' windows, then over series (as the backtest's means), so long series do not dominate.
    """

    spec: FeatureSpec
    holdout: int
    x_train: np.ndarray  # (N_train, R, F') network inputs
    y_train: np.ndarray  # (N_train, H) scaled
    x_val: np.ndarray  # (N_val, R, F')
    y_val: np.ndarray  # (N_val, H) scaled
    train_series: np.ndarray  # (N_train,) series index of each training window
    val_series: np.ndarray  # (N_val,) series index of each validation window
    val_ref: np.ndarray  # (N_val, H) baseline added back to forecasts, scaled units
    val_target: np.ndarray  # (N_val, H) raw values
    mase_scale: np.ndarray  # (S,) seasonal-naive MAE of each series' training part
    skipped: list[str] = field(default_factory=list)
    """Series too short for this fit (no window): they neither train nor validate it."""
    val_phases: np.ndarray | None = None
    """(N_val, H) phase of each validation target point, to put the seasonal indices back."""

    # The spec's fields, read where a fit's windows are used.
    series_ids = property(lambda self: list(self.spec.series_ids))
    freq = property(lambda self: self.spec.freq)
    input_size = property(lambda self: self.spec.input_size)
    horizon = property(lambda self: self.spec.horizon)
    n_features = property(lambda self: self.spec.n_features)
    scaler = property(lambda self: self.spec.scaler)
    transform = property(lambda self: self.spec.transform)
    local_norm = property(lambda self: self.spec.local_norm)
    residual = property(lambda self: self.spec.residual)
    season = property(lambda self: self.spec.season)
    pad = property(lambda self: self.spec.pad)
    seasonality = property(lambda self: self.spec.seasonality)
    series_index = property(lambda self: self.spec.series_index)
    future_features = property(lambda self: self.spec.future_features)
    n_calendar = property(lambda self: self.spec.n_calendar)
    n_static = property(lambda self: self.spec.n_static)

    def decode_val(self, scaled: np.ndarray) -> np.ndarray:
        """Network outputs on ``x_val`` (N_val, H) in the data's units: the one decoder."""
        return self.spec.decode(scaled, self.val_ref, self.val_series, self.val_phases)

    def val_mase(self, scaled: np.ndarray) -> float:
        """MASE of validation forecasts (model outputs on ``x_val``), in data units: the mean
        over each series' windows, then over series."""
        with warnings.catch_warnings():  # a window of filled points only scores NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            errors = np.nanmean(np.abs(self.decode_val(scaled) - self.val_target), axis=1)
            ratios = errors / self.mase_scale[self.val_series]
        scored = ~np.isnan(ratios)
        n = len(self.series_ids)
        counts = np.bincount(self.val_series[scored], minlength=n)
        sums = np.bincount(self.val_series[scored], ratios[scored], minlength=n)
        per_series = sums[counts > 0] / counts[counts > 0]
        return float(per_series.mean()) if per_series.size else float("nan")

    def val_window_counts(self) -> np.ndarray:
        """(S,) validation windows of each series (0: it validates on none)."""
        return np.bincount(self.val_series, minlength=len(self.series_ids))


def prepare(
    data: SeriesData,
    input_size: int,
    horizon: int,
    holdout: int,
    val_size: int = 0,
    stride: int = 1,
    scaler_kind: str = "standard",
    transform: str = "none",
    local_norm: str = "none",
    season: int = 1,
    residual: str = "none",
    pad: bool = False,
    deseasonalize: Kind = "none",
    calendar: bool = False,
    series_index: bool = False,
    val_step: int = 1,
    min_val_size: int | None = None,
) -> PreparedData:
    """Windows for one fit: train on targets before ``T - holdout``, validate on the ``val_size``
    points after it, scale with statistics of the training part only.

    Validation windows have their targets wholly inside the validation part, origins
    ``val_step`` apart, the last one ending where the part ends (statsforecast's
    ``cross_validation(n_windows, step_size)`` shape; ``val_step=1``: every window).
    ``min_val_size``: a series too short for the whole part after one training window validates
    on a part shorter by whole steps, down to this size (fewer windows; :func:`val_part`),
    instead of being skipped; unset: ``val_size``.

    ``pad``: inputs may start before a series does, filled with its first observation, so
    series shorter than ``input_size + horizon`` still train (one observed point is enough).
    A series too short for any window of this fit is skipped (listed in ``skipped``); only when
    every series is, the fit fails. ``deseasonalize``: seasonal indices fitted on each training
    part (``seqlab.features.seasonal``) are removed from the target before scaling. Features known
    in advance (``data.future_covariates``, and calendar features with ``calendar``) are also
    appended for each window's horizon (:func:`append_future`). ``series_index``: a last input
    column holds each window's series index (for a series embedding), unscaled.

    Every series is encoded by the fitted :class:`~seqlab.features.spec.FeatureSpec`, the object
    that forecasts encode through as well.
    """
    from seqlab.features.spec import FeatureSpec, raw_features

    if val_size > holdout:
        raise ValueError(f"val_size ({val_size}) cannot exceed the holdout ({holdout})")
    sids, raws, anchors, filled = [], [], [], []
    for sid, g in data.frame.groupby("unique_id", sort=False):
        sids.append(str(sid))
        raws.append(raw_features(g, data.freq, data.covariates, calendar))
        anchors.append(g["ds"].iloc[0])
        filled.append(data.filled_mask(g))  # filled target points are never scored
    n_calendar = raws[0].shape[1] - 1 - len(data.covariates) if raws else 0
    min_input = 1 if pad else input_size
    rest = holdout - val_size  # after the validation part: the backtest part, if any
    parts = [val_size] * len(raws)
    if val_size and min_val_size is not None and min_val_size < val_size:
        fits = [
            val_part(len(v), min_input, horizon, rest, val_size, min_val_size, val_step)
            for v in raws
        ]
        parts = [p or val_size for p in fits]  # 0: too short for any, skipped below
    ends = [len(v) - rest - part for v, part in zip(raws, parts)]
    # What the scaler and the seasonal indices are fitted on: each series before its holdout.
    fitted_on = [v.copy() for v in raws]
    for v in fitted_on:
        v[:, 0] = apply_transform(v[:, 0], transform)
    seasonality = None
    if deseasonalize != "none":
        seasonality = fit_seasonality(
            [v[: max(end, 0), 0] for v, end in zip(fitted_on, ends)],
            sids,
            anchors,
            season,
            deseasonalize,
            data.freq,
        )
        for i, v in enumerate(fitted_on):
            v[:, 0] = seasonality.remove(v[:, 0], i, np.arange(len(v)))
    usable = [end >= min_input + horizon for end in ends]
    if not any(usable):
        longest = max(len(v) for v in raws)
        what = "1 observed point" if pad else "input_size"
        least = rest + (min_val_size if min_val_size is not None else val_size)
        raise ValueError(
            f"no series is long enough for this fit: the longest has {longest} points; it needs "
            f"{min_input + horizon + min(holdout, least)} ({what} + horizon + the held-out part)"
        )
    # A series too short to train still gets a scaler (it is forecast later): fitted on what
    # it has before the holdout, or on its first point.
    scaler = fit_scaler(
        [v[: max(end, 1)] for v, end in zip(fitted_on, ends)], sids, scaler_kind, season
    )
    spec = FeatureSpec(
        series_ids=tuple(sids),
        freq=data.freq,
        input_size=input_size,
        horizon=horizon,
        covariates=tuple(data.covariates),
        future_covariates=tuple(c for c in data.covariates if c in set(data.future)),
        calendar=calendar,
        n_calendar=n_calendar,
        transform=transform,
        scaler=scaler,
        seasonality=seasonality,
        local_norm=local_norm,
        residual=residual,
        season=season,
        pad=pad,
        series_index=series_index,
        static=None if data.static is None else fit_static(data.static, sids),
    )
    lead = input_size - 1 if pad else 0  # padded rows before each series' first point

    xs_tr, ys_tr, tr_sid, xs_va, ys_va, va_sid, va_raw = [], [], [], [], [], [], []
    va_phase: list[np.ndarray] = []
    fidx = spec.future_features
    fu_tr: list[np.ndarray] = []
    fu_va: list[np.ndarray] = []
    for i, (v, end, part) in enumerate(zip(raws, ends, parts)):
        if not usable[i]:
            continue
        raw = np.where(filled[i], np.nan, v[:, 0])  # the actuals validation scores
        scaled = spec.encode(v, i, np.arange(len(v)))
        if lead:
            scaled = np.vstack([np.repeat(scaled[:1], lead, axis=0), scaled])
        first_target = lead + 1 if pad else 0
        x, y, starts = target_windows(scaled, input_size, horizon, first_target, lead + end, stride)
        fu_tr.append(future_rows(scaled, starts, horizon, fidx))
        xs_tr.append(x)
        ys_tr.append(y)
        tr_sid.append(np.full(len(x), i))
        if val_size:
            x, y, starts = target_windows(
                scaled, input_size, horizon, lead + end, lead + end + part
            )
            keep = (starts[-1] - starts) % val_step == 0 if len(starts) else slice(None)
            x, y, starts = x[keep], y[keep], starts[keep]  # origins val_step apart, from the end
            fu_va.append(future_rows(scaled, starts, horizon, fidx))
            xs_va.append(x)
            ys_va.append(y)
            va_sid.append(np.full(len(x), i))
            va_raw.append(
                np.stack([raw[s - lead : s - lead + horizon] for s in starts])
                if len(x)
                else np.empty((0, horizon))
            )
            va_phase.append((starts - lead)[:, None] + np.arange(horizon)[None, :])

    f = spec.n_features - spec.n_static  # the encoded features; model_inputs adds the static

    def cat(parts: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        if not parts:
            return np.empty((0, *shape), np.float32)
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def ints(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def assemble(xs: list, ys: list, fu: list, sid: list) -> tuple:
        return spec.network_inputs(
            cat(xs, (input_size, f)),
            cat(ys, (horizon,)),
            cat(fu, (horizon, len(fidx))),
            ints(sid),
        )

    x_train, y_train, _ = assemble(xs_tr, ys_tr, fu_tr, tr_sid)
    x_val, y_val, val_base = assemble(xs_va, ys_va, fu_va, va_sid)
    return PreparedData(
        spec=spec,
        holdout=holdout,
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),  # type: ignore[arg-type]
        x_val=np.ascontiguousarray(x_val),
        y_val=np.ascontiguousarray(y_val),  # type: ignore[arg-type]
        train_series=ints(tr_sid),
        val_series=ints(va_sid),
        val_ref=val_base.astype("float64"),
        val_target=np.concatenate(va_raw) if va_raw else np.empty((0, horizon)),
        mase_scale=np.array([seasonal_mae(v[: max(e, 0), 0], season) for v, e in zip(raws, ends)]),
        skipped=[sid for sid, ok in zip(sids, usable) if not ok],
        val_phases=(
            np.concatenate(va_phase).astype(np.int64)
            if va_phase
            else np.zeros((0, horizon), np.int64)
        ),
    )
