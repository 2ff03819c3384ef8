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
import zlib
from dataclasses import dataclass
from typing import Any

import optuna

from seqlab.config import PipelineConfig, build_config
from seqlab.devices import WorkerSlot, cpu_threads_per_worker, plan_slots
from seqlab.tune import (
    ATTR_CONFIG,
    ATTR_DIGEST,
    ATTR_TRACKING,
    DEFAULT_MAX_FAIL_STREAK,
    Objective,
    TrialTracking,
    TuningError,
    best_params,
    finished_count,
    largest_model_params,
    load_study,
    make_storage,
    make_study,
    publish,
    reap_dead_trials,
    run_trials,
    study_summary,
    wait_for_trials,
)

log = logging.getLogger("seqlab.workers")

EXIT_USER_ERROR = 2  # bad config, data or study name: fix and rerun
EXIT_TUNING_ERROR = 3  # trials keep failing (fail-streak guard)
EXIT_INTERRUPTED = 130


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


def run_worker(study_name: str, storage_url: str, timeout: float | None = None,
               keep_on_oom: bool = True, heartbeat_interval: int | None = None) -> int:
    """Join a study: run trials until it holds ``n_trials``; returns how many this worker ran.

    The heartbeat interval defaults to the study's ``tune.heartbeat_interval``.
    """
    objective = objective_for_study(load_study(study_name, make_storage(storage_url)))
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
                  timeout: float | None = None, heartbeat_interval: int | None = None) -> WorkerPool:
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
        t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
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
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    _interrupt_on_sigterm()
    try:
        done = run_worker(a.study, a.storage, a.timeout, not a.leave_on_oom, a.heartbeat_interval)
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
