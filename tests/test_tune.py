"""The objective and the trial loop on real Optuna storages in tmp_path: tiny model, sine data."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from conftest import sine_frame
from seqlab import tune, workers
from seqlab.config import ParamSpec, build_config
from seqlab.data import validate
from seqlab.devices import recurrent_params
from seqlab.tune import HEARTBEAT_ATTR, OWNER_ATTR, Objective, SurplusTrial, make_storage, make_study
from seqlab.workers import TuningError, run_trials

# ask() on a heartbeat storage outside optimize() warns; these tests do it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

SPACE = {
    "model.cell": {"type": "categorical", "choices": ["gru", "lstm"]},
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
}


def tiny_config(tmp_path, storage: str | None = None, **tune_overrides):
    return build_config({
        "data": {"source": "x", "time_column": "ds", "target": "y", "freq": "D"},
        "window": {"input_size": 14, "horizon": 7},
        "model": {"cell": "gru", "hidden_size": 4},
        "train": {"max_epochs": 3, "patience": None, "device": "cpu", "num_threads": 1},
        "tune": {"n_trials": 3, "storage": storage or f"sqlite:///{tmp_path}/optuna.db",
                 "n_startup_trials": 2, "workers": 1, "search_space": SPACE, **tune_overrides},
    })


@pytest.fixture(scope="module")
def series():
    return validate(sine_frame(n=90), tiny_config("/unused").data, source="x")


@pytest.fixture(autouse=True)
def no_faults(monkeypatch):
    monkeypatch.delenv(tune.FAULTS_ENV, raising=False)


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


# ---------------------------------------------------------------- search space


def test_suggest_gives_each_type():
    space = {
        "model.cell": ParamSpec(type="categorical", choices=["rnn", "gru"]),
        "model.num_layers": ParamSpec(type="int", low=1, high=4, step=1),
        "model.hidden_size": ParamSpec(type="int", low=8, high=64, log=True),
        "train.lr": ParamSpec(type="float", low=1e-4, high=1e-1, log=True),
        "model.dropout": ParamSpec(type="float", low=0.0, high=0.5, step=0.1),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        p = tune.suggest(study.ask(), space)
        assert p["model.cell"] in ("rnn", "gru")
        assert isinstance(p["model.num_layers"], int) and 1 <= p["model.num_layers"] <= 4
        assert isinstance(p["model.hidden_size"], int) and 8 <= p["model.hidden_size"] <= 64
        assert isinstance(p["train.lr"], float) and 1e-4 <= p["train.lr"] <= 1e-1
        assert round(p["model.dropout"] * 10, 6) == round(p["model.dropout"] * 10)


def test_largest_model_params_reads_the_space(tmp_path):
    cfg = tiny_config(tmp_path, search_space={
        "model.hidden_size": {"type": "categorical", "choices": [4, 512]},
        "model.num_layers": {"type": "int", "low": 1, "high": 2}})
    assert tune.largest_model_params(cfg) == recurrent_params("gru", 1, 512, 2, 7)


# ---------------------------------------------------------------- quota and resume


def test_quota_is_exact_and_a_resume_adds_only_the_missing_trials(tmp_path, series):
    cfg = tiny_config(tmp_path)
    study = make_study(cfg, make_storage(cfg.tune.storage))
    assert run_trials(study, Objective(cfg, series, 3)) == 3
    first = {t.number: t.value for t in study.get_trials()}
    assert states(study) == [TrialState.COMPLETE] * 3

    # The next run, a new process in real life: the same name in a fresh storage object.
    again = make_study(cfg, make_storage(cfg.tune.storage))
    assert run_trials(again, Objective(cfg, series, 3)) == 0
    assert run_trials(again, Objective(cfg, series, 5)) == 2
    trials = again.get_trials()
    assert len(trials) == 5 and tune.finished_count(again) == 5
    assert {t.number: t.value for t in trials[:3]} == first  # earlier trials kept as they were


def test_surplus_trial_fails_and_is_not_counted(tmp_path, series):
    cfg = tiny_config(tmp_path, n_trials=1)
    study = make_study(cfg, make_storage(cfg.tune.storage))
    holder = study.ask()  # another worker's trial, still running
    objective = Objective(cfg, series, 1)
    late = study.ask()
    with pytest.raises(SurplusTrial):
        objective(late)
    assert late.user_attrs["surplus"] is True
    # The holder fails: the quota is free again and nothing is lost.
    study.tell(holder, state=TrialState.FAIL)
    study.tell(late, state=TrialState.FAIL)
    assert run_trials(study, objective) == 1
    assert tune.finished_count(study) == 1


def test_a_worker_waits_for_running_trials_and_replaces_those_that_fail(tmp_path, series):
    cfg = tiny_config(tmp_path, n_trials=1)
    study = make_study(cfg, make_storage(cfg.tune.storage))
    holder = study.ask()
    started = time.monotonic()
    assert run_trials(study, Objective(cfg, series, 1), timeout=0.5, poll=0.1) == 0
    assert time.monotonic() - started >= 0.5  # it waited, it did not start a surplus trial
    assert len(study.get_trials()) == 1
    study.tell(holder, state=TrialState.FAIL)
    assert run_trials(study, Objective(cfg, series, 1), poll=0.1) == 1


# ---------------------------------------------------------------- failing trials


def test_nan_loss_fails_the_trial_with_a_reason_and_the_study_goes_on(tmp_path, series,
                                                                     monkeypatch):
    monkeypatch.setenv(tune.FAULTS_ENV, "1:nan")
    cfg = tiny_config(tmp_path)
    study = make_study(cfg, make_storage(cfg.tune.storage))
    assert run_trials(study, Objective(cfg, series, 3)) == 3
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert trials[1].user_attrs["fail_reason"].startswith("NonFiniteLossError: loss became nan")


def test_a_real_divergence_fails_with_reason_and_a_streak_stops_with_clear_error(tmp_path,
                                                                                 series):
    cfg = tiny_config(tmp_path, search_space={})
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 1e30})})
    study = make_study(cfg, make_storage(cfg.tune.storage))
    with pytest.raises(TuningError, match="2 trials in a row failed .*NonFiniteLossError"):
        run_trials(study, Objective(cfg, series, 3), max_fail_streak=2)
    assert states(study) == [TrialState.FAIL, TrialState.FAIL]
    assert "loss became" in study.trials[0].user_attrs["fail_reason"]


def test_bad_search_space_value_stops_instead_of_looping(tmp_path, series):
    cfg = tiny_config(tmp_path, search_space={
        "model.hidden_size": {"type": "int", "low": 0, "high": 0}})
    study = make_study(cfg, make_storage(cfg.tune.storage))
    with pytest.raises(TuningError, match="5 trials in a row.*hidden_size"):
        run_trials(study, Objective(cfg, series, 3))
    assert len(study.trials) == workers.DEFAULT_MAX_FAIL_STREAK
    assert "ConfigError" in study.trials[0].user_attrs["fail_reason"]


def test_oom_fails_the_trial_and_a_sharing_worker_leaves(tmp_path, series, monkeypatch):
    monkeypatch.setenv(tune.FAULTS_ENV, "0:oom")
    cfg = tiny_config(tmp_path)
    study = make_study(cfg, make_storage(cfg.tune.storage))
    assert run_trials(study, Objective(cfg, series, 3), keep_on_oom=False) == 0
    [trial] = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["oom"] is True
    assert "out of memory" in trial.user_attrs["fail_reason"]
    # The worker that keeps its GPU goes on and fills the study.
    assert run_trials(study, Objective(cfg, series, 3), keep_on_oom=True) == 3


def test_injected_faults_spec():
    assert tune.injected_faults("") == {}
    assert tune.injected_faults("2:oom, *:stall=0.1") == {2: ("oom", 0.5), "*": ("stall", 0.1)}
    for bad in ("x:oom", "1:boom", "1"):
        with pytest.raises(ValueError, match=tune.FAULTS_ENV):
            tune.injected_faults(bad)


# ---------------------------------------------------------------- trial liveness


def test_journal_objective_writes_heartbeats(tmp_path, series):
    cfg = tiny_config(tmp_path, storage=f"{tmp_path}/study.log", n_trials=1)
    study = make_study(cfg, make_storage(cfg.tune.storage))
    assert run_trials(study, Objective(cfg, series, 1)) == 1
    [trial] = study.trials
    assert HEARTBEAT_ATTR in trial.system_attrs and OWNER_ATTR in trial.system_attrs
