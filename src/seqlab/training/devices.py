"""Discover accelerators and hand out worker slots (several small trials per GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA, else MPS, else CPU; explicit specs are checked, not trusted."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={spec} but no CUDA device is available; use auto or cpu")
    if dev.type == "mps" and not (torch.backends.mps.is_available()):
        raise ValueError(f"train.device={spec} but MPS is not available; use auto or cpu")
    return dev


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class WorkerSlot:
    """One tuning worker: which GPU it sees (``None`` on CPU) and its rank.

    ``keep_on_oom`` is true for the first worker on each device: after a CUDA out-of-memory
    error the others leave, so the packing on that GPU drops by one per OOM while one worker
    per GPU always stays (its repeated failures end in the fail-streak guard instead).
    """

    rank: int
    gpu: int | None
    keep_on_oom: bool = True

    def env(self) -> dict[str, str]:
        """Environment for the worker process: pin it to its GPU, or hide all GPUs on CPU."""
        return {"CUDA_VISIBLE_DEVICES": "" if self.gpu is None else str(self.gpu)}


_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def recurrent_params(
    cell: str, n_features: int, hidden_size: int, num_layers: int, horizon: int
) -> int:
    """Parameter count of a ``RecurrentForecaster`` without building it (for slot planning)."""
    gates = _GATES[cell]
    total = 0
    for layer in range(num_layers):
        inputs = n_features if layer == 0 else hidden_size
        total += gates * hidden_size * (inputs + hidden_size + 2)  # W_ih, W_hh, b_ih, b_hh
    return total + hidden_size * horizon + horizon  # the linear head


def default_trials_per_gpu(n_params: int | None = None) -> int:
    """Small recurrent models leave a GPU idle (launch latency, not math): pack several.

    Measured on an H200: 8 processes of a small LSTM gave 7x one process; a medium model gained
    nothing. Pack 8 when the model is small (or unknown), 1 when it is large.
    """
    if n_params is not None and n_params > 2_000_000:
        return 1
    return 8


def plan_slots(
    workers: int | str = "auto",
    trials_per_gpu: int | str = "auto",
    n_gpus: int | None = None,
    n_params: int | None = None,
) -> list[WorkerSlot]:
    """Worker slots: ``auto`` is one per GPU slot (several per GPU), one on CPU; ints are exact.

    ``workers=0`` means no local workers (external ``seqlab tune-worker`` processes do the work).
    """
    gpus = gpu_count() if n_gpus is None else n_gpus
    per_gpu = default_trials_per_gpu(n_params) if trials_per_gpu == "auto" else int(trials_per_gpu)
    if per_gpu < 1:
        raise ValueError("tune.trials_per_gpu must be >= 1 or auto")
    if workers == "auto":
        n = gpus * per_gpu if gpus else 1
    else:
        n = int(workers)
        if n < 0:
            raise ValueError("tune.workers must be >= 0 or auto")
    if not gpus:
        return [WorkerSlot(rank=r, gpu=None) for r in range(n)]
    # Round-robin over GPUs so each one fills evenly; the first slot on each GPU stays after OOM.
    return [WorkerSlot(rank=r, gpu=r % gpus, keep_on_oom=r < gpus) for r in range(n)]


def cpu_threads_per_worker(n_workers: int) -> int:
    """Split the host's cores between CPU workers so they do not fight over them."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, cores // max(1, n_workers))
