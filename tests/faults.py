"""Injected trial faults for tests on CPU: training callbacks that fail the way real trials do.

``fault_callbacks({2: "oom", "*": "stall=0.2"})`` returns a factory for
``Objective(extra_callbacks=...)`` / ``run_worker(extra_callbacks=...)``: trial 2 raises a
(fake) CUDA out-of-memory error after its first epoch, every trial sleeps 0.2 s per epoch.
Kinds: ``oom``, ``nan`` (a non-finite loss), ``error`` (a RuntimeError), ``stall[=SECONDS]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from seqlab.training.trainer import Callback, NonFiniteLossError

KINDS = ("oom", "nan", "error", "stall")


class InjectedFault(Callback):
    def __init__(self, kind: str, seconds: float = 0.5) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {KINDS}")
        self.kind, self.seconds = kind, seconds

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.kind == "stall":
            time.sleep(self.seconds)
        elif self.kind == "oom":
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB (injected)"
            )
        elif self.kind == "nan":
            raise NonFiniteLossError(f"loss became nan at epoch {epoch} (injected)")
        else:
            raise RuntimeError("trial failed (injected)")


def parse(spec: str) -> dict[int | str, str]:
    """``"2:oom,*:stall=0.2"`` -> ``{2: "oom", "*": "stall=0.2"}`` (for worker command lines)."""
    out: dict[int | str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        target, _, kind = item.partition(":")
        out["*" if target == "*" else int(target)] = kind
    return out


def fault_callbacks(faults: dict[int | str, str]) -> Callable[[object], list[Callback]]:
    def factory(trial) -> list[Callback]:
        spec = faults.get(trial.number) or faults.get("*")
        if not spec:
            return []
        kind, _, seconds = spec.partition("=")
        return [InjectedFault(kind, float(seconds) if seconds else 0.5)]

    return factory
