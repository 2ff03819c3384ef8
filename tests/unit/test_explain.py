"""Explanations on data whose answer is known: a covariate that drives the target (one step
later) ranks first, a useless one last; integrated gradients add up; plots are drawn; the
study's plots skip what they cannot show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import sine_frame
from seqlab.config import DataConfig, apply_overrides, build_config, with_overrides
from seqlab.data import validate
from seqlab.evaluation import explain
from seqlab.features.windows import PreparedData
from seqlab.models import RecurrentForecaster
from seqlab.pipeline import refit

PNG = b"\x89PNG\r\n\x1a\n"


def driven_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """y_t = 0.4 y_{t-1} + 0.4 y_{t-6} + 2 driver_{t-1} + small noise; ``noise`` is unrelated.

    The driver dominates; the target's lags 1-4 and 5-8 both carry information (y_{t-1} and
    y_{t-6}), so the useless covariate is the only group with nothing in it."""
    rng = np.random.default_rng(seed)
    driver, noise = rng.normal(size=n), rng.normal(size=n)
    y = np.zeros(n)
    for t in range(6, n):
        y[t] = 0.4 * y[t - 1] + 0.4 * y[t - 6] + 2 * driver[t - 1] + rng.normal(0, 0.1)
    ds = pd.date_range("2024-01-01", periods=n, freq="D")
    return pd.DataFrame({"ds": ds, "y": y + 10, "driver": driver, "noise": noise})


def driven_config(tmp: Path, **overrides: object):
    """Horizon 1, 8 lags in two seasons of 4, a 16-unit GRU; 20 backtest windows 10 apart hold
    out the last 191 points (191 windows of horizon 1)."""
    base = {
        "data": {
            "source": str(tmp / "driven.csv"),
            "time_column": "ds",
            "target": "y",
            "freq": "D",
            "covariates": ["driver", "noise"],
        },
        "window": {"input_size": 8, "horizon": 1, "scaler": "standard", "residual": "none"},
        "model": {"cell": "gru", "hidden_size": 16, "ensemble_size": 1},  # one smooth network
        "train": {
            "max_epochs": 30,
            "patience": None,
            "device": "cpu",
            "num_threads": 1,
            "lr": 0.01,
            "seed": 0,
            "loss": "mse",
        },
        "eval": {"backtest_windows": 20, "step": 10, "season_length": 4},
        "tune": {"n_trials": 0, "storage": f"sqlite:///{tmp}/optuna.db"},
    }
    return build_config(apply_overrides(base, dict(overrides)))


@pytest.fixture(scope="module")
def driven(tmp_path_factory):
    """The model the backtest scores (trained before the first cutoff), its config, the data."""
    tmp = tmp_path_factory.mktemp("explain")
    cfg = driven_config(tmp)
    series = validate(driven_frame(), cfg.data)
    fitted = refit(series, cfg, cfg.train.max_epochs, cfg.test_size)
    return fitted, series, cfg


@pytest.fixture(scope="module")
def held_out(driven) -> PreparedData:
    _, series, cfg = driven
    return explain.held_out_windows(series, cfg)


# ---------------------------------------------------------------- groups and windows


def test_lag_blocks_by_season_capped_or_equal() -> None:
    assert explain.lag_blocks(8, 4) == [(1, 4), (5, 8)]
    assert explain.lag_blocks(20, 12) == [(1, 12), (13, 20)]  # the last season partial
    # Beyond max_groups seasons, the rest is one block.
    assert explain.lag_blocks(168, 7, max_groups=4) == [(1, 7), (8, 14), (15, 21), (22, 168)]
    # No season, or one season or less in the window: a few equal blocks.
    assert explain.lag_blocks(12, 12) == [(1, 3), (4, 6), (7, 9), (10, 12)]
    assert explain.lag_blocks(24, 52) == [(1, 6), (7, 12), (13, 18), (19, 24)]
    assert explain.lag_blocks(10, 1) == [(1, 3), (4, 6), (7, 8), (9, 10)]
    assert explain.lag_blocks(2, 1) == [(1, 1), (2, 2)]


def test_groups_map_lags_to_window_positions() -> None:
    groups = explain.feature_groups(8, 3, ["driver", "noise"], season=4)
    assert [(g.name, g.kind, g.features) for g in groups] == [
        ("y lags 1-4", "target lags", (0,)),
        ("y lags 5-8", "target lags", (0,)),
        ("driver", "covariate", (1,)),
        ("noise", "covariate", (2,)),
    ]
    # Position 7 is the last observed step (lag 1), position 0 the oldest (lag 8).
    assert groups[0].positions == (4, 5, 6, 7)
    assert groups[1].positions == (0, 1, 2, 3)
    assert groups[2].positions == tuple(range(8))
    unnamed = explain.feature_groups(3, 2, (), season=1, target="sales")
    assert [g.name for g in unnamed] == ["sales lag 1", "sales lag 2", "sales lag 3", "feature1"]


def test_known_future_features_keep_their_horizon_rows_in_their_group() -> None:
    # target, a past-only covariate, a known-future one, 2 calendar features (known-future)
    groups = explain.feature_groups(
        8, 5, ["past", "promo"], 4, future_features=[2, 3, 4], horizon=3, n_calendar=2
    )
    assert [(g.name, g.features, len(g.positions)) for g in groups] == [
        ("y lags 1-4", (0,), 4),
        ("y lags 5-8", (0,), 4),
        ("past", (1,), 8),  # its input window only
        ("promo", (2,), 11),  # and the 3 rows of the horizon
        ("calendar", (3, 4), 11),
    ]
    names = explain.feature_names(5, ["past", "promo"], "sales", n_calendar=2)
    assert names == ["sales", "past", "promo", "calendar1", "calendar2"]


def test_held_out_windows_are_the_backtest_part_in_the_models_input_space(driven, held_out) -> None:
    fitted, series, cfg = driven
    # Same training part as the backtested model: same scaler, same MASE scale.
    np.testing.assert_allclose(held_out.scaler.loc, fitted.spec.scaler.loc)
    np.testing.assert_allclose(held_out.scaler.scale, fitted.spec.scaler.scale)
    assert cfg.test_size == 191 and held_out.x_val.shape == (191, 8, 3)
    # The targets are the last 191 points of the series, in data units.
    np.testing.assert_allclose(held_out.val_target[:, 0], series.frame["y"].to_numpy()[-191:])
    # The last window's forecast is the model's forecast from the history before its target.
    last = explain.subset_windows(held_out, np.array([190]))
    scored = last.decode_val(explain.predict(fitted.network, last.x_val))[0, 0]
    before = series.frame.iloc[:-1]
    history = type(series)(before, series.freq, series.covariates, series.digest, series.source)
    assert scored == pytest.approx(fitted.predict(history)["forecast"].iloc[0], rel=1e-5)


def test_sampled_windows_cut_every_per_window_field_alike(held_out) -> None:
    small = explain.sample_windows(held_out, 50, seed=3)
    assert len(small.x_val) == len(small.val_target) == len(small.val_series) == 50
    assert len(small.val_ref) == len(small.val_phases) == len(small.y_val) == 50
    rows = np.sort(np.random.default_rng(3).choice(191, size=50, replace=False))
    np.testing.assert_array_equal(small.x_val, held_out.x_val[rows])
    np.testing.assert_array_equal(small.val_target, held_out.val_target[rows])
    assert explain.sample_windows(held_out, 500) is held_out


# ---------------------------------------------------------------- permutation importance


def test_the_driver_ranks_first_and_the_useless_covariate_last(driven, held_out) -> None:
    fitted, series, _ = driven
    imp = explain.permutation_importance(fitted.network, held_out, series.covariates, seed=0)
    assert list(imp.columns) == [
        "group",
        "kind",
        "importance",
        "std",
        "baseline_mase",
        "n_windows",
    ]
    assert imp["group"].iloc[0] == "driver" and imp["group"].iloc[-1] == "noise"
    assert set(imp["group"]) == {"driver", "noise", "y lags 1-4", "y lags 5-8"}
    by = imp.set_index("group")
    # Shuffling the driver multiplies the error; the noise changes it by next to nothing.
    baseline = by.loc["driver", "baseline_mase"]
    assert by.loc["driver", "importance"] > 2 * baseline
    assert abs(by.loc["noise", "importance"]) < 0.05 * by.loc["driver", "importance"]
    assert by.loc["y lags 5-8", "importance"] > 0.1 * by.loc["driver", "importance"]
    assert (imp["std"] >= 0).all() and (imp["n_windows"] == 191).all()
    # The intact score is the model's held-out MASE, in data units.
    assert baseline == pytest.approx(
        held_out.val_mase(explain.predict(fitted.network, held_out.x_val))
    )


def test_permutation_importance_is_seeded_and_capped(driven, held_out) -> None:
    fitted, series, _ = driven
    a = explain.permutation_importance(fitted.network, held_out, series.covariates, 2, 7, 64)
    b = explain.permutation_importance(fitted.network, held_out, series.covariates, 2, 7, 64)
    pd.testing.assert_frame_equal(a, b)
    assert (a["n_windows"] == 64).all()
    one = explain.permutation_importance(fitted.network, held_out, series.covariates, 1, 7, 64)
    assert (one["std"] == 0).all()
    with pytest.raises(ValueError, match="n_repeats"):
        explain.permutation_importance(fitted.network, held_out, n_repeats=0)


# ---------------------------------------------------------------- integrated gradients


def test_integrated_gradients_of_a_linear_model_are_weight_times_input() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5 * 2, 3))
    x = np.random.default_rng(0).normal(size=(4, 5, 2)).astype("float32")
    attr, out, base = explain.integrated_gradients(model, x, steps=8)
    weight = model[1].weight.detach().numpy().sum(axis=0).reshape(5, 2)  # d(sum of outputs)/dx
    np.testing.assert_allclose(attr, x * weight[None], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(base, model[1].bias.detach().sum().item(), rtol=1e-6)
    np.testing.assert_allclose(attr.sum(axis=(1, 2)), out - base, rtol=1e-5, atol=1e-5)


def test_integrated_gradients_are_complete(driven, held_out) -> None:
    """A smooth model: sum of attributions = output(x) - output(baseline), to float precision."""
    fitted, _, _ = driven
    model, mode = fitted.network, fitted.network.training
    x = held_out.x_val
    attr, out, base = explain.integrated_gradients(model, x, steps=32)
    assert attr.shape == (191, 8, 3)
    np.testing.assert_allclose(attr.sum(axis=(1, 2)), out - base, rtol=1e-4, atol=1e-5)
    # The outputs are the model's own at x and at the zero baseline.
    np.testing.assert_allclose(out, explain.predict(model, x)[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(base, explain.predict(model, np.zeros_like(x))[:, 0], atol=1e-6)
    # The trained model itself is left as it was (a copy is put in eval mode).
    assert model.training == mode


def test_integrated_gradients_of_a_multi_step_lstm_sum_the_horizon(tiny_config) -> None:
    cfg = tiny_config(**{"model.cell": "lstm", "data.covariates": ["temp"]})
    series = validate(sine_frame(n=96, covariate=True), cfg.data)
    fitted = refit(series, cfg, 3, cfg.test_size)
    x = explain.held_out_windows(series, cfg).x_val
    attr, out, base = explain.integrated_gradients(fitted.network, x, steps=32)
    assert attr.shape == (len(x), 14, 2) and len(x) == cfg.test_size - 7 + 1
    np.testing.assert_allclose(out, explain.predict(fitted.network, x).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(attr.sum(axis=(1, 2)), out - base, rtol=1e-4, atol=1e-5)
    # With local_norm=last the target's last step is 0 in every window: nothing to attribute.
    assert np.all(x[:, -1, 0] == 0) and np.all(attr[:, -1, 0] == 0)


def test_integrated_gradients_of_an_ensembles_median(driven, held_out) -> None:
    """The median of 3 members has kinks where members cross: completeness holds up to the
    quadrature's error there (it shrinks as 1/steps), well under 1% over all windows."""
    _, series, cfg = driven
    model = refit(series, with_overrides(cfg, {"model.ensemble_size": 3}), 2, cfg.test_size).network
    assert type(model).__name__ == "EnsembleForecaster"
    attr, out, base = explain.integrated_gradients(model, held_out.x_val, steps=32)
    np.testing.assert_allclose(out, explain.predict(model, held_out.x_val)[:, 0], rtol=1e-5)
    gap = np.abs(attr.sum(axis=(1, 2)) - (out - base))
    assert gap.sum() < 0.01 * np.abs(out - base).sum()
    assert gap.max() < 0.05 * np.abs(out - base).max()
    finer, _, _ = explain.integrated_gradients(model, held_out.x_val, steps=128)
    assert np.abs(finer.sum(axis=(1, 2)) - (out - base)).sum() < gap.sum()


def test_attribution_points_at_the_drivers_last_value(driven, held_out) -> None:
    fitted, series, _ = driven
    attr, _, _ = explain.integrated_gradients(fitted.network, held_out.x_val)
    strength = np.abs(attr).mean(axis=0)  # (lags, features)
    assert np.unravel_index(strength.argmax(), strength.shape) == (7, 1)  # driver at lag 1
    latest = explain.attribute_latest(fitted.network, held_out, series.covariates)
    assert len(latest) == 1 and latest[0].series_id == series.series_ids[0]
    a = latest[0]
    assert a.values.shape == (8, 3) and a.features == ["y", "driver", "noise"]
    np.testing.assert_allclose(a.values, attr[-1], rtol=1e-5, atol=1e-6)
    assert abs(a.completeness_gap) < 0.02 * abs(a.output - a.baseline_output) + 1e-3
    assert a.target_scale == pytest.approx(held_out.scaler.scale[0, 0])
    doc = json.loads(json.dumps(explain.attributions_json(latest)))
    row = doc["series"][0]
    assert row["rows"] == ["lag 8", "lag 7", "lag 6", "lag 5", "lag 4", "lag 3", "lag 2", "lag 1"]
    assert row["attributions"]["driver"][-1] == pytest.approx(float(a.values[-1, 1]))


def test_a_quantile_models_median_is_explained(held_out) -> None:
    """The median of an (untrained) quantile model, whose levels are sorted at eval: kinks
    where levels cross, so completeness holds up to the quadrature's error there."""
    torch.manual_seed(0)
    model = RecurrentForecaster(3, 1, "gru", 8, quantiles=[0.1, 0.5, 0.9])
    x = held_out.x_val[:20]
    with torch.no_grad():
        median = model.eval()(torch.as_tensor(x))[..., 1].numpy()
    np.testing.assert_allclose(explain.predict(model, x), median, rtol=1e-6)
    attr, out, base = explain.integrated_gradients(model, x)
    np.testing.assert_allclose(out, median[:, 0], rtol=1e-5)
    gap = np.abs(attr.sum(axis=(1, 2)) - (out - base))
    assert gap.sum() < 0.02 * np.abs(out - base).sum()
    imp = explain.permutation_importance(model, held_out, ["driver", "noise"], n_repeats=2)
    assert np.isfinite(imp["importance"]).all() and len(imp) == 4


def test_a_series_embeddings_index_column_is_neither_permuted_nor_attributed(tmp_path) -> None:
    frames = []
    for i in range(2):
        d = driven_frame(n=200, seed=i)
        d.insert(0, "store", f"s{i}")
        frames.append(d)
    cfg = driven_config(tmp_path, **{"data.series_id": "store", "model.series_embedding": 2})
    series = validate(pd.concat(frames, ignore_index=True), cfg.data)
    fitted = refit(series, cfg, 5, cfg.test_size)
    held = explain.held_out_windows(series, cfg)
    assert held.x_val.shape[2] == held.n_features + 1
    imp = explain.permutation_importance(fitted.network, held, series.covariates, n_repeats=2)
    assert set(imp["group"]) == {g.name for g in explain.groups_for(held, series.covariates)}
    attrs = explain.attribute_latest(fitted.network, held, series.covariates)
    assert len(attrs) == 2 and attrs[0].values.shape[1] == held.n_features
    for a in attrs:  # complete: the baseline keeps each window's own series
        assert abs(a.completeness_gap) < 1e-3 * abs(a.output - a.baseline_output) + 1e-4


@pytest.mark.skipif(
    "future_covariates" not in DataConfig.model_fields, reason="no known-future covariates"
)
def test_a_known_future_covariate_is_shuffled_with_its_horizon(tmp_path) -> None:
    df = driven_frame()
    df["promo"] = np.random.default_rng(5).normal(size=len(df))
    df["y"] += 3 * df["promo"]  # known for the forecast's own step
    cfg = driven_config(tmp_path, **{"data.future_covariates": ["promo"]})
    series = validate(df, cfg.data)
    fitted = refit(series, cfg, 30, cfg.test_size)
    held = explain.held_out_windows(series, cfg)
    assert held.x_val.shape == (191, 9, 4)  # 8 lags and the horizon's row
    imp = explain.permutation_importance(fitted.network, held, series.covariates, n_repeats=3)
    assert imp["group"].iloc[-1] == "noise"
    by = imp.set_index("group")["importance"]
    assert by["promo"] > 0.5 * held.val_mase(explain.predict(fitted.network, held.x_val))
    (latest,) = explain.attribute_latest(fitted.network, held, series.covariates)
    assert latest.row_labels()[-2:] == ["lag 1", "+1"] and latest.values.shape == (9, 4)
    assert abs(latest.completeness_gap) < 1e-4 * abs(latest.output - latest.baseline_output) + 1e-5


# ---------------------------------------------------------------- plots


def _is_png(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 2000 and path.read_bytes()[:8] == PNG


def test_plots_are_written(driven, held_out, tmp_path) -> None:
    fitted, series, _ = driven
    imp = explain.permutation_importance(fitted.network, held_out, series.covariates, 2)
    assert _is_png(explain.plot_importance(imp, tmp_path / "imp.png"))
    latest = explain.attribute_latest(fitted.network, held_out, series.covariates)
    assert _is_png(explain.plot_attribution(latest[0], tmp_path / "sub" / "attr.png"))


def _study(n_trials: int, params: tuple[str, ...]) -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        value = 0.0
        if "lr" in params:
            value += 100 * trial.suggest_float("lr", 1e-3, 1e-2, log=True)
        if "cell" in params:
            value += trial.suggest_categorical("cell", ["lstm", "gru"]) == "gru"
        return value

    study.optimize(objective, n_trials=n_trials)
    return study


def test_study_plots_and_what_they_skip(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    written, skipped = explain.plot_study(_study(1, ("lr", "cell")), tmp_path / "one")
    assert written == {}
    assert set(skipped) == {"optimization_history", "param_importances"}
    assert "1 complete trial" in skipped["optimization_history"]

    written, skipped = explain.plot_study(_study(4, ("cell",)), tmp_path / "single")
    assert set(written) == {"optimization_history"} and _is_png(written["optimization_history"])
    assert set(skipped) == {"param_importances"} and "cell" in skipped["param_importances"]

    written, skipped = explain.plot_study(_study(6, ("lr", "cell")), tmp_path / "two")
    assert skipped == {}
    assert all(_is_png(p) for p in written.values())
    assert {p.name for p in written.values()} == {
        "optimization_history.png",
        "param_importances.png",
    }


# ---------------------------------------------------------------- for a run


def test_explain_writes_every_part(driven, tmp_path) -> None:
    fitted, series, cfg = driven
    study = _study(1, ("lr",))
    result = explain.explain(fitted, series, cfg, tmp_path, study=study, n_repeats=2)
    assert result.errors == {}
    assert result.top_feature == "driver"
    assert set(result.files) == {
        "permutation_importance.csv",
        "permutation_importance.png",
        "attribution.json",
        "attribution.png",
    }
    assert set(result.skipped) == {"optimization_history", "param_importances"}
    table = pd.read_csv(tmp_path / "permutation_importance.csv")
    assert table["group"].iloc[0] == "driver" and len(table) == 4
    doc = json.loads((tmp_path / "attribution.json").read_text())
    assert doc["series"][0]["series_id"] == series.series_ids[0]
    assert set(result.metrics()) == {"explain/baseline_mase", "explain/top_importance"}


def test_explain_reports_a_model_of_another_fit_instead_of_failing(driven, tmp_path) -> None:
    _, series, cfg = driven
    served = refit(series, cfg, 1, 0)  # trained on everything: not the backtested model
    result = explain.explain(served, series, cfg, tmp_path, plots=False)
    assert set(result.errors) == {"held_out_windows"}
    assert "before the first backtest cutoff" in result.errors["held_out_windows"]
    assert result.files == {} and result.top_feature is None and result.metrics() == {}
