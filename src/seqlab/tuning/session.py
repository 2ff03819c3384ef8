"""One tuning session: open the study for this data and config, top it up, summarise it."""

from __future__ import annotations

import logging
import time

import optuna

from seqlab.config import PipelineConfig
from seqlab.data.series import SeriesData
from seqlab.training.devices import plan_slots
from seqlab.tuning.liveness import reap_dead_trials
from seqlab.tuning.objective import CallbackFactory, Objective
from seqlab.tuning.pool import failure_summary, spawn_workers
from seqlab.tuning.runner import TuningError, run_trials, wait_for_trials
from seqlab.tuning.space import largest_model_params
from seqlab.tuning.storage import finished_count, make_storage, open_study, publish
from seqlab.tuning.summary import TuningResult, summarise
from seqlab.tuning.worker import max_fail_streak, tracking_from_dict

log = logging.getLogger("seqlab.tuning")


def top_up(study: optuna.Study, cfg: PipelineConfig, objective: Objective) -> dict:
    """Top the study up to ``n_trials`` with the configured workers; returns what was done.
    No trial starts after ``objective.deadline``, and the running ones stop at it."""
    t = cfg.tune
    timeout = t.timeout
    if objective.deadline is not None:
        timeout = max(0.0, objective.deadline - time.time())
    reaped = reap_dead_trials(study, t.heartbeat_interval)
    before = finished_count(study)
    slots = plan_slots(t.workers, t.trials_per_gpu, n_params=largest_model_params(cfg))
    mode = "in-process"
    if before >= t.n_trials:
        mode = "already complete"
    elif not slots:
        mode = "external workers"
        wait_for_trials(study, t.n_trials, t.wait_timeout, heartbeat_interval=t.heartbeat_interval)
    elif len(slots) == 1 and slots[0].gpu is None:
        run_trials(study, objective, timeout=timeout, max_fail_streak=max_fail_streak(cfg))
    else:
        mode = f"{len(slots)} worker processes"
        pool = spawn_workers(
            study.study_name, t.storage, slots, timeout, t.heartbeat_interval, objective.deadline
        )
        try:
            codes = pool.wait()
        except BaseException:
            pool.terminate()
            raise
        reaped += reap_dead_trials(study, t.heartbeat_interval)  # trials of crashed workers
        if any(codes) and finished_count(study) < t.n_trials:
            raise TuningError(
                f"tuning workers exited with codes {codes} with "
                f"{finished_count(study)}/{t.n_trials} trials finished; "
                f"failures: {failure_summary(study)}"
            )
    return {
        "mode": mode,
        "workers": len(slots),
        "orphaned_failed": sorted(reaped),
        "finished_before": before,
        "finished_after": finished_count(study),
    }


def tune_study(
    cfg: PipelineConfig,
    series: SeriesData,
    tracking: dict[str, str] | None = None,
    extra_callbacks: CallbackFactory | None = None,
    deadline: float | None = None,
) -> TuningResult:
    """Open (or create, warm-started) the study of this data and config, top it up to
    ``tune.n_trials``, and summarise it. ``tune.n_trials=0`` trains the given parameters.

    ``deadline`` (``time.time()``): when tuning stops, the running trials with their best so
    far (the run's time budget); unset, ``tune.timeout`` from now does the same."""
    if cfg.tune.n_trials == 0:
        return TuningResult(study="", mode="no tuning", n_trials=0)
    storage = make_storage(cfg.tune.storage, cfg.tune.heartbeat_interval)
    opened = open_study(cfg, storage, series.digest)
    if opened.warm_started_from:
        log.warning(
            "data or settings changed since study %s: tuning anew in study %s, "
            "warm-started with its best parameters %s",
            opened.warm_started_from,
            opened.study.study_name,
            opened.warm_start_params,
        )
    publish(opened.study, cfg, series.digest, tracking)
    if deadline is None and cfg.tune.timeout is not None:
        deadline = time.time() + cfg.tune.timeout
    objective = Objective(
        cfg,
        series,
        cfg.tune.n_trials,
        tracking_from_dict(tracking),
        extra_callbacks,
        deadline=deadline,
    )
    done = top_up(opened.study, cfg, objective)
    return summarise(
        opened.study,
        n_trials=cfg.tune.n_trials,
        warm_started_from=opened.warm_started_from,
        created=opened.created,
        **done,
    )
