"""Tuning under an MLflow parent run: every trial a child run; trial runs of dead workers closed.

The one function the training flow and the tests share to tune with tracking.
"""

from __future__ import annotations

from seqlab.config import PipelineConfig
from seqlab.data.series import SeriesData
from seqlab.registry import tracking
from seqlab.tuning.objective import CallbackFactory
from seqlab.tuning.session import tune_study
from seqlab.tuning.summary import TuningResult


def tune_under_run(
    cfg: PipelineConfig,
    series: SeriesData,
    run: tracking.RunRef,
    extra_callbacks: CallbackFactory | None = None,
    deadline: float | None = None,
) -> TuningResult:
    result = tune_study(cfg, series, run.trial_spec(), extra_callbacks, deadline)
    if result.tuned:
        tracking.fail_dangling_trial_runs(
            run.tracking_uri, run.experiment_id, result.study, set(result.running_trials)
        )
    return result
