"""Scheduled runs: Prefect deployments of the training (and forecast) flows, served in-process.

``seqlab serve`` calls :func:`serve_flows`; ``prefect.yaml`` declares the same deployments for
``prefect deploy`` + a process worker (see docs/operations.md).

Two training runs must never race on the registry (both would read the same champion and move
the aliases in turn), so the training deployment has a concurrency limit of 1 with collision
strategy ENQUEUE: a run that comes due while another is running waits in AwaitingConcurrencySlot
and starts when the first finishes, instead of being cancelled or running alongside.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

TRAINING_DEPLOYMENT = "train-daily"
FORECAST_DEPLOYMENT = "forecast-daily"
DEFAULT_TRAINING_CRON = "0 3 * * *"  # daily at 03:00 (server time zone: UTC unless set)
DEFAULT_FORECAST_CRON = "0 6 * * *"  # daily at 06:00, after the night's training
_CRON_PERIODS = (  # (minute, hour, day of month, month, day of week) -> the period's name
    (r"\d+ \* \* \* \*", "hourly"),
    (r"\d+ \d+ \* \* \*", "daily"),
    (r"\d+ \d+ \* \* [\w]+", "weekly"),
    (r"\d+ \d+ \d+ \* \*", "monthly"),
)


def deployment_name(kind: str, cron: str | None, default: str) -> str:
    """``<kind>-<period>`` for a cron that runs hourly, daily, weekly or monthly, so the name says
    when it runs (``forecast-hourly`` for ``0 * * * *``); ``<kind>-scheduled`` for another cron;
    ``default`` without a cron (an interval, or unscheduled: started on demand)."""
    import re

    if not cron:
        return default
    fields = " ".join(cron.split())
    for pattern, period in _CRON_PERIODS:
        if re.fullmatch(pattern, fields):
            return f"{kind}-{period}"
    return f"{kind}-scheduled"


log = logging.getLogger("flows.deployments")


def one_at_a_time():
    """Deployment concurrency: at most one run; others queue (ENQUEUE), none are dropped."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def _config_path(config: str) -> str:
    """Flow runs start in other processes: pin a relative config path that exists here."""
    path = Path(config)
    return str(path.resolve()) if not path.is_absolute() and path.exists() else config


def training_deployment(
    config: str,
    cron: str | None = None,
    interval: float | None = None,
    overrides: list[str] | None = None,
    name: str | None = None,
):
    """The training flow as a deployment: parameters fixed here, ``trigger=schedule`` recorded.
    ``name``: by default it says the schedule (:func:`deployment_name`)."""
    from prefect.deployments.runner import EntrypointType

    from flows.training import training_pipeline

    cron = None if interval else cron
    return training_pipeline.to_deployment(
        name=name or deployment_name("train", cron, TRAINING_DEPLOYMENT),
        cron=None if interval else cron,
        interval=interval or None,
        parameters={
            "config": _config_path(config),
            "overrides": list(overrides or []),
            "trigger": "schedule",
        },
        concurrency_limit=one_at_a_time(),
        description="Tune, train, evaluate, register and maybe promote (seqlab).",
        tags=["seqlab", "training"],
        # Importable module path: works whatever the serving process's cwd is.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def load_forecast_flow():
    """``flows.forecast.forecast_flow`` when that module provides it, else None."""
    try:
        from flows.forecast import forecast_flow
    except ImportError as e:
        log.info("no forecast deployment: flows.forecast.forecast_flow unavailable (%s)", e)
        return None
    return forecast_flow


def forecast_parameters(
    config: str, overrides: list[str] | None, forecast_args: dict[str, Any] | None
) -> dict[str, Any]:
    """Forecast-flow parameters; what ``forecast_args`` leaves out comes from the training config.

    model: the config's registered model name; input: its data source (the latest history of
    the series it trains on); output: ``outputs/forecasts/<model>.csv`` under the current
    directory (overwritten by each run: the latest forecast); tracking_uri: the config's.
    """
    params = {k: v for k, v in (forecast_args or {}).items() if v is not None}
    from seqlab.config import load_config

    cfg = load_config(config, list(overrides or []))
    params.setdefault("model", cfg.model_name)
    source = Path(str(cfg.data.source))
    params.setdefault("input", str(source.resolve()) if source.exists() else str(cfg.data.source))
    default_output = Path("outputs", "forecasts", f"{params['model']}.csv").resolve()
    params.setdefault("output", str(default_output))
    if cfg.tracking.tracking_uri:
        params.setdefault("tracking_uri", cfg.tracking.tracking_uri)
    for key in ("input", "output"):  # relative paths would resolve in the flow run's cwd
        value = str(params[key])
        if not Path(value).is_absolute() and ("/" in value or "." in value):
            params[key] = str(Path(value).resolve())
    return params


def forecast_deployment(
    flow,
    params: dict[str, Any],
    cron: str | None = None,
    interval: float | None = None,
    name: str | None = None,
):
    """The forecast flow as a deployment, named for its schedule (:func:`deployment_name`)."""
    from prefect.deployments.runner import EntrypointType

    cron = None if interval else cron
    return flow.to_deployment(
        name=name or deployment_name("forecast", cron, FORECAST_DEPLOYMENT),
        cron=None if interval else cron,
        interval=interval or None,
        parameters=params,
        concurrency_limit=one_at_a_time(),
        description="Forecast with the champion model (seqlab).",
        tags=["seqlab", "forecast"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def build_deployments(
    config: str,
    training_cron: str | None,
    forecast_cron: str | None,
    forecast_args: dict[str, Any] | None,
    interval: float | None,
    training_overrides: list[str] | None = None,
    forecast_interval: float | None = None,
) -> list:
    """The deployments that :func:`serve_flows` serves (no server contact; testable)."""
    deployments = [training_deployment(config, training_cron, interval, training_overrides)]
    flow = load_forecast_flow()
    if flow is not None:
        params = forecast_parameters(config, training_overrides, forecast_args)
        deployments.append(forecast_deployment(flow, params, forecast_cron, forecast_interval))
    return deployments


def serve_flows(
    config: str,
    training_cron: str | None = DEFAULT_TRAINING_CRON,
    forecast_cron: str | None = DEFAULT_FORECAST_CRON,
    forecast_args: dict[str, Any] | None = None,
    interval: float | None = None,
    *,
    training_overrides: list[str] | None = None,
    forecast_interval: float | None = None,
) -> None:
    """Serve the training (and, when available, forecast) deployments until Ctrl-C/SIGTERM.

    ``interval`` (seconds) replaces ``training_cron`` (for tests and demos); the forecast runs on
    ``forecast_cron`` (or ``forecast_interval``), and with neither it is served unscheduled, to be
    started on demand (``prefect deployment run seqlab-forecast/forecast-daily``). A cron of None
    serves that deployment unscheduled too. Deployments are named for their cron's period
    (``train-daily``, ``forecast-hourly``: :func:`deployment_name`); with an interval or no
    schedule they keep the names ``train-daily`` and ``forecast-daily``. Runs go to the Prefect
    API in ``PREFECT_API_URL`` (a ``prefect server start`` that outlives this process keeps the
    schedule and history). Stopping pauses the schedules (Prefect's ``pause_on_shutdown``).
    """
    from prefect import serve

    deployments = build_deployments(
        config,
        training_cron,
        forecast_cron,
        forecast_args,
        interval,
        training_overrides,
        forecast_interval,
    )
    serve(*deployments)
