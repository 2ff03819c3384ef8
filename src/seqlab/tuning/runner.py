"""Running trials in this process until a study holds ``n_trials``, or waiting for others to."""

from __future__ import annotations

import logging
import time

import optuna
from optuna.trial import FrozenTrial

from seqlab import progress
from seqlab.tuning.liveness import reap_dead_trials
from seqlab.tuning.objective import TRIAL_ERRORS, Objective
from seqlab.tuning.storage import FINISHED, finished_count, trial_counts

log = logging.getLogger("seqlab.tuning")

DEFAULT_MAX_FAIL_STREAK = 5


class TuningError(RuntimeError):
    """Trials keep failing in a row: a systematic problem (search space, data, memory)."""


def _run_one(study: optuna.Study, objective: Objective) -> FrozenTrial:
    """One trial through ``study.optimize`` (heartbeat thread, stale checks, tell)."""
    ran: list[FrozenTrial] = []
    study.optimize(
        objective,
        n_trials=1,
        catch=TRIAL_ERRORS,
        callbacks=[lambda _s, t: ran.append(t)],
        gc_after_trial=False,
    )
    return ran[0]


def run_trials(
    study: optuna.Study,
    objective: Objective,
    timeout: float | None = None,
    keep_on_oom: bool = True,
    max_fail_streak: int = DEFAULT_MAX_FAIL_STREAK,
    poll: float = 1.0,
) -> int:
    """Run trials in this process until the study holds ``n_trials`` finished ones.

    Waits while other workers hold the remaining trials (one of them may fail and need a
    replacement), fails trials of dead workers, leaves after a CUDA OOM unless ``keep_on_oom``
    (a worker sharing its GPU makes room), stops launching trials after ``timeout`` seconds, and
    raises :class:`TuningError` after ``max_fail_streak`` failed trials in a row.
    Returns the number of trials this call finished.
    """
    # Optuna logs each failed trial with its traceback; we log one line with the reason.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    n = objective.n_trials
    start = time.monotonic()
    done = streak = 0
    reasons: list[str] = []
    while True:
        reap_dead_trials(study, objective.heartbeat_interval)
        finished, running = trial_counts(study)
        progress.report("trials", min(finished, n), n)
        if finished >= n or (timeout is not None and time.monotonic() - start >= timeout):
            return done
        if finished + running >= n:
            time.sleep(poll)
            continue
        trial = _run_one(study, objective)
        if trial.state in FINISHED:
            done, streak, reasons = done + 1, 0, []
            value = f"{trial.value:.4g}" if trial.value is not None else "-"
            progress.report(
                "trials",
                finished + 1,
                n,
                f"trial {trial.number} {trial.state.name.lower()} (val/mase {value})",
            )
            log.info(
                "trial %d %s (val/mase %s): %d/%d finished",
                trial.number,
                trial.state.name.lower(),
                f"{trial.value:.4g}" if trial.value is not None else "-",
                finished + 1,
                n,
            )
            continue
        if trial.user_attrs.get("surplus"):
            continue
        streak += 1
        reason = str(trial.user_attrs.get("fail_reason") or "no reason recorded")
        reasons.append(reason)
        log.warning("trial %d failed: %s", trial.number, reason)
        if trial.user_attrs.get("oom") and not keep_on_oom:
            log.warning("out of memory: this worker leaves to lower the packing on its GPU")
            return done
        if streak >= max_fail_streak:
            distinct = "; ".join(dict.fromkeys(reasons))
            raise TuningError(
                f"study {study.study_name!r}: {streak} trials in a row failed ({distinct}); "
                "check tune.search_space and the training config, then run again"
            )


def wait_for_trials(
    study: optuna.Study,
    n_trials: int,
    timeout: float | None,
    poll: float = 2.0,
    heartbeat_interval: int | None = None,
) -> int:
    """With no local workers: wait until external workers finish the study (or timeout)."""
    start = time.monotonic()
    seen = -1
    while True:
        reap_dead_trials(study, heartbeat_interval)
        done = finished_count(study)
        if done >= n_trials:
            return done
        if done != seen:
            log.info(
                "study %s: %d/%d trials finished; waiting for `seqlab tune-worker` processes",
                study.study_name,
                done,
                n_trials,
            )
            seen = done
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(
                f"study {study.study_name!r} holds {done}/{n_trials} finished trials after "
                f"{timeout:.0f}s; start workers with `seqlab tune-worker --study "
                f"{study.study_name} --storage URL`"
            )
        time.sleep(poll)
