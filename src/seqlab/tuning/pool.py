"""Local tuning worker processes, one per slot, each pinned to its GPU (or to none on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import optuna

from seqlab.training.devices import WorkerSlot, cpu_threads_per_worker
from seqlab.tuning.summary import failure_reasons


@dataclass
class WorkerPool:
    """Local worker processes, one per slot, each pinned to its GPU (or to none on CPU)."""

    procs: list[subprocess.Popen]
    slots: list[WorkerSlot]

    def wait(self, timeout: float | None = None) -> list[int]:
        deadline = None if timeout is None else time.monotonic() + timeout
        codes = []
        for p in self.procs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                codes.append(p.wait(left))
            except subprocess.TimeoutExpired:
                p.terminate()
                codes.append(p.wait(30))
        return codes

    def terminate(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def worker_command(
    study_name: str,
    storage_url: str,
    slot: WorkerSlot,
    timeout: float | None = None,
    heartbeat_interval: int | None = None,
    deadline: float | None = None,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "seqlab.tuning.worker",
        "--study",
        study_name,
        "--storage",
        storage_url,
    ]
    if heartbeat_interval:
        cmd += ["--heartbeat-interval", str(heartbeat_interval)]
    if timeout:
        cmd += ["--timeout", str(timeout)]
    if deadline:
        cmd += ["--deadline", repr(deadline)]
    if not slot.keep_on_oom:
        cmd.append("--leave-on-oom")
    return cmd


def spawn_workers(
    study_name: str,
    storage_url: str,
    slots: list[WorkerSlot],
    timeout: float | None = None,
    heartbeat_interval: int | None = None,
    deadline: float | None = None,
) -> WorkerPool:
    threads = cpu_threads_per_worker(len(slots))
    procs = []
    for slot in slots:
        env = {
            **os.environ,
            **slot.env(),
            "OMP_NUM_THREADS": str(threads),
            "SEQLAB_WORKER_RANK": str(slot.rank),
        }
        cmd = worker_command(study_name, storage_url, slot, timeout, heartbeat_interval, deadline)
        procs.append(subprocess.Popen(cmd, env=env))
    return WorkerPool(procs, slots)


def failure_summary(study: optuna.Study) -> str:
    reasons = failure_reasons(study)
    return "; ".join(dict.fromkeys(reasons.values())) or "no failed trials recorded"
