"""Integrated gradients (by hand in torch) for single forecasts: input step x feature."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqlab.evaluation.explain.cpu import cpu_copy, point_output
from seqlab.evaluation.explain.groups import feature_names, static_names
from seqlab.features.windows import PreparedData

if TYPE_CHECKING:
    from seqlab.models import Forecaster


log = logging.getLogger("seqlab.explain")


def _output_sum(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The sum of each window's point forecasts over the horizon: (N,)."""
    return point_output(model, model(x)).reshape(len(x), -1).sum(dim=1)


def integrated_gradients(
    model: Forecaster,
    x: np.ndarray,
    baseline: np.ndarray | None = None,
    steps: int = 32,
    max_batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrated gradients of the sum of the horizon's point forecasts (a quantile model's
    median) with respect to the inputs.

    ``x`` (N, rows, F) in the model's input space; ``baseline`` defaults to zeros there (the
    training mean of each feature, and, with ``local_norm=last``, "no change from the last
    value" for the target). The path integral from the baseline to ``x`` is computed with
    ``steps``-point Gauss-Legendre quadrature on a CPU copy of the model in eval mode.

    Returns ``(attributions (N, rows, F), output (N,), baseline output (N,))``; by
    completeness, ``attributions.sum((1, 2)) ~= output - baseline output``: to float precision
    for one smooth network, up to the quadrature's error (about 1% at 32 steps, falling as
    1/steps) where the output has kinks: the median of 3 or more ensemble members, or quantile
    levels sorted where they cross.
    """
    net = cpu_copy(model)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    bt = torch.zeros_like(xt) if baseline is None else torch.as_tensor(baseline).to(xt)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.as_tensor((nodes + 1) / 2, dtype=torch.float32)
    w = torch.as_tensor(weights / 2, dtype=torch.float32)
    diff = xt - bt
    total = torch.zeros_like(xt)
    per_chunk = max(1, max_batch // max(len(xt), 1))
    for i in range(0, steps, per_chunk):
        a = alphas[i : i + per_chunk]
        path = (bt[None] + a[:, None, None, None] * diff[None]).reshape(-1, *xt.shape[1:])
        path.requires_grad_(True)
        (grad,) = torch.autograd.grad(_output_sum(net, path).sum(), path)
        grad = grad.reshape(len(a), *xt.shape)
        total += (w[i : i + per_chunk, None, None, None] * grad).sum(dim=0)
    with torch.no_grad():
        out, base_out = _output_sum(net, xt), _output_sum(net, bt)
    return (diff * total).numpy(), out.numpy(), base_out.numpy()


@dataclass
class Attribution:
    """Integrated gradients of one forecast: ``values`` (rows, n_features), row ``t`` the
    window's step ``t`` (lag ``input_size - t``; rows after ``input_size`` are the horizon's
    steps, with the known-future features), column ``f`` the feature ``features[f]``."""

    series_id: str
    features: list[str]
    values: np.ndarray
    output: float
    """Sum of the horizon's point forecasts at the window (model output units: scaled, and
    relative to the last value with ``local_norm=last``)."""
    baseline_output: float
    """The same at the all-zero baseline."""
    target_scale: float
    """Multiply by it for data units (``window.transform=none``, no deseasonalisation)."""
    input_size: int = 0
    """Rows of the input window (0: all rows)."""

    @property
    def completeness_gap(self) -> float:
        """``sum(values) - (output - baseline_output)``: the quadrature's error."""
        return float(self.values.sum() - (self.output - self.baseline_output))

    def row_labels(self) -> list[str]:
        """``lag L`` ... ``lag 1`` for the input window, ``+1`` ... ``+H`` for horizon rows."""
        length = self.input_size or len(self.values)
        future = len(self.values) - length
        return [f"lag {length - t}" for t in range(length)] + [f"+{h + 1}" for h in range(future)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_id": self.series_id,
            "output_sum": self.output,
            "baseline_output_sum": self.baseline_output,
            "completeness_gap": self.completeness_gap,
            "target_scale": self.target_scale,
            "rows": self.row_labels(),
            "attributions": {f: self.values[:, i].tolist() for i, f in enumerate(self.features)},
        }


def attribute_latest(
    model: Forecaster,
    prepared: PreparedData,
    covariates: Sequence[str] = (),
    max_series: int = 3,
    steps: int = 32,
    target: str = "y",
) -> list[Attribution]:
    """Integrated gradients (:func:`integrated_gradients`) of the latest held-out window of the
    first ``max_series`` series: the window whose target is each series' last ``horizon``
    validation points (with :func:`held_out_windows`, the series' last points)."""
    rows, sids = [], []
    for i, sid in enumerate(prepared.series_ids):
        mine = np.flatnonzero(prepared.val_series == i)
        if len(mine):
            rows.append(int(mine[-1]))
            sids.append((i, sid))
        if len(rows) >= max_series:
            break
    if not rows:
        return []
    x = prepared.x_val[rows]
    baseline = np.zeros_like(x)
    f = prepared.n_features
    baseline[..., f:] = x[..., f:]  # a series-index column stays the window's own series
    values, out, base = integrated_gradients(model, x, baseline, steps=steps)
    values = values[..., :f]
    n_calendar = getattr(prepared, "n_calendar", 0)
    names = feature_names(f, covariates, target, n_calendar, prepared.freq, static_names(prepared))
    return [
        Attribution(
            sid,
            names,
            values[k],
            float(out[k]),
            float(base[k]),
            float(prepared.scaler.scale[i, 0]),
            prepared.input_size,
        )
        for k, (i, sid) in enumerate(sids)
    ]


def attributions_json(attributions: Sequence[Attribution], steps: int = 32) -> dict[str, Any]:
    return {
        "method": "integrated gradients",
        "steps": steps,
        "quadrature": "gauss-legendre",
        "baseline": "zeros in the model's input space (scaled; relative to the last value "
        "with local_norm=last)",
        "output": "sum of the horizon's point forecasts in the model's output space (scaled; "
        "x target_scale for data units with transform=none)",
        "window": "the latest held-out window of each series (its target: the last points)",
        "series": [a.to_dict() for a in attributions],
    }
