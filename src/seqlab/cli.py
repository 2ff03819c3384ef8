"""The ``seqlab`` command line.

Errors a user can fix (bad config, bad data, registry misuse) print one line, ``error: ...``,
and exit with status 2; nothing is registered and no alias moves when that happens.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Tuned recurrent forecasters: train, promote, forecast, schedule.")

# Quiet and offline by default (no telemetry, no DNS lookup per process).
for _k, _v in {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "DO_NOT_TRACK": "true"}.items():
    os.environ.setdefault(_k, _v)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from seqlab.config import ConfigError
    from seqlab.data import DataError
    from seqlab.registry import RegistryError

    return ConfigError, DataError, RegistryError


def _split_config_args(args: list[str] | None) -> tuple[str, list[str]]:
    args = list(args or [])
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return "conf/default.yaml", args


@app.command(context_settings={"allow_extra_args": False})
def run(
    args: Annotated[Optional[list[str]], typer.Argument(
        help="[CONFIG] [key=value ...], e.g. conf/default.yaml model.cell=gru tune.n_trials=30")] = None,
    summary_json: Annotated[Optional[Path], typer.Option(help="Also write the summary as JSON here.")] = None,
    trigger: Annotated[str, typer.Option(help="Recorded as the run's trigger tag.")] = "manual",
) -> None:
    """Run the training flow: tune, fit, evaluate, register and promote."""
    config, overrides = _split_config_args(args)
    from seqlab.config import load_config

    try:
        load_config(config, overrides)  # fail before starting Prefect on a bad config
    except _user_errors() as e:
        _fail(str(e))
    from flows.training import training_pipeline
    from seqlab.report import render_rich

    try:
        summary = training_pipeline(config, overrides, trigger=trigger)
    except _user_errors() as e:
        _fail(str(e))
    render_rich(summary)
    if summary_json:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary, indent=2, default=str))


@app.command("tune-worker")
def tune_worker(
    study: Annotated[str, typer.Option(help="Study name (printed by `seqlab run`).")],
    storage: Annotated[str, typer.Option(help="Optuna storage URL, e.g. postgresql://host/db.")],
    timeout: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Join a running study from any host: run trials until it holds n_trials."""
    from seqlab.workers import run_worker

    try:
        done = run_worker(study, storage, timeout)
    except (ValueError, *_user_errors()) as e:
        _fail(str(e))
    typer.echo(f"finished {done} trial(s) of study {study}")


def main() -> None:
    # Prefect before mlflow: `import mlflow.pytorch` would reconfigure logging otherwise.
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
