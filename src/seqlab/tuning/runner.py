"""Running trials in this process until a study holds ``n_trials``, or waiting for others to."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


INTERRUPTED_REASON = "interrupted (SIGTERM or Ctrl-C)"


class _Deferral:
    """Interrupts (SIGTERM, Ctrl-C) that arrive while Optuna creates a trial or records its
    outcome are held until the trial's objective starts, or until ``optimize`` returns.

    Raised there, a ``KeyboardInterrupt`` would end ``optimize`` between ``ask`` and the
    objective (the trial left RUNNING, with no owner and no reason) or be caught as the
    trial's failure before any ``fail_reason`` was written. Signal handlers run in the main
    thread, so module state is enough.
    """

    active = False  # inside study.optimize, outside the objective: hold interrupts
    pending: tuple[Any, int] | None = None  # (the handler it was meant for, signum)


def _deliver_pending() -> None:
    pending, _Deferral.pending = _Deferral.pending, None
    if pending is not None:
        handler, signum = pending
        handler(signum, None)  # raises KeyboardInterrupt (the worker's and Ctrl-C's handlers)


@contextmanager
def _holding_interrupts() -> Iterator[None]:
    """Wrap the SIGTERM and SIGINT handlers so that they wait while ``_Deferral.active``.

    Only Python-level handlers are wrapped (the default SIGTERM action kills the process at
    once: its trials are reaped as a dead worker's), and only in the main thread, where
    handlers can be set.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(signum)
        if not callable(handler):
            continue

        def holding(sig: int, frame: Any, handler: Any = handler) -> None:
            if _Deferral.active:
                if _Deferral.pending is None:
                    _Deferral.pending = (handler, sig)
                return
            handler(sig, frame)

        previous[signum] = handler
        signal.signal(signum, holding)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_one(study: optuna.Study, objective: Objective) -> FrozenTrial:
    """One trial through ``study.optimize`` (heartbeat thread, stale checks, tell).

    An interrupt always leaves the trial FAILED with ``fail_reason`` written before its state
    changes: interrupts are held outside the objective (see :class:`_Deferral`), and one that
    escapes the objective before the objective recorded a reason gets one here.
    """
    ran: list[FrozenTrial] = []

    def guarded(trial: optuna.Trial) -> float:
        _Deferral.active = False
        try:
            _deliver_pending()  # arrived while the trial was being created: it ends now
            return objective(trial)
        except BaseException as e:
            _Deferral.active = True  # a second signal must not cut the reason's write short
            if not isinstance(e, Exception) and "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", INTERRUPTED_REASON)
            raise
        finally:
            _Deferral.active = True

    _Deferral.active, _Deferral.pending = True, None
    try:
        study.optimize(
            guarded,
            n_trials=1,
            catch=TRIAL_ERRORS,
            callbacks=[lambda _s, t: ran.append(t)],
            gc_after_trial=False,
        )
    except BaseException:
        _Deferral.active, _Deferral.pending = False, None
        raise
    _Deferral.active = False
    _deliver_pending()  # arrived while the finished trial was being told: stop now
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
    (a worker sharing its GPU makes room), stops launching trials after ``timeout`` seconds
    (once the study holds a finished or running trial), and
    raises :class:`TuningError` after ``max_fail_streak`` failed trials in a row.
    Returns the number of trials this call finished.
    """
    # Optuna logs each failed trial with its traceback; we log one line with the reason.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with _holding_interrupts():
        return _run_trials(study, objective, timeout, keep_on_oom, max_fail_streak, poll)


def _run_trials(
    study: optuna.Study,
    objective: Objective,
    timeout: float | None,
    keep_on_oom: bool,
    max_fail_streak: int,
    poll: float,
) -> int:
    n = objective.n_trials
    start = time.monotonic()
    done = streak = 0
    reasons: list[str] = []
    while True:
        reap_dead_trials(study, objective.heartbeat_interval)
        finished, running = trial_counts(study)
        progress.report("trials", min(finished, n), n)
        # Past the timeout no trial starts, unless the study holds none, finished or running:
        # then it gets its first (which stops at the objective's deadline).
        late = timeout is not None and time.monotonic() - start >= timeout
        if finished >= n or (late and finished + running > 0):
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
