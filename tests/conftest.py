"""Shared fixtures: tiny data and configs, temporary MLflow/Optuna stores, one Prefect harness."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = str(REPO / "conf" / "default.yaml")
LANES = ("unit", "components", "flows")
"""Test folders by kind; each test gets its folder's marker (``-m unit``, ``-m "not flows"``)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(tests).parts
        if len(parts) > 1 and parts[0] in LANES:
            item.add_marker(parts[0])


def sine_frame(
    n: int = 96, series: int = 1, freq: str = "D", seed: int = 0, covariate: bool = False
) -> pd.DataFrame:
    """A small seasonal series (period 7) with trend and noise, long format."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(series):
        t = np.arange(n)
        y = 10 + s * 5 + 0.05 * t + 2 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.2, n)
        df = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=n, freq=freq), "y": y})
        if series > 1:
            df.insert(0, "store", f"s{s}")
        if covariate:
            df["temp"] = np.cos(2 * np.pi * t / 7)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def sales_frame(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "store": f"s{i}",
                "date": pd.date_range("2024-01-01", periods=n),
                "promo": rng.integers(0, 2, n),
                "units": rng.poisson(20, n),
            }
        )
        for i in range(2)
    ]
    return pd.concat(frames, ignore_index=True)


def sales_with_a_bad_value(name: str = "sales") -> pd.DataFrame:
    """Monthly sales whose column holds one value that is not a number (read as text)."""
    df = sine_frame(n=60, freq="MS").rename(columns={"ds": "date", "y": name})
    df["promo"] = (df.index % 4 == 0).astype(int)
    df[name] = df[name].round(1).astype(str)
    df.loc[41, name] = "12,5"  # a decimal comma: the whole column reads as text
    return df


def promo_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A weekly sine plus 3 on promotion days, which fall at random: unpredictable from the past."""
    df = sine_frame(n=n, covariate=True)
    df["promo"] = (np.random.default_rng(seed).random(n) < 0.3).astype(float)
    df["y"] = df["y"] + 3 * df["promo"]
    return df


def promo_config(**extra: object):
    base = {
        "data.source": "x",
        "data.time_column": "ds",
        "data.target": "y",
        "data.freq": "D",
        "data.covariates": ["temp"],
        "data.future_covariates": ["promo"],
        "window.input_size": 14,
        "window.horizon": 7,
        "window.transform": "none",
        "window.residual": "none",  # what the covariates add, not seasonal naive's correction
        "model.hidden_size": 16,
        "train.device": "cpu",
        "eval.season_length": 7,
    }
    from seqlab.config import load_config

    return load_config(None, {**base, **extra})


def train_config(**over: object):
    """A small daily-sine configuration for training tests (dotted overrides change any key):
    input 14, horizon 7, a 16-unit LSTM, 30 epochs, no early stopping, residual none."""
    from seqlab.config import PipelineConfig, with_overrides

    base = {
        "data.source": "x",
        "data.time_column": "ds",
        "data.target": "y",
        "window.input_size": 14,
        "window.horizon": 7,
        "model.hidden_size": 16,
        "train.max_epochs": 30,
        "train.patience": None,
        "train.lr": 0.01,
        "train.device": "cpu",
        "window.residual": "none",  # the network alone learns here (residual: its own tests)
    }
    base.update(over)
    return with_overrides(PipelineConfig(), base)


def tiny_overrides(tmp: Path, **extra: object) -> list[str]:
    """Overrides that make the whole pipeline run in seconds on CPU, with stores under ``tmp``."""
    base = {
        "tune.n_trials": 2,
        "tune.n_startup_trials": 1,
        "tune.search_space": "{model.cell: {type: categorical, choices: [lstm, gru]}}",
        "train.max_epochs": 4,
        "train.patience": None,
        "model.hidden_size": 8,
        "window.input_size": 12,
        "tune.storage": f"sqlite:///{tmp}/optuna.db",
        "tracking.tracking_uri": f"sqlite:///{tmp}/mlflow.db",
        "tracking.artifact_location": str(tmp / "artifacts"),
        "eval.plot": True,
    }
    base.update(extra)
    return [f"{k}={'null' if v is None else v}" for k, v in base.items()]


def write_sine_csv(path: Path, n: int = 90, **kwargs: object) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sine_frame(n=n, **kwargs).to_csv(path, index=False)  # type: ignore[arg-type]
    return path


SPACE = {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}


def make_tiny_config(tmp: Path, **overrides: object):
    """The one tiny configuration of the test suite: a daily sine CSV under ``tmp``, a 4-unit GRU,
    3 epochs, stores under ``tmp``; dotted ``overrides`` change any key (``tune.n_trials=4``)."""
    from seqlab.config import apply_overrides, build_config

    base = {
        "data": {
            "source": str(write_sine_csv(Path(tmp) / "sine.csv")),
            "time_column": "ds",
            "target": "y",
            "freq": "D",
        },
        "window": {"input_size": 14, "horizon": 7},
        "model": {"cell": "gru", "hidden_size": 4, "ensemble_size": 1},  # ensembles: own tests
        "train": {"max_epochs": 3, "patience": None, "device": "cpu", "num_threads": 1},
        "tune": {
            "n_trials": 3,
            "storage": f"sqlite:///{tmp}/optuna.db",
            "n_startup_trials": 2,
            "workers": 1,
            "search_space": SPACE,
        },
        "eval": {"backtest_windows": 2},
        "tracking": {
            "tracking_uri": f"sqlite:///{tmp}/mlflow.db",
            "artifact_location": str(Path(tmp) / "artifacts"),
        },
    }
    return build_config(apply_overrides(base, dict(overrides)))


@pytest.fixture
def tiny_config(tmp_path: Path):
    """``tiny_config(**dotted_overrides)`` -> a validated tiny PipelineConfig."""

    def make(**overrides: object):
        return make_tiny_config(tmp_path, **overrides)

    return make


@pytest.fixture
def sine_csv(tmp_path: Path) -> Path:
    path = tmp_path / "sine.csv"
    sine_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (each harness costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


PG_SERVER = os.environ.get("SEQLAB_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database (dropped afterwards); skips when the server is unreachable."""
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(f"{PG_SERVER}/postgres", connect_timeout=3)
    except psycopg2.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}: {str(e).strip()}")
    admin.autocommit = True
    name = f"seqlab_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"
    finally:
        with admin.cursor() as cur:  # pooled connections of this process may still be open
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def cli_env(tmp: Path) -> dict[str, str]:
    """Environment for a real `seqlab` subprocess: quiet, its own Prefect home under ``tmp``,
    no inherited servers (a temporary Prefect server, MLflow in ``tmp/mlruns``)."""
    from flows import servers

    env = {
        **os.environ,
        **servers.QUIET_ENV,
        "PREFECT_HOME": str(tmp / ".prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    for key in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)
    return env


FAULT_WORKER = str(Path(__file__).resolve().parent / "fault_worker.py")
"""A tuning worker process with injected faults (see tests/fault_worker.py)."""


def worker_env() -> dict[str, str]:
    """Environment for a tuning worker subprocess: quiet, one torch thread."""
    return {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
        "OMP_NUM_THREADS": "1",
    }


_OPEN_STORAGE = """
import sys, time
from pathlib import Path
from seqlab.tuning.storage import make_storage
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.005)
make_storage(sys.argv[1]).get_all_studies()
"""


def open_storage_at_once(url: str, tmp: Path, n: int = 6) -> list[tuple[int, str]]:
    """``n`` processes open a new Optuna storage at the same moment (after all have imported);
    returns each one's exit code and stderr."""
    go = tmp / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_STORAGE, url, str(tmp / f"ready{i}"), str(go)],
            env=worker_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp / f"ready{i}").exists() for i in range(n)):
        assert time.monotonic() < deadline, "the storage processes never got ready"
        time.sleep(0.05)
    go.touch()
    return [(p.wait(120), p.stderr.read()[-1500:]) for p in procs]
