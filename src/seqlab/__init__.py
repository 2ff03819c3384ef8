"""seqlab: tuned recurrent sequence models with Prefect flows, Optuna and MLflow.

One package per stage: ``config``, ``data``, ``features``, ``models``, ``training``, ``tuning``,
``evaluation`` (the training and tuning core, with ``forecaster`` and ``pipeline``: imports
without prefect and mlflow) and ``registry`` (the MLflow edge: tracking, serving, versions,
promotion). The Prefect flows and the ``seqlab`` command live in the ``flows`` package.
"""

__version__ = "0.3.0"
