"""A planted password never reaches a param, tag, artifact, study attribute, Prefect parameter
or log line (the real `seqlab` command; PostgreSQL's trust auth ignores the password)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import cli_env

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
SECRET = "s3cretPW42"


def test_a_password_in_the_storage_url_leaves_no_trace(tmp_path: Path, pg_url: str) -> None:
    storage = pg_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    assert SECRET in storage
    env = cli_env(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "--verbose",
            "tune.n_trials=2",
            "train.max_epochs=2",
            "model.hidden_size=8",
            "window.input_size=12",
            "tune.search_space={model.cell: {type: categorical, choices: [gru, lstm]}}",
            f"tune.storage={storage}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert SECRET not in out.stdout + out.stderr  # logs, --verbose included

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not [v for v in values if SECRET in v], run.info.run_name
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.params["tune.storage"].startswith("postgresql+psycopg2://postgres:***@")
    # Every file and database written, read as bytes: artifacts, MLflow's and Prefect's stores.
    leaked = [
        str(p) for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()
    ]
    assert not leaked, leaked
    # The study's attributes (what workers read) hold the redacted URL only.
    name = optuna.get_all_study_names(storage=pg_url)[0]
    attrs = optuna.load_study(study_name=name, storage=pg_url).user_attrs
    assert SECRET not in repr(attrs)
