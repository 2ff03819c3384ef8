"""The same seed and data on the same machine give the same result: two tiny runs in fresh
stores tune to the same trials and parameters and score the same backtest to the last digit."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows.training import training_pipeline

pytestmark = pytest.mark.integration


def _trials(tmp) -> list[tuple]:
    storage = f"sqlite:///{tmp}/optuna.db"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return [(t.params, t.value, t.state) for t in study.trials]


def test_a_tiny_run_is_deterministic_for_a_given_seed(tmp_path_factory, prefect_harness) -> None:
    extra = {"tune.n_trials": 3, "model.ensemble_size": 2, "registry.require_beat_baseline": False}
    extra["tune.search_space"] = (
        "{model.cell: {type: categorical, choices: [lstm, gru]}, "
        "train.lr: {type: float, low: 0.001, high: 0.02, log: true}}"
    )
    runs = []
    for name in ("first", "second"):
        tmp = tmp_path_factory.mktemp(name)
        summary = training_pipeline(DEFAULT_CONFIG, tiny_overrides(tmp, **extra))
        uri = f"sqlite:///{tmp}/mlflow.db"
        run = MlflowClient(uri).get_run(summary.run_id)
        runs.append((summary, _trials(tmp), run.data.metrics))
    (a, trials_a, metrics_a), (b, trials_b, metrics_b) = runs
    assert trials_a == trials_b and len(trials_a) == 3
    assert a.trained_params == b.trained_params
    assert a.metrics == b.metrics  # every backtest figure, exactly
    assert metrics_a["final/steps"] == metrics_b["final/steps"]
    for key in ("test/mase", "test/coverage_80", "backtest/mase"):
        assert metrics_a.get(key) == metrics_b.get(key), key
    other = tmp_path_factory.mktemp("other-seed")
    c = training_pipeline(DEFAULT_CONFIG, tiny_overrides(other, **extra, **{"train.seed": 7}))
    assert c.metrics["test/mase"] != a.metrics["test/mase"]  # the seed is what decides
