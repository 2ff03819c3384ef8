"""The whole training flow on a real Prefect (test harness), MLflow (SQLite) and Optuna (SQLite)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows.cli import app
from flows.forecast import forecast_flow
from flows.training import training_pipeline
from seqlab import registry
from seqlab.data import DataError
from seqlab.registry import RegistryError

pytestmark = pytest.mark.integration
NAME = "seqlab-airpassengers"


# The tiny model need not beat seasonal naive here: the baseline gate has its own tests.
GATE_OFF = {"registry.require_beat_baseline": False}


def _client(tmp: Path) -> MlflowClient:
    uri = f"sqlite:///{tmp}/mlflow.db"
    return MlflowClient(uri, registry_uri=uri)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, prefect_harness):
    tmp = tmp_path_factory.mktemp("flow")
    summary = training_pipeline(DEFAULT_CONFIG, tiny_overrides(tmp, **GATE_OFF))
    return tmp, summary


def test_parent_run_nested_trials_metrics_and_artifacts(first_run) -> None:
    tmp, summary = first_run
    client = _client(tmp)
    parent = client.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["model.hidden_size"] == "8"
    # The parent shows what was trained: the tuned cell as param, in config.json and the name.
    assert parent.data.params["model.cell"] == summary.cell == summary.trained_params["model.cell"]
    # what differs first, short enough for the runs table's name column
    assert (
        parent.info.run_name
        == f"{summary.cell}-mase{summary.metrics['test/mase']:.3f}-airpassengers"
    )
    trials = [
        r
        for r in client.search_runs([parent.info.experiment_id])
        if r.info.run_id != parent.info.run_id
    ]
    assert trials and all(
        re.fullmatch(r"trial-\d{3}-(pruned-)?val\d+\.\d{3}", t.info.run_name) for t in trials
    ), [t.info.run_name for t in trials]
    config = mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/config.json")
    assert config["model"]["cell"] == summary.cell and config["model"]["hidden_size"] == 8
    assert "seasonal_naive" in parent.data.tags["mlflow.note.content"]
    assert len(parent.data.tags["seqlab.data_digest"]) == 64
    assert parent.data.tags["seqlab.trigger"] == "manual"
    assert "prefect.flow_run_id" in parent.data.tags
    for key in (
        "test/mae",
        "test/rmse",
        "test/smape",
        "test/mase",
        "test/naive/mase",
        "test/seasonal_naive/mase",
    ):
        assert key in parent.data.metrics, key
    assert parent.inputs.dataset_inputs[0].dataset.digest
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/backtest.png" in artifacts
    tables = {a.path for a in client.list_artifacts(parent.info.run_id, "backtest")}
    assert {"backtest/cross_validation.csv", "backtest/per_window.csv"} <= tables
    # Explanations: permutation importance, an attribution, the study's history (one searched
    # parameter: no importances); the most important input group as a tag.
    explained = {a.path for a in client.list_artifacts(parent.info.run_id, "explain")}
    assert {
        "explain/permutation_importance.csv",
        "explain/permutation_importance.png",
        "explain/attribution.json",
        "explain/attribution.png",
        "explain/optimization_history.png",
    } <= explained
    assert parent.data.tags["seqlab.top_feature"].startswith("passengers lag")
    # One value per backtest window, the window index as step; the mean is test/mase.
    per_window = client.get_metric_history(parent.info.run_id, "backtest/mase")
    assert sorted(m.step for m in per_window) == [0, 1, 2]
    assert summary.metrics["test/mase"] == pytest.approx(np.mean([m.value for m in per_window]))
    assert len(client.get_metric_history(parent.info.run_id, "backtest/seasonal_naive/mase")) == 3

    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["model.cell"] in ("lstm", "gru")
        assert "val/mase" in child.data.metrics and "train/loss" in child.data.metrics
        history = client.get_metric_history(child.info.run_id, "val/mase")
        assert len(history) == 4  # one point per epoch
    assert sorted(c.data.tags["optuna.trial_number"] for c in children) == ["0", "1"]


def test_prefect_markdown_summary_artifact(first_run) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, summary = first_run
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["seqlab-training-summary"]))
        )
    # One harness serves the whole session: pick this run's artifact among the key's versions.
    texts = [a.data for a in arts if summary.run_id in str(a.data)]
    assert len(texts) == 1, "no summary artifact for this run"
    assert "seasonal_naive" in texts[0] and "version **1**" in texts[0]


def test_registered_with_aliases_and_study(first_run) -> None:
    tmp, summary = first_run
    client = _client(tmp)
    assert summary.version == "1"
    assert registry.alias_version(client, NAME, "champion") == "1"
    assert registry.alias_version(client, NAME, "challenger") == "1"
    mv = client.get_model_version(NAME, "1")
    assert mv.tags["seqlab.promotion.decision"] == "promoted"
    assert float(mv.tags["test/mase"]) == pytest.approx(summary.metrics["test/mase"], rel=1e-4)
    # The served version was refit on the whole history, and says what it saw.
    assert mv.tags["seqlab.served"] == "refit"
    assert mv.tags["seqlab.training_end"].startswith("1960-12-01")
    assert summary.study.startswith("seqlab-airpassengers-")
    study = optuna.load_study(study_name=summary.study, storage=f"sqlite:///{tmp}/optuna.db")
    assert len(study.trials) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all("mlflow_run_id" in t.user_attrs for t in study.trials)


def test_champion_loads_and_forecasts(first_run) -> None:
    tmp, _ = first_run
    from seqlab.registry.serving import load_forecaster

    model = load_forecaster(_client(tmp), NAME, "1")
    hist = pd.read_csv(Path(__file__).parents[2] / "src/seqlab/datasets/airpassengers.csv")
    hist["month"] = pd.to_datetime(hist["month"])
    hist["passengers"] = hist["passengers"].astype(float)
    out = model.predict(hist)
    # the point forecast and its calibrated intervals (80%: q0.1-q0.9; 95% when the backtest
    # holds enough errors for it)
    assert list(out.columns)[:5] == ["unique_id", "ds", "forecast", "q0.1", "q0.9"] or list(
        out.columns
    ) == ["unique_id", "ds", "forecast", "q0.025", "q0.1", "q0.9", "q0.975"]
    assert (out["q0.1"] <= out["forecast"]).all() and (out["forecast"] <= out["q0.9"]).all()
    assert len(out) == 12
    assert out["ds"].iloc[0] == pd.Timestamp("1961-01-01")
    assert out["forecast"].between(200, 900).all()


def test_second_run_resumes_study_and_gate_keeps_equal_champion(first_run) -> None:
    tmp, first = first_run
    summary = training_pipeline(DEFAULT_CONFIG, tiny_overrides(tmp, **GATE_OFF))
    client = _client(tmp)
    assert summary.version == "2"
    assert summary.study == first.study and summary.warm_started_from is None
    study = optuna.load_study(study_name=summary.study, storage=f"sqlite:///{tmp}/optuna.db")
    assert len(study.trials) == 2  # same data and settings: nothing left to tune
    # Same data, same best params, same seed: an exact tie keeps the champion.
    assert summary.metrics["test/mase"] == pytest.approx(first.metrics["test/mase"])
    assert registry.alias_version(client, NAME, "champion") == "1"
    assert registry.alias_version(client, NAME, "challenger") == "2"
    mv = client.get_model_version(NAME, "2")
    assert mv.tags["seqlab.promotion.decision"] == "not_promoted"
    # v1 was refit on all history, so it saw every backtest window: its recipe was retrained.
    assert mv.tags["seqlab.promotion.comparison"].startswith("champion recipe retrained")
    assert float(mv.tags["seqlab.promotion.champion"]) == pytest.approx(
        first.metrics["test/mase"], rel=1e-4
    )
    scores = json.loads(mv.tags["seqlab.promotion.scores"])
    assert scores["windows"] == [0, 1, 2] and len(scores["champion"]) == 3


def test_run_on_changed_data_starts_a_new_warm_started_study(first_run, tmp_path) -> None:
    tmp, first = first_run
    df = pd.read_csv(Path(__file__).parents[2] / "src/seqlab/datasets/airpassengers.csv")
    path = tmp_path / "airpassengers.csv"
    df.head(132).to_csv(path, index=False)  # a year less: another digest, same columns
    summary = training_pipeline(
        DEFAULT_CONFIG,
        tiny_overrides(tmp, **GATE_OFF, **{"data.source": str(path), "registry.register": False}),
    )
    assert summary.study != first.study and summary.warm_started_from == first.study
    study = optuna.load_study(study_name=summary.study, storage=f"sqlite:///{tmp}/optuna.db")
    assert study.trials[0].params == first.trained_params  # the previous best, enqueued first
    assert summary.version is None


def test_batch_forecast_flow_records_run(first_run, tmp_path: Path) -> None:
    tmp, _ = first_run
    src = Path(__file__).parents[2] / "src/seqlab/datasets/airpassengers.csv"
    out = forecast_flow(
        NAME, str(src), str(tmp_path / "fc.parquet"), tracking_uri=f"sqlite:///{tmp}/mlflow.db"
    )
    fc = pd.read_parquet(tmp_path / "fc.parquet")
    assert len(fc) == 12 and out["version"] == "1" and out["alias"] == "champion"
    # in the user's own columns; the default point model's calibrated intervals beside it
    assert list(fc.columns)[:2] == ["month", "passengers"]
    assert fc["month"].iloc[0] == pd.Timestamp("1961-01-01")
    assert {"q0.1", "q0.9"} <= set(fc.columns)
    assert (fc["q0.1"] <= fc["passengers"]).all() and (fc["passengers"] <= fc["q0.9"]).all()
    run = _client(tmp).get_run(out["run_id"])
    assert run.data.tags["seqlab.model_version"] == "1"
    assert run.data.tags["seqlab.model_alias"] == "champion"


def test_batch_forecast_reads_a_history_in_another_encoding(first_run, tmp_path: Path) -> None:
    tmp, _ = first_run
    df = pd.read_csv(Path(__file__).parents[2] / "src/seqlab/datasets/airpassengers.csv")
    df["note"] = "donnée brute"  # a column the model ignores, in latin-1 bytes
    df.to_csv(tmp_path / "latin.csv", index=False, encoding="latin-1")
    uri = f"sqlite:///{tmp}/mlflow.db"
    with pytest.raises(DataError, match="not utf-8 text .*--encoding=latin-1"):
        forecast_flow(NAME, str(tmp_path / "latin.csv"), str(tmp_path / "x.csv"), tracking_uri=uri)
    assert not (tmp_path / "x.csv").exists()
    out = forecast_flow(
        NAME,
        str(tmp_path / "latin.csv"),
        str(tmp_path / "fc.csv"),
        tracking_uri=uri,
        encoding="latin-1",
    )
    assert out["rows"] == 12 and len(pd.read_csv(tmp_path / "fc.csv")) == 12


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda df: df.drop(columns=["passengers"]), "column 'passengers'"),
        (lambda df: df.head(5), "provide at least 12"),
        (lambda df: df.drop(index=[100, 101]), "missing timestamp"),
    ],
)
def test_batch_forecast_rejects_bad_history(first_run, tmp_path: Path, mutate, fragment) -> None:
    tmp, _ = first_run
    df = mutate(pd.read_csv(Path(__file__).parents[2] / "src/seqlab/datasets/airpassengers.csv"))
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=fragment):
        forecast_flow(
            NAME,
            str(tmp_path / "bad.csv"),
            str(tmp_path / "fc.csv"),
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        )
    assert not (tmp_path / "fc.csv").exists()


def test_forecast_unknown_model_names_the_known_ones(first_run, tmp_path: Path) -> None:
    tmp, _ = first_run
    r = CliRunner().invoke(
        app,
        [
            "forecast",
            "seqlab-airpasengers",
            "-i",
            "x.csv",
            "-o",
            str(tmp_path / "fc.csv"),
            "--tracking-uri",
            f"sqlite:///{tmp}/mlflow.db",
        ],
    )
    assert r.exit_code == 2
    assert "no registered model named 'seqlab-airpasengers'" in r.output
    assert "registered models: seqlab-airpassengers" in r.output


def test_forecast_unknown_alias_is_a_clear_error(first_run, tmp_path: Path) -> None:
    tmp, _ = first_run
    with pytest.raises(RegistryError, match="has no alias @production"):
        forecast_flow(
            NAME,
            "x.csv",
            str(tmp_path / "fc.csv"),
            alias="production",
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        )


# ------------------------------------------------------- bad inputs leave the registry alone


def _bad_source(tmp: Path, case: str) -> str:
    df = pd.read_csv(Path(__file__).parents[2] / "src/seqlab/datasets/airpassengers.csv")
    path = tmp / f"{case}.csv"
    if case == "missing":
        return str(tmp / "does-not-exist.csv")
    if case == "empty":
        path.write_text("")
        return str(path)
    if case == "misnamed":
        df = df.rename(columns={"passengers": "pax"})
    elif case == "non_numeric":
        df = df.astype({"passengers": object})
        df.loc[7, "passengers"] = "seven"
    elif case == "bad_time":
        df.loc[3, "month"] = "yesterday"
    elif case == "duplicate":
        df = pd.concat([df, df.iloc[[5]]])
    elif case == "gap":
        df = df.drop(index=[50])
    elif case == "nan":
        df.loc[60, "passengers"] = float("nan")
    elif case == "short":
        df = df.head(40)
    df.to_csv(path, index=False)
    return str(path)


BAD = [
    ("missing", "data file not found"),
    ("empty", "is empty"),
    ("misnamed", "column 'passengers'"),
    ("non_numeric", "not numeric"),
    ("bad_time", "unparseable timestamps"),
    ("duplicate", "duplicate timestamp"),
    ("gap", "missing timestamp"),
    ("nan", "NaN/inf"),
    ("short", "needs at least"),
]


@pytest.mark.parametrize("case, fragment", BAD, ids=[c for c, _ in BAD])
def test_bad_input_fails_cleanly_and_registry_is_unchanged(
    first_run, tmp_path, case, fragment
) -> None:
    tmp, _ = first_run
    client = _client(tmp)
    before_versions = len(client.search_model_versions(f"name = '{NAME}'"))
    before_champion = registry.alias_version(client, NAME, "champion")
    runs_before = len(client.search_runs([client.get_experiment_by_name(NAME).experiment_id]))
    src = _bad_source(tmp_path, case)
    result = CliRunner().invoke(
        app, ["run", DEFAULT_CONFIG, *tiny_overrides(tmp), f"data.source={src}"]
    )
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert len(client.search_model_versions(f"name = '{NAME}'")) == before_versions
    assert registry.alias_version(client, NAME, "champion") == before_champion
    assert (
        len(client.search_runs([client.get_experiment_by_name(NAME).experiment_id])) == runs_before
    )


def test_bad_config_key_fails_before_anything_runs(first_run) -> None:
    tmp, _ = first_run
    result = CliRunner().invoke(app, ["run", DEFAULT_CONFIG, *tiny_overrides(tmp), "model.cel=gru"])
    assert result.exit_code == 2
    assert "model.cel: unknown key" in result.output
