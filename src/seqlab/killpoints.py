"""Named points where a test can SIGKILL a real run: ``SEQLAB_KILL_AT=register-tags`` (the
process alone) or ``SEQLAB_KILL_AT=register-tags:group`` (its whole process group).

A SIGKILL cannot be caught, so what a run leaves when killed between two writes is exactly what
the next run must find and repair; these points put the kill between those writes,
deterministically, where a timer would race. Unset (always, outside tests), they do nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "SEQLAB_KILL_AT"
POINTS = (
    "tuning",  # a trial has trained an epoch (trial RUNNING, its MLflow run RUNNING)
    "evaluated-refit",  # the evaluated fit has started
    "backtest",  # the backtest has started
    "serving-refit",  # the served refit has started
    "log-model",  # the pyfunc is being logged
    "register-tags",  # the model version exists, its tags and challenger alias do not
    "alias-move-challenger",  # the challenger move's audit line is written, the alias not moved
    "alias-move-champion",  # the promotion's audit line is written, the alias not moved
    "promote",  # the champion alias moved, the gate's decision not yet on the version
)


def kill_point(name: str) -> None:
    """SIGKILL this process (or its group) when ``$SEQLAB_KILL_AT`` names this point."""
    wanted = os.environ.get(ENV, "")
    point, _, scope = wanted.partition(":")
    if point != name:
        return
    if scope == "group":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
