"""Team mode: a real ``mlflow server`` on PostgreSQL with proxied artifacts, Optuna on PostgreSQL.

The test creates its own databases on the PostgreSQL at 127.0.0.1:5432 (skipped when it is
unreachable), runs the training flow against ``http://127.0.0.1:PORT`` and checks what a team
member would see on that server: the parent run, its nested trials, the artifacts in the server's
artifact root, and a registered version carrying both aliases. Server and databases are removed.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG, tiny_overrides
from flows import servers

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.timeout(300)]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MODEL = "seqlab-airpassengers"


def _admin():
    import psycopg2

    try:
        conn = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL at {PG['host']}:{PG['port']} unreachable: {e}")
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return conn


def _databases(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database")
        return {row[0] for row in cur.fetchall()}


@pytest.fixture
def pg_urls():
    """Two fresh databases (MLflow and Optuna both keep an ``alembic_version`` table).

    ``postgresql+psycopg2://``: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which
    is not a dependency (psycopg2-binary is).
    """
    conn = _admin()
    prefix = f"seqlab_team_{uuid.uuid4().hex[:10]}"
    names = {"mlflow": f"{prefix}_mlflow", "optuna": f"{prefix}_optuna"}
    try:
        with conn.cursor() as cur:
            for name in names.values():
                cur.execute(f'CREATE DATABASE "{name}"')
        yield {
            k: f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{v}"
            for k, v in names.items()
        }
    finally:
        with conn.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        assert not set(names.values()) & _databases(conn)
        conn.close()


def test_training_flow_against_mlflow_server_on_postgres(
    tmp_path: Path, pg_urls, prefect_harness
) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    from flows.training import training_pipeline

    artifact_root = tmp_path / "server-artifacts"
    server = servers.start_mlflow_server(
        pg_urls["mlflow"], artifact_root, log_path=tmp_path / "mlflow-server.log"
    )
    try:
        overrides = tiny_overrides(
            tmp_path,
            **{
                "tracking.tracking_uri": server.url,
                "tracking.artifact_location": None,  # the server's proxied root
                "tune.storage": pg_urls["optuna"],
                "eval.plot": False,
                "registry.require_beat_baseline": False,
            },
        )
        summary = training_pipeline(DEFAULT_CONFIG, overrides, trigger="team-test")

        client = MlflowClient(server.url, registry_uri=server.url)
        parent = client.get_run(summary.run_id)
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["seqlab.trigger"] == "team-test"
        assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        assert len(children) == 2
        assert all(c.info.status == "FINISHED" for c in children)
        names = sorted(c.info.run_name for c in children)  # the outcome, e.g. trial-000-val0.612
        assert [n[:9] for n in names] == ["trial-000", "trial-001"], names

        versions = client.search_model_versions(f"name='{MODEL}'")
        assert len(versions) == 1 and versions[0].run_id == parent.info.run_id
        version = client.get_model_version(MODEL, versions[0].version)
        assert {"challenger", "champion"} <= set(version.aliases)
        # Uploaded through the server, stored in its artifact root (not on the client's disk).
        assert any(p.name == "MLmodel" for p in artifact_root.rglob("MLmodel"))
        assert not (tmp_path / "artifacts").exists()

        study = optuna.load_study(study_name=summary.study, storage=pg_urls["optuna"])
        assert len(study.trials) == 2
    finally:
        server.stop()
    assert not server.alive() and not server.leftovers()
