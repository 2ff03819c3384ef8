"""seqlab: tuned recurrent sequence models with Prefect flows, Optuna and MLflow.

The training and tuning core (config, data, windows, models, train, devices, tune, evaluate,
pipeline, workers) imports without prefect and mlflow.
"""

__version__ = "0.2.0"
