"""Static covariates: refused when misplaced or not static, encoded on the training series, fed
to the network with every input step, and held to their trained values when forecasting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from seqlab.config import ConfigError, DataConfig, build_config, with_overrides
from seqlab.data import DataError, validate
from seqlab.evaluation.explain import feature_groups, feature_names, permutation_importance
from seqlab.features.spec import FeatureSpec
from seqlab.features.static import StaticEncoding, fit_static, with_static
from seqlab.forecaster import FittedForecaster
from seqlab.pipeline import prepare_fit

DATA = {"source": "x.csv", "time_column": "ds", "target": "y", "series_id": "store", "freq": "D"}


def stores(n: int = 60, big: float = 10.0, small: float = 1.0) -> pd.DataFrame:
    """Two stores with the same noise around different levels: ``size`` says which is which."""
    noise = 0.1 * np.random.default_rng(0).normal(size=n)
    ds = pd.date_range("2024-01-01", periods=n, freq="D")
    return pd.concat(
        [
            pd.DataFrame({"store": name, "ds": ds, "y": level + noise, "size": name, "area": area})
            for name, level, area in (("big", big, 300.0), ("small", small, 100.0))
        ],
        ignore_index=True,
    )


def store_config(**window: object):
    return build_config(
        {
            "data": {**DATA, "static_covariates": ["size"]},
            "window": {
                "input_size": 7,
                "horizon": 3,
                "scaler": "none",
                "local_norm": "none",
                "residual": "none",
            }
            | window,
            "model": {"cell": "gru", "hidden_size": 8, "ensemble_size": 1},
            "train": {
                "lr": 0.03,
                "max_epochs": 40,
                "patience": None,
                "device": "cpu",
                "num_threads": 1,
                "windows_per_epoch": None,
            },
            "eval": {"season_length": 7},
        }
    )


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "role, extra",
    [
        ("data.covariates", {"covariates": ["area"]}),
        ("data.future_covariates", {"future_covariates": ["area"]}),
        ("data.target", {"target": "area"}),
        ("data.time_column", {"time_column": "area"}),
        ("data.series_id", {"series_id": "area"}),
    ],
)
def test_a_static_covariate_in_another_role_is_refused_in_one_line(role: str, extra: dict) -> None:
    with pytest.raises(
        ConfigError, match=f"area listed in both data.static_covariates and {role}:"
    ) as e:
        build_config({"data": {**DATA, "static_covariates": ["area"], **extra}})
    assert "\n" not in str(e.value)


def test_static_covariates_without_a_series_id_are_refused_in_one_line() -> None:
    data = {k: v for k, v in DATA.items() if k != "series_id"}
    with pytest.raises(ConfigError, match="data.static_covariates needs data.series_id: ") as e:
        build_config({"data": {**data, "static_covariates": ["area"]}})
    assert "\n" not in str(e.value)


def test_a_static_covariate_that_changes_within_a_series_is_refused() -> None:
    df = stores()
    df.loc[(df["store"] == "small").to_numpy().nonzero()[0][5], "area"] = 120.0
    cfg = DataConfig(**DATA, static_covariates=["area", "size"])
    with pytest.raises(DataError) as e:
        validate(df, cfg)
    assert str(e.value) == (
        "static covariate 'area' changes within series 'small' (100 and 120): give it one value "
        "per series, or make it a covariate"
    )


def test_a_missing_static_value_is_refused_naming_column_and_series() -> None:
    df = stores()
    df.loc[70, "size"] = None  # a row of the small store
    with pytest.raises(DataError) as e:
        validate(df, DataConfig(**DATA, static_covariates=["size"]))
    assert str(e.value) == (
        "static covariate 'size' is missing in series 'small': give every row of each series "
        "its value"
    )
    with pytest.raises(DataError, match="column 'region' .*data.static_covariates"):
        validate(stores(), DataConfig(**DATA, static_covariates=["region"]))


def test_static_values_are_kept_per_series_and_count_in_the_digest() -> None:
    cfg = DataConfig(**DATA, static_covariates=["size", "area"])
    series = validate(stores(), cfg)
    assert series.static is not None
    assert series.static.to_dict("index") == {
        "big": {"size": "big", "area": 300.0},
        "small": {"size": "small", "area": 100.0},
    }
    assert list(series.frame.columns) == ["unique_id", "ds", "y"]
    moved = stores()
    moved.loc[moved["store"] == "small", "area"] = 150.0
    assert validate(moved, cfg).digest != series.digest
    assert validate(stores(), cfg).digest == series.digest
    plain = DataConfig(**DATA)
    assert validate(stores(), plain).digest != series.digest  # same rows, no static table


# ---------------------------------------------------------------- encoding


def test_text_is_one_hot_over_sorted_levels_and_numbers_are_standardised() -> None:
    table = pd.DataFrame(
        {"region": ["south", "north", "east", "north"], "area": [100.0, 300.0, 200.0, 200.0]},
        index=pd.Index(["a", "b", "c", "d"], name="unique_id"),
    )
    enc = fit_static(table, ["d", "c", "b", "a"])  # the spec's order, not the table's
    region, area = enc.columns
    assert (region.kind, region.levels) == ("text", ("east", "north", "south"))
    assert (area.kind, area.mean) == ("numeric", 200.0)
    assert area.std == pytest.approx(np.std([100.0, 300.0, 200.0, 200.0]))
    z = 100.0 / area.std
    np.testing.assert_allclose(
        enc.matrix,
        [[0, 1, 0, 0.0], [1, 0, 0, 0.0], [0, 1, 0, z], [0, 0, 1, -z]],
    )
    assert enc.values == (("north", 200.0), ("east", 200.0), ("north", 300.0), ("south", 100.0))
    assert enc.names == ["region=east", "region=north", "region=south", "area"]
    back = StaticEncoding.from_dict(enc.to_dict())
    assert back.columns == enc.columns and back.values == enc.values
    np.testing.assert_array_equal(back.matrix, enc.matrix)


def test_a_constant_numeric_attribute_keeps_a_unit_scale() -> None:
    table = pd.DataFrame({"area": [5.0, 5.0]}, index=pd.Index(["a", "b"], name="unique_id"))
    enc = fit_static(table, ["a", "b"])
    assert (enc.columns[0].mean, enc.columns[0].std) == (5.0, 1.0)
    np.testing.assert_array_equal(enc.matrix, [[0.0], [0.0]])


def test_every_input_step_carries_its_series_values_before_the_series_index() -> None:
    cfg = with_overrides(store_config(calendar=True), {"model.series_embedding": 2})
    prepared = prepare_fit(validate(stores(), cfg.data), cfg, holdout=3, val_size=3)
    spec = prepared.spec
    assert spec.n_static == 2 and spec.n_features == 1 + 4 + 2  # target, calendar, static
    x = prepared.x_train
    assert x.shape[2] == spec.n_features + 1  # the series-index column last
    assert x.shape[1] == 7 + 3  # the input window, then the horizon's calendar rows
    for series, onehot in ((0, [1.0, 0.0]), (1, [0.0, 1.0])):
        rows = x[prepared.train_series == series]
        np.testing.assert_array_equal(rows[:, :7, 5:7], np.broadcast_to(onehot, (len(rows), 7, 2)))
        np.testing.assert_array_equal(rows[:, 7:, 5:7], 0.0)  # not read for the horizon
        np.testing.assert_array_equal(rows[:, :, -1], series)
    assert spec.future_features == [1, 2, 3, 4]  # the calendar: still where the model reads it
    back = FeatureSpec.from_dict(spec.to_dict())
    assert back.static is not None and back.static.values == (("big",), ("small",))
    old = {k: v for k, v in spec.to_dict().items() if k != "static"} | {"version": 1}
    assert FeatureSpec.from_dict(old).static is None  # a spec written before static covariates
    x = np.zeros((2, 3, 1), np.float32)
    np.testing.assert_array_equal(
        with_static(x, spec.static.matrix, np.array([1, 0]))[:, 0, 1:], [[0, 1], [1, 0]]
    )


def test_permutation_groups_hold_the_static_covariates_together() -> None:
    groups = feature_groups(
        8,
        7,
        ["temp"],
        season=1,
        n_calendar=2,
        future_features=[2, 3],
        horizon=3,
        static=["region=a", "region=b", "area"],
    )
    assert [(g.name, g.features) for g in groups[-3:]] == [
        ("temp", (1,)),
        ("calendar", (2, 3)),
        ("static", (4, 5, 6)),
    ]
    assert groups[-1].positions == tuple(range(8))  # the input window only
    assert feature_names(7, ["temp"], "y", 2, static=["region=a", "region=b", "area"]) == [
        "y",
        "temp",
        "calendar1",
        "calendar2",
        "region=a",
        "region=b",
        "area",
    ]


# ---------------------------------------------------------------- the network


def test_the_network_reads_the_static_attribute_and_its_saved_copy_forecasts_the_same(
    tmp_path,
) -> None:
    """Two stores with the same noise, one at 10, one at 1, told apart by ``size``: each is
    forecast near its own level; given the other's attribute, the small store's forecast moves
    towards the big one's (and shuffling the attribute raises the MASE: the permutation
    importance of the ``static`` group); the saved and loaded model forecasts the same values."""
    cfg = store_config()
    series = validate(stores(), cfg.data)
    fitted = FittedForecaster.fit(series, cfg, holdout=0, epochs=40)
    levels = fitted.predict(series).groupby("unique_id")["forecast"].mean()
    assert levels["big"] == pytest.approx(10.0, abs=0.5)
    assert levels["small"] == pytest.approx(1.0, abs=0.5)
    inputs = fitted.spec.forecast_inputs(series)
    swapped = inputs.x.copy()
    swapped[:, :, 1:3] = inputs.x[::-1, :, 1:3]  # each store with the other's size
    with torch.no_grad():
        moved = fitted.network(torch.as_tensor(swapped)).numpy().mean(axis=1)
    assert moved[inputs.series_ids.index("small")] > levels["small"] + 2.0
    held = prepare_fit(series, cfg, holdout=9, val_size=9)  # scaler none: the same inputs
    importance = permutation_importance(fitted.network, held, n_repeats=2).set_index("group")
    assert importance.loc["static", "importance"] > 0.5  # MASE rises when sizes are shuffled
    loaded = FittedForecaster.load(*fitted.save(tmp_path / "model"))
    assert loaded.spec.static is not None and loaded.spec.static.values == (("big",), ("small",))
    np.testing.assert_array_equal(loaded.spec.static.matrix, [[1.0, 0.0], [0.0, 1.0]])
    history = stores().drop(columns=["size"])  # the served model takes the trained values
    np.testing.assert_allclose(
        loaded.predict_frame(history)["forecast"], fitted.predict(series)["forecast"], rtol=1e-6
    )


def test_a_changed_static_value_at_forecast_time_is_refused_in_one_line(tmp_path) -> None:
    cfg = store_config(input_size=7)
    fitted = FittedForecaster.fit(validate(stores(), cfg.data), cfg, holdout=0, epochs=1)
    frame = stores()
    frame.loc[frame["store"] == "small", "size"] = "big"
    with pytest.raises(DataError) as e:
        fitted.predict_frame(frame)
    assert str(e.value) == (
        "series 'small' has static covariate 'size' = 'big', but the model trained on 'small': "
        "retrain to use the new value"
    )
    assert len(fitted.predict_frame(stores())) == 6  # the trained values are accepted
