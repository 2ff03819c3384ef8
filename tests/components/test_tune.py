"""The objective and the trial loop on real Optuna storages in tmp_path: tiny model, sine data."""

from __future__ import annotations

import math
import time

import optuna
import pytest
from optuna.trial import TrialState

from conftest import make_tiny_config
from faults import fault_callbacks, parse
from seqlab.config import ParamSpec
from seqlab.pipeline import ingest, validate_data
from seqlab.training.devices import recurrent_params
from seqlab.tuning import space, storage
from seqlab.tuning.liveness import HEARTBEAT_ATTR, OWNER_ATTR
from seqlab.tuning.objective import Objective, SurplusTrial
from seqlab.tuning.runner import DEFAULT_MAX_FAIL_STREAK, TuningError, run_trials

# ask() on a heartbeat storage outside optimize() warns; these tests do it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

SPACE = {
    "model.cell": {"type": "categorical", "choices": ["gru", "lstm"]},
    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
}


@pytest.fixture
def cfg_for(tiny_config):
    """The shared tiny config, searching cell and learning rate (this file's space)."""

    def make(**overrides):
        return tiny_config(**{"tune.search_space": SPACE, **overrides})

    return make


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    cfg = make_tiny_config(tmp_path_factory.mktemp("data"))
    return validate_data(ingest(cfg), cfg)


def open_new(cfg, series):
    """This config and data's study, as the pipeline opens it (a fresh storage object each time)."""
    return storage.open_study(cfg, storage.make_storage(cfg.tune.storage), series.digest).study


def states(study):
    return [t.state for t in study.get_trials(deepcopy=False)]


# ---------------------------------------------------------------- search space


def test_suggest_gives_each_type():
    spec = {
        "model.cell": ParamSpec(type="categorical", choices=["rnn", "gru"]),
        "model.num_layers": ParamSpec(type="int", low=1, high=4, step=1),
        "model.hidden_size": ParamSpec(type="int", low=8, high=64, log=True),
        "train.lr": ParamSpec(type="float", low=1e-4, high=1e-1, log=True),
        "model.dropout": ParamSpec(type="float", low=0.0, high=0.5, step=0.1),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        p = space.suggest(study.ask(), spec)
        assert p["model.cell"] in ("rnn", "gru")
        assert isinstance(p["model.num_layers"], int) and 1 <= p["model.num_layers"] <= 4
        assert isinstance(p["model.hidden_size"], int) and 8 <= p["model.hidden_size"] <= 64
        assert isinstance(p["train.lr"], float) and 1e-4 <= p["train.lr"] <= 1e-1
        assert round(p["model.dropout"] * 10, 6) == round(p["model.dropout"] * 10)


def test_largest_model_params_reads_the_space(cfg_for):
    cfg = cfg_for(
        **{
            "tune.search_space": {
                "model.hidden_size": {"type": "categorical", "choices": [4, 512]},
                "model.num_layers": {"type": "int", "low": 1, "high": 2},
            }
        }
    )
    assert space.largest_model_params(cfg) == recurrent_params("gru", 1, 512, 2, 7)


# ---------------------------------------------------------------- quota and resume


def test_quota_is_exact_and_a_resume_adds_only_the_missing_trials(cfg_for, series):
    cfg = cfg_for()
    study = open_new(cfg, series)
    assert run_trials(study, Objective(cfg, series, 3)) == 3
    first = {t.number: t.value for t in study.get_trials()}
    assert states(study) == [TrialState.COMPLETE] * 3

    # The next run, a new process in real life: the same study in a fresh storage object.
    again = open_new(cfg, series)
    assert again.study_name == study.study_name
    assert run_trials(again, Objective(cfg, series, 3)) == 0
    assert run_trials(again, Objective(cfg, series, 5)) == 2
    trials = again.get_trials()
    assert len(trials) == 5 and storage.finished_count(again) == 5
    assert {t.number: t.value for t in trials[:3]} == first  # earlier trials kept as they were


def test_a_trial_scores_validation_mase_and_records_its_best_epoch(cfg_for, series):
    # Report every epoch (no warm-up): the reported values are the per-epoch val/mase.
    cfg = cfg_for(**{"tune.n_trials": 1, "tune.n_warmup_steps": 0, "tune.prune_interval": 1})
    study = open_new(cfg, series)
    assert run_trials(study, Objective(cfg, series, 1)) == 1
    [trial] = study.trials
    reported = trial.intermediate_values
    assert sorted(reported) == [0, 1, 2]  # max_epochs=3
    assert trial.user_attrs["monitor"] == "val/mase" and trial.user_attrs["epochs"] == 3
    best = trial.user_attrs["best_epoch"]
    assert trial.value == min(reported.values()) == reported[best]
    assert math.isfinite(trial.value) and trial.value > 0


@pytest.mark.parametrize(
    "overrides, held",
    [
        ({}, 3),  # 90 points: room for the default 3 rolling windows
        ({"window.input_size": 60}, 1),  # one training window leaves room for one
        ({"window.val_size": 9}, 3),  # the part set: every window inside it (9 - 7 + 1)
    ],
)
def test_tuning_records_the_validation_windows_it_scored(cfg_for, series, overrides, held):
    from seqlab.tuning.summary import summarise

    cfg = cfg_for(**{"tune.n_trials": 1, **overrides})
    study = open_new(cfg, series)
    assert run_trials(study, Objective(cfg, series, 1)) == 1
    [trial] = study.trials
    assert trial.user_attrs["val_windows"] == trial.user_attrs["val_windows_max"] == held
    result = summarise(study, mode="in-process", n_trials=1)
    assert (result.val_windows, result.val_windows_max) == (held, held)


def test_surplus_trial_fails_and_is_not_counted(cfg_for, series):
    cfg = cfg_for(**{"tune.n_trials": 1})
    study = open_new(cfg, series)
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
    assert storage.finished_count(study) == 1


def test_a_worker_waits_for_running_trials_and_replaces_those_that_fail(cfg_for, series):
    cfg = cfg_for(**{"tune.n_trials": 1})
    study = open_new(cfg, series)
    holder = study.ask()
    started = time.monotonic()
    assert run_trials(study, Objective(cfg, series, 1), timeout=0.5, poll=0.1) == 0
    assert time.monotonic() - started >= 0.5  # it waited, it did not start a surplus trial
    assert len(study.get_trials()) == 1
    study.tell(holder, state=TrialState.FAIL)
    assert run_trials(study, Objective(cfg, series, 1), poll=0.1) == 1


# ---------------------------------------------------------------- failing trials


def test_nan_loss_fails_the_trial_with_a_reason_and_the_study_goes_on(cfg_for, series):
    cfg = cfg_for()
    study = open_new(cfg, series)
    objective = Objective(cfg, series, 3, extra_callbacks=fault_callbacks({1: "nan"}))
    assert run_trials(study, objective) == 3
    trials = study.get_trials()
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert trials[1].user_attrs["fail_reason"].startswith("NonFiniteLossError: loss became nan")


def test_a_real_divergence_fails_with_reason_and_a_streak_stops_with_clear_error(cfg_for, series):
    # MSE blows up to inf; an MAE gradient is bounded and a saturated LSTM's output stays finite.
    cfg = cfg_for(**{"tune.search_space": {}, "train.lr": 1e30, "train.loss": "mse"})
    study = open_new(cfg, series)
    with pytest.raises(TuningError, match="2 trials in a row failed .*NonFiniteLossError"):
        run_trials(study, Objective(cfg, series, 3), max_fail_streak=2)
    assert states(study) == [TrialState.FAIL, TrialState.FAIL]
    assert "loss became" in study.trials[0].user_attrs["fail_reason"]


def test_bad_search_space_value_stops_instead_of_looping(cfg_for, series):
    cfg = cfg_for(
        **{"tune.search_space": {"model.hidden_size": {"type": "int", "low": 0, "high": 0}}}
    )
    study = open_new(cfg, series)
    with pytest.raises(TuningError, match="5 trials in a row.*hidden_size"):
        run_trials(study, Objective(cfg, series, 3))
    assert len(study.trials) == DEFAULT_MAX_FAIL_STREAK == 5
    assert "ConfigError" in study.trials[0].user_attrs["fail_reason"]


def test_oom_fails_the_trial_and_a_sharing_worker_leaves(cfg_for, series):
    cfg = cfg_for()
    study = open_new(cfg, series)
    faults = fault_callbacks({0: "oom"})
    assert (
        run_trials(study, Objective(cfg, series, 3, extra_callbacks=faults), keep_on_oom=False) == 0
    )
    [trial] = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["oom"] is True
    assert "out of memory" in trial.user_attrs["fail_reason"]
    # The worker that keeps its GPU goes on and fills the study.
    assert (
        run_trials(study, Objective(cfg, series, 3, extra_callbacks=faults), keep_on_oom=True) == 3
    )


def test_fault_specs_of_worker_command_lines():
    assert parse("") == {}
    assert parse("2:oom, *:stall=0.1") == {2: "oom", "*": "stall=0.1"}
    factory = fault_callbacks(parse("2:oom,*:stall=0.1"))
    [oom] = factory(type("T", (), {"number": 2})())
    [stall] = factory(type("T", (), {"number": 0})())
    assert (oom.kind, stall.kind, stall.seconds) == ("oom", "stall", 0.1)
    with pytest.raises(ValueError, match="unknown fault"):
        fault_callbacks({0: "boom"})(type("T", (), {"number": 0})())


# ---------------------------------------------------------------- trial liveness


def test_journal_objective_writes_heartbeats(cfg_for, series, tmp_path):
    cfg = cfg_for(**{"tune.storage": f"{tmp_path}/study.log", "tune.n_trials": 1})
    study = open_new(cfg, series)
    assert run_trials(study, Objective(cfg, series, 1)) == 1
    [trial] = study.trials
    assert HEARTBEAT_ATTR in trial.system_attrs and OWNER_ATTR in trial.system_attrs


def test_past_its_timeout_an_empty_study_still_gets_one_trial_cut_at_the_deadline(cfg_for, series):
    # A run whose start-up ate its time budget still tunes one trial (stopped after an epoch),
    # rather than training untuned parameters; a study holding a trial starts no other.
    cfg = cfg_for(**{"tune.n_trials": 3, "train.max_epochs": 50})
    study = open_new(cfg, series)
    objective = Objective(cfg, series, 3, deadline=1.0)
    assert run_trials(study, objective, timeout=0.0) == 1
    (trial,) = study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["cut_at_deadline"]
    assert trial.user_attrs["epochs"] == 1 and trial.user_attrs["best_steps"] >= 1
    assert run_trials(study, objective, timeout=0.0) == 0
    assert len(study.get_trials()) == 1


def test_a_small_tune_timeout_stops_the_running_trial_cleanly(cfg_for, series):
    # Each trial would train 100,000 epochs: a study that ends at all was cut by tune.timeout.
    from seqlab.tuning import tune_study

    cfg = cfg_for(**{"tune.n_trials": 4, "tune.timeout": 2, "train.max_epochs": 100_000})
    result = tune_study(cfg, series)
    study = optuna.load_study(
        study_name=result.study, storage=storage.make_storage(cfg.tune.storage)
    )
    trials = study.get_trials()
    assert trials and all(t.state == TrialState.COMPLETE for t in trials)  # nothing RUNNING
    assert all(t.user_attrs["cut_at_deadline"] for t in trials)
    assert all(t.user_attrs["epochs"] < 100_000 for t in trials)
    assert result.cut_trials == [t.number for t in trials]
    assert result.best_steps is not None and result.best_steps >= 1
