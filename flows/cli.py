"""The ``seqlab`` command line.

Errors a user can fix (bad config, bad data, registry misuse) print one line, ``error: ...``,
and exit with status 2; nothing is registered and no alias moves when that happens.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_support import (
    EXIT_SERVER_ERROR,
    EXIT_TRAINING_ERROR,
    KEY_PARAMS,
    RichProgress,
    brief_console_errors,
    check_forecast_inputs,
    fail,
    interrupt_on_sigterm,
    key_params,
    mlflow_client,
    port_in_use,
    prefect_server,
    quiet,
    serve_until_stopped,
    split_config_args,
    user_errors,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Tuned recurrent forecasters: train, promote, forecast, schedule.",
)

# Quiet and offline by default (no telemetry, no DNS lookup per process).
for _k, _v in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    # Route seqlab's own log lines (trial progress) through Prefect's handlers.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "seqlab",
}.items():
    os.environ.setdefault(_k, _v)


@app.command(context_settings={"allow_extra_args": False})
def run(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="[CONFIG] [key=value ...]; no CONFIG: the bundled AirPassengers defaults. "
            "e.g. conf/default.yaml model.cell=gru tune.n_trials=30"
        ),
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON here.")
    ] = None,
    trigger: Annotated[str, typer.Option(help="Recorded as the run's trigger tag.")] = "manual",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every library's logs and warnings.")
    ] = False,
) -> None:
    """Run the training flow: tune, refit, backtest, register and promote."""
    config, overrides = split_config_args(args)
    quiet(verbose)
    from seqlab.config import load_config
    from seqlab.data.checks import ingest, validate_data
    from seqlab.evaluation.references import check_available

    try:  # user errors (config, data) before any server starts
        cfg = load_config(config, overrides)
        check_available(cfg.eval.references)  # statsforecast, the optional extra
        validate_data(ingest(cfg), cfg)
    except user_errors() as e:
        fail(str(e))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows.report import render_rich
    from flows.training import training_pipeline
    from seqlab import progress
    from seqlab.redact import move_secrets_to_env

    overrides = move_secrets_to_env(overrides)  # Prefect stores flow parameters: no passwords
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=verbose,
    )
    from seqlab.errors import TrainingError

    if not verbose:
        brief_console_errors((*user_errors(), TrainingError))
    interrupt_on_sigterm()  # a scheduler's SIGTERM ends the run like Ctrl-C: cleanly
    try:
        with prefect_server(), bar, progress.showing(RichProgress(bar)):
            summary = training_pipeline(config, overrides, trigger=trigger)
    except user_errors() as e:
        fail(str(e))
    except TrainingError as e:  # no usable model: the run is FAILED, nothing registered
        fail(str(e), EXIT_TRAINING_ERROR)
    render_rich(summary)
    if summary_json:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary.to_dict(), indent=2, default=str))


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write seqlab.yaml.")] = Path("."),
    data: Annotated[
        str, typer.Option("--data", "-d", help="Your CSV/Parquet file (long format).")
    ] = "",
    force: Annotated[bool, typer.Option(help="Overwrite an existing seqlab.yaml.")] = False,
) -> None:
    """Write a starter config for your own data, with the columns' roles guessed."""
    from seqlab.config import load_config
    from seqlab.data import load_raw
    from seqlab.data.checks import validate_data
    from seqlab.data.starter import guess_roles, starter_yaml

    target = directory / "seqlab.yaml"
    if not data:
        fail("seqlab init needs --data PATH: the CSV or Parquet file to forecast")
    if target.exists() and not force:
        fail(f"{target} exists; pass --force to overwrite it")
    try:
        raw = load_raw(data)
        roles = guess_roles(raw)
        # The config names the file relative to its own folder (how seqlab reads it).
        text = starter_yaml(os.path.relpath(Path(data).absolute(), directory.absolute()), roles)
    except user_errors() as e:
        fail(str(e))
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    typer.echo(f"wrote {target}: check the guessed columns, then `seqlab run {target}`")
    for warning in roles.warnings:  # a guess the user must check, e.g. a target with a bad value
        typer.echo(f"warning: {warning}", err=True)
    try:  # say now if the data does not fit the starter settings
        cfg = load_config(target)
        validate_data(raw, cfg)
    except user_errors() as e:
        typer.echo(f"note: {e}", err=True)


@app.command("tune-worker")
def tune_worker(
    study: Annotated[str, typer.Option(help="Study name (printed by `seqlab run`).")],
    storage: Annotated[str, typer.Option(help="Optuna storage URL, e.g. postgresql://host/db.")],
    timeout: Annotated[
        float | None, typer.Option(help="Stop launching trials after this many seconds.")
    ] = None,
    wait_for_study: Annotated[
        float,
        typer.Option(help="Wait up to this many seconds for `seqlab run` to publish the study."),
    ] = 0.0,
    leave_on_oom: Annotated[
        bool,
        typer.Option(help="Leave after a CUDA out-of-memory error (extra workers sharing a GPU)."),
    ] = False,
    heartbeat_interval: Annotated[
        int | None,
        typer.Option(
            help="Seconds between trial heartbeats (default: the study's tune.heartbeat_interval)."
        ),
    ] = None,
) -> None:
    """Join a running study from any host: run trials until it holds n_trials."""
    from seqlab.tuning.runner import TuningError
    from seqlab.tuning.worker import EXIT_TUNING_ERROR, run_worker

    try:
        done = run_worker(
            study, storage, timeout, not leave_on_oom, heartbeat_interval, wait_for_study
        )
    except (ValueError, *user_errors()) as e:
        fail(str(e))
    except TuningError as e:  # trials keep failing: the reasons are in the message
        fail(str(e), EXIT_TUNING_ERROR)
    typer.echo(f"finished {done} trial(s) of study {study}")


TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).",
    ),
]


@app.command()
def forecast(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. seqlab-airpassengers.")],
    input: Annotated[
        str, typer.Option("--input", "-i", help="History to forecast from (CSV/Parquet).")
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Where to write the forecast (.csv/.parquet).")
    ],
    alias: Annotated[
        str, typer.Option(help="Alias to load (ignored with --version).")
    ] = "champion",
    version: Annotated[
        str | None, typer.Option(help="A model version instead of an alias.")
    ] = None,
    tracking_uri: TrackingOpt = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            help="Text encoding of a CSV input (e.g. latin-1); default: that of the model's "
            "training data (its data.encoding)."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every library's logs and warnings.")
    ] = False,
) -> None:
    """Forecast the next horizon with a registered model (the champion by default)."""
    quiet(verbose)
    check_forecast_inputs(model, input, output, alias, version, tracking_uri, encoding)
    if not verbose:
        brief_console_errors(user_errors())
    from flows.forecast import forecast_flow

    try:
        with prefect_server():
            out = forecast_flow(
                model,
                input,
                output,
                alias=alias,
                version=version,
                tracking_uri=tracking_uri,
                encoding=encoding,
            )
    except user_errors() as e:
        fail(str(e))
    typer.echo(
        f"wrote {out['rows']} rows to {out['output']} with {model} v{out['version']}"
        f" (MLflow run {out['run_id']})"
    )


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Option(help="Version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail).")],
    tracking_uri: TrackingOpt = None,
) -> None:
    """Manually move the champion alias to a version (recorded with your reason)."""
    from seqlab.registry import promote_manual

    try:
        move = promote_manual(mlflow_client(tracking_uri), model, version, reason)
    except user_errors() as e:
        fail(str(e))
    typer.echo(
        f"champion of {model}: v{move.from_version or '-'} -> v{move.to_version} ({move.reason})"
    )


@app.command()
def rollback(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit trail).")] = "rollback",
    tracking_uri: TrackingOpt = None,
) -> None:
    """Move the champion back to the previous champion."""
    from seqlab.registry import rollback as do_rollback

    try:
        move = do_rollback(mlflow_client(tracking_uri), model, reason)
    except user_errors() as e:
        fail(str(e))
    typer.echo(f"champion of {model}: v{move.from_version} -> v{move.to_version} ({move.reason})")


@app.command()
def models(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    tracking_uri: TrackingOpt = None,
    history: Annotated[bool, typer.Option(help="Also list every alias move.")] = True,
) -> None:
    """Versions with aliases, key metrics and decisions; the alias history."""
    from rich.console import Console
    from rich.table import Table

    from seqlab.registry import alias_history, versions_table

    client = mlflow_client(tracking_uri)
    try:
        rows = versions_table(client, model)
        moves = alias_history(client, model) if history else []
    except user_errors() as e:
        fail(str(e))
    console = Console(width=160)
    t = Table(title=f"{model}: versions")
    for col in ("version", "aliases", "created", *KEY_PARAMS, "test/mase", "test/mae", "decision"):
        t.add_column(col)
    t.add_column("run_id", overflow="fold")
    for r in rows:
        trained = key_params(client, r["run_id"])
        t.add_row(
            r["version"],
            ", ".join(r["aliases"]),
            r["created"],
            *(trained[k] for k in KEY_PARAMS),
            r["test/mase"] or "",
            r["test/mae"] or "",
            r["decision"] or "",
            r["run_id"] or "",
        )
    console.print(t)
    if moves:
        h = Table(title=f"{model}: alias history")
        for col in ("#", "time (UTC)", "alias", "from", "to", "mode", "reason"):
            h.add_column(col)
        for m in moves:
            h.add_row(
                str(m.seq), m.time, m.alias, m.from_version or "-", m.to_version, m.mode, m.reason
            )
        console.print(h)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port for the MLflow UI.")] = 5000,
    host: Annotated[
        str, typer.Option(help="Interface to bind (keep 127.0.0.1 unless behind auth).")
    ] = "127.0.0.1",
    tracking_uri: TrackingOpt = None,
) -> None:
    """Start the MLflow UI for this project's store (one worker, job execution off)."""
    from flows.servers import run_mlflow_ui
    from seqlab.registry.tracking import resolve_tracking_uri

    run_mlflow_ui(resolve_tracking_uri(tracking_uri), host, port)


@app.command("serve-model")
def serve_model(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Registered model name (default: the default config's, e.g. seqlab-airpassengers)."
        ),
    ] = None,
    alias: Annotated[str, typer.Option(help="Alias to serve.")] = "champion",
    port: Annotated[int, typer.Option(help="Port of the scoring server.")] = 5001,
    host: Annotated[
        str, typer.Option(help="Interface to bind (keep 127.0.0.1 unless behind auth).")
    ] = "127.0.0.1",
    env_manager: Annotated[
        str,
        typer.Option(
            help="MLflow's --env-manager: local serves from this environment; virtualenv or "
            "conda rebuild the model's own (minutes: torch is installed again)."
        ),
    ] = "local",
    tracking_uri: TrackingOpt = None,
) -> None:
    """Serve a registered model over HTTP (MLflow's scoring server: POST /invocations)."""
    from seqlab.config import load_config
    from seqlab.registry import resolve_version
    from seqlab.registry.tracking import resolve_tracking_uri

    try:
        model = name or load_config(None).model_name
        uri = resolve_tracking_uri(tracking_uri)
        resolved = resolve_version(mlflow_client(uri), model, alias)
    except user_errors() as e:
        fail(str(e))
    if env_manager not in ("local", "virtualenv", "uv", "conda"):
        fail(f"--env-manager {env_manager!r}: use local, virtualenv, uv or conda")
    if port_in_use(host, port):
        fail(f"port {port} on {host} is in use: pick another with --port")
    serve_until_stopped(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{model}@{alias}",
            "--env-manager",
            env_manager,
            "--host",
            host,
            "--port",
            str(port),
        ],
        {
            # The name resolves through this project's store, not a fresh ./mlflow.db.
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            # MLflow starts `uvicorn` by name: this environment's, also when it is not activated.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
        f"serving models:/{model}@{alias} (v{resolved['version']}) at "
        f"http://{host}:{port}/invocations; Ctrl-C stops it",
    )


@app.command()
def serve(
    config: Annotated[
        str, typer.Argument(help="Training config (default: the bundled AirPassengers run).")
    ] = "seqlab:default.yaml",
    train_cron: Annotated[
        str | None, typer.Option(help="Cron for training, e.g. '0 3 * * *'.")
    ] = "0 3 * * *",
    forecast_cron: Annotated[
        str | None, typer.Option(help="Cron for forecasting, e.g. '0 * * * *'.")
    ] = None,
    forecast_input: Annotated[
        str | None, typer.Option(help="History file for scheduled forecasts.")
    ] = None,
    forecast_output: Annotated[
        str | None, typer.Option(help="Output of scheduled forecasts.")
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="Run training every N seconds instead of cron.")
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option("--override", help="key=value for scheduled training runs (repeatable)."),
    ] = None,
) -> None:
    """Serve scheduled training (and forecasting) deployments against a Prefect server."""
    from flows.deployments import serve_flows
    from flows.prefect_server import exit_when_gone, serve_api_check
    from seqlab.config import load_config

    try:
        cfg = load_config(config)
    except user_errors() as e:
        fail(str(e))
    forecast_args = {}
    if forecast_cron:
        if not (forecast_input and forecast_output):
            fail("--forecast-cron needs --forecast-input and --forecast-output")
        forecast_args = {
            "model": cfg.model_name,
            "input": forecast_input,
            "output": forecast_output,
        }
    try:
        load_config(config, override or [])
    except user_errors() as e:
        fail(str(e))
    from seqlab.redact import move_secrets_to_env

    error, note = serve_api_check()
    if error:
        fail(error, EXIT_SERVER_ERROR)
    if note:
        typer.echo(note, err=True)
    # Deployment parameters are stored by Prefect: passwords stay in this process's
    # environment, which the served flow runs inherit.
    overrides = move_secrets_to_env(override or []) or None
    with prefect_server() as url:  # starts nothing when PREFECT_API_URL is set
        if url is not None:  # Prefect would retry against nothing, then end in a traceback
            exit_when_gone(url, "seqlab serve", EXIT_SERVER_ERROR)
        serve_flows(
            config,
            train_cron if interval is None else None,
            forecast_cron,
            forecast_args,
            interval,
            training_overrides=overrides,
        )


def main() -> None:
    # Prefect before mlflow: `import mlflow.pytorch` would reconfigure logging otherwise.
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
