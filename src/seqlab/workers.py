"""Tuning workers: in this process, as local processes pinned to GPU slots, or on other hosts.

A worker needs only the study's name and storage: the config, data digest and MLflow parent
run are stored on the study by the pipeline (see :func:`seqlab.tune.publish`). Run one with
``seqlab tune-worker --study NAME --storage URL`` or ``python -m seqlab.workers ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages.journal import JournalStorage
from optuna.trial import FrozenTrial, TrialState

from seqlab.config import PipelineConfig, build_config
from seqlab.devices import WorkerSlot, cpu_threads_per_worker, plan_slots
from seqlab.tune import (
    ATTR_CONFIG,
    ATTR_DIGEST,
    ATTR_TRACKING,
    FINISHED,
    HEARTBEAT_ATTR,
    OWNER_ATTR,
    TRIAL_ERRORS,
    Objective,
    TrialTracking,
    best_params,
    boot_id,
    finished_count,
    largest_model_params,
    load_study,
    make_storage,
    make_study,
    process_stat,
    publish,
    study_summary,
    trial_counts,
)

log = logging.getLogger("seqlab.workers")

DEFAULT_MAX_FAIL_STREAK = 5
JOURNAL_CLOCK_SKEW_S = 10  # journal heartbeats use each host's clock: allow for drift
EXIT_USER_ERROR = 2  # bad config, data or study name: fix and rerun
EXIT_TUNING_ERROR = 3  # trials keep failing (fail-streak guard)
EXIT_INTERRUPTED = 130


class TuningError(RuntimeError):
    """Trials keep failing in a row: a systematic problem (search space, data, memory)."""


# ---------------------------------------------------------------- dead workers


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """Whether a trial's worker still runs; ``None`` when it ran elsewhere (heartbeats decide)."""
    if not owner or owner.get("host") != socket.gethostname():
        return None
    boot = boot_id()
    if owner.get("boot") and boot and owner["boot"] != boot:
        return None  # another machine with the same name, or this one rebooted: cannot tell
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    stat = process_stat(pid)
    if stat is None:
        return True  # no /proc: the pid exists, that is all we know
    state, start = stat
    if state in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    return not (owner.get("start") and start != owner["start"])  # same pid, other process


def _fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        return storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # finished meanwhile, or another process failed it first


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker process on this machine is gone (any storage)."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_ATTR) or {}
        if owner_alive(owner) is False:
            reason = f"worker process died (pid {owner.get('pid')} on {owner.get('host')})"
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


# ---------------------------------------------------------------- running trials in this process


def _run_one(study: optuna.Study, objective: Objective) -> FrozenTrial:
    """One trial through ``study.optimize`` (heartbeat thread, stale checks, tell)."""
    ran: list[FrozenTrial] = []
    study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS,
                   callbacks=[lambda _s, t: ran.append(t)], gc_after_trial=False)
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
        if finished >= n or (timeout is not None and time.monotonic() - start >= timeout):
            return done
        if finished + running >= n:
            time.sleep(poll)
            continue
        trial = _run_one(study, objective)
        if trial.state in FINISHED:
            done, streak, reasons = done + 1, 0, []
            log.info("trial %d %s (val/loss %s): %d/%d finished", trial.number,
                     trial.state.name.lower(), f"{trial.value:.4g}" if trial.value is not None
                     else "-", finished + 1, n)
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


def wait_for_trials(study: optuna.Study, n_trials: int, timeout: float | None,
                    poll: float = 2.0, heartbeat_interval: int | None = None) -> int:
    """With no local workers: wait until external workers finish the study (or timeout)."""
    start = time.monotonic()
    seen = -1
    while True:
        reap_dead_trials(study, heartbeat_interval)
        done = finished_count(study)
        if done >= n_trials:
            return done
        if done != seen:
            log.info("study %s: %d/%d trials finished; waiting for `seqlab tune-worker` processes",
                     study.study_name, done, n_trials)
            seen = done
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(
                f"study {study.study_name!r} holds {done}/{n_trials} finished trials after "
                f"{timeout:.0f}s; start workers with `seqlab tune-worker --study "
                f"{study.study_name} --storage URL`"
            )
        time.sleep(poll)


# ---------------------------------------------------------------- joining a study




def max_fail_streak(cfg: PipelineConfig) -> int:
    return int(getattr(cfg.tune, "max_fail_streak", None) or DEFAULT_MAX_FAIL_STREAK)


def worker_seed_offset() -> int:
    """A sampler seed offset per worker: equal seeds would sample equal parameters."""
    rank = os.environ.get("SEQLAB_WORKER_RANK")
    if rank is not None and rank.isdigit():
        return 1 + int(rank)
    return 1 + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_003


def tracking_from_dict(spec: dict[str, Any] | None) -> TrialTracking | None:
    """An MLflow trial tracker when the study names a parent run and mlflow is installed."""
    if not spec:
        return None
    try:
        from seqlab.tracking import MlflowTrialTracking
    except ImportError:  # a GPU host with only torch/optuna: trials still run, untracked
        log.warning("mlflow is not installed here: trials will not be logged as MLflow runs")
        return None
    return MlflowTrialTracking(**spec)


def objective_for_study(study: optuna.Study) -> Objective:
    """Rebuild the objective from what the pipeline published on the study."""
    from seqlab.pipeline import ingest, validate_data

    attrs = study.user_attrs
    if ATTR_CONFIG not in attrs:
        raise ValueError(f"study {study.study_name!r} was not created by seqlab (no config attached)")
    cfg = build_config(attrs[ATTR_CONFIG])
    series = validate_data(ingest(cfg), cfg)
    if attrs.get(ATTR_DIGEST) and series.digest != attrs[ATTR_DIGEST]:
        raise ValueError(
            f"data at {cfg.data.source} differs from the study's (digest {series.digest[:12]} != "
            f"{attrs[ATTR_DIGEST][:12]}); give this host the same data file"
        )
    return Objective(cfg, series, cfg.tune.n_trials, tracking_from_dict(attrs.get(ATTR_TRACKING)))


def await_study(name: str, storage: optuna.storages.BaseStorage, timeout: float = 0.0,
                poll: float = 1.0) -> optuna.Study:
    """Load a study published by the pipeline, waiting up to ``timeout`` s for it to appear.

    Waiting lets a scheduler start workers and the pipeline together, in any order.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            study = load_study(name, storage)
            if ATTR_CONFIG in study.user_attrs or time.monotonic() >= deadline:
                return study
        except ValueError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(poll)


def run_worker(study_name: str, storage_url: str, timeout: float | None = None,
               keep_on_oom: bool = True, heartbeat_interval: int | None = None,
               wait_for_study: float = 0.0) -> int:
    """Join a study: run trials until it holds ``n_trials``; returns how many this worker ran.

    The heartbeat interval defaults to the study's ``tune.heartbeat_interval``.
    """
    published = await_study(study_name, make_storage(storage_url), wait_for_study)
    objective = objective_for_study(published)
    cfg = objective.cfg
    interval = heartbeat_interval or cfg.tune.heartbeat_interval
    objective.heartbeat_interval = interval
    study = load_study(study_name, make_storage(storage_url, interval), cfg, worker_seed_offset())
    return run_trials(study, objective, timeout=timeout, keep_on_oom=keep_on_oom,
                      max_fail_streak=max_fail_streak(cfg))


# ---------------------------------------------------------------- local worker processes


@dataclass
class WorkerPool:
    """Local worker processes, one per slot, each pinned to its GPU (or to none on CPU)."""

    procs: list[subprocess.Popen]
    slots: list[WorkerSlot]

    def wait(self, timeout: float | None = None) -> list[int]:
        deadline = None if timeout is None else time.monotonic() + timeout
        codes = []
        for p in self.procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                codes.append(p.wait(left))
            except subprocess.TimeoutExpired:
                p.terminate()
                codes.append(p.wait(30))
        return codes

    def terminate(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def worker_command(study_name: str, storage_url: str, slot: WorkerSlot,
                   timeout: float | None = None, heartbeat_interval: int | None = None
                   ) -> list[str]:
    cmd = [sys.executable, "-m", "seqlab.workers", "--study", study_name, "--storage", storage_url]
    if heartbeat_interval:
        cmd += ["--heartbeat-interval", str(heartbeat_interval)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    if not slot.keep_on_oom:
        cmd.append("--leave-on-oom")
    return cmd


def spawn_workers(study_name: str, storage_url: str, slots: list[WorkerSlot],
                  timeout: float | None = None, heartbeat_interval: int | None = None
                  ) -> WorkerPool:
    threads = cpu_threads_per_worker(len(slots))
    procs = []
    for slot in slots:
        env = {**os.environ, **slot.env(), "OMP_NUM_THREADS": str(threads),
               "SEQLAB_WORKER_RANK": str(slot.rank)}
        cmd = worker_command(study_name, storage_url, slot, timeout, heartbeat_interval)
        procs.append(subprocess.Popen(cmd, env=env))
    return WorkerPool(procs, slots)


def _failure_summary(study: optuna.Study) -> str:
    reasons = study_summary(study)["fail_reasons"]
    return "; ".join(dict.fromkeys(reasons.values())) or "no failed trials recorded"


def tune_with_workers(study: optuna.Study, cfg: PipelineConfig, objective: Objective) -> dict[str, Any]:
    """Top the study up to ``n_trials`` with the configured workers; returns what was done."""
    t = cfg.tune
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
        run_trials(study, objective, timeout=t.timeout, max_fail_streak=max_fail_streak(cfg))
    else:
        mode = f"{len(slots)} worker processes"
        pool = spawn_workers(study.study_name, t.storage, slots, t.timeout, t.heartbeat_interval)
        try:
            codes = pool.wait()
        except BaseException:
            pool.terminate()
            raise
        reaped += reap_dead_trials(study, t.heartbeat_interval)  # trials of crashed workers
        if any(codes) and finished_count(study) < t.n_trials:
            raise TuningError(f"tuning workers exited with codes {codes} with "
                              f"{finished_count(study)}/{t.n_trials} trials finished; "
                              f"failures: {_failure_summary(study)}")
    return {"mode": mode, "workers": len(slots), "orphaned_failed": sorted(reaped),
            "finished_before": before, "finished_after": finished_count(study)}


def tune_study(cfg: PipelineConfig, series: Any, tracking: dict[str, str] | None = None) -> dict[str, Any]:
    """Create or resume the study, top it up to ``n_trials``, return its summary and best params."""
    if cfg.tune.n_trials == 0:  # train the configured parameters: no study to touch
        return {"study": cfg.study_name, "trials": {}, "best_trial": None, "best_value": None,
                "best_params": {}, "fail_reasons": {}, "mode": "no tuning", "workers": 0,
                "orphaned_failed": [], "finished_before": 0, "finished_after": 0,
                "running_trials": []}
    storage = make_storage(cfg.tune.storage, cfg.tune.heartbeat_interval)
    study = make_study(cfg, storage)
    publish(study, cfg, series.digest, tracking)
    objective = Objective(cfg, series, cfg.tune.n_trials, tracking_from_dict(tracking))
    done = tune_with_workers(study, cfg, objective)
    summary = study_summary(study)
    summary.update(done)
    summary["best_params"] = best_params(study)
    summary["running_trials"] = sorted(
        t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )
    return summary


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends the running trial like Ctrl-C: trial FAIL, its MLflow run KILLED."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="seqlab-worker", description="Join a seqlab tuning study.")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--timeout", type=float, default=None,
                   help="stop launching trials after this many seconds")
    p.add_argument("--heartbeat-interval", type=int, default=None,
                   help="seconds between trial heartbeats (default: the study's)")
    p.add_argument("--leave-on-oom", action="store_true",
                   help="leave after a CUDA out-of-memory error (extra workers sharing a GPU)")
    p.add_argument("--wait-for-study", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for `seqlab run` to publish the study")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    _interrupt_on_sigterm()
    try:
        done = run_worker(a.study, a.storage, a.timeout, not a.leave_on_oom, a.heartbeat_interval,
                          a.wait_for_study)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TuningError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_TUNING_ERROR
    except KeyboardInterrupt:
        log.info("interrupted")
        return EXIT_INTERRUPTED
    log.info("finished %d trial(s) of study %s", done, a.study)
    return 0


if __name__ == "__main__":
    sys.exit(main())
