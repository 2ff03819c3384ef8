"""Evaluation: metrics, baselines, rolling-origin backtests, intervals, plots, explanations.

- :mod:`~seqlab.evaluation.metrics`: point and interval metrics, naive baselines
- :mod:`~seqlab.evaluation.backtest`: rolling-origin cross-validation -> ``Backtest``
- :mod:`~seqlab.evaluation.plot`: the backtest plot
- :mod:`~seqlab.evaluation.conformal`: intervals calibrated on the backtest's errors
- :mod:`~seqlab.evaluation.explain`: permutation importance, attributions, the study's plots
"""

from seqlab.evaluation import conformal, explain
from seqlab.evaluation.backtest import (
    BASELINES,
    Backtest,
    ForecastFn,
    backtest,
    cross_validation,
    keep_series,
    score_backtest,
)
from seqlab.evaluation.metrics import (
    METRICS,
    interval_metrics,
    mae,
    mase,
    mase_scale,
    naive_forecast,
    pinball,
    quantile_levels,
    rmse,
    seasonal_naive_forecast,
    smape,
)
from seqlab.evaluation.plot import plot_backtest

__all__ = [
    "BASELINES",
    "Backtest",
    "ForecastFn",
    "METRICS",
    "backtest",
    "conformal",
    "cross_validation",
    "explain",
    "interval_metrics",
    "keep_series",
    "mae",
    "mase",
    "mase_scale",
    "naive_forecast",
    "pinball",
    "plot_backtest",
    "quantile_levels",
    "rmse",
    "score_backtest",
    "seasonal_naive_forecast",
    "smape",
]
