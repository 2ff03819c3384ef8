"""`seqlab init`: guessed column roles and a starter config that loads and fits the data."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from conftest import sales_frame, sales_with_a_bad_value, sine_frame
from seqlab.config import load_config
from seqlab.data import DataError
from seqlab.data.starter import guess_roles, starter_yaml


def test_guess_roles_of_a_long_frame() -> None:
    roles = guess_roles(sales_frame())
    assert (roles.time_column, roles.target, roles.series_id) == ("date", "units", "store")
    assert roles.covariates == ["promo"] and roles.freq == "D"
    single = guess_roles(sine_frame(n=40).rename(columns={"y": "demand"}))
    assert (single.time_column, single.target, single.series_id) == ("ds", "demand", None)


@pytest.mark.parametrize(
    "frame, fragment",
    [
        (pd.DataFrame({"a": [1, 2], "b": [3, 4]}), "no column parses as dates"),
        (
            pd.DataFrame({"ds": ["2024-01-01", "2024-01-02"], "name": ["x", "y"]}),
            "no numeric column",
        ),
    ],
)
def test_guess_roles_errors(frame, fragment) -> None:
    with pytest.raises(DataError, match=fragment):
        guess_roles(frame)


def test_starter_config_loads_with_the_shipped_defaults(tmp_path) -> None:
    text = starter_yaml("sales.csv", guess_roles(sales_frame()))
    path = tmp_path / "seqlab.yaml"
    path.write_text(text)
    cfg = load_config(path)
    # a relative source names a file beside the config
    assert cfg.data.source == str(tmp_path / "sales.csv") and cfg.data.series_id == "store"
    assert cfg.window.horizon == 14 and cfg.eval.season_length == 7
    assert cfg.window.transform == "none"  # not AirPassengers' log: base.yaml only
    assert "model.cell" in cfg.tune.search_space
    # Input sizes searched around the horizon, not AirPassengers' monthly choices.
    assert cfg.tune.search_space["window.input_size"].choices == [14, 28, 42]
    assert yaml.safe_load(text)["defaults"] == ["seqlab:base.yaml"]


@pytest.mark.parametrize("name, why", [("sales", "named like a target"), ("pax", "98% numbers")])
def test_a_target_with_a_bad_value_is_named_with_the_value_and_row(name, why) -> None:
    roles = guess_roles(sales_with_a_bad_value(name))
    assert roles.target == "promo" and roles.series_id is None  # not the text column
    [warning] = roles.warnings
    assert f"column {name!r}" in warning and why in warning
    assert "'12,5' at row 42" in warning and "guessed 'promo'" in warning


def test_clean_data_gives_no_warning() -> None:
    assert guess_roles(sales_frame()).warnings == []
