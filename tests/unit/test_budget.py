"""The run's time budget: how it is shared between the stages, and what a deadline cuts.

Deadlines here lie in the past or far in the future, so no test depends on the machine's speed.
"""

from __future__ import annotations

import time

import pytest

from conftest import sine_frame, train_config
from seqlab.budget import EXPLAIN_SHARE, FIT_SHARE, TUNE_SHARE, Budget, members_that_fit
from seqlab.config import ConfigError, PipelineConfig, load_config, with_overrides
from seqlab.data import validate
from seqlab.pipeline import learn_steps, prepare_data, refit, train_model

PAST = 1.0  # a time.time() long gone: every deadline check fires after the first epoch


def tiny_cfg(**over: object) -> PipelineConfig:
    return train_config(**{"model.hidden_size": 8, "train.max_epochs": 50, **over})


@pytest.fixture(scope="module")
def series():
    return validate(sine_frame(n=120), tiny_cfg().data)


def test_shares_of_a_budget() -> None:
    b = Budget(100.0, start=1000.0)
    assert b.end == 1100.0 and b.left(now=1030.0) == 70.0 and b.left(now=2000.0) == 0.0
    assert b.tuning_deadline(now=1001.0) == 1000.0 + TUNE_SHARE * 100
    # tune.timeout from tuning's start, when it comes first
    assert b.tuning_deadline(tune_timeout=10.0, now=1001.0) == 1011.0
    assert b.fit_deadline(now=1060.0) == pytest.approx(1060.0 + FIT_SHARE * 40)
    assert b.allows_explanations(now=1100.0 - EXPLAIN_SHARE * 100)
    assert not b.allows_explanations(now=1100.0 - EXPLAIN_SHARE * 100 + 1)


def test_no_budget_no_deadlines() -> None:
    b = Budget(None)
    assert b.end is None and b.left() is None and b.fit_deadline() is None
    assert b.tuning_deadline() is None and b.allows_explanations()
    assert b.tuning_deadline(tune_timeout=5.0, now=10.0) == 15.0


@pytest.mark.parametrize(
    ("wanted", "first", "room", "kept"),
    [(5, 10.0, 100.0, 5), (5, 10.0, 35.0, 3), (5, 10.0, 5.0, 1), (1, 10.0, 0.0, 1), (3, 0.0, 1, 3)],
)
def test_members_that_fit(wanted: int, first: float, room: float, kept: int) -> None:
    assert members_that_fit(wanted, first, 50.0, 50.0 + room) == kept
    assert members_that_fit(wanted, first, 50.0, None) == wanted


def test_time_budget_is_a_checked_key() -> None:
    assert load_config(None, ["time_budget=90"]).time_budget == 90.0
    with pytest.raises(ConfigError, match="time_budget"):
        load_config(None, ["time_budget=-5"])


def test_a_past_deadline_stops_training_after_one_epoch_with_its_best(series) -> None:
    cfg = tiny_cfg(**{"train.patience": 20})
    prepared = prepare_data(series, cfg)
    _, cut = train_model(prepared, cfg, deadline=PAST)
    assert cut.cut and cut.epochs == 1 and cut.best_epoch == 0 and cut.steps == cut.best_steps
    _, free = train_model(prepared, cfg, deadline=time.time() + 3600)
    assert not free.cut and free.epochs > 1
    # the first epoch is the same computation either way (same seed)
    assert free.val_score[0] == cut.val_score[0]


def test_a_past_deadline_keeps_one_ensemble_member_and_says_so_in_the_recipe(series) -> None:
    cfg = tiny_cfg(**{"model.ensemble_size": 3})
    fitted = refit(series, cfg, epochs=20, holdout=14, deadline=PAST)
    assert fitted.ensemble_size == 1 and fitted.config["model"]["ensemble_size"] == 1
    assert fitted.history.cut and fitted.epochs == 1
    # the recipe refit repeats what was trained: one member, the same steps
    again = refit(series, with_overrides(cfg, {"model.ensemble_size": 1}), steps=fitted.steps)
    assert again.ensemble_size == 1 and again.steps == fitted.steps
    whole = refit(series, cfg, epochs=2, holdout=14)
    assert whole.ensemble_size == 3 and not whole.history.cut


def test_learn_steps_is_early_stoppings_best_or_none_without_it(series) -> None:
    steps = learn_steps(series, tiny_cfg(**{"train.patience": 3, "train.max_epochs": 40}))
    assert isinstance(steps, int) and steps >= 1
    assert learn_steps(series, tiny_cfg()) is None
    assert learn_steps(series, tiny_cfg(**{"train.patience": 3}), deadline=PAST) >= 1
