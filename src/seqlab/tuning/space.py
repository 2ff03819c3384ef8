"""Search spaces as data: sampling dotted config keys, and what tuning will replace."""

from __future__ import annotations

from typing import Any

import optuna

from seqlab.config import ParamSpec, PipelineConfig
from seqlab.training.devices import recurrent_params


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample one value per dotted key of the search space."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            out[name] = trial.suggest_categorical(name, spec.choices)  # type: ignore[arg-type]
        elif spec.type == "int":
            step = int(spec.step) if spec.step else 1
            out[name] = trial.suggest_int(
                name,
                int(spec.low),
                int(spec.high),  # type: ignore[arg-type]
                step=step,
                log=spec.log,
            )
        else:
            out[name] = trial.suggest_float(
                name,
                spec.low,
                spec.high,  # type: ignore[arg-type]
                step=spec.step,
                log=spec.log,
            )
    return out


def contains(spec: ParamSpec, value: Any) -> bool:
    """Whether ``value`` can be sampled from ``spec`` (to warm-start a study with it)."""
    if spec.type == "categorical":
        return value in (spec.choices or [])
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    if spec.type == "int" and v != int(v):
        return False
    return spec.low <= v <= spec.high  # type: ignore[operator]


def fits_space(params: dict[str, Any], space: dict[str, ParamSpec]) -> dict[str, Any]:
    """The parameters that the space can sample, restricted to its keys; {} if a key is missing."""
    if set(space) - set(params):
        return {}
    kept = {k: params[k] for k in space}
    return kept if all(contains(space[k], v) for k, v in kept.items()) else {}


def replaced_by_tuning(explicit: dict[str, Any], space: dict[str, ParamSpec]) -> list[str]:
    """Keys the user set explicitly (command-line overrides) that the search space will replace."""
    return sorted(k for k in explicit if k in space)


def largest_model_params(cfg: PipelineConfig) -> int | None:
    """Parameters of the largest model the search space can sample (to choose GPU packing)."""
    space = cfg.tune.search_space

    def values(key: str, current: Any) -> list[Any]:
        spec = space.get(key)
        if spec is None:
            return [current]
        return list(spec.choices or []) if spec.type == "categorical" else [spec.high]

    try:
        hidden = max(int(v) for v in values("model.hidden_size", cfg.model.hidden_size))
        layers = max(int(v) for v in values("model.num_layers", cfg.model.num_layers))
        horizon = cfg.window.horizon  # not searchable (config.SEARCHABLE_KEYS)
        n_features = 1 + len(cfg.data.covariates)
        return max(
            recurrent_params(str(c), n_features, hidden, layers, horizon)
            for c in values("model.cell", cfg.model.cell)
        )
    except (KeyError, TypeError, ValueError):
        return None
