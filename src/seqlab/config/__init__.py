"""Typed pipeline configuration (pydantic), YAML composition, dotted overrides, ${ENV} in URLs.

Defaults live in :mod:`~seqlab.config.schema`, beside the code; YAML files and ``key=value``
overrides (:mod:`~seqlab.config.files`) only change them.
"""

from seqlab.config.files import (
    DEFAULT_CONFIG,
    PACKAGED,
    apply_overrides,
    build_config,
    flatten,
    load_config,
    packaged_config,
    parse_override_args,
    read_yaml,
    resolve_config_path,
    with_overrides,
)
from seqlab.config.schema import (
    DEFAULT_SEARCH_SPACE,
    SEARCHABLE_KEYS,
    DataConfig,
    EvalConfig,
    ModelConfig,
    ParamSpec,
    PipelineConfig,
    RegistryConfig,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
    WindowConfig,
)
from seqlab.errors import ConfigError

__all__ = [
    "ConfigError",
    "DEFAULT_CONFIG",
    "DEFAULT_SEARCH_SPACE",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "PACKAGED",
    "ParamSpec",
    "PipelineConfig",
    "RegistryConfig",
    "SEARCHABLE_KEYS",
    "TrackingConfig",
    "TrainConfig",
    "TuneConfig",
    "WindowConfig",
    "apply_overrides",
    "build_config",
    "flatten",
    "load_config",
    "packaged_config",
    "parse_override_args",
    "read_yaml",
    "resolve_config_path",
    "with_overrides",
]
