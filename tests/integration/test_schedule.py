"""A scheduled training run end to end: real Prefect server + ``serve()`` in a subprocess.

The deployment comes due on a short interval, a served flow run trains a tiny model into a
temporary MLflow store, and the registered version's run records ``seqlab.trigger=schedule``.
Every process started here is stopped, and none may be left behind.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG, tiny_overrides
from seqlab import servers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
MODEL = "seqlab-airpassengers"
WAIT_S = 180


def _api(api_url: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{api_url}{path}", data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _training_runs(api_url: str, *states: str) -> list[dict]:
    """Runs of the training deployment in these state types (the schedule queues many ahead)."""
    return _api(api_url, "/flow_runs/filter",
                {"deployments": {"name": {"any_": ["train-daily"]}},
                 "flow_runs": {"state": {"type": {"any_": list(states)}}}, "limit": 20})


SERVE = """
import sys, json
from seqlab.schedules import serve_flows
args = json.loads(sys.argv[1])
serve_flows(args["config"], None, None, {}, interval=args["interval"],
            training_overrides=args["overrides"])
"""


def test_served_schedule_trains_and_registers(tmp_path: Path) -> None:
    started: list[servers.ManagedProcess] = []
    try:
        server = servers.start_prefect_server(
            home=tmp_path / "prefect-server", ui=False,
            # Schedule runs every few seconds instead of every minute.
            env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "3"})
        started.append(server)
        api = server.extra["api_url"]

        args = {"config": DEFAULT_CONFIG, "interval": 8,
                "overrides": tiny_overrides(tmp_path, **{"eval.plot": False})}
        serve = servers.spawn(
            "seqlab-serve", [sys.executable, "-c", SERVE, json.dumps(args)], cwd=tmp_path,
            env={"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect-client"),
                 "PREFECT_RUNNER_POLL_FREQUENCY": "2"},
            log_path=tmp_path / "serve.log")
        started.append(serve)

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
        assert completed is not None, (f"no scheduled run completed in {WAIT_S} s:\n"
                                       f"{serve.log_tail()}")

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
        for proc in reversed(started):
            proc.stop()
    for proc in started:
        assert not proc.alive(), proc.name
        assert not proc.leftovers(), f"{proc.name} left processes: {proc.leftovers()}"
