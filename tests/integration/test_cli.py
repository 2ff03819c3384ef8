"""The real `seqlab` command, as a new user types it: from any folder, errors in one line."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import cli_env

pytestmark = pytest.mark.integration
AIR = Path(__file__).parents[2] / "src/seqlab/datasets/airpassengers.csv"
TINY = [
    "tune.n_trials=1",
    "train.max_epochs=3",
    "model.hidden_size=8",
    "window.input_size=12",
    "tune.search_space={model.cell: {type: categorical, choices: [gru]}}",
]


def seqlab(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = cli_env(cwd)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_from_any_folder_with_the_built_in_defaults(tmp_path) -> None:
    out = seqlab(["run", *TINY], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "mlruns" / "mlflow.db").exists()  # state lands where the user is
    assert "mean over 3 backtest window(s)" in out.stdout and "seasonal_naive" in out.stdout
    assert "model version : seqlab-airpassengers v1" in out.stdout
    # A console that reads well: no third-party noise, and the summary lines unwrapped.
    noise = ("Downloading artifacts", "CloudPickle", "Traceback", "Task run", "UserWarning")
    assert not [n for n in noise if n in out.stdout + out.stderr], out.stderr[-2000:]
    assert any(
        line.startswith("promotion     : ") and "seasonal naive" in line
        for line in out.stdout.splitlines()
    )


def _bad_csv(tmp: Path, case: str) -> str:
    df = pd.read_csv(AIR)
    if case == "missing_column":
        df = df.rename(columns={"passengers": "pax"})
    elif case == "gap":
        df = df.drop(index=[50])
    elif case == "too_short":
        df = df.head(40)
    elif case == "log_of_zero":
        df.loc[10, "passengers"] = 0
    path = tmp / f"{case}.csv"
    df.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing_column", "column 'passengers' (data.target) not found"),
        ("gap", "missing timestamp"),
        ("too_short", "needs at least"),
        ("log_of_zero", "window.transform=log needs a positive target"),
        ("missing_file", "data file not found"),
        ("bad_key", "model.cel: unknown key"),
    ],
)
def test_user_errors_fail_before_any_server_in_one_line(tmp_path, case, fragment) -> None:
    if case == "missing_file":
        args = ["data.source=nope.csv"]
    elif case == "bad_key":
        args = ["model.cel=gru"]
    else:
        args = [f"data.source={_bad_csv(tmp_path, case)}"]
    out = seqlab(["run", *TINY, *args], tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert "Traceback" not in out.stdout
    assert not (tmp_path / "mlruns").exists()  # nothing logged, nothing registered
    assert not (tmp_path / ".prefect").exists()  # no Prefect server was started


def test_init_through_the_real_command(tmp_path) -> None:
    df = pd.read_csv(AIR).rename(columns={"month": "date", "passengers": "sales"})
    df.to_csv(tmp_path / "sales.csv", index=False)
    out = seqlab(["init", "proj", "--data", "sales.csv"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wrote proj/seqlab.yaml" in out.stdout
    text = (tmp_path / "proj" / "seqlab.yaml").read_text()
    assert "time_column: date" in text and "target: sales" in text and "freq: MS" in text
    again = seqlab(["init", "proj", "--data", "sales.csv"], tmp_path, timeout=120)
    assert again.returncode == 2 and again.stderr.startswith("error: ")


def test_a_diverging_training_ends_in_one_line_and_the_flow_log_keeps_the_traceback(
    tmp_path,
) -> None:
    args = ["tune.n_trials=0", "train.lr=1e30", "train.loss=mse", "model.ensemble_size=1"]
    out = seqlab(["run", *TINY, *args], tmp_path)
    assert out.returncode == 3, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: loss became ") and "lower train.lr" in lines[-1]
    assert "Traceback" not in out.stdout + out.stderr  # the console says what to do, briefly
    assert len(lines) <= 4, lines  # Prefect's one-line task/flow failures, then the error
    with sqlite3.connect(tmp_path / ".prefect" / "prefect.db") as db:  # the flow run's own log
        logged = [m for (m,) in db.execute("SELECT message FROM log") if "NonFinite" in m]
    assert any("Traceback" in m for m in logged), logged
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    [run] = client.search_runs(
        [client.get_experiment_by_name("seqlab-airpassengers").experiment_id]
    )
    assert run.info.status == "FAILED"
    assert client.search_registered_models() == []  # nothing registered, no alias moved
