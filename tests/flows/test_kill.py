"""SIGKILL a whole pipeline (its process group) at several moments: the next run reaps what was
left RUNNING and finishes exactly n_trials; a run waiting for workers stops on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import cli_env
from seqlab.tuning.storage import ATTR_CONFIG

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]  # a loaded machine
ARGS = [
    "tune.n_trials=4",
    "tune.n_startup_trials=2",
    "train.max_epochs=60",
    "model.hidden_size=8",
    "window.input_size=12",
    "registry.register=false",
    "tune.search_space={train.lr: {type: float, low: 0.001, high: 0.01, log: true}}",
]


def start(tmp: Path, args: list[str]) -> subprocess.Popen:
    env = cli_env(tmp)
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", *args],
        cwd=tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # its own process group, as a scheduler's


def _storage(tmp: Path, lock_timeout: float = 60) -> optuna.storages.RDBStorage | None:
    """The run's Optuna storage, once the run has created its schema; None before.

    Opened only when the schema is complete (its alembic stamp is written last), and without
    creating tables: a reader racing the run to create them could make either one fail. Any
    error past that point is a real one and fails the test.
    """
    db = tmp / "mlruns" / "optuna.db"
    if not db.exists():
        return None
    ro = f"file:{db}?mode=ro"
    with contextlib.closing(sqlite3.connect(ro, uri=True, timeout=lock_timeout)) as con:
        stamped = (
            con.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'"
            ).fetchone()[0]
            and con.execute("SELECT count(*) FROM alembic_version").fetchone()[0]
        )
    if not stamped:
        return None
    return optuna.storages.RDBStorage(
        f"sqlite:///{db}",
        engine_kwargs={"connect_args": {"timeout": lock_timeout}},  # wait for the run's writes
        skip_table_creation=True,
    )


def trials(tmp: Path, lock_timeout: float = 60) -> list:
    storage = _storage(tmp, lock_timeout)
    if storage is None:
        return []
    names = optuna.get_all_study_names(storage)
    return [t for n in names for t in optuna.load_study(study_name=n, storage=storage).trials]


def published(tmp: Path) -> bool:
    """The run has published its study (config attached): it is about to run or wait for trials."""
    storage = _storage(tmp)
    return storage is not None and any(
        ATTR_CONFIG in s.user_attrs for s in storage.get_all_studies()
    )


def kill_when(
    proc: subprocess.Popen, tmp: Path, ready, what: str, near=None, timeout: float = 400
) -> None:
    """SIGKILL the run's process group at a moment where ``ready(trials)`` holds.

    The run is stopped (SIGSTOP) before each decisive read, so what the test saw is what the
    kill leaves. Read while it ran, a trial could finish between the read and the kill (short
    trials, a loaded machine), leaving nothing RUNNING to reap. Until ``near(trials)`` holds
    (default: ``ready``) the run is read while it runs; from then on it is stopped, read, and
    let run 50 ms at a time, so a moment that lasts longer than that is never stepped over
    however slow the reads are.
    """
    near = near or ready
    deadline = time.monotonic() + timeout
    close = False
    try:
        while True:
            assert proc.poll() is None, f"the run ended before {what}: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, f"never reached {what}"
            close = close or near(trials(tmp))
            if close:
                os.killpg(proc.pid, signal.SIGSTOP)
                try:
                    frozen = trials(tmp, lock_timeout=5)
                except (sqlite3.OperationalError, sqlalchemy.exc.OperationalError) as e:
                    # Stopped while it held the write lock (mid-commit): resume, read again.
                    assert "locked" in str(e), e
                    frozen = []
                if ready(frozen):
                    break
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.05)
    finally:  # also when the test fails here: never leave a stopped run behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    proc.stderr.close()


def running(ts) -> bool:
    return any(t.state == TrialState.RUNNING for t in ts)


def test_killed_pipelines_leave_nothing_running_and_the_next_finishes_exactly(tmp_path) -> None:
    # Moment 1: right after the first trial starts.
    kill_when(start(tmp_path, ARGS), tmp_path, running, "a running trial")
    # Moment 2: mid-study, a trial finished and the next one running. The first run's trial may
    # still be RUNNING here (killed before it recorded its owner, it is reaped only after a
    # grace period): the running trial must be one this run started.
    before = trials(tmp_path)
    done = sum(t.state == TrialState.COMPLETE for t in before)
    last = max(t.number for t in before)
    kill_when(
        start(tmp_path, ARGS),
        tmp_path,
        lambda ts: (
            sum(t.state == TrialState.COMPLETE for t in ts) > done
            and any(t.state == TrialState.RUNNING and t.number > last for t in ts)
        ),
        "a finished trial and a new running one",
        near=lambda ts: any(t.number > last for t in ts),  # this run's trials have begun
    )
    # The next run reaps both and tops the study up to exactly n_trials.
    final = start(tmp_path, ARGS)
    assert final.wait(900) == 0, final.stderr.read()[-3000:]
    final.stderr.close()
    ts = trials(tmp_path)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ts) == 4
    assert not running(ts)
    failed = [t for t in ts if t.state == TrialState.FAIL]
    assert len(failed) == 2, [(t.number, t.state.name, t.user_attrs, t.system_attrs) for t in ts]
    reasons = [t.user_attrs.get("fail_reason", "") for t in failed]
    # Reaped as its dead owner's (or, had it no owner yet, an ownerless or silent trial's).
    assert all(
        r.startswith(("worker process died", "no owner", "no heartbeat")) for r in reasons
    ), reasons
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("seqlab-airpassengers")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.info.status for r in parents) == ["FINISHED", "KILLED", "KILLED"]


def test_a_run_waiting_for_workers_stops_on_sigterm(tmp_path) -> None:
    proc = start(tmp_path, [*ARGS, "tune.workers=0"])
    deadline = time.monotonic() + 400
    while not published(tmp_path):  # published: next, it waits for `seqlab tune-worker`s
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the run never published its study"
        time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(300) == 130, proc.stderr.read()[-2000:]
    proc.stderr.close()
    print(f"stopped {time.monotonic() - t0:.1f} s after SIGTERM")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("seqlab-airpassengers")
    [run] = client.search_runs([exp.experiment_id])
    assert run.info.status in ("FAILED", "KILLED")
