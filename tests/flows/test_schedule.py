"""A scheduled training run end to end: real Prefect server + ``serve()`` in a subprocess.

The deployment comes due on a short interval, a served flow run trains a tiny model into a
temporary MLflow store, and the registered version's run records ``seqlab.trigger=schedule``.
Every process started here is stopped, and none may be left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows import servers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
MODEL = "seqlab-airpassengers"
REPO = Path(DEFAULT_CONFIG).resolve().parents[1]
WAIT_S = 180


def _api(api_url: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{api_url}{path}",
        data=data,
        method="POST" if data else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _training_runs(api_url: str, *states: str) -> list[dict]:
    """Runs of the training deployment in these state types (the schedule queues many ahead)."""
    return _api(
        api_url,
        "/flow_runs/filter",
        {
            "deployments": {"name": {"any_": ["train-daily"]}},
            "flow_runs": {"state": {"type": {"any_": list(states)}}},
            "limit": 20,
        },
    )


SERVE = """
import sys, json
from flows.deployments import serve_flows
args = json.loads(sys.argv[1])
serve_flows(args["config"], None, None, {}, interval=args["interval"],
            training_overrides=args["overrides"])
"""


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """One real ``prefect server start`` for this module, stopped with everything it spawned."""
    server = servers.start_prefect_server(
        home=tmp_path_factory.mktemp("prefect-server"),
        ui=False,
        # Schedule runs every few seconds instead of every minute.
        env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "3"},
    )
    yield server
    server.stop()
    assert not server.alive() and not server.leftovers()


def test_served_schedule_trains_and_registers(tmp_path: Path, prefect_server) -> None:
    api = prefect_server.extra["api_url"]
    args = {
        "config": DEFAULT_CONFIG,
        "interval": 8,
        "overrides": tiny_overrides(
            tmp_path, **{"eval.plot": False, "registry.require_beat_baseline": False}
        ),
    }
    serve = servers.spawn(
        "seqlab-serve",
        [sys.executable, "-c", SERVE, json.dumps(args)],
        cwd=tmp_path,
        env={
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp_path / "prefect-client"),
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        },
        log_path=tmp_path / "serve.log",
    )
    try:
        t0 = time.monotonic()
        deadline = t0 + WAIT_S
        completed = None
        while time.monotonic() < deadline and completed is None:
            assert serve.alive(), f"serve exited early:\n{serve.log_tail()}"
            try:
                runs = _training_runs(api, "COMPLETED", "FAILED", "CRASHED")
            except OSError:
                runs = []
            bad = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
            assert not bad, f"scheduled run {bad[0]['state_name']}:\n{serve.log_tail()}"
            completed = next((r for r in runs if r["state_type"] == "COMPLETED"), None)
            time.sleep(1)
        assert completed is not None, (
            f"no scheduled run completed in {WAIT_S} s:\n{serve.log_tail()}"
        )
        print(f"first scheduled run completed {time.monotonic() - t0:.0f} s after serve started")
        deployment = _api(api, "/deployments/name/seqlab-training/train-daily")
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        assert deployment["parameters"]["trigger"] == "schedule"
        assert completed["deployment_id"] == deployment["id"]
        # Runs that came due while one was training queue up; they never run two at a time.
        assert len(_training_runs(api, "RUNNING")) <= 1

        from mlflow.tracking import MlflowClient

        uri = f"sqlite:///{tmp_path}/mlflow.db"
        client = MlflowClient(uri, registry_uri=uri)
        versions = client.search_model_versions(f"name='{MODEL}'")
        assert versions, "the scheduled run registered no model version"
        run = client.get_run(min(versions, key=lambda v: int(v.version)).run_id)
        assert run.data.tags["seqlab.trigger"] == "schedule"
        assert run.data.tags["prefect.deployment_id"] == deployment["id"]
        assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    finally:
        serve.stop()  # also ends a queued run that may have started meanwhile
    assert not serve.alive()
    assert not serve.leftovers(), f"serve left processes behind: {serve.leftovers()}"


def test_prefect_yaml_deploys_both_deployments_to_the_process_pool(
    tmp_path: Path, prefect_server
) -> None:
    """``prefect deploy --all`` from the repo root registers what prefect.yaml declares."""
    api = prefect_server.extra["api_url"]
    env = {
        **os.environ,
        **servers.QUIET_ENV,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
    }
    prefect = [sys.executable, "-m", "prefect"]
    for cmd in (
        ["work-pool", "create", "seqlab-process", "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--all"],
    ):
        out = subprocess.run(
            [*prefect, *cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
        )
        assert out.returncode == 0, f"prefect {' '.join(cmd)}:\n{out.stdout}\n{out.stderr}"

    training = _api(api, "/deployments/name/seqlab-training/train-daily")
    assert training["entrypoint"] == "flows/training.py:training_pipeline"
    assert training["work_pool_name"] == "seqlab-process"
    assert training["parameters"] == {
        "config": "conf/default.yaml",
        "overrides": [],
        "trigger": "schedule",
    }
    assert training["global_concurrency_limit"]["limit"] == 1
    assert training["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert [s["schedule"]["cron"] for s in training["schedules"]] == ["0 3 * * *"]
    # Flow runs start in the repo root, where the relative config and store paths resolve.
    assert training["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
    ]

    forecast = _api(api, "/deployments/name/seqlab-forecast/forecast-daily")
    assert forecast["entrypoint"] == "flows/forecast.py:forecast_flow"
    assert forecast["parameters"]["alias"] == "champion"
    assert forecast["global_concurrency_limit"]["limit"] == 1


def _seqlab_serve(tmp_path: Path, api: str, *args: str) -> servers.ManagedProcess:
    return servers.spawn(
        "seqlab-serve",
        [sys.executable, "-m", "flows.cli", "serve", *args],
        cwd=tmp_path,
        env={
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp_path / "prefect-client"),
            "SEQLAB_API_WATCH_S": "1",
            "PYTHONPATH": str(REPO),
        },
        log_path=tmp_path / "serve.log",
    )


def test_seqlab_serve_without_its_server_says_so_in_one_line(tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{servers.free_port()}/api"  # nothing listens there
    serve = _seqlab_serve(tmp_path, api, "--interval", "3600")
    try:
        assert serve.process.wait(timeout=60) == 4
        lines = [line for line in serve.log_tail().splitlines() if line.strip()]
        assert lines == [
            f"error: no Prefect server answers at {api} (PREFECT_API_URL): start one with "
            "`prefect server start`, or unset PREFECT_API_URL to serve against a temporary one"
        ], lines
    finally:
        serve.stop()


def test_seqlab_serve_stops_in_one_line_when_its_server_goes(tmp_path: Path, monkeypatch) -> None:
    from flows.prefect_server import start_temporary_prefect_server

    # a database of its own: a deployment of another test must not pass for this one's
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-server"))
    server = start_temporary_prefect_server()
    api = server.extra["api_url"]
    serve = _seqlab_serve(tmp_path, api, "--interval", "3600")
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:  # serving once its deployment exists
            assert serve.alive(), serve.log_tail()
            try:
                _api(api, "/deployments/name/seqlab-training/train-daily")
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail(f"seqlab serve did not create its deployment:\n{serve.log_tail()}")
        server.stop()
        code = serve.process.wait(timeout=60)  # not Prefect's minute of retries, a traceback
        log = serve.log_tail(20_000)
        assert code == 4, log
        assert log.rstrip().splitlines()[-1] == (
            f"error: the Prefect server at {api} stopped answering; seqlab serve stops (start "
            "the server again, then seqlab serve)"
        )
        assert "Traceback" not in log
    finally:
        serve.stop()
        server.stop()
    assert not serve.leftovers() and not server.leftovers()
