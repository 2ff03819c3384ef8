"""Every RUNNING trial and pipeline run has a way to end: owners, ownerless trials, dead runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from seqlab.processes import owner_alive, owner_record
from seqlab.registry import tracking
from seqlab.tuning.liveness import OWNER_ATTR, fail_orphaned_trials
from seqlab.tuning.storage import make_storage


def dead_owner() -> dict:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    owner = owner_record(proc.pid)
    proc.kill()
    proc.wait()
    return owner


def test_owner_liveness() -> None:
    assert owner_alive(owner_record()) is True
    assert owner_alive(dead_owner()) is False
    assert owner_alive({**owner_record(), "host": "elsewhere"}) is None  # heartbeats decide


def test_a_trial_that_never_recorded_an_owner_is_failed_after_the_grace(tmp_path) -> None:
    study = optuna.create_study(storage=make_storage(f"sqlite:///{tmp_path}/o.db"))
    trial = study.ask()  # its worker died before recording itself
    alive = study.ask()
    study._storage.set_trial_system_attr(alive._trial_id, OWNER_ATTR, owner_record())
    assert fail_orphaned_trials(study, ownerless_grace=3600) == []  # still within the grace
    time.sleep(1.1)
    assert fail_orphaned_trials(study, ownerless_grace=1) == [trial.number]
    failed = study.trials[trial.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("no owner recorded and no heartbeat")
    assert study.trials[alive.number].state == TrialState.RUNNING  # its owner lives


def test_a_pipeline_run_whose_process_died_is_marked_killed(tiny_config) -> None:
    cfg = tiny_config()
    uri = tracking.resolve_tracking_uri(cfg.tracking.tracking_uri)
    client = MlflowClient(uri)
    exp = tracking.ensure_experiment(client, cfg.experiment_name, None)
    dead = client.create_run(exp, tags={tracking.OWNER_TAG: json.dumps(dead_owner())})
    live = client.create_run(exp, tags={tracking.OWNER_TAG: json.dumps(owner_record())})
    ref = tracking.start_parent_run(cfg, {})  # what the next run does first
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    assert "process died" in client.get_run(dead.info.run_id).data.tags["seqlab.fail_reason"]
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert json.loads(client.get_run(ref.run_id).data.tags[tracking.OWNER_TAG])["pid"] > 0
