"""A run given a time budget: tuning, the evaluated fit and the served refit stop in time, and
every trial and run ends cleanly. Trials here would train 100,000 epochs without the budget, so
a run that finishes at all was cut; no assertion depends on how fast the machine is."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows.training import training_pipeline
from seqlab.registry import serving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
EPOCHS = 100_000


def test_a_budgeted_run_cuts_its_trials_and_fits_and_ends_cleanly(tmp_path, prefect_harness):
    overrides = tiny_overrides(
        tmp_path,
        **{
            "time_budget": 16,
            "train.max_epochs": EPOCHS,
            "model.ensemble_size": 3,
            "registry.require_beat_baseline": False,
        },
    )
    summary = training_pipeline(DEFAULT_CONFIG, overrides)

    storage = f"sqlite:///{tmp_path}/optuna.db"
    (study_summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=study_summary.study_name, storage=storage).trials
    assert trials and all(t.state == TrialState.COMPLETE for t in trials)  # none left RUNNING
    cut = [t for t in trials if t.user_attrs.get("cut_at_deadline")]
    assert cut and all(t.user_attrs["epochs"] < EPOCHS for t in cut)
    assert any(line.startswith(f"trial {cut[0].number} stopped") for line in summary.budget)

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    parent = client.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    runs = client.search_runs([parent.info.experiment_id])
    assert all(r.info.status == "FINISHED" for r in runs)  # every trial run closed
    assert "time budget: trial" in parent.data.tags["mlflow.note.content"]

    # The served model repeats the evaluated recipe: the members kept, the same steps.
    served = serving.load_forecaster(client, summary.model_name, summary.version)
    fitted = served.unwrap_python_model().forecaster
    kept = int(parent.data.metrics["final/ensemble_size"])
    config = mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/config.json")
    assert 1 <= kept <= 3 and fitted.ensemble_size == kept == config["model"]["ensemble_size"]
    assert fitted.steps == int(parent.data.metrics["final/steps"])
    if kept < 3:
        assert any("the ensemble keeps" in line for line in summary.budget)
