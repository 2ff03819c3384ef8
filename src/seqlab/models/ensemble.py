"""Ensembles of recurrent forecasters (median of members) and models rebuilt from hparams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from seqlab.models.recurrent import RecurrentForecaster


class EnsembleForecaster(nn.Module):
    """Members of one architecture trained from different seeds; forecasts their median.

    The median is an order statistic: at every output, the value of the member ranked
    ``(K - 1) // 2`` (the lower middle one when K is even, as ``torch.median``), never an
    average of two members. An order statistic commutes with monotone increasing maps, and
    decoding (unscaling, undoing local normalisation, ``exp`` of a log transform, putting the
    seasonal indices back) is one such map at each output, so the median taken in the members'
    common scaled space is the median of their forecasts in data units too. (Averaging the two
    middle members would not be: under a log transform it is their geometric mean in data
    units.) Per quantile level, it keeps the levels of a quantile model from crossing. One
    diverged member cannot drag the forecast away.
    """

    def __init__(self, members: Sequence[RecurrentForecaster]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.quantiles = members[0].quantiles
        self.hparams = {**members[0].hparams, "ensemble_size": len(members)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x) for m in self.members])  # (K, batch, horizon[, Q])
        return outs.median(dim=0).values  # lower middle member at each output, K even or odd


Forecaster = RecurrentForecaster | EnsembleForecaster


def from_hparams(hparams: dict[str, Any]) -> Forecaster:
    """An untrained model of the architecture ``hparams`` describes (a model's ``.hparams``)."""
    h = dict(hparams)
    k = int(h.pop("ensemble_size", 1))
    if k > 1:
        return EnsembleForecaster([RecurrentForecaster(**h) for _ in range(k)])
    return RecurrentForecaster(**h)
