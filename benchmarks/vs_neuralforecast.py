"""seqlab vs a peer: tuning an LSTM on AirPassengers, wall time and test MASE.

Both sides see the same data and split: AirPassengers (bundled with seqlab), horizon 12, the
last 12 months held out as the test window, the 12 months before them used for validation during
tuning, 20 trials each, on the same machine, run one after the other as subprocesses:

(a) seqlab: ``seqlab run conf/default.yaml tune.n_trials=20 ...`` (the whole Prefect flow: tune,
    fit the best, evaluate, register, promote) against temporary Optuna/MLflow storages; its
    ``--summary-json`` gives ``test/mase``;
(b) neuralforecast: ``AutoLSTM(h=12, backend="optuna", num_samples=20)``,
    ``NeuralForecast.fit(train, val_size=12)`` then ``predict()``; run with the python of
    ``benchmarks/.venv-nf`` (``bash benchmarks/setup_neuralforecast.sh``), never seqlab's own.
    Its default search space proposes input sizes up to 768 months, which abort the run on this
    132-month series, so input size, hidden size, layers and learning rate are searched over
    seqlab's ranges ({12,24,36}, {16,32,64}, {1,2}, 1e-3..2e-2 log); the rest (max_steps
    500/1000, batch size, decoder, context, MAE loss, robust scaler) stays neuralforecast's.

MASE on both sides: MAE over the 12 test months divided by the in-sample seasonal-naive MAE
(season 12) of the training part = all but the last 24 months (months 1-120), which is what
``seqlab.evaluate`` uses (train = all - test - validation). The peer's MASE is computed here
with the same formula, and the seasonal-naive forecast's MASE is printed on both sides as a check
that the two scales agree.

    bash benchmarks/setup_neuralforecast.sh
    .venv/bin/python benchmarks/vs_neuralforecast.py --out benchmarks/results/vs_neuralforecast.json

Target, on CPU: seqlab's wall time <= 1/3 of the peer's at equal or better test MASE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "seqlab" / "datasets" / "airpassengers.csv"
HORIZON, VAL, SEASON = 12, 12, 12
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
}


# ---------------------------------------------------------------- shared scoring (numpy only)


def load_series():
    import pandas as pd

    raw = pd.read_csv(DATA)
    return pd.DataFrame(
        {
            "unique_id": "airpassengers",
            "ds": pd.to_datetime(raw["month"]),
            "y": raw["passengers"].astype("float64"),
        }
    )


def mase(actual, forecast, history) -> float:
    """MAE / in-sample seasonal-naive MAE of ``history`` (the training part)."""
    import numpy as np

    actual, forecast, history = (
        np.asarray(a, dtype="float64") for a in (actual, forecast, history)
    )
    scale = np.mean(np.abs(history[SEASON:] - history[:-SEASON]))
    return float(np.mean(np.abs(actual - forecast)) / scale)


# ---------------------------------------------------------------- the peer (in .venv-nf)


def run_peer(trials: int, seed: int, out: Path, smoke: bool = False) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna
    from neuralforecast import NeuralForecast
    from neuralforecast.auto import AutoLSTM

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    df = load_series()
    train, test = df.iloc[:-HORIZON], df.iloc[-HORIZON:]
    from ray import tune  # neuralforecast's search spaces are written with ray.tune objects

    space = AutoLSTM.get_default_config(h=HORIZON, backend="ray")
    # The default input sizes (h * [-1, 4, 16, 64]) do not fit a 132-month series (the run
    # aborts: "Time series is too short"): search seqlab's ranges for the dimensions both have,
    # keep neuralforecast's defaults for the rest (max_steps, batch, decoder, context, loss).
    space.update(
        input_size=tune.choice([12, 24, 36]),
        encoder_hidden_size=tune.choice([16, 32, 64]),
        encoder_n_layers=tune.choice([1, 2]),
        learning_rate=tune.loguniform(1e-3, 2e-2),
    )
    if smoke:
        space.update(max_steps=tune.choice([5]))
    optuna_space = AutoLSTM._ray_config_to_optuna(space)

    def config(trial):  # the search space, without progress bars
        return {**optuna_space(trial), "enable_progress_bar": False, "enable_model_summary": False}

    t0 = time.perf_counter()
    model = AutoLSTM(
        h=HORIZON,
        config=config,
        backend="optuna",
        num_samples=trials,
        search_alg=optuna.samplers.TPESampler(seed=seed),
        verbose=False,
    )
    nf = NeuralForecast(models=[model], freq="MS")
    nf.fit(train, val_size=VAL)
    forecast = nf.predict()["AutoLSTM"].to_numpy()
    fit_seconds = time.perf_counter() - t0
    y = df["y"].to_numpy()
    history = y[: len(y) - HORIZON - VAL]  # all but the last 24 months, as seqlab
    snaive = y[len(y) - HORIZON - SEASON : len(y) - HORIZON]  # the last season before the test
    study = nf.models[0].results  # NeuralForecast fits copies of the models it is given
    out.write_text(
        json.dumps(
            {
                "test/mase": mase(test["y"], forecast, history),
                "test/seasonal_naive/mase": mase(test["y"], snaive, history),
                "trials_finished": len([t for t in study.trials if t.state.is_finished()]),
                "fit_predict_seconds": fit_seconds,
                "best_params": {k: v for k, v in study.best_trial.params.items()},
                "forecast": forecast.tolist(),
                "versions": _versions("neuralforecast", "optuna", "torch", "pytorch-lightning"),
            },
            indent=2,
            default=str,
        )
    )


def _versions(*names: str) -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------- the orchestrator


def timed(cmd: list[str], env: dict, log: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - t0, rc


def run_seqlab(seqlab: str, trials: int, tmp: Path, env: dict, smoke: bool = False) -> dict:
    summary = tmp / "seqlab-summary.json"
    cmd = [
        seqlab,
        "run",
        "conf/default.yaml",
        f"tune.n_trials={trials}",
        f"tune.storage=sqlite:///{tmp}/optuna.db",
        f"tune.study_name=vs-nf-{os.getpid()}",
        # One backtest window = the peer's test window (the last 12 months), so that both
        # sides are scored on the same points.
        "eval.backtest_windows=1",
        f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"tracking.artifact_location={tmp}/artifacts",
        "--summary-json",
        str(summary),
    ]
    if smoke:
        cmd[3:3] = ["train.max_epochs=3"]
    seconds, rc = timed(cmd, env, tmp / "seqlab.log")
    if rc != 0:
        raise SystemExit(
            f"seqlab run failed ({rc}); log: {tmp / 'seqlab.log'}\n"
            + (tmp / "seqlab.log").read_text()[-3000:]
        )
    s = json.loads(summary.read_text())
    return {
        "wall_seconds": seconds,
        "test/mase": s["metrics"]["test/mase"],
        "test/seasonal_naive/mase": s["metrics"].get("test/seasonal_naive/mase"),
        "trials_finished": s.get("trials_finished"),
        "best_params": s.get("best_params"),
        "command": " ".join(cmd[:5]) + " ... --summary-json ...",
    }


def run_nf(
    nf_python: str, trials: int, seed: int, tmp: Path, env: dict, smoke: bool = False
) -> dict:
    out = tmp / "nf-summary.json"
    cmd = [
        nf_python,
        str(Path(__file__).resolve()),
        "--peer",
        "--trials",
        str(trials),
        "--seed",
        str(seed),
        "--peer-out",
        str(out),
    ] + (["--smoke"] if smoke else [])
    seconds, rc = timed(cmd, env, tmp / "neuralforecast.log")
    if rc != 0:
        raise SystemExit(
            f"neuralforecast run failed ({rc}); log: {tmp / 'neuralforecast.log'}\n"
            + (tmp / "neuralforecast.log").read_text()[-3000:]
        )
    return {"wall_seconds": seconds, **json.loads(out.read_text())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=42, help="the peer's TPE sampler seed")
    p.add_argument("--seqlab", default=str(ROOT / ".venv" / "bin" / "seqlab"))
    p.add_argument("--nf-python", default=str(ROOT / "benchmarks" / ".venv-nf" / "bin" / "python"))
    p.add_argument("--only", choices=("seqlab", "neuralforecast"), default=None)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS for both sides (default: the cores not busy by the "
        "1-minute load average; two threads on a half-busy 2-core box crawl)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="3 epochs / 5 steps per trial: checks the plumbing, not a figure",
    )
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument(
        "--keep-logs", type=Path, default=None, help="copy both runs' logs into this folder"
    )
    a = p.parse_args(argv)
    if a.peer:
        run_peer(a.trials, a.seed, a.peer_out, a.smoke)
        return 0
    if a.only != "seqlab" and not Path(a.nf_python).exists():
        raise SystemExit(f"{a.nf_python} not found: run `bash benchmarks/setup_neuralforecast.sh`")

    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))
    threads = a.threads or max(1, cores - round(load))
    env = {**os.environ, **QUIET, "OMP_NUM_THREADS": str(threads)}
    where = f"{platform.machine()}, {cores} cores, load {load:.1f}, {threads} torch thread(s) each"
    print(
        f"vs_neuralforecast: AirPassengers, h={HORIZON}, last {HORIZON} months held out, "
        f"{a.trials} trials each, on {where}" + (" SMOKE" if a.smoke else ""),
        flush=True,
    )
    res: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="seqlab-vs-nf-") as tmpdir:
        tmp = Path(tmpdir)
        if a.only != "neuralforecast":
            res["seqlab"] = run_seqlab(a.seqlab, a.trials, tmp, env, a.smoke)
            print(_line("seqlab", res["seqlab"]), flush=True)
        if a.only != "seqlab":
            res["neuralforecast"] = run_nf(a.nf_python, a.trials, a.seed, tmp, env, a.smoke)
            print(_line("neuralforecast", res["neuralforecast"]), flush=True)
        if a.keep_logs:
            a.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                shutil.copy(log, a.keep_logs / f"vs_nf-{log.name}")
    report = {
        "benchmark": "vs_neuralforecast",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": where,
        "trials": a.trials,
        "smoke": a.smoke,
        "threads": threads,
        "mase_scale": "in-sample seasonal naive (season 12) MAE of months 1-120 "
        "(all but the last 24)",
        "results": res,
    }
    if len(res) == 2:
        s, n = res["seqlab"], res["neuralforecast"]
        ratio = s["wall_seconds"] / n["wall_seconds"]
        ok = ratio <= 1 / 3 and s["test/mase"] <= n["test/mase"]
        report.update(time_ratio=ratio, target_met=ok)
        print(
            f"  seqlab/neuralforecast wall time {ratio:.3f} (target <= 0.333), MASE "
            f"{s['test/mase']:.3f} vs {n['test/mase']:.3f}: {'OK' if ok else 'target not met'}"
        )
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2, default=str))
    return 0


def _line(name: str, r: dict) -> str:
    return (
        f"  {name:<15} {r['wall_seconds']:7.1f} s wall, test MASE {r['test/mase']:.3f} "
        f"(seasonal naive {r['test/seasonal_naive/mase']:.3f}), "
        f"{r['trials_finished']} trials finished"
    )


if __name__ == "__main__":
    sys.exit(main())
