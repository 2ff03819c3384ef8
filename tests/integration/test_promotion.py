"""Champion/challenger on a real registry: better promotes, worse never does, rollback, history."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows.training import training_pipeline
from seqlab import registry
from seqlab.cli import app

pytestmark = pytest.mark.integration
NAME = "seqlab-airpassengers"


@pytest.fixture(scope="module")
def store(tmp_path_factory, prefect_harness):
    tmp = tmp_path_factory.mktemp("gate")

    def train(epochs: int) -> dict:
        return training_pipeline(DEFAULT_CONFIG, tiny_overrides(
            tmp, **{"tune.n_trials": 0, "train.max_epochs": epochs, "model.hidden_size": 16}))

    runs = {"weak": train(1), "strong": train(40), "weak_again": train(1)}
    uri = f"sqlite:///{tmp}/mlflow.db"
    return tmp, uri, MlflowClient(uri, registry_uri=uri), runs


def test_better_promotes_worse_does_not(store) -> None:
    _, _, client, runs = store
    weak, strong, weak2 = runs["weak"], runs["strong"], runs["weak_again"]
    assert strong["metrics"]["test/mase"] < weak["metrics"]["test/mase"]
    assert client.get_model_version(NAME, "1").tags["seqlab.promotion.decision"] == "promoted"
    v2 = client.get_model_version(NAME, "2").tags
    assert v2["seqlab.promotion.decision"] == "promoted"
    # The champion (v1) was re-scored on v2's test window: same figure as its own evaluation.
    assert float(v2["seqlab.promotion.champion"]) == pytest.approx(weak["metrics"]["test/mase"], rel=1e-3)
    v3 = client.get_model_version(NAME, "3").tags
    assert v3["seqlab.promotion.decision"] == "kept_champion"
    assert float(v3["seqlab.promotion.champion"]) == pytest.approx(strong["metrics"]["test/mase"], rel=1e-3)
    assert registry.alias_version(client, NAME, "champion") == "2"
    assert registry.alias_version(client, NAME, "challenger") == "3"
    parent = client.get_run(weak2["run_id"])
    assert parent.data.tags["seqlab.promotion.decision"] == "kept_champion"


def test_rollback_manual_promotion_and_history(store) -> None:
    _, uri, client, _ = store
    runner = CliRunner()
    r = runner.invoke(app, ["rollback", NAME, "--tracking-uri", uri, "--reason", "v2 misbehaves"])
    assert r.exit_code == 0, r.output
    assert registry.alias_version(client, NAME, "champion") == "1"

    r = runner.invoke(app, ["promote", NAME, "--version", "3", "--reason", "hand-checked",
                            "--tracking-uri", uri])
    assert r.exit_code == 0, r.output
    assert registry.alias_version(client, NAME, "champion") == "3"
    r = runner.invoke(app, ["rollback", NAME, "--tracking-uri", uri])
    assert registry.alias_version(client, NAME, "champion") == "1"

    # The history is in the registry itself: plain MLflow tags, no seqlab files needed.
    tags = client.get_registered_model(NAME).tags
    moves = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith("seqlab.audit.")]
    champion_moves = [(m["from_version"], m["to_version"], m["mode"]) for m in moves
                      if m["alias"] == "champion"]
    assert champion_moves == [(None, "1", "automatic"), ("1", "2", "automatic"),
                              ("2", "1", "rollback"), ("1", "3", "manual"), ("3", "1", "rollback")]
    assert [m["to_version"] for m in moves if m["alias"] == "challenger"] == ["1", "2", "3"]
    auto = next(m for m in moves if m["alias"] == "champion" and m["to_version"] == "2")
    assert auto["figures"]["metric"] == "mase" and auto["figures"]["champion_version"] == "1"
    manual = next(m for m in moves if m["mode"] == "manual")
    assert manual["reason"] == "hand-checked" and manual["time"].endswith("Z")

    r = runner.invoke(app, ["models", NAME, "--tracking-uri", uri])
    assert r.exit_code == 0
    assert "alias history" in r.output and "hand-checked" in r.output and "champion" in r.output


@pytest.mark.parametrize("args, fragment", [
    (["promote", NAME, "--version", "99", "--reason", "x"], "has no version 99"),
    (["promote", NAME, "--version", "CURRENT", "--reason", "x"], "already the champion"),
    (["models", "no-such-model"], "not found"),
    (["rollback", "no-such-model"], "not found"),
])
def test_registry_misuse_is_a_clear_error(store, args, fragment) -> None:
    _, uri, client, _ = store
    before = registry.alias_version(client, NAME, "champion")
    args = [before if a == "CURRENT" else a for a in args]
    r = CliRunner().invoke(app, [*args, "--tracking-uri", uri])
    assert r.exit_code == 2
    assert fragment in r.output
    assert registry.alias_version(client, NAME, "champion") == before
