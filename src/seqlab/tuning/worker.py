"""A tuning worker: join a published study and run trials until it holds ``n_trials``.

A worker needs only the study's name and storage: the config, data digest and MLflow parent
run are stored on the study by the pipeline (:func:`seqlab.tuning.storage.publish`). Run one
with ``seqlab tune-worker --study NAME --storage URL`` or ``python -m seqlab.tuning.worker``;
NAME may be a study's base name, meaning the newest study of that name.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
import time
import zlib
from typing import Any

import optuna

from seqlab.config import PipelineConfig, build_config
from seqlab.tuning.objective import CallbackFactory, Objective, TrialTracking
from seqlab.tuning.runner import DEFAULT_MAX_FAIL_STREAK, TuningError, run_trials
from seqlab.tuning.storage import (
    ATTR_CONFIG,
    ATTR_DIGEST,
    ATTR_TRACKING,
    finished_count,
    load_study,
    make_storage,
    resolve_study_name,
)

log = logging.getLogger("seqlab.tuning")

EXIT_USER_ERROR = 2  # bad config, data or study name: fix and rerun
EXIT_TUNING_ERROR = 3  # trials keep failing (fail-streak guard)
EXIT_INTERRUPTED = 130


def max_fail_streak(cfg: PipelineConfig) -> int:
    return int(cfg.tune.max_fail_streak or DEFAULT_MAX_FAIL_STREAK)


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
        from seqlab.registry.tracking import MlflowTrialTracking
    except ImportError:  # a GPU host with only torch/optuna: trials still run, untracked
        log.warning("mlflow is not installed here: trials will not be logged as MLflow runs")
        return None
    return MlflowTrialTracking(**spec)


def objective_for_study(
    study: optuna.Study, extra_callbacks: CallbackFactory | None = None
) -> Objective:
    """Rebuild the objective from what the pipeline published on the study."""
    from seqlab.pipeline import ingest, validate_data

    attrs = study.user_attrs
    if ATTR_CONFIG not in attrs:
        raise ValueError(
            f"study {study.study_name!r} was not created by seqlab (no config attached)"
        )
    cfg = build_config(attrs[ATTR_CONFIG])
    series = validate_data(ingest(cfg), cfg)
    if attrs.get(ATTR_DIGEST) and series.digest != attrs[ATTR_DIGEST]:
        raise ValueError(
            f"data at {cfg.data.source} differs from the study's (digest {series.digest[:12]} != "
            f"{attrs[ATTR_DIGEST][:12]}); give this host the same data file"
        )
    return Objective(
        cfg,
        series,
        cfg.tune.n_trials,
        tracking_from_dict(attrs.get(ATTR_TRACKING)),
        extra_callbacks,
    )


def study_ready(study: optuna.Study, by_base_name: bool = False) -> bool:
    """Published by the pipeline (and, joined by base name, not complete yet)."""
    config = study.user_attrs.get(ATTR_CONFIG)
    if config is None:
        return False
    return not by_base_name or finished_count(study) < int(config["tune"]["n_trials"])


def await_study(
    name: str, storage: optuna.storages.BaseStorage, timeout: float = 0.0, poll: float = 1.0
) -> optuna.Study:
    """Load a study published by the pipeline, waiting up to ``timeout`` s for it to appear.

    Waiting lets a scheduler start workers and the pipeline together, in any order. Joined by
    its base name, the newest study counts only while it still needs trials: a complete one is
    an earlier run's (yesterday's data), and the worker waits for today's.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            resolved = resolve_study_name(storage, name)
            study = load_study(resolved, storage)
            if study_ready(study, by_base_name=resolved != name) or time.monotonic() >= deadline:
                return study
        except ValueError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(poll)


def run_worker(
    study_name: str,
    storage_url: str,
    timeout: float | None = None,
    keep_on_oom: bool = True,
    heartbeat_interval: int | None = None,
    wait_for_study: float = 0.0,
    extra_callbacks: CallbackFactory | None = None,
    deadline: float | None = None,
) -> int:
    """Join a study: run trials until it holds ``n_trials``; returns how many this worker ran.

    The heartbeat interval defaults to the study's ``tune.heartbeat_interval``. No trial starts
    after ``timeout`` seconds or ``deadline`` (``time.time()``), and the running one stops
    there with its best so far.
    """
    published = await_study(study_name, make_storage(storage_url), wait_for_study)
    objective = objective_for_study(published, extra_callbacks)
    if timeout is not None:
        deadline = min(deadline or math.inf, time.time() + timeout)
    objective.deadline = deadline
    cfg = objective.cfg
    interval = heartbeat_interval or cfg.tune.heartbeat_interval
    objective.heartbeat_interval = interval
    study = load_study(
        published.study_name, make_storage(storage_url, interval), cfg, worker_seed_offset()
    )
    log.info("joined study %s", study.study_name)
    return run_trials(
        study,
        objective,
        timeout=None if deadline is None else max(0.0, deadline - time.time()),
        keep_on_oom=keep_on_oom,
        max_fail_streak=max_fail_streak(cfg),
    )


def interrupt_on_sigterm() -> None:
    """SIGTERM ends the running trial like Ctrl-C: trial FAIL, its MLflow run KILLED."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None, extra_callbacks: CallbackFactory | None = None) -> int:
    p = argparse.ArgumentParser(prog="seqlab-worker", description="Join a seqlab tuning study.")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument(
        "--timeout", type=float, default=None, help="stop launching trials after this many seconds"
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        metavar="EPOCH_SECONDS",
        help="stop at this time.time() (the run's time budget): running trials keep their best",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=int,
        default=None,
        help="seconds between trial heartbeats (default: the study's)",
    )
    p.add_argument(
        "--leave-on-oom",
        action="store_true",
        help="leave after a CUDA out-of-memory error (extra workers sharing a GPU)",
    )
    p.add_argument(
        "--wait-for-study",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for `seqlab run` to publish the study",
    )
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    interrupt_on_sigterm()
    try:
        done = run_worker(
            a.study,
            a.storage,
            a.timeout,
            not a.leave_on_oom,
            a.heartbeat_interval,
            a.wait_for_study,
            extra_callbacks,
            a.deadline,
        )
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
