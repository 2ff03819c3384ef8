"""The promotion gate on a real registry: the seasonal-naive bar, champion vs challenger on
unseen windows or with the champion's recipe retrained, rollback walking back, history."""

from __future__ import annotations

import json
import re

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows.cli import app
from flows.training import training_pipeline
from seqlab import registry
from seqlab.registry.promotion import RETRAINED, UNSEEN

pytestmark = pytest.mark.integration
NAME = "seqlab-airpassengers"


@pytest.fixture(scope="module")
def store(tmp_path_factory, prefect_harness):
    tmp = tmp_path_factory.mktemp("gate")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)

    def train(epochs: int, **extra: object):
        return training_pipeline(
            DEFAULT_CONFIG,
            tiny_overrides(
                tmp,
                **{
                    "tune.n_trials": 0,
                    "train.max_epochs": epochs,
                    "model.hidden_size": 16,
                    # the network alone: a 1-epoch residual over seasonal naive is seasonal
                    # naive, and these runs need a model that clearly loses to it
                    "window.residual": "none",
                    **extra,
                },
            ),
        )

    runs = {"weak": train(1)}  # v1: the default gate, no champion yet
    gate_off = {"registry.require_beat_baseline": False}
    runs["strong"] = train(40, **gate_off, **{"registry.serve": "evaluated"})  # v2
    runs["weak_vs_unseen"] = train(1, **gate_off)  # v3 against v2, which never saw the windows
    runs["strong_refit"] = train(40, **gate_off)  # v4: the same recipe, refit on all history
    # Make v4 (which saw every window) the champion by hand, then challenge it.
    r = CliRunner().invoke(
        app,
        ["promote", NAME, "--version", "4", "--reason", "refit on all data", "--tracking-uri", uri],
    )
    assert r.exit_code == 0, r.output
    runs["weak_vs_seen"] = train(1, **gate_off)  # v5 against v4: v4's recipe is retrained
    return tmp, uri, client, runs


def tags(client: MlflowClient, version: str) -> dict[str, str]:
    return client.get_model_version(NAME, version).tags


def test_a_model_that_loses_to_seasonal_naive_is_registered_never_promoted(store) -> None:
    _, _, client, runs = store
    weak = runs["weak"]
    assert weak.version == "1" and not weak.promoted
    assert weak.metrics["test/mase"] >= weak.metrics["test/seasonal_naive/mase"]
    assert "does not beat seasonal naive" in weak.decision
    v1 = tags(client, "1")
    assert v1["seqlab.promotion.decision"] == "not_promoted"
    assert float(v1["seqlab.promotion.seasonal_naive"]) == pytest.approx(
        weak.metrics["test/seasonal_naive/mase"], rel=1e-4
    )
    assert registry.alias_version(client, NAME, "challenger") == "5"  # the newest version
    history = registry.alias_history(client, NAME)
    assert not [m for m in history if m.alias == "champion" and m.to_version == "1"]


def test_champion_scored_through_its_pyfunc_on_windows_it_never_saw(store) -> None:
    _, _, client, runs = store
    strong = runs["strong"]
    assert strong.promoted and strong.version == "2"  # no champion yet, gate off
    v3 = tags(client, "3")
    assert v3["seqlab.promotion.comparison"] == UNSEEN
    assert v3["seqlab.promotion.decision"] == "not_promoted"
    # v2 is the very model its backtest scored: through the pyfunc it scores the same.
    assert float(v3["seqlab.promotion.champion"]) == pytest.approx(
        strong.metrics["test/mase"], rel=1e-4
    )
    scores = json.loads(v3["seqlab.promotion.scores"])
    assert scores["windows"] == [0, 1, 2] and len(scores["cutoffs"]) == 3
    # decision.json: the series both sides were scored on, per window, and none left out
    local = client.download_artifacts(runs["weak_vs_unseen"].run_id, "promotion/decision.json")
    decision = json.loads(open(local).read())
    assert decision["series"] == {"0": ["series_0"], "1": ["series_0"], "2": ["series_0"]}
    assert decision["left_out"] == {} and decision["champion_version"] == "2"
    assert len(scores["challenger"]) == len(scores["champion"]) == 3
    # Same recipe, same data, same seed: v4 ties v2 on unseen windows, and ties keep v2.
    v4 = tags(client, "4")
    assert v4["seqlab.promotion.comparison"] == UNSEEN
    assert float(v4["seqlab.promotion.challenger"]) == pytest.approx(
        float(v4["seqlab.promotion.champion"]), rel=1e-6
    )
    assert v4["seqlab.promotion.decision"] == "not_promoted"


def test_champion_that_saw_the_windows_has_its_recipe_retrained(store) -> None:
    _, _, client, runs = store
    v5 = tags(client, "5")
    assert v5["seqlab.promotion.champion_version"] == "4"
    assert v5["seqlab.promotion.comparison"] == RETRAINED
    assert v5["seqlab.promotion.decision"] == "not_promoted"
    # v4's recipe, retrained before the first cutoff, is v2's evaluated model again.
    assert float(v5["seqlab.promotion.champion"]) == pytest.approx(
        runs["strong"].metrics["test/mase"], rel=1e-4
    )
    parent = client.get_run(runs["weak_vs_seen"].run_id)
    assert parent.data.tags["seqlab.promotion.decision"] == "not_promoted"
    assert registry.alias_version(client, NAME, "champion") == "4"


def test_rollback_walks_back_and_history(store) -> None:
    _, uri, client, _ = store
    runner = CliRunner()
    r = runner.invoke(app, ["rollback", NAME, "--tracking-uri", uri, "--reason", "v4 misbehaves"])
    assert r.exit_code == 0, r.output
    assert registry.alias_version(client, NAME, "champion") == "2"
    r = runner.invoke(app, ["rollback", NAME, "--tracking-uri", uri])
    assert r.exit_code == 2 and "nothing left to roll back" in r.output
    assert registry.alias_version(client, NAME, "champion") == "2"

    # The history is in the registry itself: plain MLflow tags, no seqlab files needed.
    moves = [
        json.loads(v)
        for k, v in sorted(client.get_registered_model(NAME).tags.items())
        if k.startswith("seqlab.audit.")
    ]
    champion_moves = [
        (m["from_version"], m["to_version"], m["mode"]) for m in moves if m["alias"] == "champion"
    ]
    assert champion_moves == [
        (None, "2", "automatic"),
        ("2", "4", "manual"),
        ("4", "2", "rollback"),
    ]
    assert [m["to_version"] for m in moves if m["alias"] == "challenger"] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    auto = next(m for m in moves if m["alias"] == "champion" and m["to_version"] == "2")
    assert auto["figures"]["metric"] == "mase" and auto["figures"]["comparison"] == "no champion"
    assert len(auto["figures"]["challenger_scores"]) == 3
    manual = next(m for m in moves if m["mode"] == "manual")
    assert manual["reason"] == "refit on all data" and manual["time"].endswith("Z")

    # Readable in the UI: the trail as the registered model's description, each decision as
    # its version's.
    description = client.get_registered_model(NAME).description
    # aligned text tables (the UI's Markdown tables have no cell padding)
    row = next(line for line in description.splitlines() if "v4 misbehaves" in line)
    assert row.split()[2:] == ["champion", "4", "2", "rollback", "v4", "misbehaves"], row
    page = client.get_model_version(NAME, "5").description
    assert "Not promoted" in page and "```text" in page
    assert re.search(r"^\s*2\s+\d{4}-\d\d-\d\d\s+\d+\.\d{4}\s", page, re.M), page

    r = runner.invoke(app, ["models", NAME, "--tracking-uri", uri])
    assert r.exit_code == 0
    assert "alias history" in r.output and "refit on all data" in r.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["promote", NAME, "--version", "99", "--reason", "x"], "has no version 99"),
        (["promote", NAME, "--version", "CURRENT", "--reason", "x"], "already the champion"),
        (["models", "no-such-model"], "not found"),
        (["rollback", "no-such-model"], "not found"),
    ],
)
def test_registry_misuse_is_a_clear_error(store, args, fragment) -> None:
    _, uri, client, _ = store
    before = registry.alias_version(client, NAME, "champion")
    args = [before if a == "CURRENT" else a for a in args]
    r = CliRunner().invoke(app, [*args, "--tracking-uri", uri])
    assert r.exit_code == 2
    assert fragment in r.output
    assert registry.alias_version(client, NAME, "champion") == before


def test_a_run_without_tuning_shows_the_parameters_it_trained_with(store) -> None:
    from flows.report import render_markdown

    _, _, _, runs = store
    summary = runs["weak"]  # tune.n_trials=0
    assert summary.trained_params["model.hidden_size"] == 16
    assert summary.trained_params["model.cell"] == summary.cell
    assert summary.trained_params["window.input_size"] == 12
    text = render_markdown(summary)
    assert "none: the parameters set were trained (tune.n_trials=0)" in text
    assert "#None" not in text and "{}" not in text
