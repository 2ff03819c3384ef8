"""Distributed tuning on PostgreSQL: the pipeline waits (tune.workers=0), two workers fill it.

Needs the PostgreSQL server at 127.0.0.1:5432 (user postgres, trust auth; override with
``SEQLAB_TEST_PG``, a libpq URL without database); skipped when it cannot be reached. The test
creates its own database and drops it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import sine_frame
from seqlab import tracking, tune
from seqlab.config import build_config
from seqlab.pipeline import ingest, validate_data
from seqlab.workers import tune_study

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(240)]

SERVER = os.environ.get("SEQLAB_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
       "DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1"}
N_TRIALS = 6


@pytest.fixture
def pg_url():
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(f"{SERVER}/postgres", connect_timeout=3)
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {SERVER}: {str(e).strip()}")
    admin.autocommit = True
    name = f"seqlab_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"
    finally:
        with admin.cursor() as cur:  # pooled connections of this process may still be open
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def tiny_config(tmp_path, storage: str):
    csv = tmp_path / "sine.csv"
    sine_frame(n=90).to_csv(csv, index=False)
    return build_config({
        "data": {"source": str(csv), "time_column": "ds", "target": "y", "freq": "D"},
        "window": {"input_size": 14, "horizon": 7},
        "model": {"cell": "gru", "hidden_size": 4},
        "train": {"max_epochs": 3, "patience": None, "device": "cpu", "num_threads": 1},
        "tune": {"n_trials": N_TRIALS, "storage": storage, "n_startup_trials": 2,
                 "workers": 0, "wait_timeout": 180, "heartbeat_interval": 2,
                 "search_space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2,
                                               "log": True}}},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                     "artifact_location": str(tmp_path / "artifacts")},
    })


def test_two_workers_fill_the_study_exactly_with_nested_runs(tmp_path, pg_url):
    cfg = tiny_config(tmp_path, pg_url)
    series = validate_data(ingest(cfg), cfg)
    parent = tracking.start_pipeline_run(cfg, series)
    storage = tune.make_storage(pg_url)  # creates the schema once, before anyone races for it

    # The pipeline side, as flows/training.py's tune task runs it, waits for external workers.
    outcome: dict = {}

    def pipeline() -> None:
        spec = {"tracking_uri": parent.tracking_uri, "experiment_id": parent.experiment_id,
                "parent_run_id": parent.run_id}
        try:
            summary = tune_study(cfg, series, spec)
            tracking.fail_dangling_trial_runs(parent.tracking_uri, parent.experiment_id,
                                              summary["study"], set(summary["running_trials"]))
            outcome["summary"] = summary
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = e

    waiting = threading.Thread(target=pipeline, daemon=True)
    waiting.start()
    deadline = time.monotonic() + 60
    while tune.ATTR_TRACKING not in _study_attrs(cfg.study_name, storage):
        assert waiting.is_alive(), outcome
        assert time.monotonic() < deadline, "the pipeline never published the study"
        time.sleep(0.2)

    # Two workers on the study, through both entry points; each trial stalls a little so the
    # two really overlap.
    env = {**os.environ, **ENV, tune.FAULTS_ENV: "*:stall=0.3"}
    args = ["--study", cfg.study_name, "--storage", pg_url]
    procs = [
        subprocess.Popen([sys.executable, "-m", "seqlab.workers", *args], env=env,
                         stderr=subprocess.PIPE, text=True),
        subprocess.Popen([sys.executable, "-m", "seqlab.cli", "tune-worker", *args], env=env,
                         stderr=subprocess.PIPE, text=True),
    ]
    try:
        logs = [p.communicate(timeout=180)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], logs
    waiting.join(60)
    assert not waiting.is_alive() and "error" not in outcome, outcome
    assert outcome["summary"]["finished_after"] == N_TRIALS
    assert outcome["summary"]["mode"] == "external workers"

    study = tune.load_study(cfg.study_name, storage)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in tune.FINISHED]
    assert len(finished) == N_TRIALS
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # The only failures allowed are surplus trials from a race at the very end.
    assert all(t.user_attrs.get("surplus") for t in trials if t.state == TrialState.FAIL)
    assert len({t.params["train.lr"] for t in finished}) == N_TRIALS  # no repeated parameters

    client = MlflowClient(parent.tracking_uri)
    children = tracking.child_runs(parent)
    numbers = [r.data.tags["optuna.trial_number"] for r in children]
    assert len(numbers) == len(set(numbers))  # one run per trial, none twice
    assert set(numbers) == {str(t.number) for t in trials if "mlflow_run_id" in t.user_attrs}
    assert {str(t.number) for t in finished} <= set(numbers)
    assert all(r.info.status == "FINISHED" for r in children)
    assert {r.info.run_id for r in children} == {t.user_attrs["mlflow_run_id"] for t in finished}
    owners = {r.data.tags["seqlab.worker"] for r in children}
    assert len(owners) == 2, f"expected both workers to run trials, got {owners}"
    assert client.get_run(parent.run_id).info.status == "RUNNING"  # the flow ends it later
    tracking.end_run(parent)


def _study_attrs(name: str, storage) -> dict:
    try:
        return tune.load_study(name, storage).user_attrs
    except ValueError:
        return {}
