"""Tuning workers: in this process, as local processes pinned to GPU slots, or on other hosts.

A worker needs only the study's name and storage: the config, data digest and MLflow parent
run are stored on the study by the pipeline (see :func:`seqlab.tune.publish`). Run one with
``seqlab tune-worker --study NAME --storage URL`` or ``python -m seqlab.workers ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import optuna

from seqlab.config import PipelineConfig, build_config
from seqlab.devices import WorkerSlot, cpu_threads_per_worker, plan_slots
from seqlab.tune import (
    ATTR_CONFIG,
    ATTR_DIGEST,
    ATTR_TRACKING,
    Objective,
    TrialTracking,
    fail_orphaned_trials,
    finished_count,
    load_study,
    make_storage,
    run_trials,
    wait_for_trials,
)

log = logging.getLogger("seqlab.workers")


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
               keep_on_oom: bool = True, heartbeat_interval: int = 10) -> int:
    storage = make_storage(storage_url, heartbeat_interval)
    study = load_study(study_name, storage)
    objective = objective_for_study(study)
    return run_trials(study, objective, timeout=timeout, keep_on_oom=keep_on_oom)


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


def spawn_workers(study_name: str, storage_url: str, slots: list[WorkerSlot],
                  timeout: float | None = None, heartbeat_interval: int = 10) -> WorkerPool:
    threads = cpu_threads_per_worker(len(slots))
    procs = []
    first_on_gpu: set[int | None] = set()
    for slot in slots:
        env = {**os.environ, **slot.env(), "OMP_NUM_THREADS": str(threads),
               "SEQLAB_WORKER_RANK": str(slot.rank)}
        keep = slot.gpu not in first_on_gpu
        first_on_gpu.add(slot.gpu)
        cmd = [sys.executable, "-m", "seqlab.workers", "--study", study_name, "--storage",
               storage_url, "--heartbeat-interval", str(heartbeat_interval)]
        if timeout:
            cmd += ["--timeout", str(timeout)]
        if keep:
            cmd.append("--keep-on-oom")
        procs.append(subprocess.Popen(cmd, env=env))
    return WorkerPool(procs, slots)


def tune_with_workers(study: optuna.Study, cfg: PipelineConfig, objective: Objective) -> dict[str, Any]:
    """Top the study up to ``n_trials`` with the configured workers; returns what was done."""
    t = cfg.tune
    orphaned = fail_orphaned_trials(study)
    before = finished_count(study)
    n_params = None
    slots = plan_slots(t.workers, t.trials_per_gpu, n_params=n_params)
    mode = "in-process"
    if before >= t.n_trials:
        mode = "already complete"
    elif not slots:
        mode = "external workers"
        wait_for_trials(study, t.n_trials, t.wait_timeout)
    elif len(slots) == 1 and slots[0].gpu is None:
        run_trials(study, objective, timeout=t.timeout)
    else:
        mode = f"{len(slots)} worker processes"
        pool = spawn_workers(study.study_name, t.storage, slots, t.timeout, t.heartbeat_interval)
        try:
            codes = pool.wait()
        except BaseException:
            pool.terminate()
            raise
        if any(codes) and finished_count(study) < t.n_trials:
            raise RuntimeError(f"tuning workers exited with codes {codes}; see their logs above")
    return {"mode": mode, "workers": len(slots), "orphaned_failed": orphaned,
            "finished_before": before, "finished_after": finished_count(study)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="seqlab-worker", description="Join a seqlab tuning study.")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--timeout", type=float, default=None)
    p.add_argument("--heartbeat-interval", type=int, default=10)
    p.add_argument("--keep-on-oom", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    try:
        done = run_worker(a.study, a.storage, a.timeout, a.keep_on_oom, a.heartbeat_interval)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log.info("finished %d trial(s) of study %s", done, a.study)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def tune_study(cfg: PipelineConfig, series: Any, tracking: dict[str, str] | None = None) -> dict[str, Any]:
    """Create or resume the study, top it up to ``n_trials``, return its summary and best params."""
    from seqlab.tune import best_params, make_study, publish, study_summary

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
