"""Start and stop real MLflow and Prefect servers as subprocesses (for ``seqlab ui``, the
temporary Prefect server, in :mod:`flows.prefect_server`, and tests).

Every server runs in its own session (process group), so ``stop()`` can end it together with
whatever it spawned (uvicorn workers, Prefect services) and wait until nothing is left; readiness
is a bounded poll of the server's health endpoint, never a fixed sleep. Output goes to a log file
whose tail is quoted when a server fails to start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqlab.processes import proc_table

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
}
DEFAULT_STORE = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACTS = "mlruns/artifacts"


class ServerError(RuntimeError):
    """A server process exited or did not become healthy in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- process trees (Linux /proc)


def process_tree(pid: int, pgid: int | None = None) -> set[int]:
    """Live descendants of ``pid`` plus every member of process group ``pgid`` (pid included)."""
    table = proc_table()
    found = {p for p, (_, g) in table.items() if pgid is not None and g == pgid}
    if pid in table:
        found.add(pid)
    frontier = set(found)
    while frontier:
        children = {p for p, (pp, _) in table.items() if pp in frontier and p not in found}
        found |= children
        frontier = children
    return found


def _signal_all(pids: set[int], pgid: int | None, sig: int) -> None:
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class ManagedProcess:
    """A subprocess in its own process group; ``stop()`` ends it and all it spawned."""

    name: str
    process: subprocess.Popen
    url: str = ""
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def leftovers(self) -> set[int]:
        """Processes of this group (or descended from it) that are still running."""
        pids = process_tree(self.pid, self.pid)
        if self.process.poll() is not None:
            pids.discard(self.pid)
        return pids

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM the whole group, then SIGKILL what is left after ``timeout``; wait for all."""
        # Remember the tree first: children in other sessions would be orphaned out of sight.
        tree = process_tree(self.pid, self.pid)
        _signal_all(tree, self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.process.poll()
            tree = {p for p in tree if _pid_alive(p)} | self.leftovers()
            if not tree:
                break
            time.sleep(0.1)
        else:
            _signal_all(tree | self.leftovers(), self.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
        end = time.monotonic() + 5
        while time.monotonic() < end and any(_pid_alive(p) for p in tree):
            time.sleep(0.05)
        return self.process.returncode

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def guarded_module_cmd(
    module: str, args: Sequence[str], grace: float = 10.0, group: bool = False
) -> list[str]:
    """``python -m module args`` in a process that ends when this one dies, SIGKILL included
    (``seqlab.processes``: a parent-death signal on Linux, a watchdog everywhere).

    Linux's parent-death signal fires when the *thread* that started the child exits: it is
    armed only when this is the main thread (which lasts as long as the process); from another
    thread the watchdog alone guards. ``group``: see ``seqlab.processes`` (``spawn`` starts a
    new session, so the guard leads its group).
    """
    cmd = [sys.executable, "-m", "seqlab.processes", "--parent", str(os.getpid())]
    cmd += ["--grace", str(grace)]
    if threading.current_thread() is not threading.main_thread():
        cmd.append("--watchdog-only")
    if group:  # the module runs the server as its child: end the whole (new) session's group
        cmd.append("--group")
    return [*cmd, "-m", module, "--", *args]


def spawn(
    name: str,
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: str | Path | None = None,
    inherit_output: bool = False,
) -> ManagedProcess:
    """Start ``cmd`` in a new session with the quiet env added; output to ``log_path``."""
    full_env = {**os.environ, **QUIET_ENV, **(env or {})}
    if inherit_output:
        out, path = None, None
    else:
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
            os.close(fd)
        path = Path(log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = open(path, "ab")
    try:
        proc = subprocess.Popen(
            list(cmd),
            env=full_env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()
    return ManagedProcess(name, proc, log_path=path)


def wait_healthy(
    handle: ManagedProcess, health_url: str, timeout: float, expect: bytes | None = None
) -> None:
    """Poll ``health_url`` until it answers 200 (bounded); stop the process and raise otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not handle.alive():
            raise ServerError(
                f"{handle.name} exited with status {handle.process.returncode} "
                f"before it was ready:\n{handle.log_tail()}"
            )
        try:
            with urllib.request.urlopen(health_url, timeout=2) as resp:
                body = resp.read()
                if resp.status == 200 and (expect is None or expect in body):
                    return
                last = f"HTTP {resp.status}: {body[:200]!r}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.25)
    handle.stop()
    raise ServerError(
        f"{handle.name} was not healthy at {health_url} after {timeout:.0f} s "
        f"({last}):\n{handle.log_tail()}"
    )


# ---------------------------------------------------------------- MLflow


def _artifact_uri(artifact_root: str | Path) -> str:
    root = str(artifact_root)
    if "://" in root:
        return root
    path = Path(root).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def start_mlflow_server(
    backend_store_uri: str,
    artifact_root: str | Path,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    timeout: float = 120.0,
    log_path: str | Path | None = None,
    inherit_output: bool = False,
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """``mlflow server`` (UI + REST API) with one worker and no job runners, once /health is OK.

    Artifacts are proxied (``--artifacts-destination``): clients on other hosts upload through the
    server and need no access to ``artifact_root``. Job execution is off: with it on, startup takes
    ~20 s and job-runner processes outlive SIGTERM for ~12 s.
    """
    port = port or free_port(host if host not in ("0.0.0.0", "::") else "127.0.0.1")
    if backend_store_uri.startswith("sqlite:///"):  # pin a relative path; create the folder
        db = Path(backend_store_uri.removeprefix("sqlite:///")).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        backend_store_uri = f"sqlite:///{db}"
    args = [
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        _artifact_uri(artifact_root),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        *extra_args,
    ]
    handle = spawn(
        "mlflow-server",
        # Ends with this process, also on SIGKILL (`mlflow server` runs uvicorn as its child).
        guarded_module_cmd("mlflow", args, group=True),
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log_path=log_path,
        inherit_output=inherit_output,
    )
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    handle.url = f"http://{local}:{port}"
    handle.extra = {"backend_store_uri": backend_store_uri}
    try:
        wait_healthy(handle, f"{handle.url}/health", timeout, expect=b"OK")
    except BaseException:  # Ctrl-C or SIGTERM while it starts: it must not outlive us
        handle.stop()
        raise
    return handle


class _Terminated(Exception):
    pass


def run_mlflow_ui(
    tracking_uri: str | None = None, host: str = "127.0.0.1", port: int = 5000
) -> int:
    """``seqlab ui``: serve the MLflow UI over the project's store until Ctrl-C or SIGTERM.

    ``tracking_uri`` defaults to ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``; a
    local SQLite store gets its artifacts from ``mlruns/artifacts`` beside it. An http(s) URI is
    already a server: it is printed, not started again.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE
    if uri.startswith(("http://", "https://", "databricks")):
        print(f"{uri} is already a tracking server: open it in a browser.")
        return 0
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///")).resolve()
        artifacts: str | Path = db.parent / "artifacts"
    else:
        artifacts = DEFAULT_ARTIFACTS

    previous = signal.getsignal(signal.SIGTERM)

    def _on_term(signum: int, frame: object) -> None:
        raise _Terminated()

    signal.signal(signal.SIGTERM, _on_term)
    handle = None
    try:
        handle = start_mlflow_server(uri, artifacts, host=host, port=port, inherit_output=True)
        print(
            f"MLflow UI at {handle.url}/#/experiments?workflowType=machine_learning  "
            f"(store {handle.extra['backend_store_uri']}); Ctrl-C stops it.",
            flush=True,
        )
        return handle.process.wait()
    except (KeyboardInterrupt, _Terminated):
        return 0
    finally:
        # Stopping the server is the answer to the first signal: a second one must not cut
        # the clean-up short (stop() itself kills what does not exit in time).
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if handle is not None:
                handle.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)


# ---------------------------------------------------------------- Prefect


def start_prefect_server(
    port: int | None = None,
    home: str | Path | None = None,
    host: str = "127.0.0.1",
    *,
    ui: bool = True,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    log_path: str | Path | None = None,
    inherit_output: bool = False,
) -> ManagedProcess:
    """``prefect server start`` with its own ``PREFECT_HOME`` (a temp folder unless given).

    The port is set through ``PREFECT_SERVER_API_HOST``/``PORT`` (``--port`` alone leaves the UI
    pointing at 4200). ``handle.url`` is the server root; ``handle.extra["api_url"]`` is what
    clients and workers need as ``PREFECT_API_URL``.
    """
    port = port or free_port()
    home = Path(home) if home else Path(tempfile.mkdtemp(prefix="prefect-home-"))
    home.mkdir(parents=True, exist_ok=True)
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    server_env = {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        "PREFECT_UI_API_URL": f"http://{local}:{port}/api",
        **(env or {}),
    }
    prefect = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect)] if prefect.exists() else [sys.executable, "-m", "prefect"]
    handle = spawn(
        "prefect-server",
        [*cmd, "server", "start"],
        env=server_env,
        log_path=log_path or home / "server.log",
        inherit_output=inherit_output,
    )
    handle.url = f"http://{local}:{port}"
    handle.extra = {"api_url": f"{handle.url}/api", "home": str(home)}
    wait_healthy(handle, f"{handle.url}/api/health", timeout, expect=b"true")
    return handle
