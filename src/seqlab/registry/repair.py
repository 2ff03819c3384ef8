"""What a killed run leaves in the registry, found and repaired by the next run (one line each).

A SIGKILL can land between any two writes of a registration or an alias move. The writes are
ordered so that each gap leaves something recognisable:

- ``register``: the version, then its tags, then the ``challenger`` move, then the
  ``seqlab.registered`` marker. A version without the marker, named by no audit line, whose run
  is no longer running, was cut short: it is deleted (its run keeps the logged model).
- ``move_alias``: the audit line first, then the alias. An alias that does not point where its
  last audit line says was cut short: the recorded move is completed.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqlab.registry.versions import (
    REGISTERED_TAG,
    alias_history,
    alias_version,
    audit_markdown,
)


def repair_registry(client: MlflowClient, name: str) -> list[str]:
    """Complete interrupted alias moves and delete interrupted registrations of ``name``;
    returns what was done, one line each (nothing when the model does not exist yet)."""
    try:
        history = alias_history(client, name)
    except Exception:  # noqa: BLE001 - no registered model yet: nothing to repair
        return []
    done: list[str] = []
    last = {m.alias: m for m in history}  # oldest first: the last move of each alias wins
    for alias, move in sorted(last.items()):
        current = alias_version(client, name, alias)
        if current == move.to_version:
            continue
        try:
            client.get_model_version(name, move.to_version)
        except MlflowException:
            continue  # the version is gone: nothing to point at
        client.set_registered_model_alias(name, alias, move.to_version)
        done.append(
            f"alias {alias} of {name} moved to v{move.to_version}, as audit line "
            f"#{move.seq} recorded (a killed run had written the line, not moved the alias)"
        )
    if done:
        client.update_registered_model(name, description=audit_markdown(history))
    for move in history:  # promotions whose decision tags a killed run never wrote
        if move.alias != "champion" or move.mode != "automatic":
            continue
        try:
            tags = client.get_model_version(name, move.to_version).tags
        except MlflowException:
            continue
        if "seqlab.promotion.decision" not in tags:
            client.set_model_version_tag(
                name, move.to_version, "seqlab.promotion.decision", "promoted"
            )
            client.set_model_version_tag(
                name, move.to_version, "seqlab.promotion.reason", move.reason[:5000]
            )
            done.append(
                f"v{move.to_version} of {name} tagged promoted, as audit line #{move.seq} "
                "recorded (a killed run had moved the alias, not written the decision)"
            )
    named = {m.to_version for m in history}
    for mv in client.search_model_versions(f"name='{name}'"):
        version = str(mv.version)
        if mv.tags.get(REGISTERED_TAG) == "true":
            continue
        if version in named:  # its challenger move was recorded: the registration completed
            client.set_model_version_tag(name, version, REGISTERED_TAG, "true")
            continue
        status = _run_status(client, mv.run_id)
        if status == "RUNNING":
            continue  # another run is registering it right now
        client.delete_model_version(name, version)
        done.append(
            f"model version {version} of {name} deleted: its registration was cut short "
            f"(run {mv.run_id} {status or 'gone'}; the run keeps the logged model)"
        )
    return done


def _run_status(client: MlflowClient, run_id: str | None) -> str | None:
    if not run_id:
        return None
    try:
        return client.get_run(run_id).info.status
    except MlflowException:
        return None
