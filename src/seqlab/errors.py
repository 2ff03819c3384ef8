"""Errors a user can fix, importable without heavy dependencies (the CLI reports them in one line
before importing torch or mlflow). ``ConfigError`` lives in :mod:`seqlab.config`, ``DataError``
in :mod:`seqlab.data`."""


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked; the message says why."""
