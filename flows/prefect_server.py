"""The temporary Prefect server of ``seqlab run``/``forecast``: the server Prefect's ephemeral
mode would start, but one that ends with this process (also on SIGKILL), with a start-up timeout
and a one-line error when it does not start."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.servers import ManagedProcess, ServerError, free_port, guarded_module_cmd, spawn

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
TEMPORARY_ENV = "SEQLAB_PREFECT_TEMPORARY"
"""Set while flows report to a temporary server (``prefect_server``), which ends with them."""
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


def api_healthy(api_url: str, timeout: float = 3.0) -> bool:
    """Whether a Prefect API answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def watch_api(
    api_url: str, on_gone: Callable[[], None], interval: float = 5.0, misses: int = 3
) -> threading.Thread:
    """A daemon thread that calls ``on_gone`` once the API has failed ``misses`` health checks
    in a row (``seqlab serve`` stops in one line instead of retrying against nothing)."""
    import logging

    prefect_log = logging.getLogger("prefect")

    def watch() -> None:
        missed, level = 0, prefect_log.level
        while missed < misses:
            time.sleep(interval)
            missed = 0 if api_healthy(api_url) else missed + 1
            # While it does not answer, Prefect's own clients log tracebacks of every failed
            # call: muted, so that the one line below is what the user sees.
            prefect_log.setLevel(logging.CRITICAL + 1 if missed else level)
        on_gone()

    thread = threading.Thread(target=watch, name="prefect-api-watch", daemon=True)
    thread.start()
    return thread


def exit_when_gone(url: str, command: str, status: int) -> threading.Thread:
    """End this process with one line and ``status`` once the API at ``url`` stops answering
    (``$SEQLAB_API_WATCH_S`` seconds between checks, 5 by default; 3 misses in a row)."""

    import logging

    make_record = logging.getLogRecordFactory()

    def one_line(*args, **kwargs) -> logging.LogRecord:
        """Prefect's warnings keep their message, not the traceback of a closed connection."""
        record = make_record(*args, **kwargs)
        if record.name.startswith("prefect") and record.levelno < logging.ERROR:
            record.exc_info, record.exc_text = None, None
        return record

    logging.setLogRecordFactory(one_line)

    def gone() -> None:
        print(
            f"error: the Prefect server at {url} stopped answering; {command} stops (start the "
            f"server again, then {command})",
            file=sys.stderr,
            flush=True,
        )
        os._exit(status)

    return watch_api(url, gone, interval=float(os.environ.get("SEQLAB_API_WATCH_S", "5")))


def serve_api_check() -> tuple[str | None, str | None]:
    """``seqlab serve``'s Prefect API before it starts: (one-line error, one-line note)."""
    api = _configured_api_url()
    if api and not api_healthy(api):
        return (
            f"no Prefect server answers at {api} (PREFECT_API_URL): start one with `prefect "
            "server start`, or unset PREFECT_API_URL to serve against a temporary one",
            None,
        )
    if not api:
        return None, (
            "note: PREFECT_API_URL is not set: serving against a temporary Prefect server whose "
            "schedules and history end with this command (`prefect server start` keeps them)"
        )
    return None, None


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
        os.environ[TEMPORARY_ENV] = "1"  # runs link to no Prefect UI that will be gone
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
            os.environ.pop(TEMPORARY_ENV, None)
            handle.stop(timeout=10)
            atexit.unregister(handle.stop)
            Path(handle.extra["log"]).unlink(missing_ok=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
