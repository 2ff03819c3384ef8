"""Study identity on a real SQLite Optuna storage: a study per data and setting that changes
what a trial computes; resumed when both stay, warm-started from the last best when they change."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import seqlab
from conftest import open_storage_at_once, sine_frame
from seqlab.pipeline import ingest, validate_data
from seqlab.tuning import space, storage, tune_study

DIGEST = "a" * 64


def series_for(cfg):
    return validate_data(ingest(cfg), cfg)


def snapshot(study_name, url):
    study = optuna.load_study(study_name=study_name, storage=url)
    return [(t.number, t.state, t.value, t.params) for t in study.get_trials()]


def study_names(url):
    return sorted(s.study_name for s in optuna.get_all_study_summaries(url))


# ---------------------------------------------------------------- through tune_study


def test_same_data_and_config_resume_the_same_study_and_top_it_up(tiny_config):
    cfg = tiny_config(**{"tune.n_trials": 2})
    series = series_for(cfg)
    first = tune_study(cfg, series)
    kept = snapshot(first.study, cfg.tune.storage)
    assert first.study == storage.study_name_for(cfg, series.digest)
    assert first.study.startswith(f"{cfg.study_name}-") and first.created

    more = tiny_config(**{"tune.n_trials": 3})  # n_trials is not part of the identity
    again = tune_study(more, series_for(more))
    assert again.study == first.study and not again.created
    assert again.warm_started_from is None
    assert (again.finished_before, again.finished_after, again.mode) == (2, 3, "in-process")
    assert snapshot(again.study, cfg.tune.storage)[:2] == kept  # earlier trials as they were
    assert study_names(cfg.tune.storage) == [first.study]


def test_new_data_opens_a_new_study_warm_started_with_the_last_best(tiny_config, tmp_path):
    cfg = tiny_config(**{"tune.n_trials": 2})
    old = tune_study(cfg, series_for(cfg))
    before = snapshot(old.study, cfg.tune.storage)

    # New data at the same source (the next day's file).
    sine_frame(n=90, seed=1).to_csv(tmp_path / "sine.csv", index=False)
    series = series_for(cfg)
    new = tune_study(cfg, series)
    assert new.study == storage.study_name_for(cfg, series.digest) != old.study
    assert new.created and new.warm_started_from == old.study
    assert (new.finished_before, new.finished_after) == (0, 2)

    study = optuna.load_study(study_name=new.study, storage=cfg.tune.storage)
    first_trial = study.trials[0]
    assert first_trial.params == old.best_params and first_trial.state == TrialState.COMPLETE
    assert study.user_attrs[storage.ATTR_WARM_START] == old.study
    assert study.user_attrs[storage.ATTR_DIGEST] == series.digest
    assert study.trials[1].params != old.best_params  # then the sampler takes over

    assert snapshot(old.study, cfg.tune.storage) == before  # the old study is left untouched
    assert study_names(cfg.tune.storage) == sorted([old.study, new.study])
    st = storage.make_storage(cfg.tune.storage)
    assert storage.family(st, cfg.study_name) == [old.study, new.study]
    assert storage.resolve_study_name(st, cfg.study_name) == new.study  # what workers join


# ---------------------------------------------------------------- the fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"tune.n_trials": 50},
        {"tune.workers": 4, "tune.trials_per_gpu": 2},
        {"tune.timeout": 60, "tune.wait_timeout": 30, "tune.heartbeat_interval": 3},
        {"tune.storage": "sqlite:///elsewhere/optuna.db"},
        {"tracking.tracking_uri": "sqlite:///elsewhere/mlflow.db", "tracking.run_name": "x"},
        {"train.device": "cuda", "train.num_threads": 8},
    ],
)
def test_where_and_how_fast_trials_run_keep_the_study(tiny_config, change):
    base = tiny_config()
    assert storage.study_name_for(tiny_config(**change), DIGEST) == storage.study_name_for(
        base, DIGEST
    )


@pytest.mark.parametrize(
    "change",
    [
        {
            "tune.search_space": {
                "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
            }
        },
        {
            "tune.search_space": {
                "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                "model.hidden_size": {"type": "int", "low": 2, "high": 8},
            }
        },
        {"data.covariates": ["temp"]},
        {"window.horizon": 14},
        {"window.input_size": 28},
        {"model.hidden_size": 8},
        {"train.max_epochs": 5},
    ],
)
def test_what_a_trial_computes_changes_the_study(tiny_config, change):
    base = tiny_config()
    changed = storage.study_name_for(tiny_config(**change), DIGEST)
    assert changed != storage.study_name_for(base, DIGEST)
    assert changed.startswith(f"{base.study_name}-") and len(changed) == len(base.study_name) + 11


def test_other_data_changes_the_study(tiny_config):
    cfg = tiny_config()
    assert storage.study_name_for(cfg, DIGEST) != storage.study_name_for(cfg, "b" * 64)


def test_another_seqlab_version_changes_the_study(tiny_config, monkeypatch):
    cfg = tiny_config()
    before = storage.study_name_for(cfg, DIGEST)
    monkeypatch.setattr(seqlab, "__version__", "99.0.0")
    after = storage.study_name_for(cfg, DIGEST)
    assert after != before
    assert after.startswith(f"{cfg.study_name}-") and len(after) == len(before)


def test_an_upgrade_does_not_reuse_a_finished_study_of_the_old_code(tiny_config, monkeypatch):
    cfg = tiny_config(**{"tune.n_trials": 2})
    series = series_for(cfg)
    old = tune_study(cfg, series)
    assert old.finished_after == 2

    monkeypatch.setattr(seqlab, "__version__", "99.0.0")  # the same data and config, new code
    new = tune_study(cfg, series)
    assert new.study != old.study and new.created
    assert new.warm_started_from == old.study  # its best parameters are tried first
    assert (new.finished_before, new.finished_after) == (0, 2)


# ---------------------------------------------------------------- open_study and warm starts


def _study_with_best(cfg, lr: float, value: float = 1.0) -> optuna.Study:
    """A study of this config holding one completed trial (as an earlier run leaves it)."""
    study = storage.open_study(cfg, storage.make_storage(cfg.tune.storage), DIGEST).study
    study.add_trial(
        create_trial(
            params={"train.lr": lr},
            value=value,
            distributions={"train.lr": FloatDistribution(1e-3, 1e-2, log=True)},
        )
    )
    return study


def _space(**specs):
    return {"tune.search_space": specs}


LR = {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}


def test_a_changed_space_warm_starts_only_with_parameters_it_can_sample(tiny_config):
    old = _study_with_best(tiny_config(), lr=5e-3)
    st = storage.make_storage(tiny_config().tune.storage)

    narrower = storage.open_study(
        tiny_config(**_space(**{"train.lr": {"type": "float", "low": 2e-3, "high": 8e-3}})),
        st,
        DIGEST,
    )
    assert narrower.created and narrower.warm_started_from == old.study_name
    assert narrower.warm_start_params == {"train.lr": 5e-3}
    [waiting] = narrower.study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == {"train.lr": 5e-3}

    outside = storage.open_study(
        tiny_config(**_space(**{"train.lr": {"type": "float", "low": 1e-4, "high": 1e-3}})),
        st,
        DIGEST,
    )
    assert outside.created and outside.warm_started_from is None
    assert outside.study.get_trials() == []  # nothing enqueued

    wider = storage.open_study(
        tiny_config(
            **_space(
                **{
                    "train.lr": LR,
                    "model.cell": {"type": "categorical", "choices": ["gru", "lstm"]},
                }
            )
        ),
        st,
        DIGEST,
    )
    assert wider.created and wider.warm_started_from is None  # model.cell has no previous value
    assert storage.ATTR_WARM_START not in wider.study.user_attrs

    assert (
        len(
            {
                narrower.study.study_name,
                outside.study.study_name,
                wider.study.study_name,
                old.study_name,
            }
        )
        == 4
    )


def test_reopening_with_only_runtime_settings_changed_enqueues_nothing(tiny_config):
    old = _study_with_best(tiny_config(), lr=5e-3)
    st = storage.make_storage(tiny_config().tune.storage)
    again = storage.open_study(tiny_config(**{"tune.n_trials": 9, "tune.workers": 2}), st, DIGEST)
    assert again.study.study_name == old.study_name and not again.created
    assert again.warm_start_params == {} and len(again.study.get_trials()) == 1


def test_resolve_study_name_keeps_full_and_unknown_names(tiny_config):
    cfg = tiny_config()
    st = storage.make_storage(cfg.tune.storage)
    optuna.create_study(study_name=f"{cfg.study_name}-other", storage=st)  # not of the family
    assert storage.family(st, cfg.study_name) == []
    assert storage.resolve_study_name(st, cfg.study_name) == cfg.study_name
    study = _study_with_best(cfg, lr=5e-3)
    assert storage.resolve_study_name(st, cfg.study_name) == study.study_name
    assert storage.resolve_study_name(st, "nope") == "nope"


# ---------------------------------------------------------------- what the space replaces


def test_replaced_by_tuning_lists_explicit_keys_in_the_search_space(tiny_config):
    searched = tiny_config(
        **_space(
            **{
                "train.lr": LR,
                "window.input_size": {"type": "categorical", "choices": [14, 28, 56]},
            }
        )
    ).tune.search_space
    assert space.replaced_by_tuning({"window.input_size": 56}, searched) == ["window.input_size"]
    explicit = {"window.input_size": 56, "train.lr": 0.01, "model.cell": "gru"}
    assert space.replaced_by_tuning(explicit, searched) == ["train.lr", "window.input_size"]
    lr_only = tiny_config().tune.search_space
    assert space.replaced_by_tuning({"window.input_size": 56}, lr_only) == []


def test_fits_space_keeps_only_parameters_the_space_can_sample(tiny_config):
    searched = tiny_config(
        **_space(
            **{
                "train.lr": LR,
                "model.num_layers": {"type": "int", "low": 1, "high": 3},
                "model.cell": {"type": "categorical", "choices": ["gru", "lstm"]},
            }
        )
    ).tune.search_space
    best = {"train.lr": 5e-3, "model.num_layers": 2, "model.cell": "lstm"}
    assert space.fits_space(best, searched) == best
    lr_only = tiny_config().tune.search_space
    assert space.fits_space(best, lr_only) == {"train.lr": 5e-3}  # keys outside dropped
    assert space.fits_space({"train.lr": 5e-3}, searched) == {}  # a key missing
    assert space.fits_space({**best, "train.lr": 0.5}, searched) == {}  # out of range
    assert space.fits_space({**best, "model.num_layers": 2.5}, searched) == {}  # not an int
    assert space.fits_space({**best, "model.cell": "rnn"}, searched) == {}  # not a choice


# ---------------------------------------------------------------- a new storage, opened at once


def test_processes_opening_a_new_sqlite_storage_at_once_all_succeed(tmp_path):
    # A pipeline and the workers started with it: Optuna's schema creation is unguarded.
    url = f"sqlite:///{tmp_path}/optuna.db"
    results = open_storage_at_once(url, tmp_path)
    assert [code for code, _ in results] == [0] * len(results), [e for _, e in results]
    versions = optuna.storages.RDBStorage(url)._version_manager.get_current_version()
    assert versions == optuna.storages.RDBStorage(url)._version_manager.get_head_version()


def test_schema_races_are_told_apart_from_real_storage_errors():
    assert storage.is_schema_race(
        Exception("(sqlite3.OperationalError) table studies already exists")
    )
    assert storage.is_schema_race(
        Exception("UNIQUE constraint failed: alembic_version.version_num")
    )
    assert storage.is_schema_race(Exception('duplicate key value violates "pg_type_typname_nsp"'))
    assert not storage.is_schema_race(Exception("could not connect to server: Connection refused"))
    assert not storage.is_schema_race(Exception("no such table: trials"))
