"""What known-future covariates add: seqlab without, with past-only and with known-future
covariates, against statistical references on the same cutoffs, over seeds and windows.

Data: US quarterly consumption growth with income, investment and unemployment changes as
covariates (an fpp3 ``uschange``-like frame built from statsmodels' bundled ``macrodata``, 202
quarters 1959Q2-2009Q3; see ``benchmarks/covariate_references.py``). Protocol, in one
invocation:

1. the references run in their own venv (``benchmarks/covariate_references.py`` with
   ``benchmarks/.venv-accuracy/bin/python``, built by ``benchmarks/setup_accuracy.sh``), which
   exports the data CSV and their forecasts: ``StatsForecast.cross_validation`` with h=4,
   n_windows=8, step_size=4 of SeasonalNaive(4), AutoARIMA, AutoARIMA with the three
   covariates as exogenous regressors, and AutoETS;
2. seqlab (conf/base.yaml, horizon 4, input size searched over 8/12/16, no transform since
   growth rates go negative) runs its library steps without Prefect or MLflow, per arm and
   seed: tune on the validation part before the first cutoff (``tune_study``), refit before
   the first cutoff for the learnt epochs, ``backtest_model`` on the same 8 cutoffs. Arms:
   ``none`` (the target alone), ``past`` (``data.covariates``: the covariates are inputs over
   the input window only) and ``future`` (``data.future_covariates``: also their values over
   the forecast horizon);
3. every method is scored here, from its forecasts, with one definition: per window MAE and
   MASE = MAE / in-sample seasonal-naive MAE (lag 4) of the history up to that window's
   cutoff (checked against seqlab's own ``mase_scale`` and per-window MASE), then the mean
   over the 8 windows.

Ex-post evaluation: AutoARIMA_exog and seqlab's ``future`` arm are given the *actual* values
of income, investment and unemployment over each forecast horizon (statsforecast's
``cross_validation`` passes the held-out rows' exogenous columns as ``X_future``; seqlab's
backtest reads them from the full frame). That is conditional forecasting, as if the
covariates' future were known: it measures what the covariates can explain, not what a real
forecast would gain (which would need forecasts of the covariates themselves).

    bash benchmarks/setup_accuracy.sh                    # once: the references' venv
    .venv/bin/python benchmarks/covariates.py            # 3 seeds x 3 arms x 8 trials
    .venv/bin/python benchmarks/covariates.py --quick    # smoke check: 1 seed, 2 trials
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqlab.config import load_config, with_overrides  # noqa: E402
from seqlab.inference import truncate  # noqa: E402
from seqlab.pipeline import backtest_model, refit, validate_data  # noqa: E402
from seqlab.tuning import tune_study  # noqa: E402

HORIZON, WINDOWS, STEP, SEASON, FREQ = 4, 8, 4, 4, "QS"
INPUTS = [8, 12, 16]
COVARIATES = ["income", "investment", "unemployment"]
ARMS = {  # arm -> config overrides
    "none": {},
    "past": {"data.covariates": COVARIATES},
    "future": {"data.future_covariates": COVARIATES},
}
REFERENCES = ("SeasonalNaive", "AutoARIMA", "AutoARIMA_exog", "AutoETS")
DATA = ROOT / "benchmarks" / "data" / "uschange.csv"
RESULTS = ROOT / "benchmarks" / "results"
REF_CSV = RESULTS / "covariates_references.csv"
REF_JSON = RESULTS / "covariates_references.json"
REF_PY = ROOT / "benchmarks" / ".venv-accuracy" / "bin" / "python"


# ---------------------------------------------------------------- references


def run_references() -> dict:
    if not REF_PY.exists():
        sys.exit("run `bash benchmarks/setup_accuracy.sh` first (the references' own venv)")
    cmd = [
        str(REF_PY),
        str(ROOT / "benchmarks" / "covariate_references.py"),
        *("--horizon", str(HORIZON), "--windows", str(WINDOWS), "--step", str(STEP)),
        *("--season", str(SEASON), "--freq", FREQ),
        *("--data", str(DATA), "--forecasts", str(REF_CSV), "--out", str(REF_JSON)),
    ]
    subprocess.run(cmd, check=True)
    return json.loads(REF_JSON.read_text())


# ---------------------------------------------------------------- scoring (one definition)


def seasonal_mae(history: np.ndarray, season: int) -> float:
    """In-sample seasonal-naive MAE of ``history`` (lag 1 when it has <= season points)."""
    m = season if len(history) > season else 1
    return float(np.mean(np.abs(history[m:] - history[:-m])))


def score_windows(fc: pd.DataFrame, col: str, data: pd.DataFrame) -> pd.DataFrame:
    """Per window (oldest first) of ``fc`` (``cutoff, ds, y, col``): cutoff, mae, scale, mase.

    The scale is the seasonal-naive MAE of ``data``'s target up to and including the cutoff."""
    y_all = data.set_index("ds")["y"]
    rows = []
    for w, (cutoff, g) in enumerate(fc.groupby("cutoff", sort=True)):
        truth = y_all.reindex(g["ds"]).to_numpy("float64")
        if not np.allclose(truth, g["y"].to_numpy("float64"), rtol=0, atol=1e-9):
            raise AssertionError(f"{col}: actuals at cutoff {cutoff} differ from the data")
        f = g[col].to_numpy("float64")
        if len(g) != HORIZON or not np.isfinite(f).all():
            raise AssertionError(f"{col}: window {cutoff} has {len(g)} rows or non-finite values")
        scale = seasonal_mae(y_all[y_all.index <= cutoff].to_numpy("float64"), SEASON)
        err = float(np.mean(np.abs(truth - f)))
        rows.append(
            {"window": w, "cutoff": cutoff, "mae": err, "scale": scale, "mase": err / scale}
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- seqlab


def seqlab_config(arm: str, tmp: str, trials: int, seed: int, overrides: list[str]):
    cfg = load_config(ROOT / "conf" / "base.yaml", overrides)
    space = {k: v.model_dump(exclude_none=True) for k, v in cfg.tune.search_space.items()}
    space["window.input_size"] = {"type": "categorical", "choices": INPUTS}
    return with_overrides(
        cfg,
        {
            "data.source": str(DATA),
            "data.time_column": "ds",
            "data.target": "y",
            "data.series_id": "unique_id",
            "data.freq": FREQ,
            **ARMS[arm],
            "window.horizon": HORIZON,
            "window.input_size": 12,
            "window.transform": "none",
            "eval.season_length": SEASON,
            "eval.backtest_windows": WINDOWS,
            "eval.step": STEP,
            "eval.plot": False,
            "tune.n_trials": trials,
            "tune.storage": f"sqlite:///{tmp}/optuna.db",
            "tune.search_space": space,
            "train.seed": seed,
            "tune.sampler_seed": seed,
        },
    )


def future_sensitivity(fitted, series) -> float | None:
    """Mean |change| of the last window's forecast when the covariates' values over its horizon
    are replaced by their pre-cutoff means: 0 would mean the future values are not read."""
    if fitted.known is None:
        return None
    history = truncate(series, HORIZON)
    known = fitted.known.copy()
    ahead = known["ds"] > history.frame["ds"].max()
    known.loc[ahead, COVARIATES] = known.loc[~ahead, COVARIATES].mean().to_numpy()
    base = fitted.predict(history)["forecast"].to_numpy()
    moved = dataclasses.replace(fitted, known=known).predict(history)["forecast"].to_numpy()
    return float(np.mean(np.abs(base - moved)))


def run_seqlab(
    arm: str, seed: int, trials: int, overrides: list[str], data: pd.DataFrame, refs: pd.DataFrame
) -> dict:
    raw = pd.read_csv(DATA, parse_dates=["ds"])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = seqlab_config(arm, tmp, trials, seed, overrides)
        t0 = time.perf_counter()
        series = validate_data(raw, cfg)
        tuning = tune_study(cfg, series)
        trained = with_overrides(cfg, tuning.best_params)
        fitted = refit(series, trained, (tuning.best_epoch or 0) + 1, cfg.test_size)
        bt = backtest_model(fitted, series, trained)
        seconds = time.perf_counter() - t0
    ff = list(fitted.spec.future_features)
    # What each arm was given: none reads y only, past y + 3 inputs, future also their horizon.
    want_features = 1 if arm == "none" else 1 + len(COVARIATES)
    if fitted.spec.n_features != want_features or bool(ff) != (arm == "future"):
        raise AssertionError(
            f"{arm}: n_features {fitted.spec.n_features}, future_features {ff}, "
            f"known {'set' if fitted.known is not None else 'None'}"
        )
    frame = bt.frame.rename(columns={"model": "seqlab"})
    s = score_windows(frame, "seqlab", data)
    # One definition: the scale equals seqlab's logged mase_scale, and so does the MASE.
    logged = frame.groupby("cutoff", sort=True)["mase_scale"].first().to_numpy("float64")
    np.testing.assert_allclose(s["scale"], logged, rtol=1e-10, err_msg="mase_scale differs")
    np.testing.assert_allclose(s["mase"], bt.scores("model", "mase"), rtol=1e-9)
    # Same cutoffs and the same seasonal-naive forecasts as statsforecast's cross_validation.
    ref_cut = sorted(refs["cutoff"].unique())
    if list(s["cutoff"]) != ref_cut:
        raise AssertionError(f"seqlab cutoffs {list(s['cutoff'])} != references' {ref_cut}")
    both = frame.merge(refs, on=["cutoff", "ds"], validate="one_to_one")
    np.testing.assert_allclose(both["seasonal_naive"], both["SeasonalNaive"], atol=1e-9)
    return {
        "arm": arm,
        "seed": seed,
        "seconds": round(seconds, 1),
        "best_params": tuning.best_params,
        "best_epoch": tuning.best_epoch,
        "best_value": tuning.best_value,
        "trial_states": tuning.trial_states,
        "n_features": fitted.spec.n_features,
        "future_features": ff,
        "future_sensitivity": future_sensitivity(fitted, series),
        "cutoffs": [str(c.date()) for c in s["cutoff"]],
        "mase": s["mase"].tolist(),
        "mae": s["mae"].tolist(),
        "scale": s["scale"].tolist(),
    }


# ---------------------------------------------------------------- report


def summarise(rows: list[dict], refs: pd.DataFrame, ref_meta: dict, data: pd.DataFrame) -> list:
    out = []
    for method in REFERENCES:
        s = score_windows(refs, method, data)
        out.append(
            {
                "method": method,
                "mase": float(s["mase"].mean()),
                "mase_seed_min": None,
                "mase_seed_max": None,
                "window_min": float(s["mase"].min()),
                "window_max": float(s["mase"].max()),
                "mae": float(s["mae"].mean()),
                "seconds": ref_meta["methods"][method]["seconds"],
                "per_window_mase": s["mase"].tolist(),
            }
        )
    for arm in ARMS:
        runs = [r for r in rows if r["arm"] == arm]
        if not runs:
            continue
        m = np.array([r["mase"] for r in runs])  # seeds x windows
        per_seed = m.mean(axis=1)
        out.append(
            {
                "method": f"seqlab {arm}",
                "mase": float(per_seed.mean()),
                "mase_seed_min": float(per_seed.min()),
                "mase_seed_max": float(per_seed.max()),
                "window_min": float(m.min()),
                "window_max": float(m.max()),
                "mae": float(np.mean([r["mae"] for r in runs])),
                "seconds": float(np.mean([r["seconds"] for r in runs])),
                "per_window_mase": m.mean(axis=0).tolist(),
            }
        )
    return out


def table(summary: list[dict], n_seeds: int) -> str:
    lines = [
        "| method | MASE (mean over windows; seqlab: mean over seeds, min-max) | "
        "per-window MASE min-max | MAE | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in summary:
        mase = f"{r['mase']:.3f}"
        if r["mase_seed_min"] is not None and n_seeds > 1:
            mase += f" ({r['mase_seed_min']:.3f}-{r['mase_seed_max']:.3f})"
        lines.append(
            f"| {r['method']} | {mase} | {r['window_min']:.3f}-{r['window_max']:.3f} | "
            f"{r['mae']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def differences(rows: list[dict], summary: list[dict]) -> list[str]:
    """Paired differences of mean MASE between arms (same seed), and AutoARIMA's exog gain."""
    by = {(r["arm"], r["seed"]): np.array(r["mase"]) for r in rows}
    seeds = sorted({r["seed"] for r in rows}, key=[r["seed"] for r in rows].index)
    lines = []
    for a, b in (("future", "none"), ("past", "none"), ("future", "past")):
        if not all((a, s) in by and (b, s) in by for s in seeds):
            continue
        d = np.array([by[(a, s)] - by[(b, s)] for s in seeds])  # seeds x windows
        per_seed = d.mean(axis=1)
        wins = int((d < 0).sum())
        lines.append(
            f"seqlab {a} - {b}: mean MASE diff {per_seed.mean():+.3f} (per seed "
            f"{', '.join(f'{s}: {v:+.3f}' for s, v in zip(seeds, per_seed))}); {a} lower in "
            f"{wins}/{d.size} seed-windows"
        )
    ref = {r["method"]: np.array(r["per_window_mase"]) for r in summary}
    d = ref["AutoARIMA_exog"] - ref["AutoARIMA"]
    lines.append(
        f"AutoARIMA_exog - AutoARIMA: mean MASE diff {d.mean():+.3f}; exog lower in "
        f"{int((d < 0).sum())}/{d.size} windows"
    )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 2026])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--quick", action="store_true", help="smoke check: first seed, 2 trials")
    p.add_argument("--out", type=Path, default=RESULTS / "covariates.json")
    p.add_argument("overrides", nargs="*", help="seqlab key=value settings for every arm")
    a = p.parse_args()
    seeds, trials = (a.seeds[:1], 2) if a.quick else (a.seeds, a.trials)
    t_start = time.perf_counter()
    ref_meta = run_references()
    data = pd.read_csv(DATA, parse_dates=["ds"])
    refs = pd.read_csv(REF_CSV, parse_dates=["ds", "cutoff"])
    rows = []
    for seed in seeds:
        for arm in a.arms:
            r = run_seqlab(arm, seed, trials, a.overrides, data, refs)
            rows.append(r)
            sens = r["future_sensitivity"]
            print(
                f"seqlab {arm:6s} seed {seed}: MASE {np.mean(r['mase']):.3f} "
                f"(windows {' '.join(f'{v:.2f}' for v in r['mase'])}) in {r['seconds']:.0f} s, "
                f"params {r['best_params']}, epochs {(r['best_epoch'] or 0) + 1}"
                + (f", future sensitivity {sens:.3f}" if sens is not None else ""),
                flush=True,
            )
    summary = summarise(rows, refs, ref_meta, data)
    text = table(summary, len(seeds))
    diffs = differences(rows, summary)
    wall = time.perf_counter() - t_start
    cmd = " ".join(["python benchmarks/covariates.py", *sys.argv[1:]])
    print(
        f"\n`{cmd}`: uschange-like data from statsmodels macrodata ({len(data)} quarters), "
        f"h={HORIZON}, {WINDOWS} windows every {STEP} quarters (cutoffs "
        f"{ref_meta['cutoffs'][0]}..{ref_meta['cutoffs'][-1]}), seeds "
        f"{' '.join(map(str, seeds))}, {trials} trials; seconds: references = cross-validation "
        f"wall time, seqlab = tune + refit + backtest (mean over seeds).\n"
    )
    print(text)
    print()
    for line in diffs:
        print(line)
    print(f"\nwall time {wall:.0f} s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "command": cmd,
                "machine": platform.platform(),
                "wall_seconds": round(wall, 1),
                "seeds": seeds,
                "trials": trials,
                "overrides": a.overrides,
                "protocol": {
                    "horizon": HORIZON,
                    "windows": WINDOWS,
                    "step": STEP,
                    "season": SEASON,
                    "covariates": COVARIATES,
                    "mase": "per window MAE / seasonal-naive MAE (lag 4) of the history up to "
                    "the cutoff; mean over windows",
                    "evaluation": "ex post: future arm and AutoARIMA_exog get the actual "
                    "covariate values over each horizon",
                },
                "references": ref_meta,
                "summary": summary,
                "differences": diffs,
                "runs": rows,
            },
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
