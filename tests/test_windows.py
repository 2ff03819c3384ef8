import numpy as np
import pytest

from conftest import sine_frame
from seqlab.config import DataConfig
from seqlab.data import validate
from seqlab.windows import (
    Scaler,
    apply_transform,
    decode_forecasts,
    fit_scaler,
    normalise_windows,
    prepare,
    sliding_windows,
)

CFG = DataConfig(source="x", time_column="ds", target="y")


def test_sliding_windows_values_and_shapes() -> None:
    v = np.arange(10, dtype=float)[:, None]
    x, y = sliding_windows(v, input_size=3, horizon=2)
    assert x.shape == (6, 3, 1) and y.shape == (6, 2)
    np.testing.assert_array_equal(x[0, :, 0], [0, 1, 2])
    np.testing.assert_array_equal(y[0], [3, 4])
    np.testing.assert_array_equal(y[-1], [8, 9])


@pytest.mark.parametrize("n, L, H, stride, expected", [(5, 3, 2, 1, 1), (4, 3, 2, 1, 0), (10, 3, 2, 2, 3),
                                                        (10, 1, 1, 1, 9), (0, 2, 1, 1, 0)])
def test_window_counts_edge_cases(n: int, L: int, H: int, stride: int, expected: int) -> None:
    x, y = sliding_windows(np.zeros((n, 2)), L, H, stride)
    assert x.shape == (expected, L, 2) and y.shape == (expected, H)


def test_multifeature_windows_take_target_from_feature_zero() -> None:
    v = np.stack([np.arange(8.0), 100 + np.arange(8.0)], axis=1)
    x, y = sliding_windows(v, 2, 2)
    np.testing.assert_array_equal(x[1], [[1, 101], [2, 102]])
    np.testing.assert_array_equal(y[1], [3, 4])


def test_scaler_round_trip_and_constant_feature() -> None:
    parts = [np.c_[np.arange(10.0), np.ones(10)], np.c_[np.arange(10.0) * 3, np.ones(10)]]
    sc = fit_scaler(parts, ["a", "b"], "standard")
    z = sc.transform(parts[1], 1)
    assert abs(z[:, 0].mean()) < 1e-12 and z[:, 0].std() == pytest.approx(1)
    assert np.all(z[:, 1] == 0)  # constant covariate: scale 1, no division by zero
    np.testing.assert_allclose(sc.inverse_target(z[:, 0], 1), parts[1][:, 0])
    assert Scaler.from_dict(sc.to_dict()).index_of("b") == 1


def test_split_sizes_and_test_window() -> None:
    s = validate(sine_frame(n=60), CFG)
    p = prepare(s, input_size=10, horizon=5, val_size=5, scaler_kind="standard")
    # train part 50 points -> 50 - 10 - 5 + 1 windows; validation windows end in the 5 val points
    assert p.x_train.shape == (36, 10, 1)
    assert p.x_val.shape == (5, 10, 1)
    assert p.y_test.shape == (1, 5)
    np.testing.assert_allclose(p.y_test[0], s.frame["y"].to_numpy()[-5:])
    assert p.test_start[0] == s.frame["ds"].iloc[-5]
    assert len(p.train_target[0]) == 50 and len(p.history_target[0]) == 55


def test_no_leakage_from_validation_and_test() -> None:
    """Changing validation and test values changes nothing the scaler or training saw."""
    df = sine_frame(n=80)
    a = prepare(validate(df, CFG), 12, 6, 6, scaler_kind="standard", local_norm="last")
    df2 = df.copy()
    df2.loc[len(df2) - 12 :, "y"] *= 50  # the validation and test parts
    b = prepare(validate(df2, CFG), 12, 6, 6, scaler_kind="standard", local_norm="last")
    np.testing.assert_array_equal(a.scaler.loc, b.scaler.loc)
    np.testing.assert_array_equal(a.scaler.scale, b.scaler.scale)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_val, b.y_val)


def test_local_norm_and_log_transform_decode_back() -> None:
    s = validate(sine_frame(n=60), CFG)
    p = prepare(s, 10, 5, 5, scaler_kind="standard", transform="log", local_norm="last")
    assert np.all(p.x_test[:, -1, 0] == 0)  # relative to the last observed value
    # A perfect model outputs the normalised truth: decoding must give the raw test values.
    raw = s.frame["y"].to_numpy()
    truth = (np.log(raw[-5:]) - p.scaler.loc[0, 0]) / p.scaler.scale[0, 0] - p.test_ref[0]
    np.testing.assert_allclose(p.decode_test(truth[None, :]), raw[None, -5:], rtol=1e-6)


def test_normalise_windows_none_is_identity() -> None:
    x = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    y = np.ones((4, 2), np.float32)
    x2, y2, ref = normalise_windows(x, y, "none")
    assert x2 is x and y2 is y and np.all(ref == 0)


def test_log_transform_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="strictly positive"):
        apply_transform(np.array([1.0, 0.0]), "log")


def test_decode_forecasts_per_series() -> None:
    sc = Scaler("standard", ("a", "b"), np.array([[0.0], [10.0]]), np.array([[1.0], [2.0]]))
    out = decode_forecasts(np.zeros((2, 3)), np.array([1.0, 1.0]), sc, np.array([0, 1]), "none")
    np.testing.assert_allclose(out, [[1, 1, 1], [12, 12, 12]])
