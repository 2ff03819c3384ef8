"""Workers: the pipeline's tuning entry point, the worker command line, dead-worker recovery,
and a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import sine_frame
from seqlab import tune, workers
from seqlab.config import build_config
from seqlab.devices import WorkerSlot
from seqlab.pipeline import ingest, validate_data
from seqlab.tune import HEARTBEAT_ATTR, OWNER_ATTR

ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
       "DO_NOT_TRACK": "true"}


def write_sine_csv(path: Path, n: int = 90) -> Path:
    sine_frame(n=n).to_csv(path, index=False)
    return path


def tiny_config(tmp_path, **tune_overrides):
    return build_config({
        "data": {"source": str(write_sine_csv(tmp_path / "sine.csv")), "time_column": "ds",
                 "target": "y", "freq": "D"},
        "window": {"input_size": 14, "horizon": 7},
        "model": {"cell": "gru", "hidden_size": 4},
        "train": {"max_epochs": 3, "patience": None, "device": "cpu", "num_threads": 1},
        "tune": {"n_trials": 2, "storage": f"sqlite:///{tmp_path}/optuna.db", "n_startup_trials": 2,
                 "workers": 1, "heartbeat_interval": 2, **tune_overrides,
                 "search_space": tune_overrides.get("search_space", {
                     "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}})},
    })


def series_for(cfg):
    return validate_data(ingest(cfg), cfg)


# ask() on a heartbeat storage outside optimize() warns; these tests do it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture(autouse=True)
def quiet_and_no_faults(monkeypatch):
    monkeypatch.delenv(tune.FAULTS_ENV, raising=False)
    monkeypatch.setattr(workers, "_interrupt_on_sigterm", lambda: None)  # keep pytest's handler


def published_study(cfg, series, digest=None):
    study = tune.make_study(cfg, tune.make_storage(cfg.tune.storage))
    tune.publish(study, cfg, digest or series.digest, None)
    return study


# ---------------------------------------------------------------- the pipeline side


def test_tune_study_tops_up_then_reports_already_complete(tmp_path):
    cfg = tiny_config(tmp_path)
    series = series_for(cfg)
    first = workers.tune_study(cfg, series)
    assert first["mode"] == "in-process" and first["finished_after"] == 2
    assert first["running_trials"] == [] and set(first["best_params"]) == {"train.lr"}
    second = workers.tune_study(cfg, series)
    assert second["mode"] == "already complete" and second["finished_before"] == 2
    assert second["best_params"] == first["best_params"]


def test_no_trials_touches_no_storage(tmp_path):
    cfg = tiny_config(tmp_path, n_trials=0)
    out = workers.tune_study(cfg, series_for(cfg))
    assert out["best_params"] == {} and out["running_trials"] == []
    assert not (tmp_path / "optuna.db").exists()


def test_waiting_for_external_workers_times_out_with_instructions(tmp_path):
    cfg = tiny_config(tmp_path, workers=0, wait_timeout=0.5)
    with pytest.raises(TimeoutError, match="seqlab tune-worker --study"):
        workers.tune_study(cfg, series_for(cfg))


def test_worker_commands_pass_packing_and_heartbeat():
    keep = workers.worker_command("s", "sqlite:///x.db", WorkerSlot(0, 0, True), None, 5)
    leave = workers.worker_command("s", "sqlite:///x.db", WorkerSlot(1, 0, keep_on_oom=False), 60)
    assert keep[1:3] == ["-m", "seqlab.workers"] and "--leave-on-oom" not in keep
    assert keep[keep.index("--heartbeat-interval") + 1] == "5"
    assert "--leave-on-oom" in leave and leave[leave.index("--timeout") + 1] == "60"


def test_each_worker_gets_its_own_sampler_seed(monkeypatch):
    monkeypatch.setenv("SEQLAB_WORKER_RANK", "3")
    assert workers.worker_seed_offset() == 4
    monkeypatch.delenv("SEQLAB_WORKER_RANK")
    assert workers.worker_seed_offset() > 0  # never the pipeline's own (offset 0)


# ---------------------------------------------------------------- the worker command line


def test_worker_joins_a_published_study_and_fills_it(tmp_path):
    cfg = tiny_config(tmp_path, n_trials=2)
    published_study(cfg, series_for(cfg))
    assert workers.main(["--study", cfg.study_name, "--storage", cfg.tune.storage]) == 0
    study = optuna.load_study(study_name=cfg.study_name, storage=cfg.tune.storage)
    assert tune.finished_count(study) == 2


def test_worker_exit_codes_for_user_errors(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    series = series_for(cfg)
    assert workers.main(["--study", "nope", "--storage", cfg.tune.storage]) == 2
    assert "not found" in capsys.readouterr().err
    published_study(cfg, series, digest="0" * 64)
    assert workers.main(["--study", cfg.study_name, "--storage", cfg.tune.storage]) == 2
    assert "differs from the study's" in capsys.readouterr().err


def test_worker_stops_on_a_fail_streak_with_exit_code_3(tmp_path, capsys):
    cfg = tiny_config(tmp_path, search_space={
        "model.hidden_size": {"type": "int", "low": 0, "high": 0}})
    published_study(cfg, series_for(cfg))
    assert workers.main(["--study", cfg.study_name, "--storage", cfg.tune.storage]) == 3
    assert "trials in a row failed" in capsys.readouterr().err


# ---------------------------------------------------------------- dead workers


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_trial_of_a_dead_local_worker_is_failed_with_reason(tmp_path):
    storage = tune.make_storage(f"{tmp_path}/study.log")  # journal: no heartbeat of its own
    study = optuna.create_study(study_name="s", storage=storage)
    dead, alive, remote = study.ask(), study.ask(), study.ask()
    study._storage.set_trial_system_attr(dead._trial_id, OWNER_ATTR, tune.owner_record(_dead_pid()))
    study._storage.set_trial_system_attr(alive._trial_id, OWNER_ATTR, tune.owner_record())
    study._storage.set_trial_system_attr(remote._trial_id, OWNER_ATTR,
                                         {"host": "elsewhere", "pid": 1})
    assert workers.fail_orphaned_trials(study) == [dead.number]
    failed = study.trials[dead.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("worker process died")
    assert [t.state for t in study.trials[1:]] == [TrialState.RUNNING] * 2


def test_pid_reuse_is_not_mistaken_for_the_worker():
    owner = tune.owner_record()
    assert workers.owner_alive(owner) is True
    assert workers.owner_alive({**owner, "start": "1"}) is False  # same pid, another process
    assert workers.owner_alive({**owner, "host": "elsewhere"}) is None


def test_journal_trial_whose_heartbeat_stopped_is_failed_as_stale(tmp_path):
    study = optuna.create_study(study_name="s", storage=tune.make_storage(f"{tmp_path}/study.log"))
    silent, beating, young = study.ask(), study.ask(), study.ask()
    old = time.time() - 3600
    study._storage.set_trial_system_attr(silent._trial_id, HEARTBEAT_ATTR, old)
    study._storage.set_trial_system_attr(beating._trial_id, HEARTBEAT_ATTR, time.time())
    assert workers.fail_stale_trials(study, heartbeat_interval=5) == [silent.number]
    assert "no heartbeat" in study.trials[0].user_attrs["fail_reason"]
    assert [t.state for t in study.trials[1:]] == [TrialState.RUNNING] * 2


def test_journal_trial_that_never_beat_counts_from_its_start(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "JOURNAL_CLOCK_SKEW_S", 0)
    study = optuna.create_study(study_name="s", storage=tune.make_storage(f"{tmp_path}/study.log"))
    trial = study.ask()  # its worker died before the first heartbeat
    assert workers.fail_stale_trials(study, heartbeat_interval=1) == []
    time.sleep(2.2)
    assert workers.fail_stale_trials(study, heartbeat_interval=1) == [trial.number]


def test_rdb_trial_without_heartbeat_is_failed_as_stale(tmp_path):
    storage = tune.make_storage(f"sqlite:///{tmp_path}/hb.db", heartbeat_interval=1)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(3.2)  # grace is 2 s; SQLite's clock has one-second resolution
    assert workers.fail_stale_trials(study) == [trial.number]
    assert "no heartbeat for over 2s" in study.trials[0].user_attrs["fail_reason"]


# ---------------------------------------------------------------- a real worker process


def test_sigterm_fails_the_running_trial_and_exits_cleanly(tmp_path):
    cfg = tiny_config(tmp_path, n_trials=3)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_epochs": 50})})
    study = published_study(cfg, series_for(cfg))
    env = {**os.environ, **ENV, tune.FAULTS_ENV: "*:stall=0.2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "seqlab.workers", "--study", cfg.study_name,
                             "--storage", cfg.tune.storage], env=env, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the worker never started a trial"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == workers.EXIT_INTERRUPTED
    finally:
        if proc.poll() is None:
            proc.kill()
    [trial] = study.get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith("interrupted")


def test_cli_tune_worker_joins_the_study(tmp_path):
    from typer.testing import CliRunner

    from seqlab.cli import app

    cfg = tiny_config(tmp_path, n_trials=1)
    published_study(cfg, series_for(cfg))
    result = CliRunner().invoke(app, ["tune-worker", "--study", cfg.study_name,
                                      "--storage", cfg.tune.storage])
    assert result.exit_code == 0, result.output
    assert f"finished 1 trial(s) of study {cfg.study_name}" in result.output
