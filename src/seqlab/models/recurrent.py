"""One recurrent forecaster; the cell (Elman RNN, LSTM or GRU) is a parameter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

Cell = Literal["rnn", "lstm", "gru"]
_CELLS: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentForecaster(nn.Module):
    """Encoder RNN over the input window and a direct multi-step head.

    ``rnn`` is the Elman cell, h_t = tanh(W_hh h_{t-1} + W_xh x_t + b_h). The head maps the last
    hidden state to all ``horizon`` steps at once (no recursive feeding of predictions).

    With ``series_embedding`` d > 0 (global models), a learnt d-vector of each series' identity
    (read from the inputs' last column, the series index) joins every input step.

    With ``quantiles`` (levels in (0, 1), 0.5 among them) the head forecasts each level of every
    step: output (batch, horizon, Q), trained with the pinball loss. Outside training the levels
    are sorted along the last axis, so the forecast quantiles never cross.
    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        cell: Cell = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        quantiles: Sequence[float] | None = None,
        future_features: Sequence[int] | None = None,
        n_series: int = 0,
        series_embedding: int = 0,
    ) -> None:
        super().__init__()
        self.future_features = list(future_features or [])
        self.embed = nn.Embedding(n_series, series_embedding) if series_embedding else None
        self.quantiles = tuple(float(q) for q in quantiles) if quantiles else None
        if self.quantiles is not None and 0.5 not in self.quantiles:
            raise ValueError("quantiles must include 0.5 (the point forecast)")
        if cell not in _CELLS:
            raise ValueError(f"unknown cell {cell!r}: choose one of {', '.join(_CELLS)}")
        extra = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = _CELLS[cell](
            input_size=n_features + series_embedding,
            hidden_size=hidden_size,
            num_layers=num_layers,
            # PyTorch applies dropout between stacked layers only.
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
            **extra,
        )
        self.dropout = nn.Dropout(dropout)
        self.horizon = horizon
        known = horizon * len(self.future_features)  # known-future inputs of the horizon
        self.head = nn.Linear(hidden_size + known, horizon * len(self.quantiles or (0.5,)))
        self.hparams: dict[str, Any] = {
            "n_features": n_features,
            "horizon": horizon,
            "cell": cell,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "dropout": dropout,
        }
        if self.quantiles is not None:
            self.hparams["quantiles"] = list(self.quantiles)
        if self.future_features:
            self.hparams["future_features"] = list(self.future_features)
        if series_embedding:
            self.hparams.update(n_series=n_series, series_embedding=series_embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, input_size, n_features), then ``horizon`` rows of known-future features;
        # with a series embedding, a last column holds each window's series index
        emb = None
        if self.embed is not None:
            emb = self.embed(x[:, 0, -1].long())  # (batch, d)
            x = x[..., :-1]
        fut = None
        if self.future_features:
            fut = x[:, -self.horizon :, self.future_features].reshape(x.shape[0], -1)
            x = x[:, : -self.horizon]
        if emb is not None:  # the series' identity beside every input step
            x = torch.cat([x, emb.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=2)
        out, _ = self.rnn(x)  # (batch, input_size, hidden)
        last = self.dropout(out[:, -1, :])  # (batch, hidden)
        if fut is not None:
            last = torch.cat([last, fut], dim=1)
        y = self.head(last)  # (batch, horizon) or (batch, horizon * Q)
        if self.quantiles is None:
            return y
        y = y.view(y.shape[0], self.horizon, len(self.quantiles))
        return y if self.training else torch.sort(y, dim=-1).values


def point_index(model: nn.Module) -> int | None:
    """Index of the median in a quantile model's last output axis; ``None`` for point models."""
    q = getattr(model, "quantiles", None)
    return None if q is None else list(q).index(0.5)


def build_model(
    n_features: int,
    horizon: int,
    cell: str,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    quantiles: Sequence[float] | None = None,
    future_features: Sequence[int] | None = None,
    n_series: int = 0,
    series_embedding: int = 0,
) -> RecurrentForecaster:
    return RecurrentForecaster(
        n_features,
        horizon,
        cell,  # type: ignore[arg-type]
        hidden_size,
        num_layers,
        dropout,
        quantiles,
        future_features,
        n_series,
        series_embedding,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
