"""Which process owns something (a trial, a pipeline run) and whether it is still alive.

An owner is host, boot id, pid and the process's start time: pids get reused, so a pid alone
could name another process. Liveness can only be known on the owner's own machine; elsewhere
heartbeats decide.

Run as a module, it starts another module in a process that ends with its parent (see
``guard_and_run_module``): temporary servers use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import runpy
import signal
import socket
import sys
import threading
import time
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


# ---------------------------------------------------------------- dying with the parent
#
# A helper process (a temporary server) must not outlive the process that started it, also when
# that one is SIGKILLed (OOM killer, a CI timeout) and has no chance to stop it. Two guards,
# both inside the helper: Linux's parent-death signal, immediate; and a watchdog thread that
# polls getppid(), portable (macOS has no prctl) and not fooled by thread exits: a parent-death
# signal fires when the *thread* that forked the helper ends, getppid() only changes when the
# whole parent process has gone.

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every live, non-zombie process; empty where /proc is missing."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces or parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] not in ("Z", "X"):
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def group_members(pgid: int) -> set[int]:
    """Live processes of process group ``pgid``."""
    return {pid for pid, (_, group) in proc_table().items() if group == pgid}


def _end_group(grace: float) -> None:
    """SIGTERM the other members of this process's group (a server's workers), SIGKILL those
    left after ``grace``, then exit: for a module that does not pass SIGTERM on (``mlflow
    server`` runs ``uvicorn`` as a child)."""
    me, group = os.getpid(), os.getpgrp()
    others = group_members(group) - {me}
    for pid in others:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end and group_members(group) - {me}:
        time.sleep(0.1)
    for pid in group_members(group) - {me}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    os._exit(1)


def _die_with(parent: int, grace: float, interval: float, group: bool = False) -> None:
    """Watchdog: once the parent has gone, SIGTERM this process (or end its whole group, when
    it leads one and ``group``); exit hard after ``grace``."""
    while os.getppid() == parent:
        time.sleep(interval)
    if group and os.getpgrp() == os.getpid():
        _end_group(grace)
    os.kill(os.getpid(), signal.SIGTERM)  # a clean shutdown first (uvicorn handles SIGTERM)
    time.sleep(grace)
    os._exit(1)


def guard_and_run_module(
    parent: int,
    module: str,
    argv: list[str],
    grace: float = 10.0,
    interval: float = 0.5,
    death_signal: bool = True,
    group: bool = False,
) -> None:
    """Run ``python -m module argv...`` in this process, ended when ``parent`` dies: SIGTERM
    (a clean shutdown), then an exit after ``grace`` seconds. ``death_signal=False`` leaves the
    watchdog alone (a parent that started this process from a thread that may end first).
    ``group``: the watchdog ends this process's whole group (it must lead one), for a module
    that starts the server as a child of its own and would leave it behind; no parent-death
    signal then (it would end this process alone, at once)."""
    if death_signal and not group:
        set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # it died before the signal was armed
        sys.exit(1)
    threading.Thread(
        target=_die_with,
        args=(parent, grace, interval, group),
        name="parent-watchdog",
        daemon=True,
    ).start()
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def main(args: list[str] | None = None) -> None:
    """``python -m seqlab.processes --parent PID [--grace S] -m MODULE -- [ARGS...]``."""
    import argparse

    args = sys.argv[1:] if args is None else list(args)
    split = args.index("--") if "--" in args else len(args)
    parser = argparse.ArgumentParser(prog="python -m seqlab.processes")
    parser.add_argument("--parent", type=int, required=True, help="End when this pid has gone.")
    parser.add_argument("--grace", type=float, default=10.0, help="Seconds for a clean exit.")
    parser.add_argument(
        "--watchdog-only", action="store_true", help="No parent-death signal (Linux)."
    )
    parser.add_argument(
        "--group", action="store_true", help="End this process's whole group (its leader)."
    )
    parser.add_argument("-m", dest="module", required=True, help="The module to run.")
    ns = parser.parse_args(args[:split])
    guard_and_run_module(
        ns.parent,
        ns.module,
        args[split + 1 :],
        ns.grace,
        death_signal=not ns.watchdog_only,
        group=ns.group,
    )


if __name__ == "__main__":
    main()
