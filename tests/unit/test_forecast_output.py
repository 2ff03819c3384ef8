"""`seqlab forecast`'s own steps, as plain functions: its input checks (one-line errors naming
the command's options) and the forecast written in the user's column names."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.forecast import in_user_terms
from flows.forecast_checks import check_columns, check_input_path, check_output
from seqlab.data import DataError


def canonical(series: list[str], quantiles: bool = False) -> pd.DataFrame:
    rows = []
    for sid in series:
        frame = pd.DataFrame(
            {
                "unique_id": sid,
                "ds": pd.date_range("1961-01-01", periods=3, freq="MS"),
                "forecast": [1.0, 2.0, 3.0],
            }
        )
        if quantiles:
            frame["q0.1"], frame["q0.9"] = frame["forecast"] - 1, frame["forecast"] + 1
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


META = {"time_column": "month", "target": "passengers", "series_id": None, "covariates": []}


def test_a_single_series_forecast_has_the_users_time_and_target_columns_and_no_id() -> None:
    out = in_user_terms(canonical(["series_0"]), META)
    assert list(out.columns) == ["month", "passengers"]
    assert out["passengers"].tolist() == [1.0, 2.0, 3.0]
    assert out["month"].iloc[0] == pd.Timestamp("1961-01-01")


def test_several_series_keep_the_users_id_column_and_ids_and_quantile_names() -> None:
    meta = {**META, "series_id": "store", "target": "units", "time_column": "date"}
    out = in_user_terms(canonical(["s1", "s2"], quantiles=True), meta)
    assert list(out.columns) == ["store", "date", "units", "q0.1", "q0.9"]
    assert out["store"].unique().tolist() == ["s1", "s2"]
    assert (out["q0.1"] < out["units"]).all() and (out["units"] < out["q0.9"]).all()


def test_missing_columns_are_named_with_their_role_and_the_option() -> None:
    meta = {**META, "covariates": ["promo"], "future_covariates": ["promo"]}
    history = pd.DataFrame({"month": ["1960-01-01"], "pax": [1.0], "promo": [0]})
    with pytest.raises(DataError) as e:
        check_columns(history, meta)
    msg = str(e.value)
    assert msg.startswith("--input lacks column 'passengers' (its target)")
    assert "the model reads month, passengers, promo" in msg and "\n" not in msg
    check_columns(history.rename(columns={"pax": "passengers"}), meta)  # all there: no error


@pytest.mark.parametrize(
    "check, arg, fragment",
    [
        (check_input_path, "nope.csv", "--input file not found: nope.csv"),
        (check_output, "fc.txt", "--output fc.txt must end in .csv or .parquet"),
    ],
)
def test_paths_are_checked_naming_the_commands_option(check, arg, fragment) -> None:
    with pytest.raises(DataError, match=fragment):
        check(arg)


def test_a_bundled_dataset_name_is_a_valid_input() -> None:
    check_input_path("airpassengers")
    check_output("out/fc.parquet")
