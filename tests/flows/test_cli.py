"""The real `seqlab` command, as a new user types it: from any folder, errors in one line."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
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
    # The run page compares at a glance: effective values, not None; no link to the temporary
    # Prefect server, which ended with the command.
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    [run] = client.search_runs(
        [client.get_experiment_by_name("seqlab-airpassengers").experiment_id],
        filter_string="tags.`mlflow.parentRunId` IS NULL",
    )
    params = run.data.params
    assert params["registry.model_name"] == "seqlab-airpassengers"
    assert params["tracking.experiment"] == "seqlab-airpassengers"
    assert params["window.val_size"] == "24" and params["eval.step"] == "12"  # 12 + 2 * 6
    assert params["eval.season_length"] == "12"
    assert int(params["final.steps"]) >= 1 and params["final.ensemble_size"] == "5"
    assert "prefect.flow_run_id" in run.data.tags
    assert "prefect.flow_run_url" not in run.data.tags


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


# ------------------------------------------------- forecasting, serving, the registry commands

PROMO_MODEL = "promo-model"


def _promo_frame() -> pd.DataFrame:
    """AirPassengers with a known-future covariate (a July promotion)."""
    df = pd.read_csv(AIR)
    df["promo"] = (pd.to_datetime(df["month"]).dt.month == 7).astype(int)
    return df


def _future_rows(n: int = 12) -> pd.DataFrame:
    months = pd.date_range("1961-01-01", periods=n, freq="MS")
    return pd.DataFrame(
        {"month": months.strftime("%Y-%m-%d"), "passengers": np.nan, "promo": months.month == 7}
    ).astype({"promo": int})


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> Path:
    """One champion with a known-future covariate, trained once by the real `seqlab run`: the
    folder holding its store (mlruns/mlflow.db) and its data (promo.csv)."""
    home = tmp_path_factory.mktemp("champion")
    _promo_frame().to_csv(home / "promo.csv", index=False)
    args = [
        *TINY,
        "registry.require_beat_baseline=false",
        f"data.source={home / 'promo.csv'}",
        "data.future_covariates=[promo]",
        f"registry.model_name={PROMO_MODEL}",
    ]
    out = seqlab(["run", *args], home)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"model version : {PROMO_MODEL} v1  alias: challenger, champion" in out.stdout
    return home


def _store(home: Path) -> str:
    return f"sqlite:///{home}/mlruns/mlflow.db"


def _forecast_input(tmp: Path, case: str) -> str:
    df = _promo_frame()
    if case == "missing_file":
        return "history.csv"
    if case == "no_future_rows":
        pass  # the model reads promo over the horizon: the file stops at the history
    elif case == "too_short":
        df = pd.concat([df.tail(10), _future_rows()], ignore_index=True)
    elif case == "renamed_column":
        df = pd.concat([df, _future_rows()], ignore_index=True)
        df = df.rename(columns={"passengers": "pax"})
    df.to_csv(tmp / f"{case}.csv", index=False)
    return f"{case}.csv"


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("no_future_rows", "lacks future values of promo at 1961-01-01"),
        ("too_short", "has 10 points of history; the model reads the last 12"),
        ("renamed_column", "--input lacks column 'passengers' (its target)"),
        ("missing_file", "--input file not found: history.csv"),
    ],
)
def test_forecast_mistakes_fail_in_one_line_before_any_server(
    champion, tmp_path, case, fragment
) -> None:
    path = _forecast_input(tmp_path, case)
    args = ["forecast", PROMO_MODEL, "-i", path, "-o", "fc.csv", "--tracking-uri"]
    out = seqlab([*args, _store(champion)], tmp_path, timeout=180)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert "Traceback" not in out.stdout + out.stderr and "Downloading" not in out.stderr
    assert not (tmp_path / ".prefect").exists()  # no Prefect server was started
    assert not (tmp_path / "fc.csv").exists()


def test_forecast_writes_the_users_own_columns(champion, tmp_path) -> None:
    pd.concat([_promo_frame(), _future_rows()]).to_csv(tmp_path / "h.csv", index=False)
    args = ["forecast", PROMO_MODEL, "-i", "h.csv", "-o", "fc.csv"]
    out = seqlab([*args, "--tracking-uri", _store(champion)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wrote 12 rows to fc.csv with promo-model v1" in out.stdout
    noise = ("Downloading artifacts", "Traceback", "Task run", "UserWarning")
    assert not [n for n in noise if n in out.stdout + out.stderr], out.stderr[-2000:]
    fc = pd.read_csv(tmp_path / "fc.csv")
    # one series: no id column; the point forecast's calibrated intervals beside it
    assert list(fc.columns)[:2] == ["month", "passengers"]
    assert (
        {"q0.1", "q0.9"}
        <= set(fc.columns)
        <= {"month", "passengers", "q0.025", "q0.1", "q0.9", "q0.975"}
    )
    assert fc["month"].tolist() == _future_rows()["month"].tolist()
    assert np.isfinite(fc["passengers"]).all()


def test_models_lists_each_versions_cell_and_key_parameters(champion, tmp_path) -> None:
    out = seqlab(["models", PROMO_MODEL, "--tracking-uri", _store(champion)], tmp_path, 120)
    assert out.returncode == 0, out.stderr[-2000:]
    header = next(line for line in out.stdout.splitlines() if line.startswith("┃ version"))
    assert [c.strip() for c in header.strip("┃ ").split("┃")][:7] == [
        "version",
        "aliases",
        "created",
        "cell",
        "hidden",
        "layers",
        "input",
    ]
    row = next(line for line in out.stdout.splitlines() if "champion" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][3:7] == ["gru", "8", "1", "12"]


def test_rollback_echoes_the_users_reason(champion, tmp_path) -> None:
    client = MlflowClient(_store(champion), registry_uri=_store(champion))
    v1 = client.get_model_version(PROMO_MODEL, "1")
    client.create_model_version(PROMO_MODEL, v1.source, run_id=v1.run_id)  # a second version
    store = ["--tracking-uri", _store(champion)]
    promote = ["promote", PROMO_MODEL, "--version", "2", "--reason", "try v2"]
    assert seqlab([*promote, *store], tmp_path, 120).returncode == 0
    out = seqlab(
        ["rollback", PROMO_MODEL, "--reason", "v2 drifts on new data", *store], tmp_path, 120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"champion of {PROMO_MODEL}: v2 -> v1 (v2 drifts on new data)"
    assert str(client.get_model_version_by_alias(PROMO_MODEL, "champion").version) == "1"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["no-such-model"], "no registered model named 'no-such-model'"),
        ([PROMO_MODEL, "--alias", "production"], "has no alias @production"),
    ],
)
def test_serve_model_refuses_an_unknown_model_or_alias_in_one_line(
    champion, tmp_path, args, fragment
) -> None:
    out = seqlab(["serve-model", *args, "--tracking-uri", _store(champion)], tmp_path, 120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def scoring_server(champion, tmp_path_factory):
    """`seqlab serve-model` on a free port (the store set by MLFLOW_TRACKING_URI, as a user
    would), stopped with SIGTERM at the end: nothing it started may be left."""
    from flows.servers import free_port, process_tree

    cwd = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**cli_env(cwd), "MLFLOW_TRACKING_URI": _store(champion)}
    log = open(cwd / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve-model", PROMO_MODEL, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (cwd / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (cwd / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield url
        tree = process_tree(proc.pid, proc.pid)
        assert len(tree) > 1  # seqlab, mlflow models serve, uvicorn
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        end = time.monotonic() + 10
        while time.monotonic() < end and any(os.path.exists(f"/proc/{p}") for p in tree):
            time.sleep(0.1)
        left = process_tree(proc.pid, proc.pid) | {
            p for p in tree if os.path.exists(f"/proc/{p}/stat")
        }
        assert not left, f"processes left after SIGTERM: {left}"
    finally:
        if proc.poll() is None:  # a failed assertion above: leave nothing running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def test_serve_model_answers_the_readme_request_with_the_models_forecast(
    champion, scoring_server
) -> None:
    history = pd.concat([_promo_frame().tail(24), _future_rows()], ignore_index=True)
    split = json.loads(history.to_json(orient="split", index=False))  # nulls ahead: no target
    status, body = _post(f"{scoring_server}/invocations", {"dataframe_split": split})
    assert status == 200, body
    served = pd.DataFrame(body["predictions"])
    assert len(served) == 12 and served["ds"].iloc[0].startswith("1961-01-01")

    from seqlab.registry import serving, tracking

    local = serving.load_forecaster(tracking.client_for(_store(champion)), PROMO_MODEL, "1")
    expected = serving.predict_checked(local, history)
    np.testing.assert_allclose(served["forecast"], expected["forecast"], rtol=1e-5)
    records = {"dataframe_records": history.replace({np.nan: None}).to_dict("records")}
    status, again = _post(f"{scoring_server}/invocations", records)
    assert status == 200 and again == body


def test_a_bad_request_gets_the_one_line_reason(scoring_server) -> None:
    history = pd.concat([_promo_frame().tail(5), _future_rows()], ignore_index=True)
    split = json.loads(history.to_json(orient="split", index=False))
    status, body = _post(f"{scoring_server}/invocations", {"dataframe_split": split})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    # MLflow's scoring server puts the input before the reason: the reason is the last line
    reason = body["message"].splitlines()[-1]
    assert reason.startswith("Error: series") and "provide at least 12" in reason
