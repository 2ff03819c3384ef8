"""The training flow with local worker processes: trials in other processes nest under the
parent run."""

from __future__ import annotations

import os

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows.training import training_pipeline

pytestmark = pytest.mark.integration


def test_trials_in_worker_processes_are_nested_child_runs(tmp_path, prefect_harness) -> None:
    summary = training_pipeline(
        DEFAULT_CONFIG,
        tiny_overrides(
            tmp_path, **{"tune.workers": 2, "tune.n_trials": 3, "tune.study_name": "procs"}
        ),
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    parent = client.get_run(summary.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    # The study is named <tune.study_name>-<fingerprint>; the summary names it.
    assert summary.study.startswith("procs-")
    study = optuna.load_study(study_name=summary.study, storage=f"sqlite:///{tmp_path}/optuna.db")
    finished = [t for t in study.trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(finished) == 3 and summary.trials_finished == 3
    assert {t.user_attrs["mlflow_run_id"] for t in finished} <= {c.info.run_id for c in children}
    workers = {c.data.tags["seqlab.worker"] for c in children}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)  # other processes
    assert all(c.info.status in ("FINISHED", "FAILED") for c in children)
    assert summary.version == "1"
