"""Errors a user can fix, importable without heavy dependencies (the CLI reports them in one line
before importing torch or mlflow). ``ConfigError`` lives in :mod:`seqlab.config`, ``DataError``
in :mod:`seqlab.data`."""


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked; the message says why."""


class TrainingError(RuntimeError):
    """Training produced no usable model (a non-finite loss or forecast); nothing is registered."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the run cannot continue."""
