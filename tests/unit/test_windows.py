import numpy as np
import pandas as pd
import pytest

from conftest import sine_frame
from seqlab.config import DataConfig
from seqlab.data import validate
from seqlab.features.windows import (
    Scaler,
    apply_transform,
    backtest_offsets,
    decode_forecasts,
    fit_scaler,
    min_length,
    normalise_windows,
    prepare,
    seasonal_mae,
    sliding_windows,
    target_windows,
)

CFG = DataConfig(source="x", time_column="ds", target="y")
MULTI = DataConfig(source="x", time_column="ds", target="y", series_id="store")


def test_sliding_windows_values_and_shapes() -> None:
    v = np.arange(10, dtype=float)[:, None]
    x, y = sliding_windows(v, input_size=3, horizon=2)
    assert x.shape == (6, 3, 1) and y.shape == (6, 2)
    np.testing.assert_array_equal(x[0, :, 0], [0, 1, 2])
    np.testing.assert_array_equal(y[0], [3, 4])
    np.testing.assert_array_equal(y[-1], [8, 9])


@pytest.mark.parametrize(
    "n, L, H, stride, expected",
    [(5, 3, 2, 1, 1), (4, 3, 2, 1, 0), (10, 3, 2, 2, 3), (10, 1, 1, 1, 9), (0, 2, 1, 1, 0)],
)
def test_window_counts_edge_cases(n: int, L: int, H: int, stride: int, expected: int) -> None:
    x, y = sliding_windows(np.zeros((n, 2)), L, H, stride)
    assert x.shape == (expected, L, 2) and y.shape == (expected, H)


def test_multifeature_windows_take_target_from_feature_zero() -> None:
    v = np.stack([np.arange(8.0), 100 + np.arange(8.0)], axis=1)
    x, y = sliding_windows(v, 2, 2)
    np.testing.assert_array_equal(x[1], [[1, 101], [2, 102]])
    np.testing.assert_array_equal(y[1], [3, 4])


def test_target_windows_keep_targets_inside_the_range() -> None:
    v = np.arange(30.0)[:, None]
    x, y, starts = target_windows(v, 4, 3, target_start=10, target_end=20)
    assert y.min() >= 10 and y.max() <= 19
    np.testing.assert_array_equal(starts, y[:, 0])
    assert len(y) == 20 - 10 - 3 + 1  # every target start from 10 to 17
    np.testing.assert_array_equal(x[0, :, 0], [6, 7, 8, 9])  # inputs reach back into the past


def test_scaler_round_trip_and_constant_feature() -> None:
    parts = [np.c_[np.arange(10.0), np.ones(10)], np.c_[np.arange(10.0) * 3, np.ones(10)]]
    sc = fit_scaler(parts, ["a", "b"], "standard")
    z = sc.transform(parts[1], 1)
    assert abs(z[:, 0].mean()) < 1e-12 and z[:, 0].std() == pytest.approx(1)
    assert np.all(z[:, 1] == 0)  # constant covariate: scale 1, no division by zero
    np.testing.assert_allclose(sc.inverse_target(z[:, 0], 1), parts[1][:, 0])
    assert Scaler.from_dict(sc.to_dict()).index_of("b") == 1


def test_backtest_offsets_and_min_length() -> None:
    assert backtest_offsets(horizon=12, windows=3, step=12) == [36, 24, 12]
    assert backtest_offsets(horizon=5, windows=3, step=2) == [9, 7, 5]
    assert backtest_offsets(horizon=4, windows=1, step=4) == [4]
    assert min_length(input_size=24, horizon=12, val_size=12, test_size=36) == 84


@pytest.mark.parametrize("n_series", [1, 3])
@pytest.mark.parametrize(
    "L, H, stride, val, test",
    [
        (10, 5, 1, 5, 5),
        (24, 12, 1, 12, 36),
        (7, 3, 2, 9, 6),
        (12, 6, 3, 6, 18),
        (5, 1, 1, 1, 1),
    ],
)
def test_no_target_point_is_both_fitted_and_validated(
    n_series: int, L: int, H: int, stride: int, val: int, test: int
) -> None:
    """Targets of training windows end before the validation part; validation targets lie
    wholly inside it, never in training or in the test part."""
    n = min_length(L, H, val, test) + 7
    frames = []
    for s in range(n_series):
        df = sine_frame(n=n + 3 * s)  # series of different lengths line up on their end
        df["y"] = np.arange(len(df), dtype=float) + 1  # value = position + 1
        df.insert(0, "store", f"s{s}")
        frames.append(df)
    series = validate(pd.concat(frames, ignore_index=True), MULTI)
    p = prepare(series, L, H, holdout=val + test, val_size=val, stride=stride, scaler_kind="none")
    lengths = series.lengths()
    for i, sid in enumerate(p.series_ids):
        T = lengths[sid]
        train_end, val_end = T - val - test, T - test
        # With scaler none and no local norm, targets are raw positions + 1.
        mine = p.y_train[_series_rows(p, i)] - 1
        assert mine.size and mine.max() < train_end
        v = p.val_target[p.val_series == i] - 1
        assert v.size and v.min() >= train_end and v.max() < val_end
        assert not (set(mine.ravel().astype(int)) & set(v.ravel().astype(int)))
    assert len(p.x_val) == n_series * (val - H + 1)


def _series_rows(p, i: int) -> np.ndarray:
    """Rows of series ``i`` among the training windows, which are concatenated per series: the
    first input value (a position) drops where the next series starts."""
    firsts = p.x_train[:, 0, 0]
    bounds = [0, *(np.flatnonzero(np.diff(firsts) < 0) + 1).tolist(), len(firsts)]
    return np.arange(bounds[i], bounds[i + 1])


def test_no_leakage_from_validation_and_test() -> None:
    """Changing validation and test values changes nothing the scaler or training saw."""
    df = sine_frame(n=80)
    a = prepare(validate(df, CFG), 12, 6, holdout=12, val_size=6, local_norm="last")
    df2 = df.copy()
    df2.loc[len(df2) - 12 :, "y"] *= 50  # the validation and test parts
    b = prepare(validate(df2, CFG), 12, 6, holdout=12, val_size=6, local_norm="last")
    np.testing.assert_array_equal(a.scaler.loc, b.scaler.loc)
    np.testing.assert_array_equal(a.scaler.scale, b.scaler.scale)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.val_target, b.val_target)


def test_refit_without_holdout_uses_every_point() -> None:
    s = validate(sine_frame(n=40), CFG)
    p = prepare(s, 10, 5, holdout=0)
    assert len(p.x_train) == 40 - 10 - 5 + 1 and len(p.x_val) == 0
    with pytest.raises(ValueError, match="cannot exceed"):
        prepare(s, 10, 5, holdout=3, val_size=5)
    with pytest.raises(ValueError, match="needs"):
        prepare(s, 10, 5, holdout=30)


def test_validation_mase_decodes_to_data_units() -> None:
    s = validate(sine_frame(n=60), CFG)
    p = prepare(s, 10, 5, holdout=10, val_size=5, transform="log", local_norm="last", season=7)
    # A perfect model outputs the normalised truth: decoded, it is the raw validation target.
    assert p.val_mase(p.y_val) == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(p.decode_val(p.y_val), p.val_target, rtol=1e-6)
    raw = s.frame["y"].to_numpy()
    assert p.mase_scale[0] == pytest.approx(seasonal_mae(raw[:50], 7))
    # Off by one unit everywhere: MASE is 1 / the series' scale.
    enc = (np.log(p.val_target + 1) - p.scaler.loc[0, 0]) / p.scaler.scale[0, 0] - p.val_ref
    assert p.val_mase(enc) == pytest.approx(1 / p.mase_scale[0], rel=1e-6)


def test_normalise_windows_none_is_identity() -> None:
    x = np.random.default_rng(0).normal(size=(4, 3, 2)).astype(np.float32)
    y = np.ones((4, 2), np.float32)
    x2, y2, base = normalise_windows(x, y, "none")
    assert x2 is x and np.array_equal(y2, y) and base.shape == (4, 2) and np.all(base == 0)


def test_seasonal_naive_residual_round_trips() -> None:
    # Season 4, input 8: the baseline is the last season of the input, repeated over 6 steps.
    x = np.arange(16, dtype=np.float32).reshape(2, 8, 1)
    y = np.full((2, 6), 100.0, np.float32)
    x2, y2, base = normalise_windows(x, y, "last", residual="seasonal_naive", season=4)
    ref = x[:, -1, 0]
    np.testing.assert_allclose(base[0], ref[0] + (x[0, [4, 5, 6, 7, 4, 5], 0] - ref[0]))
    np.testing.assert_allclose(y2 + base, y)  # what the model learns + baseline = the target
    with pytest.raises(ValueError, match="input_size >= the season"):
        normalise_windows(x, y, "none", residual="seasonal_naive", season=12)


def test_padding_lets_short_series_train_and_skips_the_hopeless(tmp_path) -> None:
    frames = []
    for sid, n in (("long", 60), ("short", 12), ("tiny", 4)):
        df = sine_frame(n=n)
        df.insert(0, "store", sid)
        frames.append(df)
    series = validate(pd.concat(frames, ignore_index=True), MULTI)
    plain = prepare(series, 14, 5, holdout=5, val_size=5)
    assert plain.skipped == ["short", "tiny"]  # 12 and 4 points: no 14 + 5 window
    padded = prepare(series, 14, 5, holdout=5, val_size=5, pad=True)
    assert padded.skipped == ["tiny"]  # 4 - 5 held out: nothing left to train on
    short = padded.x_train[padded.train_series == 1]
    assert len(short) == 2  # 7 points before the holdout: targets start at positions 1 and 2
    first = padded.x_train[padded.train_series == 1][0, :, 0]
    assert np.all(first[:-1] == first[0])  # the padded part repeats the first observation
    with pytest.raises(ValueError, match="no series is long enough"):
        prepare(validate(sine_frame(n=10), CFG), 14, 5, holdout=5)


def test_window_sampler_draws_series_uniformly() -> None:
    import torch

    from seqlab.training.trainer import WindowSampler

    # Series 0 has 1000 windows, series 1 has 10: an epoch of draws is half each.
    sampler = WindowSampler.from_series(
        np.r_[np.zeros(1000, int), np.ones(10, int)], torch.device("cpu")
    )
    g = torch.Generator().manual_seed(0)
    idx = sampler.draw(4000, g).numpy()
    assert idx.min() >= 0 and idx.max() < 1010
    share = np.mean(idx >= 1000)
    assert 0.45 < share < 0.55


def test_log_transform_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="strictly positive"):
        apply_transform(np.array([1.0, 0.0]), "log")


def test_decode_forecasts_per_series() -> None:
    sc = Scaler("standard", ("a", "b"), np.array([[0.0], [10.0]]), np.array([[1.0], [2.0]]))
    out = decode_forecasts(np.zeros((2, 3)), np.array([1.0, 1.0]), sc, np.array([0, 1]), "none")
    np.testing.assert_allclose(out, [[1, 1, 1], [12, 12, 12]])


def test_mase_scaler_divides_the_target_by_its_seasonal_naive_mae() -> None:
    t = np.arange(24, dtype=float)
    part = np.stack([10 + t + np.tile([0.0, 3.0, -3.0], 8), np.sin(t)], axis=1)
    s = fit_scaler([part], ["a"], "mase", season=3)
    assert s.scale[0, 0] == pytest.approx(3.0)  # every seasonal difference is the trend's 3
    assert s.scale[0, 1] == pytest.approx(part[:, 1].std())  # covariates: standard
    assert s.loc[0, 0] == pytest.approx(part[:, 0].mean())
    flat = fit_scaler([np.ones((5, 1))], ["a"], "mase", season=3)
    assert flat.scale[0, 0] == 1.0  # undefined MAE and zero spread: left unscaled


# ---------------------------------------------------------------- rolling validation windows


def _positions_cfg(**window: object):
    """Windows of 10 inputs, horizon 6, 2 backtest windows (12 points); raw values (no scaler,
    no local norm) so every target reads back as its position + 1."""
    from seqlab.config import PipelineConfig

    w = {
        "input_size": 10,
        "horizon": 6,
        "scaler": "none",
        "local_norm": "none",
        "residual": "none",
        **window,
    }
    return PipelineConfig.model_validate(
        {
            "data": {"source": "x", "time_column": "ds", "target": "y", "series_id": "store"},
            "window": w,
            "eval": {"backtest_windows": 2},
        }
    )


def _positions_frame(lengths: dict[str, int]) -> pd.DataFrame:
    frames = []
    for sid, n in lengths.items():
        df = sine_frame(n=n)
        df["y"] = np.arange(n, dtype=float) + 1  # value = position + 1
        df.insert(0, "store", sid)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _val_starts(p, i: int) -> list[int]:
    return (p.val_target[p.val_series == i][:, 0] - 1).astype(int).tolist()


def test_the_default_validates_on_three_rolling_windows_per_series() -> None:
    from seqlab.data.checks import validation_windows
    from seqlab.pipeline import prepare_data

    cfg = _positions_cfg()
    assert (cfg.val_step, cfg.val_size, cfg.min_val_size) == (3, 6 + 2 * 3, 6)
    series = validate(_positions_frame({"a": 60, "b": 45}), MULTI)
    p = prepare_data(series, cfg)
    lengths = series.lengths()
    for i, sid in enumerate(p.series_ids):
        c0 = lengths[sid] - cfg.test_size  # the first backtest cutoff
        v = c0 - cfg.val_size
        # Origins 3 apart, the last target ending at c0: wholly inside [v, c0).
        assert _val_starts(p, i) == [c0 - 12, c0 - 9, c0 - 6]
        targets = p.val_target[p.val_series == i] - 1
        assert targets.min() >= v and targets.max() < c0  # never in the backtest part
        assert p.y_train[p.train_series == i].max() - 1 < v  # training targets end before v
    assert p.val_window_counts().tolist() == [3, 3]
    assert validation_windows(cfg, lengths) == {"a": 3, "b": 3}


def test_a_short_series_validates_on_fewer_windows_with_one_warning(caplog) -> None:
    from seqlab.data.checks import required_length, validate_data, validation_windows
    from seqlab.pipeline import prepare_data

    cfg = _positions_cfg()
    # One training window (16) + one validation window (6) + the backtest (12) = 34 points;
    # each window more takes 3.
    assert required_length(cfg) == 34
    lengths = {"long": 60, "two": 37, "one": 34, "none": 33}
    with caplog.at_level("WARNING", logger="seqlab.data"):
        series = validate_data(_positions_frame(lengths), cfg)
    said = [r.getMessage() for r in caplog.records if "validation windows" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith(
        "2 of 4 series too short for 3 validation windows: using 1 for 'one', 2 for 'two'; "
    )
    p = prepare_data(series, cfg)
    assert p.skipped == ["none"]  # too short for even one window: skipped, as before
    held = dict(zip(p.series_ids, p.val_window_counts().tolist()))
    assert held == {"long": 3, "two": 2, "one": 1, "none": 0}
    assert validation_windows(cfg, series.lengths()) == held
    for i, sid in enumerate(p.series_ids):
        if held[sid]:
            c0 = lengths[sid] - cfg.test_size
            v = c0 - 6 - 3 * (held[sid] - 1)  # its own, shorter validation part
            assert _val_starts(p, i)[-1] == c0 - 6
            assert p.val_target[p.val_series == i].min() - 1 >= v
            mine = p.y_train[p.train_series == i]
            assert len(mine) >= 1 and mine.max() - 1 < v  # it keeps a training window


def test_window_pad_lets_a_shorter_series_hold_its_validation_window() -> None:
    from seqlab.data.checks import required_length
    from seqlab.pipeline import prepare_data

    cfg = _positions_cfg(pad=True)
    assert required_length(cfg) == 1 + 6 + 6 + 12  # one observed input point
    series = validate(_positions_frame({"a": 60, "b": 25, "c": 28}), MULTI)
    p = prepare_data(series, cfg)
    assert p.skipped == [] and p.val_window_counts().tolist() == [3, 1, 2]


def test_an_explicit_val_size_is_the_validation_part_of_every_series(caplog) -> None:
    from seqlab.data.checks import validate_data
    from seqlab.pipeline import prepare_data

    cfg = _positions_cfg(val_size=9, val_windows=5)  # val_windows has no say then
    assert (cfg.val_step, cfg.val_size) == (1, 9)
    with caplog.at_level("WARNING", logger="seqlab.data"):
        series = validate_data(_positions_frame({"a": 60, "b": 36}), cfg)
    assert not [r for r in caplog.records if "validation windows" in r.getMessage()]
    p = prepare_data(series, cfg)
    assert p.skipped == ["b"]  # 36 < 10 + 6 + 9 + 12: not shrunk, left out as before
    c0 = 60 - cfg.test_size
    assert _val_starts(p, 0) == list(range(c0 - 9, c0 - 6 + 1))  # every window inside it


def test_nothing_at_or_after_the_first_cutoff_reaches_a_validation_window() -> None:
    from seqlab.pipeline import prepare_data

    cfg = _positions_cfg(scaler="mase", local_norm="last")  # scaled, relative: the defaults
    frame = _positions_frame({"a": 60, "b": 45})
    frame["y"] = frame["y"] + np.sin(np.arange(len(frame)))
    before = prepare_data(validate(frame, MULTI), cfg)
    changed = frame.copy()
    for _, g in changed.groupby("store"):
        c0 = len(g) - cfg.test_size
        changed.loc[g.index[c0:], "y"] *= 3.0  # every value from the first cutoff on
    after = prepare_data(validate(changed, MULTI), cfg)
    for name in ("x_val", "y_val", "val_target", "val_ref", "x_train", "y_train", "mase_scale"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name), err_msg=name)
    np.testing.assert_array_equal(before.spec.scaler.scale, after.spec.scaler.scale)
    # ...while the validation part itself does reach them.
    inside = frame.copy()
    inside.loc[inside.index[60 - cfg.test_size - 1], "y"] += 5.0  # the point before a's c0
    touched = prepare_data(validate(inside, MULTI), cfg)
    assert not np.array_equal(before.val_target, touched.val_target)


def test_validation_mase_is_the_mean_over_windows_then_over_series() -> None:
    from seqlab.pipeline import prepare_data

    cfg = _positions_cfg()
    p = prepare_data(validate(_positions_frame({"a": 60, "b": 34}), MULTI), cfg)
    assert p.val_window_counts().tolist() == [3, 1]
    np.testing.assert_allclose(p.mase_scale, [7.0, 7.0])  # daily: seasonal-naive MAE 7 steps
    off = np.where(p.val_series == 0, 7.0, 21.0)[:, None]  # a: MASE 1 on 3 windows, b: 3 on 1
    assert p.val_mase(p.val_target + off) == pytest.approx((1.0 + 3.0) / 2)  # not (3+3)/4
