"""Tuning throughput: finished trials per minute, packed workers vs one trial at a time.

One invocation tunes the same fixed budget of small-model trials twice, each time in a fresh
temporary Optuna storage, through ``seqlab.tuning.tune_study`` (the code ``seqlab run`` uses):

- packed: ``tune.workers=auto`` on a GPU host (one worker process per GPU slot,
  ``tune.trials_per_gpu`` of them per GPU, 8 for small models), ``--packed-workers`` (2) on CPU;
- sequential: ``tune.workers=1`` (one worker process on a GPU host, in-process on CPU).

Every trial does the same work (LSTM, hidden 64, one layer, fixed epochs, no early stopping, no
pruning; only the learning rate is searched) on the bundled AirPassengers data, so the rates
differ by scheduling alone. The rate counts the whole ``tune_study`` call, worker start-up
included; the steady-state rate (first trial start to last trial end) is printed beside it.

    python benchmarks/tune_throughput.py                       # 16 trials, auto device
    python benchmarks/tune_throughput.py --quick --out /tmp/tune.json

Target: packed >= 5x sequential on one H100/H200. CPU figures only show that it runs: two
cores cannot pack trials the way a GPU idling on launch latency can.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout
# Worker processes (python -m seqlab.tuning.worker) must import the same seqlab.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

import optuna  # noqa: E402
import torch  # noqa: E402

from seqlab.config import load_config, with_overrides  # noqa: E402
from seqlab.pipeline import ingest, validate_data  # noqa: E402
from seqlab.training.devices import gpu_count, plan_slots  # noqa: E402
from seqlab.tuning import tune_study  # noqa: E402

TARGET_GPU = 5.0


def base_config(trials: int, epochs: int, device: str):
    cfg = load_config(ROOT / "conf" / "default.yaml")
    return with_overrides(
        cfg,
        {
            "tune.n_trials": trials,
            "tune.n_warmup_steps": epochs,  # never prune: every trial does the same work
            "tune.search_space": {
                "train.lr": {"type": "float", "low": 1e-3, "high": 2e-2, "log": True}
            },
            "model.cell": "lstm",
            "model.hidden_size": 64,
            "model.num_layers": 1,
            "train.max_epochs": epochs,
            "train.patience": None,
            "train.device": device,
            "eval.plot": False,
        },
    )


def run_arm(name: str, workers, cfg, series, storage_kind: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"seqlab-tune-{name}-") as tmp:
        storage = f"{tmp}/optuna.log" if storage_kind == "journal" else f"sqlite:///{tmp}/optuna.db"
        study_name = f"bench-{name}-{os.getpid()}-{time.time_ns()}"
        arm = with_overrides(
            cfg, {"tune.workers": workers, "tune.storage": storage, "tune.study_name": study_name}
        )
        t0 = time.perf_counter()
        summary = tune_study(arm, series, tracking=None)
        seconds = time.perf_counter() - t0
        study = optuna.load_study(
            study_name=summary.study,
            storage=(
                optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
                if storage_kind == "journal"
                else storage
            ),
        )
        trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.is_finished() and t.datetime_complete]
    finished = summary.finished_after - summary.finished_before
    span = None
    if done:
        span = (
            max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
        ).total_seconds()
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    return {
        "arm": name,
        "workers_setting": workers,
        "mode": summary.mode,
        "worker_processes": summary.workers,
        "finished": finished,
        "states": summary.trial_states,
        "seconds": seconds,
        "trials_per_min": 60.0 * finished / seconds if seconds > 0 else 0.0,
        "steady_trials_per_min": 60.0 * finished / span if span else None,
        "median_trial_seconds": statistics.median(durations) if durations else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=None, help="finished trials per arm (16; quick 4)")
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per trial (100 on GPU, 30 on CPU; quick 5)"
    )
    p.add_argument("--device", default="auto", help="the trials' train.device: auto | cpu | cuda")
    p.add_argument(
        "--packed-workers",
        default=None,
        help="packed arm's tune.workers (auto on a GPU host, 2 on CPU)",
    )
    p.add_argument("--storage", choices=("sqlite", "journal"), default="sqlite")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="alternate the arms this many times (packed, sequential, ...); medians",
    )
    p.add_argument("--quick", action="store_true", help="tiny budget: a smoke test, not a figure")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    on_gpu = a.device != "cpu" and gpu_count() > 0
    if not on_gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU arms: keep workers off any GPU
    trials = a.trials or (4 if a.quick else 16)
    epochs = a.epochs or (5 if a.quick else 100 if on_gpu else 30)
    packed = a.packed_workers or ("auto" if on_gpu else "2")
    packed = packed if packed == "auto" else int(packed)
    cfg = base_config(trials, epochs, a.device)
    series = validate_data(ingest(cfg), cfg)
    slots = plan_slots(packed, cfg.tune.trials_per_gpu)
    where = (
        f"{gpu_count()} x {torch.cuda.get_device_name(0)}"
        if on_gpu
        else f"CPU {platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"tune_throughput on {where}: {trials} trials x {epochs} epochs per arm, "
        f"{a.storage} storage; packed = tune.workers={packed} ({len(slots)} processes), "
        f"sequential = tune.workers=1" + ("; QUICK (smoke test)" if a.quick else ""),
        flush=True,
    )

    runs: dict[str, list[dict]] = {"packed": [], "sequential": []}
    for _ in range(a.repeats):
        for name, workers in (("packed", packed), ("sequential", 1)):
            r = run_arm(name, workers, cfg, series, a.storage)
            runs[name].append(r)
            steady = r["steady_trials_per_min"]
            print(
                f"  {name:<10} {r['finished']:>3} trials in {r['seconds']:7.1f} s = "
                f"{r['trials_per_min']:7.1f} trials/min (steady {steady or 0:7.1f}; "
                f"{r['mode']}; median trial {r['median_trial_seconds'] or 0:.2f} s)",
                flush=True,
            )
    rate = {k: statistics.median(x["trials_per_min"] for x in v) for k, v in runs.items()}
    steady = {
        k: statistics.median(x["steady_trials_per_min"] or 0 for x in v) for k, v in runs.items()
    }
    ratio = rate["packed"] / rate["sequential"] if rate["sequential"] else float("nan")
    ratio_steady = steady["packed"] / steady["sequential"] if steady["sequential"] else float("nan")
    note = (
        f"target >= {TARGET_GPU:.0f}x {'OK' if ratio >= TARGET_GPU else 'BELOW'}"
        if on_gpu
        else "CPU: not the target (the >= 5x target is for one H100/H200)"
    )
    print(f"  packed/sequential: {ratio:.2f}x wall clock, {ratio_steady:.2f}x steady state  {note}")
    report = {
        "benchmark": "tune_throughput",
        "where": where,
        "on_gpu": on_gpu,
        "quick": a.quick,
        "trials": trials,
        "epochs": epochs,
        "storage": a.storage,
        "packed_workers": packed,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "runs": runs,
        "trials_per_min": rate,
        "steady_trials_per_min": steady,
        "ratio": ratio,
        "ratio_steady": ratio_steady,
        "target": TARGET_GPU if on_gpu else None,
    }
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
