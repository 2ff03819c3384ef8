from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import sine_frame
from seqlab.config import DataConfig
from seqlab.data import (
    DataError,
    infer_frequency,
    load_raw,
    min_series_length,
    resolve_source,
    season_length,
    validate,
)

CFG = DataConfig(source="x", time_column="ds", target="y")


def test_bundled_airpassengers() -> None:
    raw = load_raw("airpassengers")
    s = validate(raw, DataConfig(), min_length=60)
    assert len(s.frame) == 144
    assert s.freq == "MS"
    assert s.series_ids == ["series_0"]
    assert s.frame["y"].iloc[0] == 112 and s.frame["y"].iloc[-1] == 432
    assert len(s.digest) == 64


def test_digest_is_stable_and_content_sensitive() -> None:
    df = sine_frame()
    a, b = validate(df, CFG), validate(df.copy(), CFG)
    assert a.digest == b.digest
    df2 = df.copy()
    df2.loc[5, "y"] += 1
    assert validate(df2, CFG).digest != a.digest


def test_csv_and_parquet_sources(tmp_path: Path) -> None:
    df = sine_frame()
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet", index=False)
    c = validate(load_raw(str(tmp_path / "a.csv")), CFG)
    p = validate(load_raw(str(tmp_path / "a.parquet")), CFG)
    assert c.freq == p.freq == "D"
    np.testing.assert_allclose(c.frame["y"], p.frame["y"])


def test_multi_series_and_covariates() -> None:
    df = sine_frame(series=3, covariate=True)
    s = validate(
        df,
        DataConfig(
            source="x", time_column="ds", target="y", series_id="store", covariates=["temp"]
        ),
    )
    assert s.series_ids == ["s0", "s1", "s2"]
    assert s.covariates == ("temp",)
    assert list(s.frame.columns) == ["unique_id", "ds", "y", "temp"]


def _write(tmp_path: Path, text: str, name: str = "d.csv") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing", "data file not found"),
        ("empty", "is empty"),
        ("header_only", "no rows"),
        ("directory", "is a directory"),
        ("bad_suffix", "unsupported data file type"),
    ],
)
def test_unreadable_sources(tmp_path: Path, case: str, fragment: str) -> None:
    src = {
        "missing": str(tmp_path / "nope.csv"),
        "empty": _write(tmp_path, "", "empty.csv"),
        "header_only": _write(tmp_path, "ds,y\n", "header.csv"),
        "directory": str(tmp_path),
        "bad_suffix": str((tmp_path / "d.xlsx").write_text("x") and tmp_path / "d.xlsx"),
    }[case]
    with pytest.raises(DataError, match=fragment):
        load_raw(src)


def _bad(df: pd.DataFrame, cfg: DataConfig = CFG, min_length: int | None = None) -> str:
    with pytest.raises(DataError) as e:
        validate(df, cfg, min_length=min_length)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_column_names_it_and_lists_columns() -> None:
    msg = _bad(sine_frame(), DataConfig(source="x", time_column="ds", target="sales"))
    assert "'sales'" in msg and "data.target" in msg and "ds, y" in msg


def test_non_numeric_target() -> None:
    df = sine_frame().astype({"y": object})
    df.loc[3, "y"] = "n/a?"
    msg = _bad(df)
    assert "not numeric" in msg and "'n/a?'" in msg and "row 4" in msg


def test_unparseable_timestamp() -> None:
    df = sine_frame().astype({"ds": object})
    df.loc[2, "ds"] = "not-a-date"
    assert "unparseable" in _bad(df)


def test_duplicate_timestamps() -> None:
    df = sine_frame()
    df = pd.concat([df, df.iloc[[10]]], ignore_index=True)
    assert "duplicate timestamp" in _bad(df)


def test_gaps_error_by_default_and_fill_policies() -> None:
    df = sine_frame().drop(index=[20, 21]).reset_index(drop=True)
    msg = _bad(df)
    assert "2 missing timestamp" in msg and "data.fill" in msg
    for fill in ("ffill", "interpolate", "zero"):
        s = validate(df, CFG.model_copy(update={"fill": fill}))
        assert len(s.frame) == 96
    s = validate(df, CFG.model_copy(update={"fill": "ffill"}))
    assert s.frame["y"].iloc[20] == s.frame["y"].iloc[19]


def test_irregular_frequency() -> None:
    df = sine_frame()
    df["ds"] = pd.to_datetime("2024-01-01") + pd.to_timedelta(
        np.cumsum(np.r_[0, np.random.default_rng(1).integers(1, 5, 95)]), unit="h"
    )
    msg = _bad(df, CFG.model_copy(update={"freq": "D"}))
    assert "off its D grid" in msg


def test_nan_target_error_or_interpolate() -> None:
    df = sine_frame()
    df.loc[[30, 31], "y"] = np.nan
    df.loc[40, "y"] = np.inf
    msg = _bad(df)
    assert "NaN/inf" in msg and "nan_policy" in msg
    s = validate(df, CFG.model_copy(update={"nan_policy": "interpolate"}))
    assert np.isfinite(s.frame["y"]).all()
    assert s.frame["y"].iloc[30] == pytest.approx(
        s.frame["y"].iloc[29] + (s.frame["y"].iloc[32] - s.frame["y"].iloc[29]) / 3
    )


def test_too_short_series() -> None:
    need = min_series_length(24, 12, 12)
    assert need == 60
    msg = _bad(sine_frame(n=50), min_length=need)
    assert "has 50 points but needs at least 60" in msg


def test_infer_frequency_tolerates_gaps() -> None:
    idx = pd.date_range("2024-01-01", periods=30, freq="MS").delete([5, 6])
    assert infer_frequency(idx) == "MS"


@pytest.mark.parametrize(
    "freq, season",
    [("MS", 12), ("ME", 12), ("D", 7), ("h", 24), ("W-SUN", 52), ("QS", 4), ("YS", 1), ("s", 1)],
)
def test_season_length(freq: str, season: int) -> None:
    assert season_length(freq) == season


def test_resolve_bundled_is_a_file() -> None:
    assert resolve_source("airpassengers").is_file()
