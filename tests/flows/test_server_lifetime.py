"""The temporary Prefect server of `seqlab run`/`seqlab forecast` ends with the command: on a
normal exit, on Ctrl-C, and when only the command's own process is SIGKILLed (the OOM killer, a
CI timeout killing the child). A server that cannot start in time is one line, not a traceback.

Servers are found by what they are (uvicorn serving ``prefect.server.api.server:create_app``)
and whose they are (the test's own ``PREFECT_HOME`` in their environment), read from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import cli_env, tiny_overrides

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc"),
]
APP = b"prefect.server.api.server:create_app"
WAITING = {"tune.workers": 0}  # waits for external tuning workers: runs until it is stopped


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def prefect_servers(home: Path) -> dict[int, int]:
    """pid -> port of every live Prefect API server whose PREFECT_HOME is ``home``."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            env = Path(entry.path, "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if APP in argv and f"PREFECT_HOME={home}".encode() in env and _alive(int(entry.name)):
            found[int(entry.name)] = int(argv[argv.index(b"--port") + 1])
    return found


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def home(tmp_path):
    """The runs' PREFECT_HOME; any server left over is killed at the end (a failing test)."""
    path = tmp_path / ".prefect"
    yield path
    for pid in prefect_servers(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


REPO = Path(__file__).resolve().parents[2]


def seqlab(
    tmp: Path, *args: str, env: dict[str, str] | None = None, entry: tuple[str, ...] = ()
) -> subprocess.Popen:
    """``seqlab ARGS`` (or ``python ENTRY ARGS``) in a session of its own."""
    log = open(tmp / f"seqlab-{time.monotonic_ns()}.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, *(entry or ("-m", "flows.cli")), *args],
        cwd=tmp,
        env={**cli_env(tmp), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as under a scheduler or a terminal
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen) -> str:
    log = proc.log  # type: ignore[attr-defined]
    if log.closed:
        return ""
    log.seek(0)
    text = log.read()
    log.close()
    return text


def wait_for_server(proc: subprocess.Popen, home: Path, timeout: float = 240) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before its server was up:\n{output(proc)}"
        servers = prefect_servers(home)
        if servers and all(healthy(port) for port in servers.values()):
            return servers
        time.sleep(0.2)
    raise AssertionError("no healthy Prefect server within the deadline")


def wait_gone(pids, timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.parametrize("entry", ["seqlab run", "python flows/training.py"])
def test_sigkill_of_the_run_alone_leaves_no_server(tmp_path, home, entry) -> None:
    if entry == "seqlab run":
        proc = seqlab(tmp_path, "run", *tiny_overrides(tmp_path, **WAITING))
    else:  # the flow file run directly starts the same guarded server
        script = (str(REPO / "flows" / "training.py"),)
        proc = seqlab(tmp_path, *tiny_overrides(tmp_path, **WAITING), entry=script)
    servers = wait_for_server(proc, home)
    os.kill(proc.pid, signal.SIGKILL)  # the command's process only, not its group
    assert proc.wait(30) == -signal.SIGKILL
    assert not wait_gone(servers), f"servers outlived the killed run: {servers}\n{output(proc)}"
    assert not any(healthy(port) for port in servers.values())
    assert not prefect_servers(home)
    output(proc)


def waiting_for_workers(tmp: Path) -> bool:
    """The run has published its study (it waits for external workers from then on)."""
    import sqlite3

    db = tmp / "optuna.db"
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return bool(con.execute("SELECT count(*) FROM studies").fetchone()[0])
    except sqlite3.Error:
        return False


def test_ctrl_c_stops_the_server_with_the_run(tmp_path, home) -> None:
    proc = seqlab(tmp_path, "run", *tiny_overrides(tmp_path, **WAITING))
    servers = wait_for_server(proc, home)
    deadline = time.monotonic() + 240
    while not waiting_for_workers(tmp_path) and time.monotonic() < deadline:
        assert proc.poll() is None, output(proc)
        time.sleep(0.2)
    time.sleep(1.0)  # the flow is waiting for tuning workers now
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the foreground group
    assert proc.wait(120) == 130, output(proc)
    assert not wait_gone(servers, 30), "the server outlived the interrupted command"
    assert "Traceback" not in output(proc)


def test_a_normal_run_stops_its_server_and_a_slow_start_is_one_line(tmp_path, home) -> None:
    proc = seqlab(tmp_path, "run", *tiny_overrides(tmp_path))
    seen: set[int] = set()
    deadline = time.monotonic() + 400
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= set(prefect_servers(home))
        time.sleep(0.2)
    assert proc.wait(30) == 0, output(proc)
    text = output(proc)
    assert seen, "the run never had a Prefect server"
    assert not {p for p in seen if _alive(p)}, "the server outlived the finished command"
    assert not prefect_servers(home), "a server was started after the run's own one stopped"
    assert "Traceback" not in text and "Failed to send" not in text, text

    # A server that never answers (as on a machine too loaded to start it in time): the same
    # one line for both commands. Deterministic: a sitecustomize stalls the server's process.
    stall = tmp_path / "stall"
    stall.mkdir()
    (stall / "sitecustomize.py").write_text(
        "import pathlib, time\n"
        "if b'create_app' in pathlib.Path('/proc/self/cmdline').read_bytes():\n"
        "    time.sleep(3600)\n"
    )
    too_short = {
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(stall), os.environ.get("PYTHONPATH")])),
    }
    history = Path(__file__).resolve().parents[2] / "src/seqlab/datasets/airpassengers.csv"
    commands = [
        ["run", *tiny_overrides(tmp_path)],
        ["forecast", "seqlab-airpassengers", "--version", "1", "-i", str(history)],
    ]
    commands[1] += [
        "-o",
        str(tmp_path / "f.csv"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
    ]
    for args in commands:
        failed = seqlab(tmp_path, *args, env=too_short)
        assert failed.wait(300) == 4, output(failed)
        text = output(failed)
        assert "Traceback" not in text, text
        assert text.strip().splitlines()[-1] == (
            "error: the temporary Prefect server did not start within 3 s; set "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS higher or point PREFECT_API_URL "
            "at a running `prefect server start`"
        ), text
        assert not prefect_servers(home)
        assert not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize("flags", [["--watchdog-only"], []], ids=["watchdog-only", "both"])
def test_a_guarded_process_ends_with_its_sigkilled_parent(tmp_path, flags) -> None:
    """The guard alone: ``--watchdog-only`` is what runs where there is no prctl (macOS) or the
    starting thread may end before the process."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "cmd = [sys.executable, '-m', 'seqlab.processes', '--parent', str(os.getpid()),"
            f" *{flags!r}, '-m', 'http.server', '--', '0', '--bind', '127.0.0.1']\n"
            "print(subprocess.Popen(cmd, stdout=subprocess.DEVNULL).pid, flush=True)\n"
            "time.sleep(3600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 60
    while b"http.server" not in Path(f"/proc/{child}/cmdline").read_bytes():
        assert time.monotonic() < deadline and _alive(child)
        time.sleep(0.1)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(30)
    parent.stdout.close()
    assert not wait_gone({child}), "the guarded process outlived its parent"
