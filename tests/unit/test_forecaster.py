"""The fitted forecaster: one featuriser, one decoder, one prediction path, a checked format."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import sine_frame
from seqlab.config import build_config, with_overrides
from seqlab.data import validate
from seqlab.forecaster import FORMAT, FittedForecaster, ModelFormatError, central_levels
from seqlab.inference import truncate
from seqlab.pipeline import backtest_model, calibrate, prepare_fit, refit, train_model
from seqlab.training.trainer import predict


def frame_with_everything(n: int = 120) -> pd.DataFrame:
    """Three daily series of different lengths with a past covariate and a known-future one."""
    parts = []
    for k, length in enumerate((n, n - 20, n - 35)):
        df = sine_frame(n=length, covariate=True, seed=k)
        df["y"] = df["y"] + 3 * k
        df["promo"] = (np.random.default_rng(k).random(length) < 0.3).astype(float)
        df["y"] = df["y"] + 2 * df["promo"]
        df.insert(0, "store", f"s{k}")
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def config(tmp_path, **extra: object):
    base = {
        "data": {
            "source": str(tmp_path / "x.csv"),
            "time_column": "ds",
            "target": "y",
            "series_id": "store",
            "covariates": ["temp"],
            "future_covariates": ["promo"],
            "freq": "D",
        },
        "window": {"input_size": 14, "horizon": 7},
        "model": {"cell": "gru", "hidden_size": 4, "ensemble_size": 1},
        "train": {"max_epochs": 1, "patience": None, "device": "cpu", "num_threads": 1},
        "eval": {"backtest_windows": 2, "season_length": 7},
    }
    cfg = build_config(base)
    return with_overrides(cfg, dict(extra)) if extra else cfg


COMBINATIONS = [(*c, False) for c in itertools.product([False, True], repeat=5)]
# Static covariates on, with the calendar, seasonal indices, known-future inputs, an embedding.
WITH_STATIC = (True, True, True, True, False, True)
STATIC = {"s0": ("outlet", 10.0), "s1": ("mall", 40.0), "s2": ("outlet", 25.0)}


def with_static(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with each store's type (text) and size (numeric) on every row."""
    kinds = frame["store"].map({k: v[0] for k, v in STATIC.items()})
    return frame.assign(kind=kinds, size=frame["store"].map({k: v[1] for k, v in STATIC.items()}))


def combination(
    tmp_path,
    calendar: bool,
    deseason: str,
    future: bool,
    embedding: bool,
    pad: bool,
    static: bool = False,
):
    """The three-series data and a tiny config with these feature settings."""
    frame = frame_with_everything()
    if not future:
        frame = frame.drop(columns=["promo"])
    cfg = config(
        tmp_path,
        **{
            "window.calendar": calendar,
            "window.deseasonalize": deseason,
            "data.future_covariates": ["promo"] if future else [],
            "model.series_embedding": 2 if embedding else 0,
            "window.pad": pad,
            "data.static_covariates": ["kind", "size"] if static else [],
        },
    )
    return validate(with_static(frame) if static else frame, cfg.data), cfg


@pytest.mark.parametrize(
    "calendar, deseason, future, embedding, pad, static", [*COMBINATIONS, WITH_STATIC]
)
def test_training_windows_and_forecast_inputs_are_one_featurisation(
    tmp_path, calendar: bool, deseason: bool, future: bool, embedding: bool, pad: bool, static: bool
) -> None:
    """The validation window ending at a cutoff, built for training, equals the forecast input
    at that cutoff, built for serving, and both decode the same outputs to the same values."""
    series, cfg = combination(
        tmp_path, calendar, "additive" if deseason else "none", future, embedding, pad, static
    )
    h = cfg.window.horizon
    prepared = prepare_fit(series, cfg, holdout=h, val_size=h)  # one window per series
    inputs = prepared.spec.forecast_inputs(truncate(series, h), future=series.frame)
    np.testing.assert_allclose(inputs.x, prepared.x_val, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(inputs.base, prepared.val_ref, rtol=1e-9)
    outputs = np.random.default_rng(0).normal(size=(len(inputs.x), h))
    np.testing.assert_allclose(
        prepared.spec.decode(outputs, inputs.base, inputs.series_index, inputs.phases),
        prepared.decode_val(outputs),
    )


@pytest.mark.parametrize(
    "calendar, deseason, future, embedding, pad, static", [*COMBINATIONS[::5], WITH_STATIC]
)
def test_backtest_forecasts_equal_the_saved_models_forecasts_of_the_users_frame(
    tmp_path, calendar: bool, deseason: bool, future: bool, embedding: bool, pad: bool, static: bool
) -> None:
    """Train/serve parity: each backtest forecast is what the evaluated model, saved, loaded and
    given the user's own frame cut at that cutoff (plus the horizon's known-future rows, with an
    empty target; with static covariates, their trained values on every row), forecasts."""
    series, cfg = combination(
        tmp_path, calendar, "multiplicative" if deseason else "none", future, embedding, pad, static
    )
    fitted = refit(series, cfg, epochs=1, holdout=cfg.test_size)
    bt = backtest_model(fitted, series, cfg)
    loaded = FittedForecaster.load(*fitted.save(tmp_path / "model"))
    h = cfg.window.horizon
    for window, rows in bt.frame.groupby("window"):
        offset = cfg.test_size - window * cfg.backtest_step
        user = loaded.columns.user_frame(truncate(series, offset))
        if future:  # the horizon's known-future rows after each series' cutoff, target empty
            ahead = loaded.columns.user_frame(series)
            cutoff = ahead["store"].map(user.groupby("store")["ds"].max())
            ahead = ahead[ahead["ds"] > cutoff].groupby("store").head(h).assign(y=np.nan)
            user = pd.concat([user, ahead], ignore_index=True)
        if static:
            user = with_static(user)
        served = loaded.predict_frame(user).set_index(["unique_id", "ds"])
        got = served.loc[list(zip(rows["unique_id"], rows["ds"])), "forecast"].to_numpy()
        np.testing.assert_allclose(got, rows["model"].to_numpy(), rtol=1e-6)


def test_early_stopping_scores_with_the_forecasting_decoder(tiny_config) -> None:
    cfg = tiny_config(**{"train.patience": 50, "train.max_epochs": 4})
    from seqlab.pipeline import ingest, prepare_data, validate_data

    series = validate_data(ingest(cfg), cfg)
    prepared = prepare_data(series, cfg)
    model, hist = train_model(prepared, cfg)
    assert hist.monitor == "val/mase"
    # the best weights are restored: their score is the recorded best, decoded as forecasts are
    assert prepared.val_mase(predict(model, prepared.x_val)) == pytest.approx(
        hist.best_score, rel=1e-5
    )


def test_a_refit_repeats_the_optimizer_steps_of_the_fit_it_repeats(tiny_config) -> None:
    from seqlab.pipeline import ingest, validate_data

    cfg = tiny_config(**{"train.batch_size": 8})
    series = validate_data(ingest(cfg), cfg)
    evaluated = refit(series, cfg, epochs=3, holdout=cfg.test_size)
    served = refit(series, cfg, holdout=0, steps=evaluated.steps)
    assert evaluated.steps > 0 and served.steps == evaluated.steps
    # on more data an epoch has more steps, so the served model trains fewer epochs, not more
    # steps (the same epoch count would have trained longer than the model that was judged)
    assert served.history is not None and served.epochs <= evaluated.epochs
    same_epochs = refit(series, cfg, epochs=3, holdout=0)
    assert same_epochs.steps > evaluated.steps


def test_meta_is_versioned_and_checked_on_load(tiny_config, tmp_path) -> None:
    from seqlab.pipeline import ingest, validate_data

    cfg = tiny_config()
    series = validate_data(ingest(cfg), cfg)
    fitted = refit(series, cfg, epochs=1, holdout=0)
    weights, meta = fitted.save(tmp_path / "m")
    info = json.loads(meta.read_text())
    assert info["format"] == FORMAT and info["features"]["input_size"] == 14
    loaded = FittedForecaster.load(weights, meta)
    pd.testing.assert_frame_equal(loaded.predict(series), fitted.predict(series))
    assert loaded.steps == fitted.steps and loaded.training_end == fitted.training_end

    meta.write_text(json.dumps({**info, "format": 2}))
    with pytest.raises(ModelFormatError, match=r"model format 2 .* older seqlab .* retrain") as e:
        FittedForecaster.load(weights, meta)
    assert "\n" not in str(e.value)
    meta.write_text(json.dumps({"flavor": "something else"}))
    with pytest.raises(ModelFormatError, match="not a seqlab model"):
        FittedForecaster.load(weights, meta)


def test_point_models_forecast_calibrated_intervals(tiny_config) -> None:
    """A point model gets split-conformal intervals from its backtest errors: scored out of
    window in the backtest, served around its forecast in its series' scale."""
    from seqlab.pipeline import ingest, validate_data

    cfg = tiny_config(**{"eval.backtest_windows": 4, "window.input_size": 7})
    series = validate_data(ingest(cfg), cfg)
    fitted = refit(series, cfg, epochs=2, holdout=cfg.test_size)
    bt = backtest_model(fitted, series, cfg)
    # 4 windows x 7 steps: 21 out-of-window errors calibrate 80% (and 95%) for every window
    assert {"coverage_80", "coverage_95"} <= set(bt.mean["model"])
    assert "raw_coverage_80" not in bt.mean["model"]  # zero-width raw bands are not reported
    served = calibrate(fitted, bt, cfg, series)
    assert served.intervals is not None
    assert served.levels == central_levels([80, 95]) == [0.025, 0.1, 0.9, 0.975]
    fc = served.predict(series)
    point = fc["forecast"].to_numpy()
    assert (fc["q0.025"] <= fc["q0.1"]).all() and (fc["q0.1"] <= point).all()
    assert (point <= fc["q0.9"]).all() and (fc["q0.9"] <= fc["q0.975"]).all()
    scale = served.intervals.scales["series_0"]
    np.testing.assert_allclose(
        fc["q0.9"] - point, max(served.intervals.margins[0.1], 0) * scale, rtol=1e-9
    )
    no_bands = calibrate(fitted, bt, with_overrides(cfg, {"eval.intervals": []}), series)
    assert set(no_bands.predict(series).columns) == {"unique_id", "ds", "forecast"}


def test_a_point_interval_without_enough_errors_is_left_out(tiny_config) -> None:
    from seqlab.pipeline import ingest, validate_data

    cfg = tiny_config()  # 2 windows x 7 steps: 7 errors out of window, too few for 95%
    series = validate_data(ingest(cfg), cfg)
    fitted = refit(series, cfg, epochs=1, holdout=cfg.test_size)
    bt = backtest_model(fitted, series, cfg)
    assert "coverage_80" in bt.mean["model"] and "coverage_95" not in bt.mean["model"]
    served = calibrate(fitted, bt, cfg, series)  # all 14 errors: enough for 80%, not 95%
    assert served.levels == [0.1, 0.9]
    assert {"q0.1", "q0.9"} <= set(served.predict(series).columns)
    assert "q0.025" not in served.predict(series).columns


def test_the_ensemble_forecast_is_a_member_forecast(tiny_config) -> None:
    from seqlab.pipeline import ingest, validate_data

    cfg = tiny_config(**{"model.ensemble_size": 2, "window.transform": "log"})
    series = validate_data(ingest(cfg), cfg)
    fitted = refit(series, cfg, epochs=1, holdout=0)
    members = [
        dataclasses.replace(fitted, network=m, intervals=None).predict(series)["forecast"]
        for m in fitted.network.members
    ]
    got = fitted.predict(series)["forecast"].to_numpy()
    at_member = np.isclose(got, members[0]) | np.isclose(got, members[1])
    assert at_member.all()  # a true median under the log transform: never a geometric mean
    with torch.no_grad():
        assert fitted.network.hparams["ensemble_size"] == 2


@pytest.mark.parametrize("deseason", ["none", "additive", "multiplicative"])
@pytest.mark.parametrize("scaler", ["standard", "mase", "minmax"])
def test_nothing_after_a_cutoff_reaches_the_fit_before_it(tmp_path, deseason, scaler) -> None:
    """Changing every value after the first backtest cutoff changes no training input, scale,
    seasonal index or forecast input at that cutoff."""
    cfg = config(tmp_path, **{"window.deseasonalize": deseason, "window.scaler": scaler})
    frame = frame_with_everything()
    series = validate(frame, cfg.data)
    later = frame.copy()
    positions = later.groupby("store").cumcount(ascending=False) < cfg.test_size
    later.loc[positions, ["y", "temp"]] *= 3.0  # every value after each series' cutoff
    changed = validate(later, cfg.data)
    a = prepare_fit(series, cfg, holdout=cfg.test_size)
    b = prepare_fit(changed, cfg, holdout=cfg.test_size)
    np.testing.assert_array_equal(a.spec.scaler.loc, b.spec.scaler.loc)
    np.testing.assert_array_equal(a.spec.scaler.scale, b.spec.scaler.scale)
    if deseason != "none":
        np.testing.assert_array_equal(a.spec.seasonality.indices, b.spec.seasonality.indices)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    at_cutoff = a.spec.forecast_inputs(truncate(series, cfg.test_size), future=series.frame)
    same = b.spec.forecast_inputs(truncate(changed, cfg.test_size), future=changed.frame)
    np.testing.assert_array_equal(at_cutoff.x, same.x)
