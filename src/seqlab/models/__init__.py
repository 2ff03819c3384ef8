"""Networks: one recurrent forecaster (rnn | lstm | gru as a parameter) and ensembles of it.

- :mod:`~seqlab.models.recurrent`: ``RecurrentForecaster``, ``build_model``, ``point_index``
- :mod:`~seqlab.models.ensemble`: ``EnsembleForecaster`` (median of members), ``from_hparams``
"""

from seqlab.models.ensemble import EnsembleForecaster, Forecaster, from_hparams
from seqlab.models.recurrent import (
    Cell,
    RecurrentForecaster,
    build_model,
    count_parameters,
    point_index,
)

__all__ = [
    "Cell",
    "EnsembleForecaster",
    "Forecaster",
    "RecurrentForecaster",
    "build_model",
    "count_parameters",
    "from_hparams",
    "point_index",
]
