"""Browser fixtures: a finished tiny pipeline, the MLflow UI over its store, headless chromium.

Debian's chromium and chromedriver (``make e2e`` installs them); the driver path is given to
selenium explicitly, so selenium-manager never looks for or downloads anything. Every test is
skipped cleanly when either binary is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows import servers

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "conf" / "default.yaml")
SHOTS_COPY = REPO / "outputs" / "e2e"
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1600,1200",
]


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chrome_binaries() -> tuple[str, str]:
    browser = _which("chromium", "chromium-browser", "/usr/bin/chromium")
    driver = _which("/usr/bin/chromedriver", "chromedriver")
    if not browser or not driver:
        pytest.skip("chromium/chromedriver missing: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium not installed (pip install -e '.[dev]')")
    return browser, driver


@pytest.fixture(scope="session")
def finished_pipeline(chrome_binaries, tmp_path_factory) -> dict:
    """``seqlab run`` with 2 tiny trials into a temporary store, as a user would run it."""
    tmp = tmp_path_factory.mktemp("e2e-store")
    overrides = [
        "tune.n_trials=2",
        "tune.n_startup_trials=1",
        "train.max_epochs=4",
        "model.hidden_size=8",
        "window.input_size=12",
        "registry.require_beat_baseline=false",
        "tune.search_space={model.cell: {type: categorical, choices: [lstm, gru]}}",
        f"tune.storage=sqlite:///{tmp}/optuna.db",
        f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"tracking.artifact_location={tmp}/artifacts",
    ]
    # A fresh PREFECT_HOME migrates a new database: on a loaded 2-core CI box the ephemeral
    # server can take longer than its default 20 s to answer.
    env = {
        **os.environ,
        **servers.QUIET_ENV,
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            CONFIG,
            *overrides,
            "--summary-json",
            str(tmp / "summary.json"),
        ],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, f"seqlab run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    summary = json.loads((tmp / "summary.json").read_text())
    return {"dir": tmp, "tracking_uri": f"sqlite:///{tmp}/mlflow.db", "summary": summary}


@pytest.fixture(scope="session")
def mlflow_ui(finished_pipeline):
    tmp = finished_pipeline["dir"]
    handle = servers.start_mlflow_server(
        finished_pipeline["tracking_uri"], tmp / "artifacts", log_path=tmp / "mlflow-ui.log"
    )
    yield handle
    handle.stop()
    assert not handle.leftovers()


@pytest.fixture(scope="session")
def browser(chrome_binaries, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = chrome_binaries
    options = webdriver.ChromeOptions()
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def screenshot(browser, tmp_path):
    """``screenshot("name")`` saves PNGs under the test's tmp folder and ``outputs/e2e/``."""
    saved: list[Path] = []

    def take(name: str) -> Path:
        path = tmp_path / "screenshots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(path))
        SHOTS_COPY.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, SHOTS_COPY / path.name)
        saved.append(path)
        return path

    return take
