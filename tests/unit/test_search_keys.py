"""Every key a search space may name works in a real (tiny) study; every other key is refused
when the config is read, with one line listing the searchable keys."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from conftest import make_tiny_config
from seqlab.config import SEARCHABLE_KEYS, ConfigError
from seqlab.pipeline import ingest, validate_data
from seqlab.tuning.objective import Objective
from seqlab.tuning.runner import run_trials

# ask() on a heartbeat storage outside optimize() warns; run_trials does it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")

# Each searchable key with values that differ from trial to trial (the tiny config's own value
# first where it matters): a value that changes the data layout must not reuse the windows an
# earlier trial prepared.
ALLOWED: dict[str, list] = {
    "window.input_size": [14, 7],
    "window.stride": [1, 3],
    "window.scaler": ["mase", "standard", "minmax", "none"],
    "window.transform": ["none", "log"],
    "window.local_norm": ["last", "none"],
    "window.residual": ["none", "seasonal_naive"],
    "window.calendar": [False, True],
    "window.deseasonalize": ["none", "multiplicative", "additive"],
    "window.pad": [False, True],
    "model.cell": ["gru", "lstm", "rnn"],
    "model.hidden_size": [4, 6],
    "model.num_layers": [1, 2],
    "model.dropout": [0.0, 0.3],
    "model.series_embedding": [0, 2, 0],
    "train.optimizer": ["adam", "adamw"],
    "train.lr": [0.003, 0.01],
    "train.weight_decay": [0.0, 0.01],
    "train.batch_size": [32, 8],
    "train.max_epochs": [2, 1],
    "train.patience": [None, 1],
    "train.grad_clip": [1.0, None],
    "train.loss": ["mae", "mse", "huber"],
    "train.windows_per_epoch": [None, 16],
    "train.seed": [0, 1],
}

# Keys that change the task, the data, what validation measures, or only where trials run.
REFUSED: dict[str, dict] = {
    "window.horizon": {"type": "categorical", "choices": [7, 14]},
    "window.val_size": {"type": "int", "low": 7, "high": 14},
    "model.quantiles": {"type": "categorical", "choices": [None]},
    "data.covariates": {"type": "categorical", "choices": ["temp"]},
    "data.future_covariates": {"type": "categorical", "choices": ["temp"]},
    "data.fill": {"type": "categorical", "choices": ["error", "ffill"]},
    "eval.season_length": {"type": "int", "low": 7, "high": 14},
    "eval.backtest_windows": {"type": "int", "low": 1, "high": 3},
    "train.device": {"type": "categorical", "choices": ["cpu"]},
    "train.precision": {"type": "categorical", "choices": ["fp32", "bf16"]},
    "train.num_threads": {"type": "int", "low": 1, "high": 2},
    "tune.n_trials": {"type": "int", "low": 1, "high": 2},
    "registry.margin": {"type": "float", "low": 0.0, "high": 0.1},
    "model.hiden_size": {"type": "int", "low": 4, "high": 8},  # a typo
    "name": {"type": "categorical", "choices": ["x"]},
}


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    cfg = make_tiny_config(tmp_path_factory.mktemp("data"))
    return validate_data(ingest(cfg), cfg)


def test_the_allowed_list_is_the_searchable_keys():
    assert set(ALLOWED) == set(SEARCHABLE_KEYS)  # a key made searchable gets a study below


@pytest.mark.parametrize("key", sorted(ALLOWED))
def test_every_searchable_key_runs_in_a_tiny_study(key, tiny_config, series):
    values = ALLOWED[key]
    cfg = tiny_config(
        **{
            "tune.search_space": {
                key: {"type": "categorical", "choices": sorted(set(values), key=str)}
            },
            "tune.n_trials": len(values),
            "train.max_epochs": 2,
        }
    )
    study = optuna.create_study(direction="minimize")  # in memory: the objective is under test
    for value in values:  # each value once, in this order
        study.enqueue_trial({key: value})
    assert run_trials(study, Objective(cfg, series, len(values))) == len(values)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * len(values)
    assert [t.params[key] for t in study.trials] == values
    assert all(t.value > 0 for t in study.trials)


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_every_other_key_is_refused_when_the_config_is_read(key, tmp_path):
    with pytest.raises(ConfigError) as err:
        make_tiny_config(tmp_path, **{"tune.search_space": {key: REFUSED[key]}})
    message = str(err.value)
    assert "\n" not in message
    assert f"{key} cannot be searched" in message
    assert "searchable keys: " in message and "model.series_embedding" in message


def test_ensemble_size_keeps_its_own_reason(tmp_path):
    space = {"model.ensemble_size": {"type": "int", "low": 1, "high": 5}}
    with pytest.raises(ConfigError, match="trials train one member"):
        make_tiny_config(tmp_path, **{"tune.search_space": space})
