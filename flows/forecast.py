"""Batch forecasting flow: load ``models:/NAME@champion`` (or any alias or version), check the
new history against what the model needs, forecast, write CSV/Parquet, record the run.

    seqlab forecast seqlab-airpassengers --input history.csv --output forecast.csv
    python flows/forecast.py seqlab-airpassengers history.csv forecast.csv
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE as NO_CACHE

from seqlab import registry, serving, tracking
from seqlab.data import DataError, load_raw


@task(name="resolve-model", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def resolve_task(
    tracking_uri: str, name: str, alias: str | None, version: str | None
) -> dict[str, str]:
    return registry.resolve_version(tracking.client_for(tracking_uri), name, alias, version)


@task(name="load-model", cache_policy=NO_CACHE)
def load_task(tracking_uri: str, name: str, version: str):
    return serving.load_forecaster(tracking.client_for(tracking_uri), name, version)


@task(name="read-history", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def read_task(path: str, encoding: str = "utf-8") -> pd.DataFrame:
    return load_raw(path, encoding, setting="--encoding")


@task(name="forecast", cache_policy=NO_CACHE)
def forecast_task(model, history: pd.DataFrame) -> pd.DataFrame:
    return serving.predict_checked(model, history)


@task(name="write-forecast", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def write_task(forecast: pd.DataFrame, output: str) -> str:
    return serving.write_frame(forecast, output)


@task(name="record-forecast", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def record_task(
    tracking_uri: str,
    resolved: dict[str, str],
    input_path: str,
    output: str,
    forecast: pd.DataFrame,
) -> str:
    return tracking.record_forecast(tracking_uri, resolved, input_path, output, forecast)


@flow(name="seqlab-forecast", log_prints=True)
def forecast_flow(
    model: str,
    input: str,
    output: str,
    alias: str | None = "champion",
    version: str | None = None,
    tracking_uri: str | None = None,
    encoding: str | None = None,
) -> dict[str, Any]:
    """Forecast the next horizon of every series in ``input`` with a registered model.
    ``encoding``: of a CSV input; default, that of the model's training data."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    resolved = resolve_task(uri, model, None if version else alias, version)
    loaded = load_task(uri, model, resolved["version"])
    meta = loaded.unwrap_python_model().meta
    history = read_task(input, encoding or serving.data_encoding(meta))
    forecast = forecast_task(loaded, history)
    written = write_task(forecast, output)
    run_id = record_task(uri, resolved, input, written, forecast)
    create_table_artifact(
        table=forecast.astype({"ds": str}).to_dict("records")[:500],
        key="seqlab-forecast",
        description=f"{model} v{resolved['version']}",
    )
    n_series = forecast["unique_id"].nunique()
    create_markdown_artifact(
        key="seqlab-forecast-summary",
        markdown=(
            f"# Forecast with `{model}` v{resolved['version']}"
            f"{' @' + resolved['alias'] if resolved.get('alias') else ''}\n\n"
            f"- {n_series} series x {len(forecast) // max(n_series, 1)} steps\n"
            f"- written to `{written}`\n- MLflow run `{run_id}`"
        ),
    )
    return {
        "model": model,
        "version": resolved["version"],
        "alias": resolved.get("alias"),
        "output": written,
        "rows": len(forecast),
        "run_id": run_id,
    }


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python flows/forecast.py MODEL_NAME INPUT OUTPUT [ALIAS]")
    try:
        print(
            forecast_flow(
                sys.argv[1],
                sys.argv[2],
                sys.argv[3],
                sys.argv[4] if len(sys.argv) > 4 else "champion",
            )
        )
    except (DataError, registry.RegistryError) as e:
        sys.exit(f"error: {e}")
