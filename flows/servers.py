"""Start and stop real MLflow and Prefect servers as subprocesses (for ``seqlab ui``, the
temporary Prefect server of ``seqlab run``/``forecast``, and tests).

Every server runs in its own session (process group), so ``stop()`` can end it together with
whatever it spawned (uvicorn workers, Prefect services) and wait until nothing is left; readiness
is a bounded poll of the server's health endpoint, never a fixed sleep. Output goes to a log file
whose tail is quoted when a server fails to start.
"""

from __future__ import annotations

import atexit
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) for every live, non-zombie process; empty where /proc is missing."""
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
        if fields[0] in ("Z", "X"):
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def process_tree(pid: int, pgid: int | None = None) -> set[int]:
    """Live descendants of ``pid`` plus every member of process group ``pgid`` (pid included)."""
    table = _proc_table()
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
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
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
        cmd,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log_path=log_path,
        inherit_output=inherit_output,
    )
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    handle.url = f"http://{local}:{port}"
    handle.extra = {"backend_store_uri": backend_store_uri}
    wait_healthy(handle, f"{handle.url}/health", timeout, expect=b"OK")
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


# ---------------------------------------------------------------- the temporary Prefect server

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT = 120.0
"""Prefect's own default (20 s) is too short on a loaded 2-core machine."""


class PrefectStartError(ServerError):
    """The temporary Prefect server did not start; ``str()`` is one line that says what to do."""


def startup_timeout() -> float:
    """``$PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``, else 120 s."""
    raw = os.environ.get(STARTUP_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_STARTUP_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise PrefectStartError(
            f"{STARTUP_TIMEOUT_ENV}={raw!r} is not a number of seconds"
        ) from None
    if value <= 0:
        raise PrefectStartError(f"{STARTUP_TIMEOUT_ENV}={raw!r} must be more than 0 seconds")
    return value


def guarded_module_cmd(module: str, args: Sequence[str], grace: float = 10.0) -> list[str]:
    """``python -m module args`` in a process that ends when this one dies, SIGKILL included
    (``seqlab.processes``: a parent-death signal on Linux, a watchdog everywhere).

    Linux's parent-death signal fires when the *thread* that started the child exits: it is
    armed only when this is the main thread (which lasts as long as the process); from another
    thread the watchdog alone guards.
    """
    cmd = [sys.executable, "-m", "seqlab.processes", "--parent", str(os.getpid())]
    cmd += ["--grace", str(grace)]
    if threading.current_thread() is not threading.main_thread():
        cmd.append("--watchdog-only")
    return [*cmd, "-m", module, "--", *args]


def _configured_api_url() -> str | None:
    """The Prefect API this process would use: the env var, else the active profile's."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _ephemeral_enabled() -> bool:
    from prefect.settings import get_current_settings

    return bool(get_current_settings().server.ephemeral.enabled)


def _use_api_url(url: str | None) -> None:
    """Point this process (all threads) and the processes it starts at ``url`` (None: unset)."""
    if url is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:  # its settings were read at import: read them again
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


SIGNALS_DEFERRED = (signal.SIGINT, signal.SIGTERM)
UVICORN_STARTUP_FAILURE = 3  # uvicorn's exit status when it cannot start (e.g. the port is taken)


def start_temporary_prefect_server(timeout: float | None = None) -> ManagedProcess:
    """The server Prefect's ephemeral mode would start (the same uvicorn app and settings, its
    database in ``$PREFECT_HOME``), but one that ends with this process, also on SIGKILL.

    Raises ``PrefectStartError`` (one line) when it is not healthy within ``timeout`` (default:
    ``startup_timeout()``); the server is stopped then.
    """
    timeout = startup_timeout() if timeout is None else timeout
    fd, log = tempfile.mkstemp(prefix="prefect-temporary-server-", suffix=".log")
    os.close(fd)
    env = {
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    deadline = time.monotonic() + timeout
    for _attempt in range(5):
        port = free_port()
        args = ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1"]
        args += ["--port", str(port), "--log-level", "error", "--lifespan", "on"]
        handle = spawn("prefect-server", guarded_module_cmd("uvicorn", args), env, log_path=log)
        handle.url = f"http://127.0.0.1:{port}"
        handle.extra = {"api_url": f"{handle.url}/api", "log": log}
        try:
            while time.monotonic() < deadline and handle.alive():
                try:
                    with urllib.request.urlopen(f"{handle.url}/api/health", timeout=2) as resp:
                        if resp.status == 200:
                            return handle
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.2)
        except BaseException:  # Ctrl-C or SIGTERM while it starts
            handle.stop(timeout=10)
            raise
        if handle.alive() or time.monotonic() >= deadline:
            handle.stop(timeout=10)
            Path(log).unlink(missing_ok=True)
            break
        handle.stop(timeout=10)  # reap what it left
        if handle.process.returncode != UVICORN_STARTUP_FAILURE:
            last = [ln for ln in handle.log_tail(2000).splitlines() if ln.strip()]
            raise PrefectStartError(
                f"the temporary Prefect server exited with status {handle.process.returncode} "
                f"while starting ({last[-1].strip() if last else 'no output'}; log: {log}); "
                "point PREFECT_API_URL at a running `prefect server start` instead"
            )
        # the port was taken between free_port() and the bind: another one
    raise PrefectStartError(
        f"the temporary Prefect server did not start within {timeout:g} s; set "
        f"{STARTUP_TIMEOUT_ENV} higher or point PREFECT_API_URL at a running "
        "`prefect server start`"
    )


def _drain_prefect_services(timeout: float = 10.0) -> None:
    """Send the logs and events Prefect still queues to the server before it stops (they would
    drain at interpreter exit, after it; Prefect's own temporary server stops after them)."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception:  # noqa: BLE001 - best effort: the run's outcome is already decided
            pass


@contextmanager
def temporary_prefect_api(timeout: float | None = None) -> Iterator[str | None]:
    """Within the block, flows in this process (and processes it starts) report to a temporary
    Prefect server that ends with the block, with this process, or on SIGKILL of this process.

    Nothing is started when an API is configured (``PREFECT_API_URL``, env or profile: that
    server is used) or Prefect's ephemeral mode is off (Prefect then says what is missing).
    Yields the API URL in use.
    """
    configured = _configured_api_url()
    if configured or not _ephemeral_enabled():
        yield configured
        return
    handle = start_temporary_prefect_server(timeout)
    atexit.register(handle.stop, 10)  # should the block be left without its finally running
    try:
        _use_api_url(handle.extra["api_url"])
        yield handle.extra["api_url"]
    finally:
        # Stopping the server answers the first Ctrl-C or SIGTERM: a second one must not cut it
        # short (stop() itself kills what does not exit in time).
        main = threading.current_thread() is threading.main_thread()
        previous = {}
        if main:
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS_DEFERRED}
        try:
            _drain_prefect_services()
            _use_api_url(None)
            handle.stop(timeout=10)
            atexit.unregister(handle.stop)
            Path(handle.extra["log"]).unlink(missing_ok=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
