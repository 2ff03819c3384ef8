"""What the ``seqlab`` commands share: exit statuses, one-line errors, quiet logs, the temporary
Prefect server of a run, progress bars, and the helpers of ``forecast``, ``models`` and
``serve-model``."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import typer

EXIT_USER_ERROR, EXIT_TRAINING_ERROR, EXIT_SERVER_ERROR = 2, 3, 4


INTERRUPT_GRACE_S = 30.0


def interrupt_on_sigterm(grace: float = INTERRUPT_GRACE_S) -> None:
    """SIGTERM and Ctrl-C end the command like a KeyboardInterrupt (cleanly: runs closed, the
    temporary server stopped), and within ``grace`` seconds in any case: an interrupt that lands
    inside Prefect's own engine calls can be absorbed there while the flow goes on, so a timer
    armed by the first signal exits (status 130) if the command is still running then. What it
    leaves (a run RUNNING) the next run repairs; the server's guard ends it with this process."""
    import os
    import signal
    import threading

    armed: list[threading.Timer] = []

    def give_up() -> None:
        typer.echo(f"error: interrupted; still running after {grace:g} s, stopping now", err=True)
        os._exit(130)

    def handler(signum: int, frame: object) -> None:
        if not armed:
            armed.append(threading.Timer(grace, give_up))
            armed[0].daemon = True
            armed[0].start()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def prefect_server() -> Iterator[str | None]:
    """The Prefect API a flow run reports to (yielded): ``PREFECT_API_URL`` when set, else a
    temporary server that ends with this command, also when it is SIGKILLed. It gets
    ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (default 120 s) to start; if it does not,
    one line says what to do (exit status 4)."""
    from flows.prefect_server import PrefectStartError, temporary_prefect_api

    stack = ExitStack()
    try:
        url = stack.enter_context(temporary_prefect_api())
    except PrefectStartError as e:
        fail(str(e), EXIT_SERVER_ERROR)
    with stack:
        yield url


def user_errors() -> tuple[type[BaseException], ...]:
    from seqlab.errors import ConfigError, DataError, RegistryError

    return ConfigError, DataError, RegistryError


def split_config_args(args: list[str] | None) -> tuple[str | None, list[str]]:
    """``[CONFIG] [key=value ...]``; no config means the shipped defaults (seqlab:default.yaml)."""
    args = list(args or [])
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def quiet(verbose: bool) -> None:
    """Normal runs show seqlab's progress and summary; --verbose shows every library's logs."""
    if verbose:
        return
    for key, value in {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # "Downloading artifacts" bars
        "MLFLOW_LOGGING_LEVEL": "ERROR",  # CloudPickle and signature notices
        "PREFECT_LOGGING_LEVEL": "WARNING",  # per-task state lines (kept in --verbose)
        "SEQLAB_LOG_LEVEL": "WARNING",  # trial lines: the progress bar shows them
    }.items():
        os.environ.setdefault(key, value)
    import warnings

    for module in ("mlflow", "optuna", "pydantic", "torch", "sqlalchemy", "alembic"):
        warnings.filterwarnings("ignore", module=module)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created ..."


class WithoutTraceback(logging.Formatter):
    """Formats as ``inner`` does, leaving out the traceback of the ``expected`` errors."""

    def __init__(self, inner: logging.Formatter, expected: tuple[type[BaseException], ...]):
        super().__init__()
        self.inner, self.expected = inner, expected

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            record = copy.copy(record)  # other handlers (Prefect's API log) keep the traceback
            record.exc_info, record.exc_text = None, None
        return self.inner.format(record)


def brief_console_errors(expected: tuple[type[BaseException], ...]) -> None:
    """Console log lines of failures a user fixes (bad config or data, a training that
    diverged) come without Prefect's traceback: the run's last line, ``error: ...``, says what to
    do. The flow run's logs in Prefect keep the traceback; ``--verbose`` shows it here too."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and handler.formatter is not None:
            if not isinstance(handler.formatter, WithoutTraceback):
                handler.setFormatter(WithoutTraceback(handler.formatter, expected))


class RichProgress:
    """A progress bar per reported task (trials, epochs of the running trial)."""

    def __init__(self, progress) -> None:
        self.progress, self.tasks = progress, {}

    def update(self, task: str, completed: int, total: int, info: str = "") -> None:
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total)
        self.progress.update(
            self.tasks[task], completed=completed, total=total, description=f"{task:<7} {info}"
        )


def mlflow_client(tracking_uri: str | None):
    from seqlab.registry.tracking import client_for, resolve_tracking_uri

    return client_for(resolve_tracking_uri(tracking_uri))


def check_forecast_inputs(
    model: str,
    input: str,
    output: str,
    alias: str,
    version: str | None,
    tracking_uri: str | None,
    encoding: str | None,
) -> None:
    """Everything `seqlab forecast` can get wrong, checked before any Prefect server starts: the
    model, alias or version, --output's type, and --input (exists, reads, has the columns the
    model needs, enough history per series, future rows of known-future covariates)."""
    from flows.forecast_checks import check_history, check_input_path, check_output, read_history

    try:
        check_output(output)
        from seqlab.registry import resolve_version, serving

        client = mlflow_client(tracking_uri)
        resolved = resolve_version(client, model, None if version else alias, version)
        check_input_path(input)  # before loading the model (torch)
        loaded = serving.load_forecaster(client, model, resolved["version"])
        meta = getattr(loaded.unwrap_python_model(), "meta", None) or {}
        history = read_history(input, encoding or serving.data_encoding(meta))
        check_history(loaded, history)
    except user_errors() as e:
        fail(str(e))


KEY_PARAMS = {  # `seqlab models` column -> the training run's param (the trained values)
    "cell": "model.cell",
    "hidden": "model.hidden_size",
    "layers": "model.num_layers",
    "input": "window.input_size",
}


def key_params(client, run_id: str | None) -> dict[str, str]:
    """A version's cell, hidden size, layers and input size, from its training run's params
    (tuned values included: the run logs what was trained); blanks when the run is gone."""
    params: dict[str, str] = {}
    if run_id:
        from mlflow.exceptions import MlflowException

        try:
            params = client.get_run(run_id).data.params
        except MlflowException:
            params = {}
    return {col: params.get(key, "") for col, key in KEY_PARAMS.items()}


def port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def serve_until_stopped(cmd: list[str], env: dict[str, str], banner: str) -> None:
    """Run a server in its own process group until it exits, or until Ctrl-C/SIGTERM here:
    then it is stopped with everything it spawned (no orphans), and this exits 0."""
    import signal

    from flows.servers import spawn

    class _Stop(Exception):
        pass

    def _on_signal(signum: int, frame: object) -> None:
        raise _Stop()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    handle = None
    try:
        handle = spawn("mlflow-models-serve", cmd, env=env, inherit_output=True)
        typer.echo(banner)
        code = handle.process.wait()
    except _Stop:
        code = 0
    finally:
        for s in previous:  # a second signal must not cut the clean-up short
            signal.signal(s, signal.SIG_IGN)
        if handle is not None:
            handle.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    if code:
        fail(f"the scoring server exited with status {code} (its log is above)", code)
