import numpy as np
import pytest

from seqlab.evaluate import (
    evaluate_forecasts,
    mae,
    mase,
    mase_scale,
    naive_forecast,
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
    assert mase_scale(train, 10) == pytest.approx(np.mean(np.abs(np.diff(train))))  # falls back to lag 1
    assert np.isnan(mase_scale(np.ones(5), 1))
    assert mase(np.array([2.0]), np.array([1.0]), 0.5) == pytest.approx(2.0)


def test_baselines() -> None:
    hist = np.arange(1.0, 13.0)
    np.testing.assert_array_equal(naive_forecast(hist, 3), [12, 12, 12])
    np.testing.assert_array_equal(seasonal_naive_forecast(hist, 6, 4), [9, 10, 11, 12, 9, 10])
    np.testing.assert_array_equal(seasonal_naive_forecast(hist[:2], 3, 4), [2, 2, 2])


def test_perfect_seasonal_series_seasonal_naive_scores_zero() -> None:
    season = np.array([1.0, 5, 3, 2])
    series = np.tile(season, 6)
    train, hist, test = series[:16], series[:20], series[20:]
    ev = evaluate_forecasts(test[None], test[None] + 1, [train], [hist], ["a"], season=4)
    assert ev.baselines["seasonal_naive"]["mae"] == 0
    assert ev.model["mae"] == pytest.approx(1)
    assert not ev.beats_baselines()
    flat = ev.flat()
    assert {"test/mase", "test/naive/mase", "test/seasonal_naive/rmse"} <= set(flat)


def test_metrics_average_over_series() -> None:
    y = np.array([[1.0, 1.0], [2.0, 2.0]])
    f = np.array([[2.0, 2.0], [2.0, 2.0]])
    trains = [np.array([0.0, 1, 0, 1]), np.array([0.0, 2, 0, 2])]
    ev = evaluate_forecasts(y, f, trains, trains, ["a", "b"], season=1)
    assert ev.model["mae"] == pytest.approx(0.5)
    assert ev.per_series["a"]["mase"] == pytest.approx(1.0)
    assert ev.per_series["b"]["mase"] == pytest.approx(0.0)
