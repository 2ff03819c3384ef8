"""The ``seqlab`` command line.

Errors a user can fix (bad config, bad data, registry misuse) print one line, ``error: ...``,
and exit with status 2; nothing is registered and no alias moves when that happens.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated

import typer

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


EXIT_USER_ERROR, EXIT_TRAINING_ERROR, EXIT_SERVER_ERROR = 2, 3, 4


def _interrupt_on_sigterm() -> None:
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _prefect_server() -> Iterator[None]:
    """The Prefect API a flow run reports to: ``PREFECT_API_URL`` when set, else a temporary
    server that ends with this command, also when it is SIGKILLed. It gets
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (default 120 s) to start; if it does not,
    one line says what to do (exit status 4)."""
    from flows.servers import PrefectStartError, temporary_prefect_api

    stack = ExitStack()
    try:
        stack.enter_context(temporary_prefect_api())
    except PrefectStartError as e:
        _fail(str(e), EXIT_SERVER_ERROR)
    with stack:
        yield


def _user_errors() -> tuple[type[BaseException], ...]:
    from seqlab.config import ConfigError
    from seqlab.data import DataError
    from seqlab.errors import RegistryError

    return ConfigError, DataError, RegistryError


def _split_config_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``; no config means the shipped defaults (seqlab:default.yaml)."""
    args = list(args or [])
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def _quiet(verbose: bool) -> None:
    """Normal runs show seqlab's progress and summary; --verbose shows every library's logs."""
    if verbose:
        return
    for key, value in {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # "Downloading artifacts" bars
        "MLFLOW_LOGGING_LEVEL": "ERROR",  # CloudPickle and signature notices
        "PREFECT_LOGGING_LEVEL": "WARNING",  # per-task state lines (kept in --verbose)
        "SEQLAB_LOG_LEVEL": "WARNING",  # trial lines: the progress bar shows them
    }.items():
        os.environ.setdefault(key, value)
    import warnings

    for module in ("mlflow", "optuna", "pydantic", "torch", "sqlalchemy", "alembic"):
        warnings.filterwarnings("ignore", module=module)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created ..."


class _WithoutTraceback(logging.Formatter):
    """Formats as ``inner`` does, leaving out the traceback of the ``expected`` errors."""

    def __init__(self, inner: logging.Formatter, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.inner, self.expected = inner, expected

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record = copy.copy(record)  # other handlers (Prefect's API log) keep the traceback
            record.exc_info, record.exc_text = None, None
        return self.inner.format(record)


def _brief_console_errors(expected: tuple[type[BaseException], ...]) -> None:
    """Console log lines of failures a user fixes (bad config or data, a training that
    diverged) come without Prefect's traceback: the run's last line, ``error: ...``, says what to
    do. The flow run's logs in Prefect keep the traceback; ``--verbose`` shows it here too."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and handler.formatter is not None:
            if not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter, expected))


class _RichProgress:
    """A progress bar per reported task (trials, epochs of the running trial)."""

    def __init__(self, progress) -> None:
        self.progress, self.tasks = progress, {}

    def update(self, task: str, completed: int, total: int, info: str = "") -> None:
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total)
        self.progress.update(
            self.tasks[task], completed=completed, total=total, description=f"{task:<7} {info}"
        )


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
    config, overrides = _split_config_args(args)
    _quiet(verbose)
    from seqlab.config import load_config
    from seqlab.data.checks import ingest, validate_data

    try:  # user errors (config, data) before any server starts
        cfg = load_config(config, overrides)
        validate_data(ingest(cfg), cfg)
    except _user_errors() as e:
        _fail(str(e))
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
        _brief_console_errors((*_user_errors(), TrainingError))
    _interrupt_on_sigterm()  # a scheduler's SIGTERM ends the run like Ctrl-C: cleanly
    try:
        with _prefect_server(), bar, progress.showing(_RichProgress(bar)):
            summary = training_pipeline(config, overrides, trigger=trigger)
    except _user_errors() as e:
        _fail(str(e))
    except TrainingError as e:  # no usable model: the run is FAILED, nothing registered
        _fail(str(e), EXIT_TRAINING_ERROR)
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
        _fail("seqlab init needs --data PATH: the CSV or Parquet file to forecast")
    if target.exists() and not force:
        _fail(f"{target} exists; pass --force to overwrite it")
    try:
        raw = load_raw(data)
        roles = guess_roles(raw)
        text = starter_yaml(data, roles)
    except _user_errors() as e:
        _fail(str(e))
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    typer.echo(f"wrote {target}: check the guessed columns, then `seqlab run {target}`")
    for warning in roles.warnings:  # a guess the user must check, e.g. a target with a bad value
        typer.echo(f"warning: {warning}", err=True)
    try:  # say now if the data does not fit the starter settings
        cfg = load_config(target)
        validate_data(raw, cfg)
    except _user_errors() as e:
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
    except (ValueError, *_user_errors()) as e:
        _fail(str(e))
    except TuningError as e:  # trials keep failing: the reasons are in the message
        _fail(str(e), EXIT_TUNING_ERROR)
    typer.echo(f"finished {done} trial(s) of study {study}")


TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).",
    ),
]


def _client(tracking_uri: str | None):
    from seqlab.registry.tracking import client_for, resolve_tracking_uri

    return client_for(resolve_tracking_uri(tracking_uri))


def _check_forecast_inputs(
    model: str,
    input: str,
    output: str,
    alias: str,
    version: str | None,
    tracking_uri: str | None,
    encoding: str | None,
) -> None:
    """Everything `seqlab forecast` can get wrong, checked before any Prefect server starts: the
    model, alias or version, --output's type, and --input (exists, reads, has the columns the
    model needs, enough history per series, future rows of known-future covariates)."""
    from flows.forecast_checks import check_history, check_input_path, check_output, read_history

    try:
        check_output(output)  # the cheap checks first: no mlflow or torch imported yet
        check_input_path(input)
        from seqlab.registry import resolve_version, serving

        client = _client(tracking_uri)
        resolved = resolve_version(client, model, None if version else alias, version)
        loaded = serving.load_forecaster(client, model, resolved["version"])
        meta = getattr(loaded.unwrap_python_model(), "meta", None) or {}
        history = read_history(input, encoding or serving.data_encoding(meta))
        check_history(loaded, history)
    except _user_errors() as e:
        _fail(str(e))


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
    _quiet(verbose)
    _check_forecast_inputs(model, input, output, alias, version, tracking_uri, encoding)
    if not verbose:
        _brief_console_errors(_user_errors())
    from flows.forecast import forecast_flow

    try:
        with _prefect_server():
            out = forecast_flow(
                model,
                input,
                output,
                alias=alias,
                version=version,
                tracking_uri=tracking_uri,
                encoding=encoding,
            )
    except _user_errors() as e:
        _fail(str(e))
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
        move = promote_manual(_client(tracking_uri), model, version, reason)
    except _user_errors() as e:
        _fail(str(e))
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
        move = do_rollback(_client(tracking_uri), model, reason)
    except _user_errors() as e:
        _fail(str(e))
    typer.echo(f"champion of {model}: v{move.from_version} -> v{move.to_version} ({move.reason})")


KEY_PARAMS = {  # `seqlab models` column -> the training run's param (the trained values)
    "cell": "model.cell",
    "hidden": "model.hidden_size",
    "layers": "model.num_layers",
    "input": "window.input_size",
}


def _key_params(client, run_id: str | None) -> dict[str, str]:
    """A version's cell, hidden size, layers and input size, from its training run's params
    (tuned values included: the run logs what was trained); blanks when the run is gone."""
    params: dict[str, str] = {}
    if run_id:
        from mlflow.exceptions import MlflowException

        try:
            params = client.get_run(run_id).data.params
        except MlflowException:
            params = {}
    return {col: params.get(key, "") for col, key in KEY_PARAMS.items()}


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

    client = _client(tracking_uri)
    try:
        rows = versions_table(client, model)
        moves = alias_history(client, model) if history else []
    except _user_errors() as e:
        _fail(str(e))
    console = Console(width=160)
    t = Table(title=f"{model}: versions")
    for col in ("version", "aliases", "created", *KEY_PARAMS, "test/mase", "test/mae", "decision"):
        t.add_column(col)
    t.add_column("run_id", overflow="fold")
    for r in rows:
        trained = _key_params(client, r["run_id"])
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


def _port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


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
        resolved = resolve_version(_client(uri), model, alias)
    except _user_errors() as e:
        _fail(str(e))
    if env_manager not in ("local", "virtualenv", "uv", "conda"):
        _fail(f"--env-manager {env_manager!r}: use local, virtualenv, uv or conda")
    if _port_in_use(host, port):
        _fail(f"port {port} on {host} is in use: pick another with --port")
    _serve_until_stopped(
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


def _serve_until_stopped(cmd: list[str], env: dict[str, str], banner: str) -> None:
    """Run a server in its own process group until it exits, or until Ctrl-C/SIGTERM here:
    then it is stopped with everything it spawned (no orphans), and this exits 0."""
    import signal

    from flows.servers import spawn

    class _Stop(Exception):
        pass

    def _on_signal(signum: int, frame: object) -> None:
        raise _Stop()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    handle = None
    try:
        handle = spawn("mlflow-models-serve", cmd, env=env, inherit_output=True)
        typer.echo(banner)
        code = handle.process.wait()
    except _Stop:
        code = 0
    finally:
        for s in previous:  # a second signal must not cut the clean-up short
            signal.signal(s, signal.SIG_IGN)
        if handle is not None:
            handle.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    if code:
        _fail(f"the scoring server exited with status {code} (its log is above)", code)


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
    from seqlab.config import load_config

    try:
        cfg = load_config(config)
    except _user_errors() as e:
        _fail(str(e))
    forecast_args = {}
    if forecast_cron:
        if not (forecast_input and forecast_output):
            _fail("--forecast-cron needs --forecast-input and --forecast-output")
        forecast_args = {
            "model": cfg.model_name,
            "input": forecast_input,
            "output": forecast_output,
        }
    try:
        load_config(config, override or [])
    except _user_errors() as e:
        _fail(str(e))
    from seqlab.redact import move_secrets_to_env

    serve_flows(
        config,
        train_cron if interval is None else None,
        forecast_cron,
        forecast_args,
        interval,
        # Deployment parameters are stored by Prefect: passwords stay in this process's
        # environment, which the served flow runs inherit.
        training_overrides=move_secrets_to_env(override or []) or None,
    )


def main() -> None:
    # Prefect before mlflow: `import mlflow.pytorch` would reconfigure logging otherwise.
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
