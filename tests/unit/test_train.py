import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

import seqlab.training.trainer as train_mod
from conftest import sine_frame
from conftest import train_config as tiny_cfg
from seqlab.config import TrainConfig, with_overrides
from seqlab.data import validate
from seqlab.features.windows import seasonal_mae
from seqlab.models import RecurrentForecaster
from seqlab.pipeline import backtest_model, calibrate, prepare_data, refit, train_model
from seqlab.training.trainer import (
    Callback,
    DeviceData,
    NonFiniteLossError,
    PinballLoss,
    fit,
    predict,
)


@pytest.fixture(scope="module")
def series():
    return validate(sine_frame(n=120), tiny_cfg().data)


@pytest.fixture(scope="module")
def prepared(series):
    return prepare_data(series, tiny_cfg())


class Recorder(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.started = self.ended = False

    def on_fit_start(self, model, info) -> None:
        self.started = True

    def on_epoch_end(self, epoch, metrics) -> None:
        assert set(metrics) == {"train/loss", "val/loss", "val/mase"}
        self.epochs.append(epoch)

    def on_fit_end(self, history) -> None:
        self.ended = True


def test_loss_goes_down_and_beats_naive(prepared, series) -> None:
    cfg = tiny_cfg()
    rec = Recorder()
    model, hist = train_model(prepared, cfg, [rec])
    assert hist.train_loss[-1] < 0.5 * hist.train_loss[0]
    assert rec.started and rec.ended and rec.epochs == list(range(30))
    assert hist.monitor == "val/mase" and hist.best_score == min(hist.val_score)
    bt = backtest_model(refit(series, cfg, 30, cfg.test_size), series, cfg)
    assert bt.mean["model"]["mae"] < bt.mean["naive"]["mae"]


def test_refit_trains_a_fixed_epoch_count_and_keeps_the_last_weights(series) -> None:
    cfg = tiny_cfg(**{"train.patience": 2})
    fitted = refit(series, cfg, epochs=4, holdout=cfg.test_size)
    assert fitted.history.epochs == 4 and fitted.history.monitor == "train/loss"
    assert fitted.history.best_epoch == 3
    # It saw everything before the first backtest cutoff, and says so.
    last_seen = series.frame["ds"].iloc[len(series.frame) - 1 - cfg.test_size]
    assert fitted.training_end == {"series_0": last_seen.isoformat()}
    assert fitted.epochs == 4 and fitted.holdout == cfg.test_size


def test_refit_trains_an_ensemble_from_consecutive_seeds(series) -> None:
    cfg = tiny_cfg(**{"model.ensemble_size": 3})
    fitted = refit(series, cfg, epochs=2, holdout=cfg.test_size)
    members = fitted.network.members
    assert len(members) == 3 and fitted.network.hparams["ensemble_size"] == 3
    alone = refit(series, tiny_cfg(**{"train.seed": cfg.train.seed + 1}), 2, cfg.test_size)
    for a, b in zip(members[1].parameters(), alone.network.parameters()):
        torch.testing.assert_close(a, b)  # member 1 is the model of seed + 1
    w0, w1 = (next(m.parameters()) for m in members[:2])
    assert not torch.equal(w0, w1)
    fc = fitted.predict(series)
    assert len(fc) == cfg.window.horizon and fc["forecast"].notna().all()


def test_same_seed_same_metrics_on_cpu(prepared) -> None:
    cfg = tiny_cfg(**{"train.max_epochs": 8})
    _, h1 = train_model(prepared, cfg)
    _, h2 = train_model(prepared, cfg)
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss
    _, h3 = train_model(prepared, tiny_cfg(**{"train.max_epochs": 8, "train.seed": 7}))
    assert h3.train_loss != h1.train_loss


def test_early_stopping_restores_best_weights(prepared) -> None:
    cfg = tiny_cfg(
        **{"train.max_epochs": 200, "train.patience": 3, "train.lr": 0.05, "train.loss": "mse"}
    )
    model, hist = train_model(prepared, cfg)
    assert hist.stopped_early and hist.epochs == hist.best_epoch + 4
    data = DeviceData.from_prepared(prepared, torch.device("cpu"))
    with torch.no_grad():
        pred = model.eval()(data.x_val)
        val = torch.nn.functional.mse_loss(pred, data.y_val).item()
    assert val == pytest.approx(hist.best_val_loss, rel=1e-5)
    # Early stopping follows validation MASE in data units, and the restored weights score it.
    assert prepared.val_mase(pred.numpy()) == pytest.approx(hist.best_score, rel=1e-4)


def test_non_finite_loss_raises_with_reason(prepared) -> None:
    model = RecurrentForecaster(1, 7, "lstm", 8)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))  # as after a diverged update
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 0"):
        fit(model, prepared, TrainConfig(max_epochs=3, device="cpu"))


@pytest.mark.parametrize("opt, loss", [("adamw", "huber"), ("adam", "mae")])
def test_optimizers_and_losses(prepared, monkeypatch, opt: str, loss: str) -> None:
    cfg = tiny_cfg(
        **{
            "train.optimizer": opt,
            "train.loss": loss,
            "train.max_epochs": 5,
            "train.weight_decay": 0.01,
        }
    )
    built = {}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            built[name] = out = fn(*args, **kwargs)
            return out

        monkeypatch.setattr(train_mod, name, wrapped)

    spy("make_optimizer", train_mod.make_optimizer)
    spy("make_loss", train_mod.make_loss)
    model, hist = train_model(prepared, cfg)
    optimizer = built["make_optimizer"]
    assert type(optimizer) is {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[opt]
    assert optimizer.defaults["weight_decay"] == 0.01 and optimizer.defaults["lr"] == 0.01
    assert type(built["make_loss"]) is {"huber": torch.nn.HuberLoss, "mae": torch.nn.L1Loss}[loss]
    assert all(math.isfinite(v) for v in hist.train_loss)
    assert hist.train_loss[-1] < hist.train_loss[0]
    # The validation loss it reports is that loss of the weights it kept.
    data = DeviceData.from_prepared(prepared, torch.device("cpu"))
    with torch.no_grad():
        pred = model.eval()(data.x_val)
    named = {"huber": torch.nn.functional.huber_loss, "mae": torch.nn.functional.l1_loss}[loss]
    assert named(pred, data.y_val).item() == pytest.approx(hist.best_val_loss, rel=1e-5)


def test_callback_can_stop_training(prepared) -> None:
    class Stop(Callback):
        def on_epoch_end(self, epoch, metrics) -> None:
            if epoch == 2:
                raise KeyError("stop")

    with pytest.raises(KeyError):
        train_model(prepared, tiny_cfg(), [Stop()])


def test_fit_accepts_prepared_and_predict_shapes(prepared) -> None:
    torch.manual_seed(0)
    model = RecurrentForecaster(1, 7, "gru", 8)
    hist = fit(model, prepared, TrainConfig(max_epochs=2, device="cpu"))
    assert hist.epochs == 2 and hist.precision == "fp32" and hist.device == "cpu"
    assert hist.samples_per_second > 0
    out = predict(model, prepared.x_val)
    assert out.shape == (len(prepared.x_val), 7) and np.isfinite(out).all()


def test_pinball_loss_values() -> None:
    loss = PinballLoss([0.1, 0.5, 0.9])
    pred = torch.zeros(1, 1, 3)
    # Actual 1 above every quantile: 0.1, 0.5 and 0.9 times the shortfall, averaged.
    assert float(loss(pred, torch.ones(1, 1))) == pytest.approx((0.1 + 0.5 + 0.9) / 3)
    # Actual 1 below: (1 - level) times the excess.
    assert float(loss(pred, -torch.ones(1, 1))) == pytest.approx((0.9 + 0.5 + 0.1) / 3)


def test_served_intervals_move_by_the_conformal_margin_in_each_series_scale() -> None:
    frame = pd.concat([sine_frame(n=120).assign(uid="small"), sine_frame(n=120).assign(uid="big")])
    frame.loc[frame["uid"] == "big", "y"] *= 100
    cfg = tiny_cfg(
        **{
            "data.series_id": "uid",
            "model.quantiles": [0.1, 0.5, 0.9],
            "train.loss": "pinball",
            "train.max_epochs": 3,
            "model.ensemble_size": 1,
        }
    )
    series = validate(frame, cfg.data)
    bt_fit = refit(series, cfg, 3, cfg.test_size)
    bt = backtest_model(bt_fit, series, cfg)
    served = calibrate(bt_fit, bt, cfg, series)
    margin = served.intervals.margins[0.1]
    # CQR by hand: the ceil((n + 1) * 0.8)-th smallest score max(lo - y, y - hi) / scale over
    # the backtest's out-of-sample rows, from the network's own (raw) quantiles.
    f = bt.frame
    scores = np.sort(np.maximum(f["raw_q0.1"] - f["y"], f["y"] - f["raw_q0.9"]) / f["mase_scale"])
    assert margin == pytest.approx(scores[math.ceil((len(scores) + 1) * 0.8) - 1])
    assert margin > 0  # three epochs: the raw band is too narrow, so the intervals must move
    # Each series in its own scale: "big" is "small" times 100.
    scales = served.intervals.scales
    assert scales["big"] == pytest.approx(100 * scales["small"])
    raw, fc = bt_fit.predict(series), served.predict(series)
    np.testing.assert_array_equal(raw["forecast"], fc["forecast"])  # the point is untouched
    for sid, g in series.frame.groupby("unique_id"):
        trained_on = g["y"].to_numpy()[: len(g) - cfg.test_size]  # what the model saw
        scale = seasonal_mae(trained_on, 7)  # daily data: a weekly season
        assert served.intervals.scales[sid] == pytest.approx(scale)
        rows = (fc["unique_id"] == sid).to_numpy()
        expect_lo = np.minimum(raw.loc[rows, "q0.1"] - margin * scale, raw.loc[rows, "forecast"])
        np.testing.assert_allclose(fc.loc[rows, "q0.1"], expect_lo, rtol=1e-6)
        expect_hi = np.maximum(raw.loc[rows, "q0.9"] + margin * scale, raw.loc[rows, "forecast"])
        np.testing.assert_allclose(fc.loc[rows, "q0.9"], expect_hi, rtol=1e-6)
    # A caller passing only the last input_size points gets the same forecast and intervals as
    # one passing the whole history: the scale is the training data's, not that of a short tail.
    tail = dataclasses.replace(series, frame=series.frame.groupby("unique_id").tail(14))
    pd.testing.assert_frame_equal(served.predict(tail), fc)
    assert (fc["q0.9"] > raw["q0.9"]).any()  # and they are the moved ones, not the raw ones
    off = calibrate(bt_fit, bt, with_overrides(cfg, {"eval.conformal": False}), series)
    assert off.intervals is None  # switched off: the network's own intervals are served
