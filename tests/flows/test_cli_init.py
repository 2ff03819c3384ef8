"""`seqlab init` through the command: a starter config that runs on the data, warnings."""

from __future__ import annotations

from typer.testing import CliRunner

from conftest import sales_frame, sales_with_a_bad_value
from flows.cli import app
from seqlab.config import load_config


def test_cli_init_writes_a_config_that_runs_on_the_data(tmp_path) -> None:
    data = tmp_path / "sales.csv"
    sales_frame().to_csv(data, index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["init", str(tmp_path / "proj"), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and "note:" not in r.output  # the data fits the settings
    cfg = load_config(tmp_path / "proj" / "seqlab.yaml")
    assert cfg.data.target == "units"
    again = runner.invoke(app, ["init", str(tmp_path / "proj"), "--data", str(data)])
    assert again.exit_code == 2 and "--force" in again.output
    missing = runner.invoke(app, ["init", str(tmp_path / "x"), "--data", "nope.csv"])
    assert missing.exit_code == 2 and "data file not found" in missing.output


def test_cli_init_warns_when_the_obvious_target_is_not_numeric(tmp_path) -> None:
    data = tmp_path / "sales.csv"
    sales_with_a_bad_value().to_csv(data, index=False)
    r = CliRunner().invoke(app, ["init", str(tmp_path / "proj"), "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "warning: column 'sales' is named like a target but is not numeric" in r.output
    assert "'12,5' at row 42" in r.output


def test_init_from_one_folder_runs_from_any_other(tmp_path, monkeypatch) -> None:
    # `seqlab init my-forecast --data sales.csv` in the data's folder: the config names the
    # file relative to itself, so it reads the same file from wherever a command runs.
    sales_frame().to_csv(tmp_path / "sales.csv", index=False)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["init", "my-forecast", "--data", "sales.csv"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "my-forecast" / "seqlab.yaml").read_text()
    assert "source: ../sales.csv" in text
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(tmp_path / "my-forecast" / "seqlab.yaml")
    assert cfg.data.source == str(tmp_path / "sales.csv")
