"""Deployment names say when they run: a forecast on an hourly cron is not `forecast-daily`."""

from __future__ import annotations

import pytest

from conftest import DEFAULT_CONFIG
from flows.deployments import build_deployments, deployment_name


@pytest.mark.parametrize(
    "cron, name",
    [
        ("0 3 * * *", "forecast-daily"),
        ("0 * * * *", "forecast-hourly"),
        ("30  6 * * 1", "forecast-weekly"),
        ("0 3 1 * *", "forecast-monthly"),
        ("*/5 * * * *", "forecast-scheduled"),
        (None, "forecast-daily"),  # unscheduled (or an interval): the stable default name
    ],
)
def test_deployment_name_follows_the_crons_period(cron, name) -> None:
    assert deployment_name("forecast", cron, "forecast-daily") == name


def test_the_readmes_hourly_forecast_is_served_as_forecast_hourly(tmp_path) -> None:
    deployments = build_deployments(
        DEFAULT_CONFIG,
        "0 3 * * *",
        "0 * * * *",
        {"input": "airpassengers", "output": str(tmp_path / "fc.csv")},
        None,
    )
    assert [d.name for d in deployments] == ["train-daily", "forecast-hourly"]
