"""Statistical references (statsforecast) beside the baselines: config, the optional extra, the
same cutoffs and histories, failures, scoring and the plot."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import sine_frame
from seqlab.config import ConfigError, DataConfig, build_config
from seqlab.data import validate
from seqlab.evaluation import cross_validation, plot_backtest, references, score_backtest

HORIZON, SEASON = 5, 7


def _series(n_series: int = 2, n: int = 60):
    cfg = DataConfig(time_column="ds", target="y", series_id="store" if n_series > 1 else None)
    return validate(sine_frame(n=n, series=n_series), cfg)


def _last_value(history) -> pd.DataFrame:
    """A stand-in model: the last value of each series, ``HORIZON`` days ahead."""
    rows = []
    for sid, g in history.frame.groupby("unique_id", sort=False):
        ds = pd.date_range(g["ds"].iloc[-1], periods=HORIZON + 1, freq="D")[1:]
        rows.append(pd.DataFrame({"unique_id": sid, "ds": ds, "forecast": g["y"].iloc[-1]}))
    return pd.concat(rows, ignore_index=True)


def _frame(series):
    return cross_validation(series, [15, 10, 5], HORIZON, SEASON, _last_value)


def test_unknown_reference_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as e:
        build_config({"eval": {"references": ["AutoETS", "Prophet"]}})
    msg = str(e.value)
    assert "\n" not in msg and "'Prophet'" in msg
    assert "AutoETS, AutoTheta, AutoARIMA" in msg
    # Names are case-insensitive, kept once, in the spelling statsforecast uses.
    cfg = build_config({"eval": {"references": ["autoets", "AutoETS", "autotheta"]}})
    assert cfg.eval.references == ["AutoETS", "AutoTheta"]
    assert build_config({}).eval.references == []


def test_registry_baseline_must_be_a_scored_method() -> None:
    cfg = build_config({"eval": {"references": ["AutoETS"]}, "registry": {"baseline": "AutoETS"}})
    assert cfg.registry.baseline == "autoets"
    assert build_config({"registry": {"baseline": "best"}}).registry.baseline == "best"
    with pytest.raises(ConfigError, match="registry.baseline=autotheta") as e:
        build_config({"eval": {"references": ["AutoETS"]}, "registry": {"baseline": "autotheta"}})
    assert "\n" not in str(e.value)


def _without_statsforecast(monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "statsforecast" or m.startswith("statsforecast.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "statsforecast", None)  # `import statsforecast` fails


def test_missing_extra_is_a_one_line_error_before_any_server(monkeypatch, tmp_path) -> None:
    _without_statsforecast(monkeypatch)
    references.check_available([])  # nothing requested: nothing needed
    with pytest.raises(ConfigError) as e:
        references.check_available(["AutoETS"])
    assert str(e.value) == "eval.references needs statsforecast: pip install 'seqlab[stats]'"

    import flows.cli

    started = []
    monkeypatch.setattr(flows.cli, "prefect_server", lambda: started.append(1))
    r = CliRunner().invoke(
        flows.cli.app,
        ["run", "eval.references=[AutoETS]", f"tracking.tracking_uri=sqlite:///{tmp_path}/m.db"],
    )
    assert r.exit_code != 0 and not started
    assert "eval.references needs statsforecast: pip install 'seqlab[stats]'" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1


def test_references_use_the_same_cutoffs_and_histories_as_the_baselines() -> None:
    pytest.importorskip("statsforecast")
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta

    series = _series()
    frame = references.add_references(_frame(series), series, ["AutoETS", "AutoTheta"], SEASON)
    assert frame[["autoets", "autotheta"]].notna().all().all()
    # One window, fitted directly on the history up to its cutoff.
    rows = frame[(frame["unique_id"] == "s1") & (frame["window"] == 1)]
    cutoff = rows["cutoff"].iloc[0]
    history = series.frame[series.frame["ds"] <= cutoff][["unique_id", "ds", "y"]]
    models = [AutoETS(season_length=SEASON), AutoTheta(season_length=SEASON)]
    direct = (
        StatsForecast(models=models, freq="D")
        .forecast(df=history, h=HORIZON)
        .query("unique_id == 's1'")
    )
    np.testing.assert_allclose(rows["autoets"], direct["AutoETS"], rtol=1e-6)
    np.testing.assert_allclose(rows["autotheta"], direct["AutoTheta"], rtol=1e-6)
    assert list(rows["ds"]) == list(direct["ds"])  # the steps after the same cutoff

    bt = score_backtest(frame, SEASON)
    assert list(bt.mean) == ["model", "naive", "seasonal_naive", "autoets", "autotheta"]
    assert {"test/autoets/mase", "test/autotheta/smape"} <= set(bt.flat())
    assert bt.scores("autoets") == pytest.approx(
        bt.per_window[bt.per_window["method"] == "autoets"]["mase"].tolist()
    )


def test_a_failing_reference_is_nan_there_with_one_warning(monkeypatch, caplog) -> None:
    series = _series()
    frame = _frame(series)

    def flaky(name, history, horizon, season):
        if history[0] > 14:  # series s1 (level 15)
            raise NotImplementedError("tiny datasets")
        return np.full(horizon, 1.0)

    monkeypatch.setattr(references, "check_available", lambda names: None)
    monkeypatch.setattr(references, "reference_forecast", flaky)
    with caplog.at_level(logging.WARNING, logger="seqlab.references"):
        out = references.add_references(frame, series, ["AutoETS"], SEASON)
    assert out.loc[out["unique_id"] == "s1", "autoets"].isna().all()
    assert (out.loc[out["unique_id"] == "s0", "autoets"] == 1.0).all()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "'s1'" in warned[0] and "tiny datasets" in warned[0]
    # Scored where it forecast, left out (not infinitely wrong) where it could not.
    bt = score_backtest(out, SEASON)
    per = bt.per_series.set_index(["unique_id", "method"])["mase"]
    assert np.isnan(per[("s1", "autoets")]) and np.isfinite(per[("s0", "autoets")])
    assert np.isfinite(bt.mean["autoets"]["mase"])


def test_plot_draws_the_references(tmp_path) -> None:
    series = _series(n_series=1)
    frame = _frame(series).assign(autoets=lambda f: f["seasonal_naive"] + 1)
    png = plot_backtest(series, score_backtest(frame, SEASON), tmp_path / "bt.png")
    assert png.stat().st_size > 0
