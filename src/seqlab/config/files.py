"""Configuration files and overrides: YAML composition (``defaults:`` lists, packaged
``seqlab:`` files), dotted ``key=value`` overrides, one-line errors naming the key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from seqlab.config.schema import PipelineConfig
from seqlab.errors import ConfigError


def _format_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-"))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid config: " + "; ".join(parts)


def _parse_value(raw: str) -> Any:
    """Parse an override value as YAML (``30`` -> int, ``[1,2]`` -> list, ``null`` -> None)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted keys (``model.cell``) set; validation comes later."""
    out = json.loads(json.dumps(data))
    for key, value in overrides.items():
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"invalid override key {key!r}: use dotted keys like model.cell=gru")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"invalid override {key!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def parse_override_args(args: list[str]) -> dict[str, Any]:
    """``["model.cell=gru", "tune.n_trials=30"]`` -> ``{"model.cell": "gru", ...}``."""
    out: dict[str, Any] = {}
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"invalid override {arg!r}: expected key=value, e.g. model.cell=gru")
        k, v = arg.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "search_space":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


PACKAGED = "seqlab:"
"""Prefix of the configs that ship with seqlab (``seqlab:default.yaml``, ``seqlab:base.yaml``,
``seqlab:presets/keras-classic.yaml``): the repository's ``conf/`` folder, installed as package
data so that ``seqlab run`` works from any folder."""
DEFAULT_CONFIG = PACKAGED + "default.yaml"


def packaged_config(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("seqlab.conf").joinpath(name)))


def resolve_config_path(path: str | Path) -> Path:
    text = str(path)
    return packaged_config(text.removeprefix(PACKAGED)) if text.startswith(PACKAGED) else Path(path)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = resolve_config_path(path)
    if not p.is_file():
        hint = "pass an existing YAML file, or none for the built-in defaults"
        raise ConfigError(f"config file not found: {path} ({hint}; `seqlab init` writes one)")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    _anchor_data_source(loaded, p)
    # `defaults: [other.yaml, ...]` composes files, relative to this one, the later ones winning.
    merged: dict[str, Any] = {}
    for parent in loaded.pop("defaults", []) or []:
        ref = parent if str(parent).startswith(PACKAGED) else p.parent / parent
        merged = _merge(merged, read_yaml(ref))
    return _merge(merged, loaded)


def is_file_source(source: str) -> bool:
    """A path (``sales.csv``, ``data/x.parquet``), not a bundled dataset's name."""
    return "/" in source or "\\" in source or "." in source


def _anchor_data_source(loaded: dict[str, Any], config_file: Path) -> None:
    """A relative ``data.source`` in a config file names a file beside that config, wherever
    the command runs from (as ``defaults:`` entries do); overrides stay relative to the
    working folder."""
    data = loaded.get("data")
    source = data.get("source") if isinstance(data, dict) else None
    if isinstance(source, str) and is_file_source(source) and "://" not in source:
        path = Path(source).expanduser()
        if not path.is_absolute():
            data["source"] = os.path.normpath(config_file.parent.absolute() / path)


def build_config(data: dict[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e)) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> PipelineConfig:
    """Load a YAML config (the packaged ``default.yaml`` when none is given: the bundled
    AirPassengers run) and apply ``key=value`` overrides."""
    data = read_yaml(path or DEFAULT_CONFIG)
    if overrides:
        ov = parse_override_args(overrides) if isinstance(overrides, list) else overrides
        data = apply_overrides(data, ov)
    return build_config(data)


def with_overrides(cfg: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """A validated copy of ``cfg`` with dotted overrides applied (used for trial parameters)."""
    return build_config(apply_overrides(cfg.model_dump(mode="json"), overrides))


def flatten(cfg: PipelineConfig) -> dict[str, str]:
    """Dotted key -> string value, for MLflow params (search space left out: it is logged whole)."""
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and not prefix.endswith("search_space"):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(node, dict | list):
            out[prefix] = json.dumps(node, sort_keys=True)
        else:
            out[prefix] = str(node)

    walk("", cfg.model_dump(mode="json"))
    return out
