"""Liveness of trials: who runs each one, heartbeats, and failing the trials of dead workers.

Each trial records its worker (``seqlab:owner``: host, boot id, pid and process start time, as
pids get reused). A RUNNING trial whose worker on this machine is gone, or whose heartbeat
stopped (RDB storages: Optuna's own; journal files: ``seqlab:heartbeat``, written here), is
failed with its reason by the next worker or pipeline run that looks.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.storages.journal import JournalStorage
from optuna.trial import FrozenTrial, TrialState

from seqlab.processes import boot_id, owner_alive, owner_record, process_stat  # noqa: F401

log = logging.getLogger("seqlab.tuning")

OWNER_ATTR = "seqlab:owner"  # trial system attr: which process on which machine runs it
HEARTBEAT_ATTR = "seqlab:heartbeat"  # trial system attr (journal storages): last sign of life
JOURNAL_CLOCK_SKEW_S = 10  # journal heartbeats use each host's clock: allow for drift


@contextmanager
def journal_heartbeat(study: optuna.Study, trial: optuna.Trial, interval: int) -> Iterator[None]:
    """Journal files have no heartbeat of their own: write one as a trial attribute."""
    storage = study._storage
    if not isinstance(storage, JournalStorage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
            except Exception:  # finished (failed as stale) or storage gone: stop beating
                return
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"seqlab-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        return storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # finished meanwhile, or another process failed it first


OWNERLESS_GRACE_S = 120
"""A RUNNING trial with no owner and no heartbeat this long after its start was left by a worker
killed between creating it and recording itself (a few milliseconds): nothing else would ever
end it."""


def fail_orphaned_trials(
    study: optuna.Study, ownerless_grace: float = OWNERLESS_GRACE_S
) -> list[int]:
    """Fail RUNNING trials whose worker process on this machine is gone (any storage), and
    trials that never recorded an owner nor a heartbeat within ``ownerless_grace`` seconds."""
    failed = []
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_ATTR) or {}
        if owner_alive(owner) is False:
            reason = f"worker process died (pid {owner.get('pid')} on {owner.get('host')})"
        elif not owner and now - _last_sign_of_life(t, now) > ownerless_grace:
            reason = (
                f"no owner recorded and no heartbeat for over {ownerless_grace:.0f}s: its "
                "worker died as the trial started"
            )
        else:
            continue
        if _fail_trial(study, t, reason):
            failed.append(t.number)
    return failed


def fail_stale_trials(study: optuna.Study, heartbeat_interval: int | None = None) -> list[int]:
    """Fail RUNNING trials whose heartbeat stopped (a worker on another host died).

    RDB storages: Optuna's heartbeat table (the storage's own interval). Journal files: the
    ``seqlab:heartbeat`` attribute written by :class:`Objective` every ``heartbeat_interval``.
    """
    storage = study._storage
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    stale: list[FrozenTrial] = []
    rdb_interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if rdb_interval:
        backend = getattr(storage, "_backend", storage)
        grace = getattr(backend, "grace_period", None) or 2 * rdb_interval
        get_ids = getattr(storage, "_get_stale_trial_ids", None)
        if get_ids is None:  # not in this Optuna: its own function, without reasons
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
            return []
        ids = set(get_ids(study._study_id))
        stale = [t for t in running if t._trial_id in ids]
    elif heartbeat_interval and isinstance(storage, JournalStorage):
        grace = 2 * heartbeat_interval + JOURNAL_CLOCK_SKEW_S
        now = time.time()
        stale = [t for t in running if now - _last_sign_of_life(t, now) > grace]
    failed = []
    for t in stale:
        reason = f"no heartbeat for over {grace}s: its worker died or lost the storage"
        if _fail_trial(study, t, reason):
            failed.append(t.number)
    return failed


def _last_sign_of_life(trial: FrozenTrial, now: float) -> float:
    """Its last journal heartbeat; its start when it never beat (its worker died at once)."""
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    if beat is not None:
        return float(beat)
    return trial.datetime_start.timestamp() if trial.datetime_start else now


def reap_dead_trials(study: optuna.Study, heartbeat_interval: int | None = None) -> list[int]:
    """Fail every RUNNING trial whose worker is gone; returns their numbers."""
    dead = fail_orphaned_trials(study) + fail_stale_trials(study, heartbeat_interval)
    if dead:
        log.warning("study %s: failed trial(s) %s of dead workers", study.study_name, sorted(dead))
    return sorted(dead)
