"""Batch forecasting flow: load ``models:/NAME@champion`` (or any alias or version), check the
new history against what the model needs, forecast, write CSV/Parquet, record the run.

    seqlab forecast seqlab-airpassengers --input history.csv --output forecast.csv
    python flows/forecast.py seqlab-airpassengers history.csv forecast.csv

The checks (:mod:`flows.forecast_checks`) import no Prefect: ``seqlab forecast`` runs them before
any Prefect server starts, and the flow runs them again for scheduled runs. Errors name the
command's own options (``--input``, ``--output``).

The written forecast is in the user's terms (:func:`in_user_terms`): the model's own time,
series-id and target column names, the series' own ids, and one ``q<level>`` column per quantile
of a quantile model (``q0.1``, ``q0.9``: the point forecast is the target's column).
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE as NO_CACHE

from flows.forecast_checks import check_history, check_output, read_history
from seqlab import registry
from seqlab.config import ConfigError
from seqlab.data import DataError
from seqlab.registry import serving, tracking


def _transient(task, task_run, state) -> bool:
    """Retry I/O hiccups, never a deterministic user error (bad input, unknown model)."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, (ConfigError, DataError, registry.RegistryError))


# ---------------------------------------------------------------- the output, in the user's terms


def in_user_terms(forecast: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The canonical forecast (``unique_id, ds, forecast, q<level>...``) in the model's own
    column names: ``[series_id,] time_column, target, q<level>...``. A model trained without a
    series column gets no id column; quantile columns keep their ``q<level>`` names."""
    names = {"ds": meta["time_column"], "forecast": meta["target"]}
    out = forecast
    if meta.get("series_id"):
        names["unique_id"] = meta["series_id"]
    else:
        out = out.drop(columns="unique_id")
    return out.rename(columns=names)


# ---------------------------------------------------------------- tasks and the flow


@task(
    name="resolve-model",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
)
def resolve_task(
    tracking_uri: str, name: str, alias: str | None, version: str | None
) -> dict[str, str]:
    return registry.resolve_version(tracking.client_for(tracking_uri), name, alias, version)


@task(name="load-model", cache_policy=NO_CACHE)
def load_task(tracking_uri: str, name: str, version: str):
    return serving.load_forecaster(tracking.client_for(tracking_uri), name, version)


@task(
    name="read-history",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
)
def read_task(path: str, encoding: str = "utf-8") -> pd.DataFrame:
    return read_history(path, encoding)


@task(name="forecast", cache_policy=NO_CACHE)
def forecast_task(model, history: pd.DataFrame) -> pd.DataFrame:
    return check_history(model, history)


@task(
    name="write-forecast",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
)
def write_task(forecast: pd.DataFrame, output: str) -> str:
    return serving.write_frame(forecast, output)


@task(
    name="record-forecast",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
)
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
    check_output(output)
    uri = tracking.resolve_tracking_uri(tracking_uri)
    resolved = resolve_task(uri, model, None if version else alias, version)
    loaded = load_task(uri, model, resolved["version"])
    meta = loaded.unwrap_python_model().meta
    history = read_task(input, encoding or serving.data_encoding(meta))
    forecast = forecast_task(loaded, history)
    shown = in_user_terms(forecast, meta)
    written = write_task(shown, output)
    run_id = record_task(uri, resolved, input, written, forecast)
    time_col = meta["time_column"]
    create_table_artifact(
        table=shown.astype({time_col: str}).to_dict("records")[:500],
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
    from flows.prefect_server import temporary_prefect_api

    try:
        with temporary_prefect_api():  # PREFECT_API_URL's server, else one ending with this
            result = forecast_flow(
                sys.argv[1],
                sys.argv[2],
                sys.argv[3],
                sys.argv[4] if len(sys.argv) > 4 else "champion",
            )
        print(result)
    except (ConfigError, DataError, registry.RegistryError) as e:
        sys.exit(f"error: {e}")
