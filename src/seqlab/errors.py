"""Every error a user can fix, in one place, importable without heavy dependencies (the CLI
reports them in one line before importing torch or mlflow).

Each is re-exported where it is raised (``from seqlab.config import ConfigError``,
``from seqlab.data import DataError``, ``from seqlab.forecaster import ModelFormatError``,
``from seqlab.registry import RegistryError``, ``from seqlab.training import TrainingError``).
"""


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


class DataError(ValueError):
    """The input data cannot be used as it is; the message says why and what to do."""


class ModelFormatError(DataError):
    """A saved model this seqlab cannot read (older, newer or not a seqlab model)."""


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked; the message says why."""


class TrainingError(RuntimeError):
    """Training produced no usable model (a non-finite loss or forecast); nothing is registered."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the run cannot continue."""
