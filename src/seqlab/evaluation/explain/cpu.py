"""The model on CPU, and its point forecasts (a quantile model's median)."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from seqlab.models import point_index
from seqlab.training.trainer import predict as train_predict

if TYPE_CHECKING:
    from seqlab.models import Forecaster


log = logging.getLogger("seqlab.explain")


def cpu_copy(model: Forecaster) -> Forecaster:
    """A CPU copy in eval mode (the trained model is left as it is). On CPU an RNN's backward
    works in eval mode; cuDNN's would need train mode, which dropout would make random."""
    return copy.deepcopy(model).cpu().eval()


def point_output(model: torch.nn.Module, out: torch.Tensor) -> torch.Tensor:
    """The point forecast (N, H) of a model's output: the median of a quantile model's."""
    point = point_index(model)
    return out if point is None else out[..., point]


def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Point forecasts (N, H), in the model's output space, for inputs ``x`` in its input
    space, on the model's device, in batches (the median of a quantile model)."""
    out = train_predict(model, x, chunk=batch_size)
    point = point_index(model)
    return out if point is None or out.ndim < 3 else out[..., point]
