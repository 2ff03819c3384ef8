"""Time split, scaling fitted on the training part only, and vectorised sliding windows.

Per series of length T (H = horizon, V = validation size):

    [0 ........ T-H-V) train   [T-H-V .. T-H) validation   [T-H .. T) test

Training windows lie wholly inside the training part; validation windows are those whose target
ends inside the validation part (their inputs may reach back into training, which is the past);
the test input is the ``input_size`` steps right before the test part. Scalers see only the
training part, so changing validation or test values changes nothing training sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from seqlab.data import SeriesData


@dataclass(frozen=True)
class Scaler:
    """Per-series, per-feature affine scaling: ``(x - loc) / scale``. Feature 0 is the target."""

    kind: Literal["standard", "minmax", "none"]
    series_ids: tuple[str, ...]
    loc: np.ndarray  # (S, F)
    scale: np.ndarray  # (S, F)

    def index_of(self, series_id: str) -> int:
        try:
            return self.series_ids.index(series_id)
        except ValueError:
            raise KeyError(series_id) from None

    def transform(self, values: np.ndarray, series_index: int) -> np.ndarray:
        return (values - self.loc[series_index]) / self.scale[series_index]

    def inverse_target(self, values: np.ndarray, series_index: int | np.ndarray) -> np.ndarray:
        loc = self.loc[series_index, 0]
        scale = self.scale[series_index, 0]
        if np.ndim(series_index):
            loc, scale = loc[:, None], scale[:, None]
        return values * scale + loc

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "series_ids": list(self.series_ids),
            "loc": self.loc.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        return cls(
            kind=d["kind"],
            series_ids=tuple(d["series_ids"]),
            loc=np.asarray(d["loc"], dtype="float64"),
            scale=np.asarray(d["scale"], dtype="float64"),
        )


def fit_scaler(
    train_parts: list[np.ndarray], series_ids: list[str], kind: str = "standard"
) -> Scaler:
    """Fit one scaler per series on its training part only; ``train_parts[i]`` is (T_i, F)."""
    locs, scales = [], []
    for part in train_parts:
        if kind == "standard":
            loc, scale = part.mean(axis=0), part.std(axis=0)
        elif kind == "minmax":
            loc, scale = part.min(axis=0), part.max(axis=0) - part.min(axis=0)
        else:
            loc, scale = np.zeros(part.shape[1]), np.ones(part.shape[1])
        # A constant feature would divide by zero: leave it unscaled around its level.
        scale = np.where(scale > 1e-12, scale, 1.0)
        locs.append(loc)
        scales.append(scale)
    return Scaler(kind, tuple(series_ids), np.stack(locs), np.stack(scales))  # type: ignore[arg-type]


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


def apply_transform(target: np.ndarray, transform: str) -> np.ndarray:
    if transform == "log":
        if np.any(target <= 0):
            raise ValueError("window.transform=log needs a strictly positive target; use none")
        return np.log(target)
    return target


def invert_transform(target: np.ndarray, transform: str) -> np.ndarray:
    return np.exp(target) if transform == "log" else target


def normalise_windows(
    x: np.ndarray, y: np.ndarray | None, local_norm: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Make windows relative to their last observed target (``last``); returns the reference.

    x: (N, L, F), y: (N, H) -> same shapes, and ref: (N,) to add back to forecasts.
    """
    ref = x[:, -1, 0].copy() if local_norm == "last" else np.zeros(x.shape[0], x.dtype)
    if local_norm == "last":
        x = x.copy()
        x[:, :, 0] -= ref[:, None]
        y = None if y is None else y - ref[:, None]
    return x, y, ref


def decode_forecasts(
    scaled: np.ndarray, ref: np.ndarray, scaler: Scaler, series_index: np.ndarray, transform: str
) -> np.ndarray:
    """Model outputs (N, H) back to the data's units: add the reference, unscale, untransform."""
    levels = scaled.astype("float64") + ref[:, None]
    return invert_transform(scaler.inverse_target(levels, series_index), transform)


@dataclass
class PreparedData:
    """Everything training and evaluation need, as float32 arrays (targets of test unscaled)."""

    series_ids: list[str]
    freq: str
    input_size: int
    horizon: int
    n_features: int
    scaler: Scaler
    x_train: np.ndarray  # (N_train, L, F) scaled
    y_train: np.ndarray  # (N_train, H) scaled
    x_val: np.ndarray  # (N_val, L, F) scaled
    y_val: np.ndarray  # (N_val, H) scaled
    x_test: np.ndarray  # (S, L, F) scaled: the input right before each series' test part
    y_test: np.ndarray  # (S, H) raw values of the test part
    test_start: list[pd.Timestamp]
    train_target: list[np.ndarray] = field(default_factory=list)  # raw train part, per series
    history_target: list[np.ndarray] = field(default_factory=list)  # raw train+val, per series
    test_ref: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (S,) local_norm reference
    transform: str = "none"
    local_norm: str = "none"

    def decode_test(self, scaled: np.ndarray) -> np.ndarray:
        """Unscaled test forecasts (S, H) from model outputs on ``x_test``."""
        idx = np.arange(len(self.series_ids))
        return decode_forecasts(scaled, self.test_ref, self.scaler, idx, self.transform)


def split_lengths(total: int, horizon: int, val_size: int) -> tuple[int, int, int]:
    """(train, validation, test) lengths for one series."""
    return total - horizon - val_size, val_size, horizon


def prepare(
    data: SeriesData,
    input_size: int,
    horizon: int,
    val_size: int,
    stride: int = 1,
    scaler_kind: str = "standard",
    transform: str = "none",
    local_norm: str = "none",
) -> PreparedData:
    groups = []
    for sid, g in data.frame.groupby("unique_id", sort=False):
        values = g[["y", *data.covariates]].to_numpy("float64", copy=True)
        raw_target = values[:, 0].copy()
        values[:, 0] = apply_transform(values[:, 0], transform)
        groups.append((str(sid), values, g["ds"], raw_target))
    sids = [sid for sid, _, _, _ in groups]
    n_train = [split_lengths(len(v), horizon, val_size)[0] for _, v, _, _ in groups]
    for (sid, v, _, _), nt in zip(groups, n_train):
        if nt < input_size + horizon:
            raise ValueError(
                f"series {sid!r} has {len(v)} points; needs {input_size + horizon + val_size + horizon}"
            )
    scaler = fit_scaler([v[:nt] for (_, v, _, _), nt in zip(groups, n_train)], sids, scaler_kind)

    xs_tr, ys_tr, xs_va, ys_va, xs_te, ys_te, starts = [], [], [], [], [], [], []
    for i, ((sid, v, ds, raw), nt) in enumerate(zip(groups, n_train)):
        scaled = scaler.transform(v, i)
        test_at = len(v) - horizon
        # Training windows from the training part alone.
        x, y = sliding_windows(scaled[:nt], input_size, horizon, stride)
        xs_tr.append(x)
        ys_tr.append(y)
        # Validation windows: targets ending inside the validation part.
        first_start = max(nt - input_size - horizon + 1, 0)
        x, y = sliding_windows(scaled[first_start:test_at], input_size, horizon, 1)
        ends = first_start + np.arange(len(x)) + input_size + horizon - 1
        keep = ends >= nt
        xs_va.append(x[keep])
        ys_va.append(y[keep])
        xs_te.append(scaled[test_at - input_size : test_at])
        ys_te.append(raw[test_at:])
        starts.append(pd.Timestamp(ds.iloc[test_at]))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    x_train, y_train, _ = normalise_windows(cat(xs_tr), cat(ys_tr), local_norm)
    x_val, y_val, _ = normalise_windows(cat(xs_va), cat(ys_va), local_norm)
    x_test, _, test_ref = normalise_windows(np.stack(xs_te).astype(np.float32), None, local_norm)

    return PreparedData(
        series_ids=sids,
        freq=data.freq,
        input_size=input_size,
        horizon=horizon,
        n_features=1 + len(data.covariates),
        scaler=scaler,
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),  # type: ignore[arg-type]
        x_val=np.ascontiguousarray(x_val),
        y_val=np.ascontiguousarray(y_val),  # type: ignore[arg-type]
        x_test=np.ascontiguousarray(x_test),
        y_test=np.stack(ys_te),
        test_start=starts,
        train_target=[raw[:nt] for (_, _, _, raw), nt in zip(groups, n_train)],
        history_target=[raw[: len(raw) - horizon] for _, _, _, raw in groups],
        test_ref=test_ref.astype("float64"),
        transform=transform,
        local_norm=local_norm,
    )
