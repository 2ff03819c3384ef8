import numpy as np
import pandas as pd
import pytest

from seqlab.config import DataConfig
from seqlab.data import validate
from seqlab.evaluation import (
    backtest,
    cross_validation,
    interval_metrics,
    mae,
    mase,
    mase_scale,
    naive_forecast,
    pinball,
    quantile_levels,
    rmse,
    seasonal_naive_forecast,
    smape,
)


def test_metric_values() -> None:
    y, f = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0])
    assert mae(y, f) == pytest.approx(1.0)
    assert rmse(y, f) == pytest.approx(np.sqrt(5 / 3))
    assert smape(y, f) == pytest.approx(100 * np.mean([2 / 3, 0, 4 / 8]))
    assert smape(np.zeros(2), np.zeros(2)) == 0.0


def test_mase_scale_is_in_sample_seasonal_naive_mae() -> None:
    train = np.array([1.0, 2, 3, 1, 2, 4])
    assert mase_scale(train, 3) == pytest.approx(np.mean([0, 0, 1]))  # |1-1|,|2-2|,|4-3|
    assert mase_scale(train, 10) == pytest.approx(
        np.mean(np.abs(np.diff(train)))
    )  # falls back to lag 1
    assert np.isnan(mase_scale(np.ones(5), 1))
    assert mase(np.array([2.0]), np.array([1.0]), 0.5) == pytest.approx(2.0)


def test_baselines() -> None:
    hist = np.arange(1.0, 13.0)
    np.testing.assert_array_equal(naive_forecast(hist, 3), [12, 12, 12])
    np.testing.assert_array_equal(seasonal_naive_forecast(hist, 6, 4), [9, 10, 11, 12, 9, 10])
    np.testing.assert_array_equal(seasonal_naive_forecast(hist[:2], 3, 4), [2, 2, 2])


SEASON = np.array([1.0, 5, 3, 2])


def seasonal_series(n_series: int = 1, periods: int = 8):
    frames = [
        pd.DataFrame(
            {
                "store": f"s{i}",
                "ds": pd.date_range("2024-01-01", periods=4 * periods, freq="D"),
                "y": np.tile(SEASON, periods) * (i + 1),
            }
        )
        for i in range(n_series)
    ]
    cfg = DataConfig(source="x", time_column="ds", target="y", series_id="store")
    return validate(pd.concat(frames, ignore_index=True), cfg)


def truth_plus(offset: float, series):
    """A forecaster that knows the future: the actual values plus ``offset``."""
    full = series.frame.set_index(["unique_id", "ds"])["y"]

    def forecast(history):
        rows = []
        for sid, g in history.frame.groupby("unique_id", sort=False):
            ds = pd.date_range(g["ds"].iloc[-1] + pd.Timedelta(days=1), periods=3, freq="D")
            rows.append(
                pd.DataFrame(
                    {
                        "unique_id": sid,
                        "ds": ds,
                        "forecast": full.loc[sid].reindex(ds).to_numpy() + offset,
                    }
                )
            )
        return pd.concat(rows, ignore_index=True)

    return forecast


def test_backtest_scores_model_and_baselines_on_the_same_cutoffs() -> None:
    series = seasonal_series(n_series=2)
    bt = backtest(
        series, offsets=[9, 6, 3], horizon=3, season=4, forecaster=truth_plus(1.0, series)
    )
    assert bt.windows == [0, 1, 2]
    # Cutoffs are the last timestamps each forecast saw: 9, 6 and 3 points before the end.
    ends = series.frame.groupby("unique_id")["ds"].max().iloc[0]
    assert bt.cutoffs == [(ends - pd.Timedelta(days=d)).isoformat() for d in (9, 6, 3)]
    assert bt.scores("model", "mae") == pytest.approx([1.0, 1.0, 1.0])
    assert bt.scores("seasonal_naive", "mae") == pytest.approx([0.0, 0.0, 0.0])
    assert bt.mean["model"]["mae"] == pytest.approx(1.0)
    assert not bt.beats("seasonal_naive", "mae") and bt.beats("naive", "mae")
    flat = bt.flat()
    assert {"test/mase", "test/naive/mase", "test/seasonal_naive/rmse"} <= set(flat)
    assert set(bt.per_series["unique_id"]) == {"s0", "s1"}
    # MASE per series divides by that series' in-sample seasonal-naive MAE (0 here: NaN).
    assert np.isnan(bt.mean["model"]["mase"])


def test_cross_validation_frame_shape_and_history_cut() -> None:
    series = seasonal_series()
    seen = []

    def spy(history):
        seen.append(len(history.frame))
        return truth_plus(0.0, series)(history)

    cv = cross_validation(series, [6, 3], 3, 4, spy)
    assert seen == [32 - 6, 32 - 3]  # each forecast saw only the history before its cutoff
    assert list(cv.columns[:6]) == ["unique_id", "window", "cutoff", "ds", "y", "model"]
    assert len(cv) == 2 * 3 and (cv["ds"] > cv["cutoff"]).all()
    np.testing.assert_allclose(cv["model"], cv["y"])


def test_backtest_subset_and_mase_with_noise() -> None:
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame(
        {
            "ds": pd.date_range("2024-01-01", periods=n, freq="D"),
            "y": 10 + np.tile(SEASON, n // 4) + rng.normal(0, 0.5, n),
        }
    )
    series = validate(df, DataConfig(source="x", time_column="ds", target="y"))
    bt = backtest(series, [9, 6, 3], 3, 4, truth_plus(0.5, series))
    sub = bt.subset([1, 2])
    assert sub.windows == [1, 2]
    assert sub.scores("model", "mae") == pytest.approx(bt.scores("model", "mae")[1:])
    y = df["y"].to_numpy()
    scale = np.mean(np.abs(y[4 : n - 3] - y[: n - 7]))  # history before the last cutoff
    assert bt.scores("model", "mase")[2] == pytest.approx(0.5 / scale)


def test_interval_metrics_pinball_and_coverage_values() -> None:
    y = np.array([0.0, 1.0, 2.0, 3.0])
    med = np.array([0.0, 1.0, 2.0, 5.0])  # pinball at 0.5: |error| / 2 -> mean 0.25
    lo, hi = np.full(4, 0.5), np.full(4, 2.5)  # y inside for 1.0 and 2.0 only
    m = interval_metrics(y, {0.1: lo, 0.9: hi}, med, scale=2.0)
    assert m["coverage_80"] == pytest.approx(0.5)
    expected = np.mean([pinball(y, lo, 0.1), pinball(y, med, 0.5), pinball(y, hi, 0.9)]) / 2.0
    assert m["spl"] == pytest.approx(expected)
    assert pinball(y, med, 0.5) == pytest.approx(0.25)
    assert pinball(np.array([1.0]), np.array([0.0]), 0.9) == pytest.approx(0.9)
    assert pinball(np.array([0.0]), np.array([1.0]), 0.9) == pytest.approx(0.1)


def test_backtest_scores_quantile_forecasts_for_the_model_only() -> None:
    series = seasonal_series(n_series=2)
    point = truth_plus(0.0, series)

    def with_band(history):  # an interval of +-1 around the truth, median 0.5 too high
        fc = point(history)
        return fc.assign(**{"q0.1": fc["forecast"] - 1, "q0.9": fc["forecast"] + 1}).assign(
            forecast=fc["forecast"] + 0.5
        )

    bt = backtest(series, offsets=[6, 3], horizon=3, season=4, forecaster=with_band)
    assert {"q0.1", "q0.9"} <= set(bt.frame.columns)
    assert bt.mean["model"]["coverage_80"] == pytest.approx(1.0)
    assert "coverage_80" not in bt.mean["seasonal_naive"]
    assert "test/coverage_80" in bt.flat() and "test/seasonal_naive/spl" not in bt.flat()
    assert quantile_levels(bt.frame) == [0.1, 0.9]


def test_metrics_skip_missing_actuals() -> None:
    y, f = np.array([1.0, np.nan, 3.0]), np.array([2.0, 100.0, 5.0])
    assert mae(y, f) == pytest.approx(1.5)
    assert rmse(y, f) == pytest.approx(np.sqrt(2.5))
    assert smape(y, f) == pytest.approx(100 * np.mean([2 / 3, 4 / 8]))
    assert mase(y, f, 0.5) == pytest.approx(3.0)
    assert pinball(y, f, 0.5) == pytest.approx(0.75)
    m = interval_metrics(y, {0.1: f - 1.5, 0.9: f + 1.5}, f, scale=1.0)
    assert m["coverage_80"] == pytest.approx(0.5)  # 1 in [0.5, 3.5]; 3 not in [3.5, 6.5]
    none = np.full(2, np.nan)
    assert all(np.isnan(v) for v in (mae(none, f[:2]), rmse(none, f[:2]), smape(none, f[:2])))
    assert all(
        np.isnan(v) for v in interval_metrics(none, {0.1: f[:2], 0.9: f[:2]}, f[:2], 1.0).values()
    )


def seasonal_with_gap(fill: str, drop: list[int]):
    """``seasonal_series()`` (32 daily points) with the points at ``drop`` missing and filled."""
    full = seasonal_series()
    raw = full.frame.drop(index=drop).rename(columns={"unique_id": "store"})
    cfg = DataConfig(source="x", time_column="ds", target="y", series_id="store", fill=fill)
    return full, validate(raw, cfg)


def test_filled_points_are_not_scored() -> None:
    # Points 29 and 30 (the last window's steps 1 and 2, after its cutoff) are missing, filled.
    full, _ = seasonal_with_gap("ffill", [29, 30])
    scores = {}
    for fill in ("ffill", "zero", "interpolate"):
        _, filled = seasonal_with_gap(fill, [29, 30])
        bt = backtest(filled, [9, 6, 3], 3, 4, truth_plus(1.0, full))
        gap = bt.frame["ds"].isin(full.frame["ds"].iloc[[29, 30]])
        assert bt.frame.loc[gap, "y"].isna().all() and bt.frame.loc[~gap, "y"].notna().all()
        # Only the observed actual of the last window is scored: the model is off by exactly 1.
        assert bt.scores("model", "mae") == pytest.approx([1.0, 1.0, 1.0])
        scores[fill] = bt.per_window
    # The filled values (carried forward or zero) change no score, the baselines' included.
    pd.testing.assert_frame_equal(scores["ffill"], scores["zero"])
    observed = backtest(full, [9, 6, 3], 3, 4, truth_plus(1.0, full))
    assert observed.scores("model", "mae") == pytest.approx([1.0, 1.0, 1.0])


def test_a_window_with_no_observed_point_scores_nan_and_means_skip_it() -> None:
    full, filled = seasonal_with_gap("ffill", [30])  # the only step of window 1 (offset 2)
    bt = backtest(filled, [3, 2, 1], 1, 4, truth_plus(2.0, full))
    assert bt.frame["y"].isna().sum() == 1
    model = bt.scores("model", "mae")
    assert np.isnan(model[1]) and model[0] == model[2] == pytest.approx(2.0)
    assert bt.mean["model"]["mae"] == pytest.approx(2.0)
    assert np.isnan(bt.scores("naive", "rmse")[1]) and np.isfinite(bt.mean["naive"]["rmse"])


def test_the_history_at_a_cutoff_does_not_depend_on_later_data() -> None:
    # The audit's probe: a gap straddling the cutoff, filled with fill=interpolate.
    full, _ = seasonal_with_gap("interpolate", [27, 28])
    seen = []

    def spy(history):
        seen.append(history.frame.reset_index(drop=True))
        return truth_plus(0.0, full)(history)

    for later in (0.0, 100.0):
        raw = full.frame.drop(index=[27, 28]).rename(columns={"unique_id": "store"})
        raw.loc[29:, "y"] += later  # every observation after the cutoff
        cfg = DataConfig(
            source="x", time_column="ds", target="y", series_id="store", fill="interpolate"
        )
        cross_validation(validate(raw, cfg), [4], 3, 4, spy)  # cutoff: point 27 (filled)
    assert len(seen[0]) == 28
    pd.testing.assert_frame_equal(seen[0], seen[1])
