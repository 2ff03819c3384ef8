"""The MLflow UI, as a user sees it after one pipeline run (headless chromium).

MLflow 3.17's UI opens experiments in its GenAI overview; the runs table is
``#/experiments/<id>/runs?workflowType=machine_learning``, where a parent run's trials are folded
under a "+" button in its name cell. Screenshots go to the test's tmp folder and ``outputs/e2e/``.
"""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MODEL = "seqlab-airpassengers"
WAIT_S = 60


def _wait(browser, condition, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        pytest.fail(f"timed out after {timeout} s waiting for {what} at {browser.current_url}")


def _run_link(run_id: str):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, f'a[href$="/runs/{run_id}"]'


def _runs(finished_pipeline):
    from mlflow.tracking import MlflowClient

    uri = finished_pipeline["tracking_uri"]
    client = MlflowClient(uri, registry_uri=uri)
    parent = client.get_run(finished_pipeline["summary"]["run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    return parent, children


def test_experiment_page_lists_parent_run_and_nested_trials(
    browser, mlflow_ui, finished_pipeline, screenshot
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    parent, children = _runs(finished_pipeline)
    assert len(children) == 2
    exp_id = parent.info.experiment_id
    browser.get(f"{mlflow_ui.url}/#/experiments/{exp_id}/runs?workflowType=machine_learning")

    link = _wait(
        browser,
        EC.visibility_of_element_located(_run_link(parent.info.run_id)),
        "the parent run in the runs table",
    )
    assert link.text == parent.info.run_name

    def trials_visible(driver) -> bool:
        return all(driver.find_elements(*_run_link(c.info.run_id)) for c in children)

    if not trials_visible(browser):
        # Nested runs are folded under the parent: its name cell has the expand ("+") button.
        row = link.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
        expand = "button[data-component-id*='runnamecellrenderer']"
        row.find_element(By.CSS_SELECTOR, expand).click()
    _wait(browser, trials_visible, "the nested trial runs after expanding the parent")
    names = sorted(browser.find_element(*_run_link(c.info.run_id)).text for c in children)
    # each trial's outcome in its name: the status column says FINISHED for a pruned one too
    assert [n[:9] for n in names] == ["trial-000", "trial-001"], names
    assert all(re.fullmatch(r"trial-00\d-(pruned-|cut-)?val\d+\.\d{3}", n) for n in names), names
    shot = screenshot("experiment-runs")
    assert shot.stat().st_size > 10_000


def test_registered_model_page_shows_champion_alias(
    browser, mlflow_ui, finished_pipeline, screenshot
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    summary = finished_pipeline["summary"]
    assert summary["version"] == "1"
    browser.get(f"{mlflow_ui.url}/#/models/{MODEL}")
    title = f"//h2[contains(., '{MODEL}')] | //*[normalize-space(text())='{MODEL}']"
    _wait(
        browser, EC.visibility_of_element_located((By.XPATH, title)), "the registered model's title"
    )
    version = _wait(
        browser,
        EC.visibility_of_element_located((By.XPATH, "//a[normalize-space(.)='Version 1']")),
        "version 1 in the versions table",
    )
    row = version.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
    # Aliases render as "@ champion" tags in the version's row.
    aliases = set(re.findall(r"@\s*([\w-]+)", row.text))
    assert {"champion", "challenger"} <= aliases, row.text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", version)
    shot = screenshot("registered-model")
    assert shot.stat().st_size > 10_000


def serving_port(port: int) -> list[str]:
    """Command lines of live processes started with ``--port PORT`` (by /proc, so a server in a
    session of its own, re-parented to init, is found too)."""
    from pathlib import Path

    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--port" in args and args.index(b"--port") + 1 < len(args):
            if args[args.index(b"--port") + 1] == str(port).encode():
                found.append(b" ".join(args).decode(errors="replace"))
    return found


@pytest.mark.parametrize(
    ("sig", "when"),
    [("SIGTERM", "ready"), ("SIGINT", "ready"), ("SIGINT", "starting"), ("SIGKILL", "ready")],
)
def test_seqlab_ui_serves_the_store_and_stops_cleanly(tmp_path, sig, when) -> None:
    """``seqlab ui``: ready on /health, then SIGTERM or Ctrl-C ends it and its server, status 0;
    also a Ctrl-C while the server starts, and a SIGKILL of `seqlab ui` alone (the server's guard
    ends it). Leftovers are looked for by port: the server runs in a session of its own."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from flows import servers

    port = servers.free_port()
    # A shell that starts a job in the background (`make e2e &`) leaves SIGINT ignored, and an
    # ignored signal is inherited: give the child a terminal's default Ctrl-C.
    inherited = signal.getsignal(signal.SIGINT)
    if inherited == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    ui = servers.spawn(
        "seqlab-ui",
        [
            sys.executable,
            "-m",
            "flows.cli",
            "ui",
            "--port",
            str(port),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        ],
        cwd=tmp_path,
        log_path=tmp_path / "ui.log",
    )
    signal.signal(signal.SIGINT, inherited)
    try:
        if when == "starting":  # the server process is up, not yet answering
            end = time.monotonic() + 120
            while len(serving_port(port)) < 2 and time.monotonic() < end:
                time.sleep(0.05)
            assert len(serving_port(port)) >= 2, ui.log_tail()  # seqlab ui + its server
        else:
            servers.wait_healthy(ui, f"http://127.0.0.1:{port}/health", 120, expect=b"OK")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                assert b"mlflow" in resp.read().lower()
            assert len(ui.leftovers()) >= 2  # seqlab ui + mlflow server (+ its worker)
            assert (tmp_path / "mlruns" / "artifacts").is_dir()
        # Only the `seqlab ui` process gets the signal, as from `kill` or a terminal's Ctrl-C.
        ui.process.send_signal(getattr(signal, sig))
        ui.process.wait(timeout=30)
        expected = -signal.SIGKILL if sig == "SIGKILL" else 0
        assert ui.process.returncode == expected, ui.log_tail()
        end = time.monotonic() + 30
        while serving_port(port) and time.monotonic() < end:
            time.sleep(0.1)
        assert not serving_port(port), f"left behind: {serving_port(port)}\n{ui.log_tail()}"
        assert not ui.leftovers()
    finally:
        ui.stop()
        # never leave a server behind, even when the test fails
        subprocess.run(["pkill", "-f", f"--port {port}( |$)"], check=False)


def test_run_page_shows_the_summary_and_backtest_metrics(
    browser, mlflow_ui, finished_pipeline, screenshot
) -> None:
    """The parent run reads well: its name has the cell and score, its description the table of
    model vs baselines, its metrics the backtest means."""
    parent, _ = _runs(finished_pipeline)
    assert re.match(r"(lstm|gru)-mase\d+\.\d{3}-", parent.info.run_name)
    browser.get(
        f"{mlflow_ui.url}/#/experiments/{parent.info.experiment_id}/runs/"
        f"{parent.info.run_id}?workflowType=machine_learning"
    )
    _wait(
        browser,
        lambda d: "seasonal_naive" in d.find_element("tag name", "body").text,
        "the run description with the model vs baselines table",
    )
    _wait(
        browser,
        lambda d: "test/mase" in d.find_element("tag name", "body").text,
        "the test/mase metric on the run page",
    )
    text = browser.find_element("tag name", "body").text
    assert parent.info.run_name in text
    assert "backtest window" in text
    shot = screenshot("run-overview")
    assert shot.stat().st_size > 10_000


def test_model_page_shows_the_audit_trail(
    browser, mlflow_ui, finished_pipeline, screenshot
) -> None:
    browser.get(f"{mlflow_ui.url}/#/models/{MODEL}")
    _wait(
        browser,
        lambda d: "Alias history" in d.find_element("tag name", "body").text,
        "the alias history in the registered model's description",
    )
    text = browser.find_element("tag name", "body").text
    assert "champion" in text and "automatic" in text
    # an aligned table: columns apart, not run together as the UI's Markdown tables render them
    assert re.search(r"^\s*\d+\s+\d{4}-\d\d-\d\dT\S+\s+champion\s", text, re.M), text
    shot = screenshot("registered-model-audit")
    assert shot.stat().st_size > 10_000


def test_version_page_shows_the_gates_decision_per_window(
    browser, mlflow_ui, finished_pipeline, screenshot
) -> None:
    browser.get(f"{mlflow_ui.url}/#/models/{MODEL}/versions/1")
    _wait(
        browser,
        lambda d: "Promoted to champion" in d.find_element("tag name", "body").text,
        "the gate's decision in the version's description",
    )
    text = browser.find_element("tag name", "body").text
    # window, cutoff and score apart ("1958-01-01  0.7644", never "1958-01-010.7644")
    assert re.search(r"^\s*0\s+\d{4}-\d\d-\d\d\s+\d+\.\d{4}\s", text, re.M), text
    shot = screenshot("model-version-decision")
    assert shot.stat().st_size > 10_000


def test_run_params_hold_the_values_the_run_used(
    browser, mlflow_ui, finished_pipeline, screenshot
) -> None:
    from selenium.webdriver.common.by import By

    parent, _ = _runs(finished_pipeline)
    params = parent.data.params
    assert params["registry.model_name"] == MODEL and params["window.val_size"] != "None"
    assert int(params["final.steps"]) > 0 and params["window.residual_effective"]
    browser.get(
        f"{mlflow_ui.url}/#/experiments/{parent.info.experiment_id}/runs/"
        f"{parent.info.run_id}?workflowType=machine_learning"
    )
    _wait(
        browser,
        lambda d: "final.steps" in d.find_element(By.TAG_NAME, "body").text,
        "the parameters table with final.steps",
    )
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "window.residual_effective" in text
    shot = screenshot("run-parameters")
    assert shot.stat().st_size > 10_000
