"""Registered model versions, aliases and their audit trail, rollback.

Promotion is champion/challenger with aliases (stages are deprecated). Every alias move is
written to the registered model's own tags (``seqlab.audit.000001`` ...), so the history lives
in the registry and survives without seqlab's files. The decision whether to promote is
:mod:`seqlab.registry.promotion`'s; this module records and applies it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqlab.errors import RegistryError  # noqa: F401 (raised here, re-exported)
from seqlab.killpoints import kill_point
from seqlab.registry.text_table import text_table

CHAMPION, CHALLENGER = "champion", "challenger"
AUDIT_PREFIX = "seqlab.audit."
REGISTERED_TAG = "seqlab.registered"
"""Set last by :func:`register`: a version without it was cut short (``registry.repair``)."""


def register(
    client: MlflowClient,
    name: str,
    source: str,
    run_id: str,
    tags: dict[str, Any],
    description: str = "",
    model_id: str | None = None,
) -> str:
    """Register a model version and set ``challenger``; undo the version if any step fails.

    ``source`` is the model's artifact location; ``model_id`` names the MLflow 3 logged model
    (needed on an MLflow server)."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="Recurrent forecaster trained and promoted by seqlab."
            )
        except MlflowException:
            pass  # created concurrently
    mv = client.create_model_version(
        name, source, run_id=run_id, description=description, model_id=model_id
    )
    try:
        _wait_ready(client, name, mv.version)
        kill_point("register-tags")
        for k, v in tags.items():
            client.set_model_version_tag(name, mv.version, k, str(v))
        move_alias(
            client,
            name,
            CHALLENGER,
            str(mv.version),
            reason="new model version from training",
            mode="automatic",
            figures={},
        )
        client.set_model_version_tag(name, mv.version, REGISTERED_TAG, "true")
    except BaseException:
        client.delete_model_version(name, mv.version)
        raise
    return str(mv.version)


def _wait_ready(client: MlflowClient, name: str, version: str, timeout: float = 60) -> None:
    start = time.monotonic()
    while True:
        mv = client.get_model_version(name, version)
        if mv.status == "READY":
            return
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() - start > timeout:
            raise RegistryError(
                f"model {name} version {version} did not become READY ({mv.status})"
            )
        time.sleep(0.2)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


# ---------------------------------------------------------------- audit trail


@dataclass(frozen=True)
class AliasMove:
    seq: int
    time: str
    alias: str
    from_version: str | None
    to_version: str
    mode: str  # automatic | manual | rollback
    reason: str
    figures: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def alias_history(client: MlflowClient, name: str) -> list[AliasMove]:
    """Every recorded alias move of a registered model, oldest first."""
    try:
        rm = client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(
            f"registered model {name!r} not found; train one with `seqlab run`"
        ) from None
    moves = [AliasMove(**json.loads(v)) for k, v in rm.tags.items() if k.startswith(AUDIT_PREFIX)]
    return sorted(moves, key=lambda m: m.seq)


def move_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    reason: str,
    mode: str,
    figures: dict[str, Any],
) -> AliasMove:
    """Point ``alias`` at ``version`` and append the move to the registry's audit trail."""
    previous = alias_version(client, name, alias)
    history = alias_history(client, name)
    seq = (history[-1].seq if history else 0) + 1
    move = AliasMove(
        seq,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        alias,
        previous,
        str(version),
        mode,
        reason,
        figures,
    )
    # Audit first: a failure after it leaves a record of an attempted move, never a silent one.
    client.set_registered_model_tag(name, f"{AUDIT_PREFIX}{seq:06d}", move.to_json())
    kill_point(f"alias-move-{alias}")
    client.set_registered_model_alias(name, alias, str(version))
    # The same trail, readable on the model's page in the MLflow UI.
    client.update_registered_model(name, description=audit_markdown([*history, move]))
    return move


def audit_markdown(moves: list[AliasMove], last: int = 30) -> str:
    """The alias history as a text table, newest first (the registered model's description)."""
    rows = [
        [
            m.seq,
            m.time,
            m.alias,
            m.from_version or "-",
            m.to_version,
            m.mode,
            m.reason.replace("\n", " "),
        ]
        for m in list(reversed(moves))[:last]
    ]
    return "\n".join(
        [
            "Recurrent forecaster trained and promoted by seqlab. Alias history (newest first; "
            "the full trail is in the `seqlab.audit.*` tags):",
            "",
            text_table(
                ["#", "time (UTC)", "alias", "from", "to", "mode", "reason"], rows, {0, 3, 4}
            ),
        ]
    )


def record_decision(
    client: MlflowClient, name: str, version: str, tags: dict[str, str], run_id: str | None = None
) -> None:
    """Write a promotion decision's tags on the version (and on the training run)."""
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
        if run_id:
            client.set_tag(run_id, k, v)


def promote_manual(client: MlflowClient, name: str, version: str, reason: str) -> AliasMove:
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(
            f"model {name!r} has no version {version}; see `seqlab models {name}`"
        ) from None
    if not reason.strip():
        raise RegistryError("a manual promotion needs --reason")
    champ = alias_version(client, name, CHAMPION)
    if champ == str(version):
        raise RegistryError(f"version {version} of {name!r} is already the champion")
    figures = {"version_test_metrics": {k: v for k, v in mv.tags.items() if k.startswith("test/")}}
    return move_alias(client, name, CHAMPION, str(version), reason, "manual", figures)


def champion_lineage(moves: list[AliasMove]) -> list[str]:
    """The chain of champions that rollbacks walk back along, oldest first.

    Replays the champion moves: a promotion pushes its version, a rollback pops the current
    one. So v1 -> v2 -> v3, rolled back twice, walks v3 -> v2 -> v1 (not back and forth).
    """
    stack: list[str] = []
    for m in moves:
        if m.alias != CHAMPION:
            continue
        if m.mode == "rollback" and stack and stack[-1] == m.from_version:
            stack.pop()
            if not stack or stack[-1] != m.to_version:
                stack.append(m.to_version)
        else:
            stack.append(m.to_version)
    return stack


def rollback(client: MlflowClient, name: str, reason: str = "rollback") -> AliasMove:
    """Move ``champion`` back to the champion before the current one (walking back each time)."""
    moves = alias_history(client, name)  # raises if the model is unknown
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model {name!r} has no champion to roll back")
    lineage = champion_lineage(moves)
    if not lineage or lineage[-1] != current:
        lineage.append(current)
    for target in reversed(lineage[:-1]):
        if target == current:
            continue
        try:
            client.get_model_version(name, target)
        except MlflowException:
            continue  # deleted since: walk further back
        return move_alias(
            client,
            name,
            CHAMPION,
            target,
            reason,
            "rollback",
            {"from_version": current, "to_version": target},
        )
    raise RegistryError(
        f"model {name!r}: nothing left to roll back to; version {current} is the "
        "first champion on record (promote another version with `seqlab promote`)"
    )


def versions_table(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Versions, newest first, with aliases, key metrics and the promotion decision."""
    try:
        rm = client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(
            f"registered model {name!r} not found; train one with `seqlab run`"
        ) from None
    aliases: dict[str, list[str]] = {}
    for alias, v in (rm.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "created": pd.Timestamp(mv.creation_timestamp, unit="ms").strftime(
                    "%Y-%m-%d %H:%M"
                ),
                "test/mase": mv.tags.get("test/mase"),
                "test/mae": mv.tags.get("test/mae"),
                "decision": mv.tags.get("seqlab.promotion.decision"),
                "run_id": mv.run_id,
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def require_model(client: MlflowClient, name: str) -> None:
    """Raise a one-line error naming the known models when ``name`` is not registered."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models(max_results=20))
        hint = f"registered models: {', '.join(known)}" if known else "no model is registered yet"
        raise RegistryError(f"no registered model named {name!r} ({hint})") from None


def resolve_version(
    client: MlflowClient, name: str, alias: str | None = CHAMPION, version: str | None = None
) -> dict[str, str]:
    """Which version ``name@alias`` (or ``name/version``) is, as a loadable URI."""
    require_model(client, name)
    try:
        if version is not None:
            mv = client.get_model_version(name, str(version))
        else:
            mv = client.get_model_version_by_alias(name, alias or CHAMPION)
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias @{alias}"
        raise RegistryError(
            f"model {name!r} has no {what}; list versions and aliases with `seqlab models {name}`"
        ) from None
    out = {
        "name": name,
        "version": str(mv.version),
        "run_id": mv.run_id or "",
        "model_uri": f"models:/{name}/{mv.version}",
    }
    if version is None:
        out["alias"] = alias or CHAMPION
    return out
