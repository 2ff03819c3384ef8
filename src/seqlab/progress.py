"""Progress of long steps (trials, epochs), reported to whoever shows it.

The library reports; the command line shows a progress bar (``flows/cli.py``). With no sink
registered, reporting costs one list check. Sinks are per process: trials run by worker
processes report in those processes (and log their completion).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressSink(Protocol):
    def update(self, task: str, completed: int, total: int, info: str = "") -> None: ...


_sinks: list[ProgressSink] = []


def report(task: str, completed: int, total: int, info: str = "") -> None:
    for sink in list(_sinks):
        sink.update(task, completed, total, info)


@contextmanager
def showing(sink: ProgressSink) -> Iterator[ProgressSink]:
    _sinks.append(sink)
    try:
        yield sink
    finally:
        _sinks.remove(sink)
