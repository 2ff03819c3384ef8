"""Which process owns something (a trial, a pipeline run) and whether it is still alive.

An owner is host, boot id, pid and the process's start time: pids get reused, so a pid alone
could name another process. Liveness can only be known on the owner's own machine; elsewhere
heartbeats decide.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process, from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def owner_record(pid: int | None = None) -> dict[str, Any]:
    """Who runs something: host, boot id and the process's pid and start time (pids get reused)."""
    pid = os.getpid() if pid is None else pid
    stat = process_stat(pid)
    return {
        "host": socket.gethostname(),
        "boot": boot_id(),
        "pid": pid,
        "start": stat[1] if stat else None,
    }


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """Whether the owner still runs; ``None`` when it ran elsewhere (heartbeats decide)."""
    if not owner or owner.get("host") != socket.gethostname():
        return None
    boot = boot_id()
    if owner.get("boot") and boot and owner["boot"] != boot:
        return None  # another machine with the same name, or this one rebooted: cannot tell
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    stat = process_stat(pid)
    if stat is None:
        return True  # no /proc: the pid exists, that is all we know
    state, start = stat
    if state in ("Z", "X"):
        return False  # killed, not yet reaped by its parent
    return not (owner.get("start") and start != owner["start"])  # same pid, other process
