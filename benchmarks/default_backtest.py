"""The default pipeline's accuracy as a spread, not one run: seeds x backtest windows.

Runs the library steps of ``seqlab run conf/default.yaml`` (tune, refit before the first
cutoff, rolling-origin backtest) without Prefect or MLflow, for several seeds (the sampler's and
the training's), in a temporary Optuna storage, and prints per-window MASE of the model and the
baselines computed on the same cutoffs, with mean and spread:

    .venv/bin/python benchmarks/default_backtest.py [--seeds 42 7 2026] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from seqlab.config import load_config, with_overrides  # noqa: E402
from seqlab.pipeline import backtest_model, ingest, refit, validate_data  # noqa: E402
from seqlab.tuning import tune_study  # noqa: E402


def run_seed(seed: int, overrides: list[str]) -> dict:
    cfg = load_config(ROOT / "conf" / "default.yaml", overrides)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(
            cfg,
            {
                "train.seed": seed,
                "tune.sampler_seed": seed,
                "tune.storage": f"sqlite:///{tmp}/optuna.db",
            },
        )
        series = validate_data(ingest(cfg), cfg)
        t0 = time.perf_counter()
        tuning = tune_study(cfg, series)
        trained = with_overrides(cfg, tuning.best_params)
        # as the flow does: the chosen trial's optimizer steps (its epochs in older studies)
        if tuning.best_steps is not None:
            fitted = refit(series, trained, holdout=cfg.test_size, steps=tuning.best_steps)
        else:
            fitted = refit(series, trained, (tuning.best_epoch or 0) + 1, cfg.test_size)
        bt = backtest_model(fitted, series, trained)
        seconds = time.perf_counter() - t0
    return {
        "seed": seed,
        "seconds": round(seconds, 1),
        "params": tuning.best_params,
        "cutoffs": bt.cutoffs,
        **{m: bt.scores(m, "mase") for m in ("model", "naive", "seasonal_naive")},
        # A quantile model: interval coverage per window, calibrated (out of window) and raw.
        **{
            k: bt.scores("model", k)
            for k in bt.per_window.columns
            if k.startswith(("coverage_", "raw_coverage_", "spl", "raw_spl"))
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 2026])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/default_backtest.json"))
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    results = [run_seed(s, a.overrides) for s in a.seeds]
    print(f"cutoffs: {', '.join(c[:10] for c in results[0]['cutoffs'])}")
    print(f"{'seed':>6} {'window MASE (model)':>28} {'mean':>7} {'seconds':>8}")
    for r in results:
        print(
            f"{r['seed']:>6} {' '.join(f'{v:8.3f}' for v in r['model']):>28} "
            f"{np.mean(r['model']):7.3f} {r['seconds']:8.1f}"
        )
    allm = np.array([r["model"] for r in results])
    per_seed = allm.mean(axis=1)
    print(
        f"model MASE over {len(results)} seeds x {allm.shape[1]} windows: mean "
        f"{allm.mean():.3f}, per-seed mean {per_seed.min():.3f}-{per_seed.max():.3f}, "
        f"per-window {allm.min():.3f}-{allm.max():.3f}"
    )
    for k in sorted(k for k in results[0] if k.startswith(("coverage_", "raw_coverage_"))):
        v = np.array([r[k] for r in results])
        print(
            f"{k} over {v.size} seed-windows: mean {v.mean():.3f}, per-seed mean "
            f"{v.mean(axis=1).min():.3f}-{v.mean(axis=1).max():.3f}, per-window "
            f"{v.min():.3f}-{v.max():.3f}"
        )
    for b in ("seasonal_naive", "naive"):
        v = np.array(results[0][b])
        print(
            f"{b} MASE (same cutoffs): mean {v.mean():.3f}, per-window "
            f"{' '.join(f'{x:.3f}' for x in v)}"
        )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
