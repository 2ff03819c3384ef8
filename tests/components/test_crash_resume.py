"""A worker SIGKILLed mid-trial: the next pipeline run fails its trial and run, and tops up.

Real processes and stores: a worker process (``tests/fault_worker.py``, the real worker with
slow trials) on an SQLite Optuna study published by the pipeline code, trials as MLflow child
runs in a temporary SQLite store.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import FAULT_WORKER, worker_env
from seqlab.pipeline import ingest, validate_data
from seqlab.registry import tracking
from seqlab.tuning import storage
from seqlab.tuning.tracked import tune_under_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_sigkilled_worker_is_recovered_by_the_next_pipeline_run(tiny_config):
    cfg2, cfg4 = (tiny_config(**{"tune.n_trials": n, "tune.heartbeat_interval": 2}) for n in (2, 4))
    series = validate_data(ingest(cfg2), cfg2)

    # Run 1 of the pipeline finishes two trials.
    run1 = tracking.start_pipeline_run(cfg2, series)
    first = tune_under_run(cfg2, series, run1)
    tracking.end_run(run1)
    assert first.finished_after == 2
    # tune.n_trials is not part of the study's identity: asking for more tops up the same study.
    assert first.study == storage.study_name_for(cfg4, series.digest)
    study = storage.load_study(first.study, storage.make_storage(cfg4.tune.storage))
    kept = {t.number: (t.value, t.params) for t in study.get_trials()}

    # Run 2 asks for four and waits for external workers; one joins and is killed mid-trial.
    run2 = tracking.start_pipeline_run(cfg4, series)
    storage.publish(study, cfg4, series.digest, run2.trial_spec())
    worker = subprocess.Popen(  # a slow trial, to be caught
        [
            sys.executable,
            FAULT_WORKER,
            "*:stall=3",
            "--study",
            first.study,
            "--storage",
            cfg4.tune.storage,
        ],
        env=worker_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
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
    summary = tune_under_run(cfg4, series, run3)
    for run in (run2, run3):
        tracking.end_run(run)

    assert summary.study == first.study and not summary.created
    assert summary.finished_before == 2
    trials = storage.load_study(summary.study, storage.make_storage(cfg4.tune.storage)).get_trials()
    assert summary.orphaned_failed == [victim.number]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    killed = trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"].startswith("worker process died")
    assert sum(t.state in storage.FINISHED for t in trials) == 4 == summary.finished_after
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
