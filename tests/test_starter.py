"""`seqlab init`: guessed column roles and a starter config that loads and fits the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import sine_frame
from flows.cli import app
from seqlab.config import load_config
from seqlab.data import DataError
from seqlab.data.starter import guess_roles, starter_yaml


def sales(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "store": f"s{i}",
                "date": pd.date_range("2024-01-01", periods=n),
                "promo": rng.integers(0, 2, n),
                "units": rng.poisson(20, n),
            }
        )
        for i in range(2)
    ]
    return pd.concat(frames, ignore_index=True)


def test_guess_roles_of_a_long_frame() -> None:
    roles = guess_roles(sales())
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
    text = starter_yaml("sales.csv", guess_roles(sales()))
    path = tmp_path / "seqlab.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.data.source == "sales.csv" and cfg.data.series_id == "store"
    assert cfg.window.horizon == 14 and cfg.eval.season_length == 7
    assert cfg.window.transform == "none"  # not AirPassengers' log: base.yaml only
    assert "model.cell" in cfg.tune.search_space
    # Input sizes searched around the horizon, not AirPassengers' monthly choices.
    assert cfg.tune.search_space["window.input_size"].choices == [14, 28, 42]
    assert yaml.safe_load(text)["defaults"] == ["seqlab:base.yaml"]


def test_cli_init_writes_a_config_that_runs_on_the_data(tmp_path) -> None:
    data = tmp_path / "sales.csv"
    sales().to_csv(data, index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["init", str(tmp_path / "proj"), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "note:" not in r.output  # the data fits the settings
    cfg = load_config(tmp_path / "proj" / "seqlab.yaml")
    assert cfg.data.target == "units"
    again = runner.invoke(app, ["init", str(tmp_path / "proj"), "--data", str(data)])
    assert again.exit_code == 2 and "--force" in again.output
    missing = runner.invoke(app, ["init", str(tmp_path / "x"), "--data", "nope.csv"])
    assert missing.exit_code == 2 and "data file not found" in missing.output


def _sales_with_a_bad_value(name: str = "sales") -> pd.DataFrame:
    """Monthly sales whose column holds one value that is not a number (read as text)."""
    df = sine_frame(n=60, freq="MS").rename(columns={"ds": "date", "y": name})
    df["promo"] = (df.index % 4 == 0).astype(int)
    df[name] = df[name].round(1).astype(str)
    df.loc[41, name] = "12,5"  # a decimal comma: the whole column reads as text
    return df


@pytest.mark.parametrize("name, why", [("sales", "named like a target"), ("pax", "98% numbers")])
def test_a_target_with_a_bad_value_is_named_with_the_value_and_row(name, why) -> None:
    roles = guess_roles(_sales_with_a_bad_value(name))
    assert roles.target == "promo" and roles.series_id is None  # not the text column
    [warning] = roles.warnings
    assert f"column {name!r}" in warning and why in warning
    assert "'12,5' at row 42" in warning and "guessed 'promo'" in warning


def test_clean_data_gives_no_warning() -> None:
    assert guess_roles(sales()).warnings == []


def test_cli_init_warns_when_the_obvious_target_is_not_numeric(tmp_path) -> None:
    data = tmp_path / "sales.csv"
    _sales_with_a_bad_value().to_csv(data, index=False)
    r = CliRunner().invoke(app, ["init", str(tmp_path / "proj"), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "warning: column 'sales' is named like a target but is not numeric" in r.output
    assert "'12,5' at row 42" in r.output
