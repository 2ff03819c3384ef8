"""Distributed tuning on PostgreSQL: the pipeline waits (tune.workers=0), two workers fill it.

Needs the PostgreSQL server at 127.0.0.1:5432 (user postgres, trust auth; override with
``SEQLAB_TEST_PG``, a libpq URL without database); skipped when it cannot be reached. The test
creates its own database and drops it afterwards.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from optuna.trial import TrialState

from conftest import FAULT_WORKER, open_storage_at_once, worker_env
from seqlab.pipeline import ingest, validate_data
from seqlab.registry import tracking
from seqlab.tuning import storage as tuning_storage
from seqlab.tuning.tracked import tune_under_run

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(240)]

N_TRIALS = 4


def test_two_workers_fill_the_study_exactly_with_nested_runs(tiny_config, pg_url):
    cfg = tiny_config(
        **{
            "tune.n_trials": N_TRIALS,
            "tune.storage": pg_url,
            "tune.workers": 0,
            "tune.wait_timeout": 180,
            "tune.heartbeat_interval": 2,
        }
    )
    # Creates the schema once, before anyone races for it.
    storage = tuning_storage.make_storage(pg_url)

    # Two workers, started with the pipeline as a scheduler would: they wait for the study,
    # knowing only its base name (the pipeline names it <base>-<fingerprint>).
    # Each trial stalls a little so that the two really overlap.
    env = worker_env()
    cmd = [
        sys.executable,
        FAULT_WORKER,
        "*:stall=0.2",
        "--study",
        cfg.study_name,
        "--storage",
        pg_url,
        "--wait-for-study",
        "120",
    ]
    procs = [subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        series = validate_data(ingest(cfg), cfg)
        parent = tracking.start_parent_run(cfg, {"seqlab.data_digest": series.digest})
        # The pipeline side, as flows/training.py's tune task runs it (tune.workers=0: it waits).
        summary = tune_under_run(cfg, series, parent)
        logs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], logs
    assert summary.mode == "external workers" and summary.finished_after == N_TRIALS
    assert summary.study == tuning_storage.study_name_for(cfg, series.digest)
    assert tuning_storage.resolve_study_name(storage, cfg.study_name) == summary.study

    trials = tuning_storage.load_study(summary.study, storage).get_trials()
    finished = [t for t in trials if t.state in tuning_storage.FINISHED]
    assert len(finished) == N_TRIALS
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # The only failures allowed are surplus trials from a race at the very end.
    assert all(t.user_attrs.get("surplus") for t in trials if t.state == TrialState.FAIL)
    assert len({t.params["train.lr"] for t in finished}) == N_TRIALS  # no repeated parameters

    children = tracking.child_runs(parent)
    numbers = [r.data.tags["optuna.trial_number"] for r in children]
    assert len(numbers) == len(set(numbers))  # one run per trial, none twice
    assert set(numbers) == {str(t.number) for t in finished}
    assert {r.info.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in finished}
    assert all(r.info.status == "FINISHED" for r in children)
    assert all(r.data.tags[tracking.PARENT_TAG] == parent.run_id for r in children)
    owners = {r.data.tags["seqlab.worker"] for r in children}
    assert len(owners) == 2, f"expected both workers to run trials, got {owners}"
    tracking.end_run(parent)


def test_processes_opening_a_new_postgres_storage_at_once_all_succeed(pg_url, tmp_path) -> None:
    results = open_storage_at_once(pg_url, tmp_path)
    assert [code for code, _ in results] == [0] * len(results), [e for _, e in results]
    assert tuning_storage.make_storage(pg_url).get_all_studies() == []
