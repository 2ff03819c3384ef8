"""A tiny training run with a statsforecast reference: scored, logged, summarised, gated."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows.report import comparison_rows, render_markdown
from flows.training import training_pipeline

pytestmark = pytest.mark.integration
pytest.importorskip("statsforecast")  # the `stats` extra (make test-stats)


def test_tiny_run_logs_and_gates_on_a_reference(tmp_path, prefect_harness) -> None:
    overrides = tiny_overrides(
        tmp_path, **{"eval.references": "[AutoETS]", "registry.baseline": "best"}
    )
    summary = training_pipeline(DEFAULT_CONFIG, overrides)
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(summary.run_id)
    for key in ("test/autoets/mase", "test/autoets/smape", "test/seasonal_naive/mase"):
        assert key in run.data.metrics, key
    assert "backtest/autoets/mase" in run.data.metrics  # one value per window too
    assert summary.metrics["test/autoets/mase"] == run.data.metrics["test/autoets/mase"]
    names = [name for name, _ in comparison_rows(summary.metrics)]
    assert names[:4] == ["model", "naive", "seasonal_naive", "autoets"]
    assert "autoets" in render_markdown(summary)
    # The gate's first bar is the best of seasonal naive and AutoETS, and its reason says so.
    assert "(best " in summary.decision, summary.decision
