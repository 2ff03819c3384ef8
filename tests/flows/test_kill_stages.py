"""A real `seqlab run` SIGKILLed at each stage after (and during) tuning leaves a state the next
run finds and repairs, and says so in one line each.

The kill lands at named points (``seqlab.killpoints``: ``SEQLAB_KILL_AT=stage`` or
``stage:group``), between the very writes that matter, where a timer would race. Runs share one
store per chain: each killed run's leftovers are repaired by the next run (which is then killed
at the next stage), and a last clean run repairs the final one. After every kill the process
table holds nothing of the run; after the clean run the store is consistent: no run or trial left
RUNNING, every version complete (tags, ``challenger`` move, ``seqlab.registered``), every alias
where its last audit line says, the champion's decision on it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import cli_env, tiny_overrides
from flows import servers
from seqlab.registry import alias_history
from seqlab.registry.versions import REGISTERED_TAG

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc"),
]
NAME = "seqlab-airpassengers"
KILLED = "marked KILLED: its process died before the run finished"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One Prefect server for every run here (each would otherwise start its own)."""
    server = servers.start_prefect_server(home=tmp_path_factory.mktemp("prefect"), ui=False)
    yield server.extra["api_url"]
    server.stop()


def run(tmp: Path, api: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**cli_env(tmp), "PREFECT_API_URL": api}
    env.pop("SEQLAB_KILL_AT", None)
    if kill_at:
        env["SEQLAB_KILL_AT"] = kill_at
    overrides = tiny_overrides(
        tmp,
        **{
            "tune.n_trials": 2,
            "model.ensemble_size": 1,
            "eval.plot": False,
            "registry.require_beat_baseline": False,
        },
    )
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", *overrides],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,  # its own group: a group kill takes nothing of the test's
    )
    if kill_at:
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
        assert not _processes_of(tmp), "a killed run left processes behind"
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _processes_of(tmp: Path, wait: float = 30) -> list[int]:
    """Live processes whose command line names ``tmp`` (the run's stores), after ``wait``."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(tmp).encode() in cmdline.read_bytes():
                    found.append(int(cmdline.parent.name))
            except OSError:
                continue
        found = [p for p in found if p != os.getpid()]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def repaired(tmp: Path) -> list[str]:
    """What the newest run of the store says it repaired (its ``seqlab.repaired`` tag)."""
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(NAME)
    parents = [
        r
        for r in client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
        if "mlflow.parentRunId" not in r.data.tags
    ]
    return parents[0].data.tags.get("seqlab.repaired", "").splitlines()


def assert_consistent(tmp: Path) -> None:
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    history = alias_history(client, NAME)
    versions = client.search_model_versions(f"name='{NAME}'")
    named = {m.to_version for m in history}
    for mv in versions:
        assert mv.tags.get(REGISTERED_TAG) == "true", mv.version
        assert "seqlab.data_digest" in mv.tags and str(mv.version) in named
    last = {m.alias: m.to_version for m in history}
    for alias, version in last.items():
        assert str(client.get_model_version_by_alias(NAME, alias).version) == version
    if "champion" in last:
        tags = client.get_model_version(NAME, last["champion"]).tags
        assert tags["seqlab.promotion.decision"] == "promoted"
    storage = f"sqlite:///{tmp}/optuna.db"
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert not [t.number for t in study.trials if t.state == TrialState.RUNNING]


# Each stage, and what the next run must say it repaired besides the killed run itself.
CHAIN = [
    ("tuning", [r"trial 0 of a dead process failed"]),
    ("evaluated-refit:group", []),
    ("backtest", []),
    ("serving-refit", []),
    ("log-model", []),
    ("register-tags", [r"model version \d+ of seqlab-airpassengers deleted: its registration"]),
    (
        "alias-move-challenger",
        [r"alias challenger of seqlab-airpassengers moved to v\d+, as audit"],
    ),
    ("promote", [r"v\d+ of seqlab-airpassengers tagged promoted, as audit line #\d+ recorded"]),
]


def test_a_run_killed_at_each_stage_is_repaired_by_the_next(tmp_path, api) -> None:
    expected = dict(CHAIN)
    previous = None
    for stage in [*expected, None]:
        run(tmp_path, api, stage)
        if previous is not None:
            lines = repaired(tmp_path)
            assert sum(KILLED in line for line in lines) == 1, (previous, lines)
            for pattern in expected[previous]:
                assert any(re.search(pattern, line) for line in lines), (previous, lines)
        previous = stage
    assert_consistent(tmp_path)


def test_a_promotion_killed_between_audit_line_and_alias_is_completed(tmp_path, api) -> None:
    run(tmp_path, api, "alias-move-champion:group")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, registry_uri=uri)
    moves = alias_history(client, NAME)
    assert [m.alias for m in moves] == ["challenger", "champion"]  # the line, not the move
    with pytest.raises(Exception, match="champion"):
        client.get_model_version_by_alias(NAME, "champion")
    run(tmp_path, api)
    lines = repaired(tmp_path)
    assert any(
        "alias champion of seqlab-airpassengers moved to v1, as audit line #2" in x for x in lines
    ), lines
    assert any("v1 of seqlab-airpassengers tagged promoted" in x for x in lines), lines
    assert_consistent(tmp_path)
