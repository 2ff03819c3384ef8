"""Workers: the pipeline's tuning entry point, the worker command line, dead-worker recovery,
and a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from conftest import FAULT_WORKER, worker_env
from seqlab.pipeline import ingest, validate_data
from seqlab.training.devices import WorkerSlot
from seqlab.tuning import TuningResult, liveness, storage, tune_study, worker
from seqlab.tuning import objective as objective_mod
from seqlab.tuning.liveness import HEARTBEAT_ATTR, OWNER_ATTR
from seqlab.tuning.pool import worker_command

# ask() on a heartbeat storage outside optimize() warns; these tests do it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture
def cfg_for(tiny_config):
    """The shared tiny config with two trials and a short heartbeat."""

    def make(**overrides):
        return tiny_config(**{"tune.n_trials": 2, "tune.heartbeat_interval": 2, **overrides})

    return make


def series_for(cfg):
    return validate_data(ingest(cfg), cfg)


@pytest.fixture(autouse=True)
def keep_pytests_sigterm_handler(monkeypatch):
    monkeypatch.setattr(worker, "interrupt_on_sigterm", lambda: None)


def published_study(cfg, series, digest=None):
    """The study of this config and data, published as the pipeline does."""
    digest = digest or series.digest
    study = storage.open_study(cfg, storage.make_storage(cfg.tune.storage), digest).study
    storage.publish(study, cfg, digest, None)
    return study


# ---------------------------------------------------------------- the pipeline side


def test_tune_study_tops_up_then_reports_already_complete(cfg_for):
    cfg = cfg_for()
    series = series_for(cfg)
    first = tune_study(cfg, series)
    assert isinstance(first, TuningResult) and first.tuned
    assert first.study == storage.study_name_for(cfg, series.digest)
    assert first.mode == "in-process" and first.finished_after == 2 and first.created
    assert first.running_trials == [] and set(first.best_params) == {"train.lr"}
    assert first.best_epoch is not None and 0 <= first.best_epoch < cfg.train.max_epochs
    second = tune_study(cfg, series)
    assert second.mode == "already complete" and second.finished_before == 2
    assert not second.created and second.study == first.study
    assert second.best_params == first.best_params and second.best_value == first.best_value


def test_no_trials_touches_no_storage(cfg_for, tmp_path):
    cfg = cfg_for(**{"tune.n_trials": 0})
    out = tune_study(cfg, series_for(cfg))
    assert out.mode == "no tuning" and not out.tuned
    assert out.best_params == {} and out.running_trials == []
    assert not (tmp_path / "optuna.db").exists()


def test_waiting_for_external_workers_times_out_with_instructions(cfg_for):
    cfg = cfg_for(**{"tune.workers": 0, "tune.wait_timeout": 0.5})
    series = series_for(cfg)
    name = storage.study_name_for(cfg, series.digest)
    with pytest.raises(TimeoutError, match=f"seqlab tune-worker --study {name} "):
        tune_study(cfg, series)


def test_worker_commands_pass_packing_and_heartbeat():
    keep = worker_command("s", "sqlite:///x.db", WorkerSlot(0, 0, True), None, 5)
    leave = worker_command("s", "sqlite:///x.db", WorkerSlot(1, 0, keep_on_oom=False), 60)
    assert keep[1:3] == ["-m", "seqlab.tuning.worker"] and "--leave-on-oom" not in keep
    assert keep[keep.index("--heartbeat-interval") + 1] == "5"
    assert "--leave-on-oom" in leave and leave[leave.index("--timeout") + 1] == "60"


def test_each_worker_gets_its_own_sampler_seed(monkeypatch):
    monkeypatch.setenv("SEQLAB_WORKER_RANK", "3")
    assert worker.worker_seed_offset() == 4
    monkeypatch.delenv("SEQLAB_WORKER_RANK")
    # Without a rank (an external worker): derived from host and pid, stable per process, other
    # pids get other offsets, and never the pipeline's own (offset 0).
    offsets = {}
    for pid in (101, 102, 103, 101):
        monkeypatch.setattr(worker.os, "getpid", lambda pid=pid: pid)
        offsets.setdefault(pid, set()).add(worker.worker_seed_offset())
    assert all(len(v) == 1 for v in offsets.values())
    assert len({v for s in offsets.values() for v in s}) == 3
    monkeypatch.setenv("SEQLAB_WORKER_RANK", "not-a-rank")  # ignored, not a crash
    assert worker.worker_seed_offset() in offsets[101]  # the last pid set
    # The same pid on another host (an external worker elsewhere) gets another offset.
    monkeypatch.setattr(worker.socket, "gethostname", lambda: "another-host")
    assert worker.worker_seed_offset() not in offsets[101]
    # Never 0, even for a host and pid whose hash is a multiple of the modulus.
    monkeypatch.setattr(worker.zlib, "crc32", lambda _b: 7 * 1_000_003)
    assert worker.worker_seed_offset() >= 1


# ---------------------------------------------------------------- the worker command line


def test_worker_joins_a_published_study_by_its_base_name_and_fills_it(cfg_for):
    cfg = cfg_for()
    study = published_study(cfg, series_for(cfg))
    assert study.study_name != cfg.study_name  # <base>-<fingerprint>
    assert worker.main(["--study", cfg.study_name, "--storage", cfg.tune.storage]) == 0
    assert storage.finished_count(study) == 2


def test_worker_joins_the_newest_study_of_a_family(cfg_for):
    old_cfg = cfg_for(**{"tune.n_trials": 1})
    series = series_for(old_cfg)
    old = published_study(old_cfg, series)
    cfg = cfg_for(
        **{
            "tune.n_trials": 1,
            "tune.search_space": {"train.lr": {"type": "float", "low": 2e-3, "high": 5e-3}},
        }
    )
    new = published_study(cfg, series)
    assert new.study_name != old.study_name
    st = storage.make_storage(cfg.tune.storage)
    assert storage.resolve_study_name(st, cfg.study_name) == new.study_name
    assert storage.resolve_study_name(st, old.study_name) == old.study_name  # full names stay
    assert worker.main(["--study", cfg.study_name, "--storage", cfg.tune.storage]) == 0
    assert (storage.finished_count(old), storage.finished_count(new)) == (0, 1)


def test_worker_exit_codes_for_user_errors(cfg_for, capsys):
    cfg = cfg_for()
    series = series_for(cfg)
    assert worker.main(["--study", "nope", "--storage", cfg.tune.storage]) == worker.EXIT_USER_ERROR
    assert "not found" in capsys.readouterr().err
    published_study(cfg, series, digest="0" * 64)
    assert worker.main(["--study", cfg.study_name, "--storage", cfg.tune.storage]) == 2
    assert "differs from the study's" in capsys.readouterr().err


def test_worker_stops_on_a_fail_streak_with_exit_code_3(cfg_for, capsys):
    cfg = cfg_for(
        **{"tune.search_space": {"model.hidden_size": {"type": "int", "low": 0, "high": 0}}}
    )
    published_study(cfg, series_for(cfg))
    assert worker.main(["--study", cfg.study_name, "--storage", cfg.tune.storage]) == 3
    assert worker.EXIT_TUNING_ERROR == 3
    assert "trials in a row failed" in capsys.readouterr().err


# ---------------------------------------------------------------- dead workers


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_trial_of_a_dead_local_worker_is_failed_with_reason(tmp_path):
    st = storage.make_storage(f"{tmp_path}/study.log")  # journal: no heartbeat of its own
    study = optuna.create_study(study_name="s", storage=st)
    dead, alive, remote = study.ask(), study.ask(), study.ask()
    study._storage.set_trial_system_attr(
        dead._trial_id, OWNER_ATTR, liveness.owner_record(_dead_pid())
    )
    study._storage.set_trial_system_attr(alive._trial_id, OWNER_ATTR, liveness.owner_record())
    study._storage.set_trial_system_attr(
        remote._trial_id, OWNER_ATTR, {"host": "elsewhere", "pid": 1}
    )
    assert liveness.fail_orphaned_trials(study) == [dead.number]
    failed = study.trials[dead.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("worker process died")
    assert [t.state for t in study.trials[1:]] == [TrialState.RUNNING] * 2


def test_pid_reuse_is_not_mistaken_for_the_worker():
    owner = liveness.owner_record()
    assert liveness.owner_alive(owner) is True
    assert liveness.owner_alive({**owner, "start": "1"}) is False  # same pid, another process
    assert liveness.owner_alive({**owner, "host": "elsewhere"}) is None


def test_journal_trial_whose_heartbeat_stopped_is_failed_as_stale(tmp_path, monkeypatch):
    study = optuna.create_study(
        study_name="s", storage=storage.make_storage(f"{tmp_path}/study.log")
    )
    silent, beating, _young = study.ask(), study.ask(), study.ask()
    now = time.time()
    study._storage.set_trial_system_attr(silent._trial_id, HEARTBEAT_ATTR, now - 3600)
    study._storage.set_trial_system_attr(beating._trial_id, HEARTBEAT_ATTR, now)
    # Checked 1 s later by a fake clock: a slow machine must not age the live heartbeat.
    monkeypatch.setattr(liveness, "time", SimpleNamespace(time=lambda: now + 1))
    assert liveness.fail_stale_trials(study, heartbeat_interval=5) == [silent.number]
    assert "no heartbeat" in study.trials[0].user_attrs["fail_reason"]
    assert [t.state for t in study.trials[1:]] == [TrialState.RUNNING] * 2


def test_journal_trial_that_never_beat_counts_from_its_start(tmp_path, monkeypatch):
    monkeypatch.setattr(liveness, "JOURNAL_CLOCK_SKEW_S", 0)
    study = optuna.create_study(
        study_name="s", storage=storage.make_storage(f"{tmp_path}/study.log")
    )
    trial = study.ask()  # its worker died before the first heartbeat
    started = study.trials[0].datetime_start.timestamp()
    now = [started + 1.9]  # grace: 2 intervals; a fake clock, so the machine's load cannot matter
    monkeypatch.setattr(liveness, "time", SimpleNamespace(time=lambda: now[0]))
    assert liveness.fail_stale_trials(study, heartbeat_interval=1) == []
    now[0] = started + 2.1
    assert liveness.fail_stale_trials(study, heartbeat_interval=1) == [trial.number]


def test_rdb_trial_without_heartbeat_is_failed_as_stale(tmp_path):
    st = storage.make_storage(f"sqlite:///{tmp_path}/hb.db", heartbeat_interval=1)
    study = optuna.create_study(study_name="s", storage=st)
    trial = study.ask()
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(3.2)  # grace is 2 s; SQLite's clock has one-second resolution (a lower bound)
    assert liveness.fail_stale_trials(study) == [trial.number]
    assert "no heartbeat for over 2s" in study.trials[0].user_attrs["fail_reason"]


# ---------------------------------------------------------------- a real worker process


def test_sigterm_fails_the_running_trial_and_exits_cleanly(cfg_for):
    cfg = cfg_for(**{"tune.n_trials": 3, "train.max_epochs": 50})
    study = published_study(cfg, series_for(cfg))
    env = worker_env()
    proc = subprocess.Popen(
        [
            sys.executable,
            FAULT_WORKER,
            "*:stall=0.2",
            "--study",
            cfg.study_name,
            "--storage",
            cfg.tune.storage,
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300  # a loaded machine imports torch slowly
        while not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the worker never started a trial"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        # A loaded 2-core machine can delay the signal handler until a torch op or SQLite wait ends.
        assert proc.wait(300) == worker.EXIT_INTERRUPTED
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    [trial] = study.get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith("interrupted")


@pytest.fixture
def sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt here, as in a worker process (interrupt_on_sigterm)."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, previous)


def sigterm_after(fn):
    """``fn`` that sends this process one SIGTERM the first time it returns: its handler runs
    right there, at a moment of the trial chosen by the test instead of by the machine's load."""
    fired = []

    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    return wrapped


@pytest.mark.parametrize("moment", ["trial created", "objective started"])
def test_sigterm_at_any_moment_of_a_trial_fails_it_with_its_reason(
    cfg_for, monkeypatch, sigterm_interrupts, moment
):
    """Between ``ask`` and the objective, or before the objective's training starts: the trial
    must still end FAILED with its reason, not RUNNING nor FAILED without one."""
    cfg = cfg_for()
    study = published_study(cfg, series_for(cfg))
    if moment == "trial created":
        monkeypatch.setattr(optuna.Study, "ask", sigterm_after(optuna.Study.ask))
    else:  # the objective records its owner before it trains
        monkeypatch.setattr(
            objective_mod, "owner_record", sigterm_after(objective_mod.owner_record)
        )
    with pytest.raises(KeyboardInterrupt):
        worker.run_worker(cfg.study_name, cfg.tune.storage)
    [trial] = study.get_trials()
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "interrupted (SIGTERM or Ctrl-C)"
    assert signal.getsignal(signal.SIGTERM).__name__ == "handler"  # the worker's, given back


def test_cli_tune_worker_joins_the_study(cfg_for):
    from typer.testing import CliRunner

    from flows.cli import app

    cfg = cfg_for(**{"tune.n_trials": 1})
    study = published_study(cfg, series_for(cfg))
    result = CliRunner().invoke(
        app, ["tune-worker", "--study", study.study_name, "--storage", cfg.tune.storage]
    )
    assert result.exit_code == 0, result.output
    assert f"finished 1 trial(s) of study {study.study_name}" in result.output
    assert storage.finished_count(study) == 1


def test_a_waiting_worker_skips_a_complete_study_for_the_next_one(cfg_for):
    """Started before today's run publishes its study, a worker joining by base name must not
    settle on yesterday's complete one."""
    import threading

    old_cfg = cfg_for(**{"tune.n_trials": 1})
    series = series_for(old_cfg)
    old = published_study(old_cfg, series)
    assert worker.main(["--study", old.study_name, "--storage", old_cfg.tune.storage]) == 0
    assert storage.finished_count(old) == 1  # complete: yesterday's
    st = storage.make_storage(old_cfg.tune.storage)
    assert not worker.study_ready(old, by_base_name=True) and worker.study_ready(old)
    new_cfg = cfg_for(**{"tune.n_trials": 1, "train.max_epochs": 4})  # another fingerprint
    later = threading.Timer(0.6, lambda: published_study(new_cfg, series))
    later.start()
    try:
        joined = worker.await_study(new_cfg.study_name, st, timeout=300, poll=0.1)
    finally:
        later.join()
    assert joined.study_name != old.study_name
    assert joined.study_name == storage.study_name_for(new_cfg, series.digest)
