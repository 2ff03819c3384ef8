"""Worker slots and device choice: pure functions, no GPU needed."""

from __future__ import annotations

import os

import pytest
import torch

from seqlab.models import build_model, count_parameters
from seqlab.training.devices import (
    WorkerSlot,
    cpu_threads_per_worker,
    default_trials_per_gpu,
    plan_slots,
    recurrent_params,
    resolve_device,
)


def test_two_gpus_four_per_gpu_gives_eight_round_robin_slots():
    slots = plan_slots("auto", 4, n_gpus=2)
    assert [s.rank for s in slots] == list(range(8))
    assert [s.gpu for s in slots] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in slots[:2]] == ["0", "1"]


def test_first_worker_on_each_gpu_stays_after_oom_the_others_leave():
    slots = plan_slots("auto", 4, n_gpus=2)
    keepers = [s for s in slots if s.keep_on_oom]
    assert sorted(s.gpu for s in keepers) == [0, 1]  # exactly one per GPU
    assert all(not s.keep_on_oom for s in slots if s not in keepers)


def test_cpu_auto_is_one_in_process_slot_with_gpus_hidden():
    assert plan_slots("auto", "auto", n_gpus=0) == [WorkerSlot(rank=0, gpu=None)]
    assert WorkerSlot(0, None).env() == {"CUDA_VISIBLE_DEVICES": ""}


def test_zero_workers_means_external_workers_only():
    assert plan_slots(0, "auto", n_gpus=0) == []
    assert plan_slots(0, 4, n_gpus=2) == []


def test_explicit_worker_count_is_exact():
    assert [s.gpu for s in plan_slots(3, "auto", n_gpus=0)] == [None, None, None]
    assert [s.gpu for s in plan_slots(3, 8, n_gpus=2)] == [0, 1, 0]


@pytest.mark.parametrize("workers, per_gpu", [(-1, 1), (1, 0)])
def test_invalid_counts_are_rejected(workers, per_gpu):
    with pytest.raises(ValueError):
        plan_slots(workers, per_gpu, n_gpus=1)


def test_auto_packing_depends_on_model_size():
    assert default_trials_per_gpu(None) == 8
    assert default_trials_per_gpu(50_000) == 8
    assert default_trials_per_gpu(5_000_000) == 1
    assert len(plan_slots("auto", "auto", n_gpus=2, n_params=5_000_000)) == 2


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
def test_parameter_estimate_matches_the_model(cell, layers):
    model = build_model(
        n_features=3, horizon=7, cell=cell, hidden_size=16, num_layers=layers, dropout=0.0
    )
    assert recurrent_params(cell, 3, 16, layers, 7) == count_parameters(model)


def test_cpu_threads_are_split_between_workers():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu_threads_per_worker(1) == cores
    assert cpu_threads_per_worker(2) == max(1, cores // 2)
    assert cpu_threads_per_worker(10_000) == 1


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else (
            "mps"
            if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
            else "cpu"
        )
    )
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
