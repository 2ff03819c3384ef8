import os

import pytest

from seqlab.config import ConfigError, load_config
from seqlab.redact import expand_env, move_secrets_to_env, redact, redact_tree


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "postgresql+psycopg2://seqlab:s3cret@db.example/optuna",
            "postgresql+psycopg2://seqlab:***@db.example/optuna",
        ),
        ("http://alice:p%40ss@mlflow:5000", "http://alice:***@mlflow:5000"),
        (
            "see postgresql://u:pw@h/db and http://v:w@x",
            "see postgresql://u:***@h/db and http://v:***@x",
        ),
        ("sqlite:///mlruns/optuna.db", "sqlite:///mlruns/optuna.db"),
        ("http://mlflow.example:5000", "http://mlflow.example:5000"),  # a port is not a password
        ("postgresql://u:${PW}@h/db", "postgresql://u:${PW}@h/db"),  # a reference, not a secret
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_tree_reaches_nested_values() -> None:
    tree = {"tune": {"storage": "postgresql://u:pw@h/db"}, "list": ["http://a:b@c", 3]}
    assert redact_tree(tree) == {
        "tune": {"storage": "postgresql://u:***@h/db"},
        "list": ["http://a:***@c", 3],
    }


def test_env_references_expand_and_a_missing_one_is_named(monkeypatch) -> None:
    monkeypatch.setenv("OPTUNA_PW", "s3cret")
    assert (
        expand_env("postgresql://u:${OPTUNA_PW}@h/db", "tune.storage")
        == "postgresql://u:s3cret@h/db"
    )
    cfg = load_config(None, ["tune.storage=postgresql://u:${OPTUNA_PW}@h/db"])
    assert cfg.tune.storage == "postgresql://u:s3cret@h/db"
    monkeypatch.delenv("OPTUNA_PW")
    with pytest.raises(ConfigError, match="environment variable OPTUNA_PW .*is not set"):
        load_config(None, ["tune.storage=postgresql://u:${OPTUNA_PW}@h/db"])


def test_secrets_move_from_overrides_into_the_environment() -> None:
    os.environ.pop("SEQLAB_TEST_SECRET_1", None)
    try:
        out = move_secrets_to_env(
            ["model.cell=gru", "tune.storage=postgresql://u:s3cret@h/db"],
            prefix="SEQLAB_TEST_SECRET_",
        )
        assert out == ["model.cell=gru", "tune.storage=postgresql://u:${SEQLAB_TEST_SECRET_1}@h/db"]
        assert os.environ["SEQLAB_TEST_SECRET_1"] == "s3cret"
        assert load_config(None, out[1:]).tune.storage == "postgresql://u:s3cret@h/db"
    finally:
        os.environ.pop("SEQLAB_TEST_SECRET_1", None)
