"""Explanations of a trained forecaster: what it relies on, for every run.

One module per job: :mod:`.windows` (the held-out windows), :mod:`.groups` (groups of inputs),
:mod:`.cpu` (the model on CPU), :mod:`.permutation` (permutation importance),
:mod:`.attribution` (integrated gradients), :mod:`.plots` (importance, attribution and the
study's plots), :mod:`.explanation` (``explain()``: all of them for a run, as files).

Three views, as plain functions (numpy, torch, pandas, matplotlib, Optuna; no MLflow, no
Prefect), which the training flow logs under ``explain/`` on the parent run:

- **Permutation importance** on held-out windows (:func:`permutation_importance`): a group of
  inputs (a block of the target's lags, one covariate with all its lags, the calendar
  features, the static covariates) is shuffled across windows, and the model's validation
  MASE (decoded, data units) is compared with the score on the intact windows. The windows are
  those of the backtest part (:func:`held_out_windows`), which the backtested model never
  trained on.
- **Integrated gradients** for single forecasts (:func:`integrated_gradients`,
  :func:`attribute_latest`): how much each input (time step x feature) moved the sum of the
  horizon's point forecasts away from their value at a zero input, by hand in torch.

Point forecasts are a quantile model's median. Features known in advance (future covariates,
calendar) are also read from the ``horizon`` rows after the input window: their groups and
attributions include those rows.
- **The study's** optimisation history and parameter importances (:func:`plot_study`), with
  Optuna's own matplotlib plots and its PED-ANOVA evaluator (no scikit-learn needed).

What the model sees. Both views act on the model's *input space*: scaled with the statistics
of the training part, and, with ``window.local_norm=last``, the target relative to the window's
last observed value (so the target's lag 1 is always 0 there, and carries nothing to permute or
attribute: the level is added back when forecasts are decoded). Permuting after normalisation
is exactly what the model would see for another window's shape; what decoding adds back (the
last value, the seasonal-naive forecast of ``window.residual``, the seasonal indices of
``window.deseasonalize``) stays with each window, so these views explain the network's part of
the forecast, not those fixed parts.
"""

from seqlab.evaluation.explain.attribution import (
    Attribution,
    attribute_latest,
    attributions_json,
    integrated_gradients,
)
from seqlab.evaluation.explain.cpu import cpu_copy, point_output, predict
from seqlab.evaluation.explain.explanation import Explanation, explain
from seqlab.evaluation.explain.groups import (
    COVARIATE,
    TARGET_LAGS,
    FeatureGroup,
    GroupKind,
    feature_groups,
    feature_names,
    groups_for,
    lag_blocks,
)
from seqlab.evaluation.explain.permutation import permutation_importance
from seqlab.evaluation.explain.plots import (
    load_study,
    plot_attribution,
    plot_importance,
    plot_study,
)
from seqlab.evaluation.explain.windows import held_out_windows, sample_windows, subset_windows

__all__ = [
    "Attribution",
    "COVARIATE",
    "Explanation",
    "FeatureGroup",
    "GroupKind",
    "TARGET_LAGS",
    "attribute_latest",
    "attributions_json",
    "cpu_copy",
    "explain",
    "feature_groups",
    "feature_names",
    "groups_for",
    "held_out_windows",
    "integrated_gradients",
    "lag_blocks",
    "load_study",
    "permutation_importance",
    "plot_attribution",
    "plot_importance",
    "plot_study",
    "point_output",
    "predict",
    "sample_windows",
    "subset_windows",
]
