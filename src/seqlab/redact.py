"""No secret leaves the machine it was typed on.

Passwords in URLs (``postgresql://user:pw@host/db``, ``http://user:pw@mlflow``) are shown as
``user:***@host`` wherever seqlab writes something others read: MLflow params, tags and
artifacts, study attributes, Prefect parameters, logs. Credentials can come from the
environment instead: ``${VAR}`` in ``tune.storage`` or ``tracking.tracking_uri`` is replaced by
the variable's value when the config is loaded (PostgreSQL also reads ``PGPASSWORD``/``.pgpass``,
MLflow ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``).
"""

from __future__ import annotations

import os
import re
from typing import Any

URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@")
ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
MASK = "***"


def redact(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host`` (``${VAR}`` kept as is)."""

    def mask(m: re.Match[str]) -> str:
        return m.group(0) if ENV_REF.fullmatch(m["pw"]) else f"{m['head']}:{MASK}@"

    return URL_CREDENTIALS.sub(mask, text)


def redact_tree(value: Any) -> Any:
    """``redact`` applied to every string in nested dicts and lists."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v) for v in value]
    return value


def expand_env(text: str, key: str) -> str:
    """Replace ``${VAR}`` with the environment variable's value; a missing one is an error."""

    def value(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} (used in {key}) is not set")
        return os.environ[name]

    return ENV_REF.sub(value, text)


def move_secrets_to_env(overrides: list[str], prefix: str = "SEQLAB_SECRET_") -> list[str]:
    """Overrides with URL passwords moved into this process's environment (``${VAR}`` left in
    their place), so that flow-run parameters stored by Prefect never hold them."""
    out = []
    for i, item in enumerate(overrides):

        def hide(m: re.Match[str], i: int = i) -> str:
            if ENV_REF.fullmatch(m["pw"]):
                return m.group(0)
            name = f"{prefix}{i}"
            os.environ[name] = m["pw"]
            return f"{m['head']}:${{{name}}}@"

        out.append(URL_CREDENTIALS.sub(hide, item))
    return out
