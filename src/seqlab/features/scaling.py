"""Per-series scaling fitted on the training part only, and the seasonal-naive MAE (MASE's
denominator) that the ``mase`` scaler divides by. numpy only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Scaler:
    """Per-series, per-feature affine scaling: ``(x - loc) / scale``. Feature 0 is the target."""

    kind: Literal["standard", "minmax", "mase", "none"]
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
    def from_dict(cls, d: dict) -> Scaler:
        return cls(
            kind=d["kind"],
            series_ids=tuple(d["series_ids"]),
            loc=np.asarray(d["loc"], dtype="float64"),
            scale=np.asarray(d["scale"], dtype="float64"),
        )


def fit_scaler(
    train_parts: list[np.ndarray], series_ids: list[str], kind: str = "standard", season: int = 1
) -> Scaler:
    """Fit one scaler per series on its training part only; ``train_parts[i]`` is (T_i, F).

    ``mase``: like ``standard``, but the target is divided by its in-sample seasonal-naive MAE
    (MASE's denominator), so a loss on scaled errors weighs series as MASE does (N-BEATS trained
    on the MASE itself); its standard deviation where that MAE is undefined."""
    locs, scales = [], []
    for part in train_parts:
        if kind in ("standard", "mase"):
            loc, scale = part.mean(axis=0), part.std(axis=0)
            if kind == "mase":
                naive = seasonal_mae(part[:, 0], season)
                scale[0] = naive if np.isfinite(naive) else scale[0]
        elif kind == "minmax":
            loc, scale = part.min(axis=0), part.max(axis=0) - part.min(axis=0)
        else:
            loc, scale = np.zeros(part.shape[1]), np.ones(part.shape[1])
        # A constant feature would divide by zero: leave it unscaled around its level.
        scale = np.where(scale > 1e-12, scale, 1.0)
        locs.append(loc)
        scales.append(scale)
    return Scaler(kind, tuple(series_ids), np.stack(locs), np.stack(scales))  # type: ignore[arg-type]


def seasonal_mae(train: np.ndarray, season: int) -> float:
    """In-sample seasonal-naive MAE (MASE's denominator); lag 1 when the part is too short."""
    m = season if len(train) > season else 1
    if len(train) <= m:
        return float("nan")
    scale = float(np.mean(np.abs(train[m:] - train[:-m])))
    return scale if scale > 0 else float("nan")
