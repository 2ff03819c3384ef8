"""CUDA paths: device placement, precision, packing, out-of-memory handling.

Skipped without a CUDA GPU (CI has none); ``benchmarks/gpu_check.sh`` runs them on a GPU host,
where only torch, numpy, pandas and the carried wheels (optuna, pydantic, pyyaml, pytest) exist.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import optuna
import pytest
import torch

import seqlab.training.trainer as train_mod
from conftest import sine_frame
from seqlab.config import TrainConfig, build_config
from seqlab.data import validate
from seqlab.models import RecurrentForecaster
from seqlab.pipeline import prepare_data, train_model
from seqlab.training.devices import plan_slots, resolve_device
from seqlab.training.trainer import DeviceData, fit
from seqlab.tuning import tune_study
from seqlab.tuning.storage import study_name_for

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def cfg(tmp_path, **train):
    return build_config(
        {
            "data": {"source": "x", "time_column": "ds", "target": "y", "freq": "D"},
            "window": {"input_size": 14, "horizon": 7},
            "model": {"cell": "lstm", "hidden_size": 16, "ensemble_size": 1},
            "train": {"max_epochs": 5, "patience": None, "device": "auto", **train},
            "tune": {
                "n_trials": 4,
                "storage": f"sqlite:///{tmp_path}/optuna.db",
                "n_startup_trials": 2,
                "search_space": {
                    "train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}
                },
            },
        }
    )


@pytest.fixture(scope="module")
def series():
    return validate(
        sine_frame(n=120),
        build_config({"data": {"source": "x", "time_column": "ds", "target": "y"}}).data,
    )


def test_auto_device_is_cuda_and_everything_lives_there(tmp_path, series) -> None:
    c = cfg(tmp_path)
    assert resolve_device("auto").type == "cuda"
    prepared = prepare_data(series, c)
    model, hist = train_model(prepared, c)
    assert next(model.parameters()).device.type == "cuda"
    assert hist.device.startswith("cuda") and hist.precision == "fp32"
    assert hist.gpu_mem_peak_mb is not None and hist.gpu_mem_peak_mb > 0
    assert DeviceData.from_prepared(prepared, resolve_device("auto")).x_train.is_cuda


def test_bf16_trains_and_auto_precision_picks_by_size(tmp_path, series, monkeypatch) -> None:
    prepared = prepare_data(series, cfg(tmp_path))
    _, hist = train_model(prepared, cfg(tmp_path, precision="bf16"))
    assert hist.precision == "bf16" and all(v == v for v in hist.train_loss)
    # Which precision each train_epoch call ran in: auto times both, then trains in the winner.
    ran: list[str] = []
    real_epoch = train_mod.train_epoch

    def spy(*args, **kwargs):
        ran.append(args[7])  # train_epoch(model, opt, x, y, batch, loss, clip, precision, ...)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_epoch", spy)
    auto = TrainConfig(max_epochs=1, device="cuda", precision="auto", batch_size=256)
    big = RecurrentForecaster(1, 7, "lstm", hidden_size=512, num_layers=2)
    h = fit(big, prepared, auto)
    assert ran[:4] == ["fp32", "bf16", "fp32", "bf16"]  # measured, not assumed
    assert ran[4:] == [h.precision]  # and the epoch trained in the precision it chose
    assert all(math.isfinite(v) for v in h.train_loss)
    ran.clear()
    small = RecurrentForecaster(1, 7, "lstm", hidden_size=16)
    assert fit(small, prepared, TrainConfig(max_epochs=1, device="cuda")).precision == "fp32"
    assert ran == ["fp32"]  # too small to ever pay: not even measured


@pytest.mark.parametrize("bf16_cost, expected", [(0.5, "bf16"), (0.95, "fp32")])
def test_auto_precision_keeps_bf16_only_when_clearly_faster(
    tmp_path, series, monkeypatch, bf16_cost: float, expected: str
) -> None:
    """The choice follows the timings: bf16 must be over 10% faster to be kept."""
    now = [0.0]
    cost = {"fp32": 1.0, "bf16": bf16_cost}

    def timed_epoch(*args, **kwargs):
        now[0] += cost[args[7]]  # a fake clock: each measured epoch takes its precision's cost
        return torch.zeros((), device="cuda")

    monkeypatch.setattr(train_mod, "train_epoch", timed_epoch)
    monkeypatch.setattr(train_mod, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    prepared = prepare_data(series, cfg(tmp_path))
    data = DeviceData.from_prepared(prepared, torch.device("cuda"))
    big = RecurrentForecaster(1, 7, "lstm", hidden_size=512).cuda()
    loss = torch.nn.L1Loss().cuda()
    auto = TrainConfig(device="cuda", precision="auto", batch_size=256)
    assert train_mod.choose_precision(big, data, auto, loss) == expected


def test_packing_gives_several_slots_per_gpu() -> None:
    n = torch.cuda.device_count()
    slots = plan_slots("auto", "auto", n_params=10_000)
    assert len(slots) == 8 * n
    assert {s.gpu for s in slots} == set(range(n))
    assert all(s.env()["CUDA_VISIBLE_DEVICES"] == str(s.gpu) for s in slots)


def test_packed_workers_finish_exactly_n_trials_with_gpu_memory_logged(tmp_path, series) -> None:
    c = build_config(
        {
            **cfg(tmp_path).model_dump(mode="json"),
            "tune": {
                **cfg(tmp_path).tune.model_dump(mode="json"),
                "workers": 4,
                "trials_per_gpu": 4,
                "n_trials": 8,
            },
        }
    )
    path = tmp_path / "sine.csv"
    sine_frame(n=120).to_csv(path, index=False)
    c = build_config(
        {
            **c.model_dump(mode="json"),
            "data": {**c.data.model_dump(mode="json"), "source": str(path)},
        }
    )
    from seqlab.pipeline import ingest, validate_data

    s = validate_data(ingest(c), c)
    summary = tune_study(c, s)
    study = optuna.load_study(study_name=summary.study, storage=c.tune.storage)
    finished = [
        t
        for t in study.trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(finished) == 8 and summary.finished_after == 8
    assert all(
        t.user_attrs.get("gpu_mem_peak_mb", 0) > 0
        for t in finished
        if t.state == optuna.trial.TrialState.COMPLETE
    )


def test_real_cuda_oom_fails_the_trial_with_its_reason(tmp_path, series) -> None:
    c = build_config(
        {
            **cfg(tmp_path).model_dump(mode="json"),
            "model": {"cell": "lstm", "hidden_size": 4096, "num_layers": 4},
            "tune": {
                **cfg(tmp_path).tune.model_dump(mode="json"),
                "n_trials": 1,
                "workers": 1,
                "max_fail_streak": 1,
            },
        }
    )
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(0.002)  # a few hundred MB: the model cannot fit
    try:
        with pytest.raises(Exception, match="(?i)out of memory"):
            tune_study(c, series)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    study = optuna.load_study(study_name=study_name_for(c, series.digest), storage=c.tune.storage)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and "out of memory" in failed[0].user_attrs["fail_reason"].lower()
