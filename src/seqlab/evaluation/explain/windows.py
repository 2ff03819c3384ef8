"""The held-out windows: the backtest part, which the backtested model never trained on."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np

from seqlab.features.windows import PreparedData

if TYPE_CHECKING:
    from seqlab.config import PipelineConfig
    from seqlab.data.series import SeriesData


log = logging.getLogger("seqlab.explain")


def held_out_windows(series: SeriesData, cfg: PipelineConfig) -> PreparedData:
    """Windows whose targets lie in the backtest part, in the input space of the model that is
    backtested (``refit(series, cfg, epochs, holdout=cfg.test_size)``).

    Its training part is the same (everything before the first cutoff), so the scaler, the
    seasonal indices and the MASE scale (seasonal-naive MAE of the training part) are the ones
    of that fit, and ``val_mase`` scores decoded forecasts in data units. These are all the
    stride-1 windows of the backtest part (``test_size - horizon + 1`` per series), a superset of
    the backtest's cutoffs, scaled by MASE of the part before the first cutoff (the backtest
    scales each cutoff by the history before it): a close proxy of ``test/mase``, not equal.
    """
    from seqlab.pipeline import prepare_fit

    return prepare_fit(series, cfg, holdout=cfg.test_size, val_size=cfg.test_size)


def _val_fields(prepared: PreparedData) -> list[str]:
    """The per-window validation fields: ``x_val``, ``y_val`` and every ``val_*`` array."""
    n = len(prepared.x_val)
    out = []
    for f in dataclasses.fields(prepared):
        value = getattr(prepared, f.name)
        per_window = f.name in ("x_val", "y_val") or f.name.startswith("val_")
        if per_window and isinstance(value, np.ndarray) and value.ndim and len(value) == n:
            out.append(f.name)
    return out


def subset_windows(prepared: PreparedData, rows: np.ndarray) -> PreparedData:
    """The same fit with only the validation windows ``rows`` (every per-window field cut)."""
    return dataclasses.replace(
        prepared, **{name: getattr(prepared, name)[rows] for name in _val_fields(prepared)}
    )


def sample_windows(prepared: PreparedData, max_windows: int | None, seed: int = 0) -> PreparedData:
    """At most ``max_windows`` validation windows, drawn without replacement with ``seed``
    (kept in their order); all of them when there are no more."""
    n = len(prepared.x_val)
    if max_windows is None or n <= max_windows:
        return prepared
    rows = np.sort(np.random.default_rng(seed).choice(n, size=max_windows, replace=False))
    return subset_windows(prepared, rows)
