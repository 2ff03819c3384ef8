"""A worker SIGKILLed mid-trial: the next pipeline run fails its trial and run, and tops up.

Real processes and stores: a ``python -m seqlab.workers`` process on an SQLite Optuna study
published by the pipeline code, trials as MLflow child runs in a temporary SQLite store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import sine_frame
from seqlab import tracking, tune
from seqlab.config import build_config
from seqlab.pipeline import ingest, validate_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
       "DO_NOT_TRACK": "true", "OMP_NUM_THREADS": "1"}


def tiny_config(tmp_path, n_trials: int):
    csv = tmp_path / "sine.csv"
    if not csv.exists():
        sine_frame(n=90).to_csv(csv, index=False)
    return build_config({
        "data": {"source": str(csv), "time_column": "ds", "target": "y", "freq": "D"},
        "window": {"input_size": 14, "horizon": 7},
        "model": {"cell": "gru", "hidden_size": 4},
        "train": {"max_epochs": 3, "patience": None, "device": "cpu", "num_threads": 1},
        "tune": {"n_trials": n_trials, "storage": f"sqlite:///{tmp_path}/optuna.db",
                 "n_startup_trials": 2, "workers": 1, "heartbeat_interval": 2,
                 "search_space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2,
                                               "log": True}}},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                     "artifact_location": str(tmp_path / "artifacts")},
    })


def test_sigkilled_worker_is_recovered_by_the_next_pipeline_run(tmp_path):
    cfg2, cfg4 = tiny_config(tmp_path, 2), tiny_config(tmp_path, 4)
    series = validate_data(ingest(cfg2), cfg2)

    # Run 1 of the pipeline finishes two trials.
    run1 = tracking.start_pipeline_run(cfg2, series)
    first = tracking.tune_under_run(cfg2, series, run1)
    tracking.end_run(run1)
    assert first["finished_after"] == 2
    storage = tune.make_storage(cfg4.tune.storage)
    study = tune.load_study(cfg4.study_name, storage)
    kept = {t.number: (t.value, t.params) for t in study.get_trials()}

    # Run 2 asks for four and waits for external workers; one joins and is killed mid-trial.
    run2 = tracking.start_pipeline_run(cfg4, series)
    spec = run2.trial_spec()
    tune.publish(study, cfg4, series.digest, spec)
    env = {**os.environ, **ENV, tune.FAULTS_ENV: "*:stall=3"}  # a slow trial, to be caught
    worker = subprocess.Popen(
        [sys.executable, "-m", "seqlab.workers", "--study", cfg4.study_name,
         "--storage", cfg4.tune.storage], env=env, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(run2.tracking_uri)
    try:
        deadline = time.monotonic() + 90
        victim = None
        while victim is None:
            assert worker.poll() is None, f"worker exited early: {worker.stderr.read()}"
            assert time.monotonic() < deadline, "the worker never got into a trial"
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if running and "mlflow_run_id" in running[0].user_attrs:
                victim = running[0]
            else:
                time.sleep(0.1)
        assert client.get_run(victim.user_attrs["mlflow_run_id"]).info.status == "RUNNING"
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.stderr.close()
    assert study.trials[victim.number].state == TrialState.RUNNING  # stuck, for now

    # Run 3, as the next `seqlab run` would: reap the dead worker's trial, top the study up.
    run3 = tracking.start_pipeline_run(cfg4, series)
    summary = tracking.tune_under_run(cfg4, series, run3)
    for run in (run2, run3):
        tracking.end_run(run)

    trials = tune.load_study(cfg4.study_name, tune.make_storage(cfg4.tune.storage)).get_trials()
    assert summary["orphaned_failed"] == [victim.number]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"].startswith("worker process died")
    assert sum(t.state in tune.FINISHED for t in trials) == 4 == summary["finished_after"]
    assert {t.number: (t.value, t.params) for t in trials if t.number in kept} == kept

    runs = client.search_runs([run3.experiment_id], max_results=1000)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    dead_run = client.get_run(killed.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED"
    assert dead_run.data.tags["seqlab.fail_reason"] == "worker process died"
    assert dead_run.data.tags[tracking.PARENT_TAG] == run2.run_id
    # One child run per trial that opened one, each under the run that was tuning then.
    trial_runs = [r for r in runs if tracking.PARENT_TAG in r.data.tags]
    numbers = [r.data.tags["optuna.trial_number"] for r in trial_runs]
    opened = {str(t.number) for t in trials if "mlflow_run_id" in t.user_attrs}
    assert sorted(numbers) == sorted(opened)
