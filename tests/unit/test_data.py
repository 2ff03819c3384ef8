import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_tiny_config, sine_frame
from seqlab.config import DataConfig
from seqlab.data import (
    DataError,
    infer_frequency,
    load_raw,
    resolve_source,
    season_length,
    validate,
)
from seqlab.data.checks import required_length, validate_data

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
    gap = set(pd.date_range("2024-01-21", periods=2))
    for fill in ("ffill", "interpolate", "zero"):
        s = validate(df, CFG.model_copy(update={"fill": fill}))
        assert len(s.frame) == 96
        assert {ds for _, ds in s.filled} == gap
        assert s.filled_mask(s.frame).sum() == 2 and list(s.frame.columns) == [
            "unique_id",
            "ds",
            "y",
        ]
    # ffill and (causal) interpolate carry the last observed value forward; zero writes 0.
    for fill in ("ffill", "interpolate"):
        s = validate(df, CFG.model_copy(update={"fill": fill}))
        assert s.frame["y"].iloc[20] == s.frame["y"].iloc[21] == s.frame["y"].iloc[19]
    s = validate(df, CFG.model_copy(update={"fill": "zero"}))
    assert s.frame["y"].iloc[20] == s.frame["y"].iloc[21] == 0.0
    assert validate(sine_frame(), CFG).filled == frozenset()


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
    # Causal: the last finite value carried forward, never a line to the next observation.
    y = s.frame["y"]
    assert y.iloc[30] == y.iloc[31] == y.iloc[29] and y.iloc[40] == y.iloc[39]
    assert sorted(s.frame["ds"].iloc[i] for i in (30, 31, 40)) == sorted(ds for _, ds in s.filled)


def test_nan_policy_drops_leading_points_with_no_past(caplog) -> None:
    df = sine_frame(series=2, covariate=True)
    df.loc[[0, 1], "y"] = np.nan  # s0 starts with two missing targets
    df.loc[96 + 0, "temp"] = np.nan  # s1 starts with a missing covariate
    cfg = CFG.model_copy(
        update={"series_id": "store", "covariates": ["temp"], "nan_policy": "interpolate"}
    )
    with caplog.at_level(logging.WARNING, logger="seqlab.data"):
        s = validate(df, cfg)
    assert "dropped 3 point(s) at the start of 2 series" in caplog.text
    assert s.lengths() == {"s0": 94, "s1": 95}
    assert s.frame.groupby("unique_id")["ds"].min().to_dict() == {
        "s0": pd.Timestamp("2024-01-03"),
        "s1": pd.Timestamp("2024-01-02"),
    }
    assert s.filled == frozenset() and np.isfinite(s.frame[["y", "temp"]]).all().all()
    df.loc[96:, "temp"] = np.nan
    assert "no finite value in series 's1'" in _bad(df, cfg)


FILL_CASES = [
    ("ffill", "error"),
    ("interpolate", "error"),
    ("zero", "error"),
    ("ffill", "interpolate"),
    ("interpolate", "interpolate"),
    ("zero", "interpolate"),
    ("error", "interpolate"),
]


def gappy_frame(fill: str, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Two series with missing timestamps (unless fill=error), NaN and inf values."""
    df = sine_frame(n=n, series=2, covariate=True, seed=seed)
    df.loc[[5, 6, 17, 30, n + 9], "y"] = np.nan
    df.loc[[11, n + 22], "temp"] = np.nan
    df.loc[n + 14, "y"] = np.inf if fill == "error" else np.nan
    if fill != "error":
        df = df.drop(index=[8, 9, 10, 21, 33, n + 3, n + 4, n + 27]).reset_index(drop=True)
    return df


@pytest.mark.parametrize("fill, nan_policy", FILL_CASES)
def test_filling_is_causal_nothing_after_a_cutoff_changes_the_past(
    fill: str, nan_policy: str
) -> None:
    cfg = CFG.model_copy(
        update={
            "series_id": "store",
            "covariates": ["temp"],
            "fill": fill,
            "nan_policy": nan_policy,
            "freq": "D",  # inferring it from gappy data takes most of validate()'s time
        }
    )
    df = gappy_frame(fill)
    base = validate(df, cfg)
    assert base.filled, "the case must fill something"
    rng = np.random.default_rng(1)
    # Cutoffs just before and on each point with something to fill (a target or a covariate).
    holes = {ds for _, ds in base.filled} | set(df.loc[df["temp"].isna(), "ds"])
    cutoffs = sorted({d - k * pd.Timedelta(days=1) for d in holes for k in (0, 1)})
    assert len(cutoffs) >= 10
    for cutoff in cutoffs:
        later = (df["ds"] > cutoff).to_numpy()
        changed = df.copy()
        # Every value after the cutoff changes (some to NaN, some NaN to numbers).
        for col in ("y", "temp"):
            new = rng.normal(100, 50, later.sum())
            new[rng.random(later.sum()) < 0.2] = np.nan
            changed.loc[later, col] = new
        got = validate(changed, cfg)
        for s in (base, got):
            s.frame["filled"] = s.filled_mask(s.frame)
        before = [s.frame[s.frame["ds"] <= cutoff].reset_index(drop=True) for s in (base, got)]
        pd.testing.assert_frame_equal(before[0], before[1], obj=f"cutoff {cutoff.date()}")


def test_too_short_series_for_the_config(tmp_path: Path, caplog) -> None:
    cfg = make_tiny_config(tmp_path, **{"data.series_id": "store"})
    need = required_length(cfg)
    df = sine_frame(n=need, series=2)
    short = df[(df["store"] == "s0") | (df.index >= len(df) - need + 1)]
    with caplog.at_level(logging.WARNING, logger="seqlab.data"):
        s = validate_data(short, cfg)
    assert f"1 of 2 series have fewer than {need} points (s1)" in caplog.text
    assert s.lengths() == {"s0": need, "s1": need - 1}
    with pytest.raises(DataError, match=f"'s1' has {need - 1} points but needs at least {need}"):
        validate_data(short[short["store"] == "s1"], cfg)


def test_infer_frequency_tolerates_gaps() -> None:
    idx = pd.date_range("2024-01-01", periods=30, freq="MS").delete([5, 6])
    assert infer_frequency(idx) == "MS"


@pytest.mark.parametrize(
    "freq, season",
    [("MS", 12), ("ME", 12), ("D", 7), ("h", 24), ("W-SUN", 52), ("QS", 4), ("YS", 1), ("s", 1)],
)
def test_season_length(freq: str, season: int) -> None:
    assert season_length(freq) == season


def dst_frame(stamps: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"ds": stamps, "y": np.arange(len(stamps), dtype=float)})


def test_daily_local_midnights_across_a_dst_change_keep_their_wall_clock() -> None:
    # Europe/Paris: +01:00 until 2024-03-31, +02:00 from then on.
    days = pd.date_range("2024-03-25", "2024-04-05", freq="D")
    stamps = [
        f"{d.date()}T00:00:00{'+01:00' if d < pd.Timestamp('2024-03-31') else '+02:00'}"
        for d in days
    ]
    s = validate(dst_frame(stamps), CFG)
    assert s.freq == "D" and list(s.frame["ds"]) == list(days)
    # The same as a tz-aware column (a Parquet file with a named zone).
    aware = pd.DataFrame(
        {"ds": days.tz_localize("Europe/Paris"), "y": np.arange(len(days), dtype=float)}
    )
    assert list(validate(aware, CFG).frame["ds"]) == list(days)


def test_monthly_local_midnights_stay_on_the_month_start_grid() -> None:
    months = pd.date_range("2023-01-01", "2024-12-01", freq="MS")
    offset = lambda m: "+02:00" if 4 <= m.month <= 10 else "+01:00"  # noqa: E731
    s = validate(dst_frame([f"{m.date()}T00:00:00{offset(m)}" for m in months]), CFG)
    assert s.freq == "MS" and list(s.frame["ds"]) == list(months)
    one_offset = validate(dst_frame([f"{m.date()}T00:00:00-05:00" for m in months]), CFG)
    assert one_offset.freq == "MS" and list(one_offset.frame["ds"]) == list(months)


def test_hourly_data_with_offsets_is_kept_in_utc_across_the_repeated_hour(caplog) -> None:
    # Europe/Paris, 2024-10-27: 02:00-03:00 local happens twice (+02:00, then +01:00).
    utc = pd.date_range("2024-10-26T22:00", periods=6, freq="h")
    stamps = [t.tz_localize("UTC").tz_convert("Europe/Paris").isoformat() for t in utc]
    assert stamps[2][11:13] == stamps[3][11:13] == "02"  # local clock time repeats
    with caplog.at_level(logging.WARNING, logger="seqlab.data"):
        s = validate(dst_frame(stamps), CFG)
    assert s.freq == "h" and list(s.frame["ds"]) == list(utc)
    assert "normalised to UTC" in caplog.text
    # A single offset: converted to UTC as well (sub-daily data), without a warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="seqlab.data"):
        s = validate(dst_frame([f"2024-01-01T{h:02d}:00:00+05:30" for h in range(6)]), CFG)
    assert list(s.frame["ds"]) == list(pd.date_range("2023-12-31T18:30", periods=6, freq="h"))
    assert "normalised" not in caplog.text


def test_resolve_bundled_is_a_file() -> None:
    assert resolve_source("airpassengers").is_file()
