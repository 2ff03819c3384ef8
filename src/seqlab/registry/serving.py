"""The served model: an MLflow pyfunc bundling weights, scaler and metadata; forecast I/O.

``predict(history)`` runs :meth:`seqlab.forecaster.FittedForecaster.predict_frame`, the same
prediction path the backtest and the promotion gate use. The model carries seqlab's own code, so
it loads where seqlab is not installed.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqlab.data.series import DataError
from seqlab.errors import ModelFormatError, RegistryError
from seqlab.forecaster import FittedForecaster


class SeqlabForecaster(mlflow.pyfunc.PythonModel):
    """``predict(history)`` -> the next ``horizon`` steps of each series in ``history``, through
    :meth:`seqlab.forecaster.FittedForecaster.predict_frame`, the path the backtest and the gate
    score.

    ``history`` is long format with the training data's columns (time, target, optional series
    id and covariates) and at least ``input_size`` regular steps per series.
    """

    def load_context(self, context: Any) -> None:
        self.forecaster = FittedForecaster.load(
            context.artifacts["weights"], context.artifacts["meta"]
        )
        self.meta = self.forecaster.meta()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        try:
            return self.forecaster.predict_frame(model_input)
        except DataError as e:  # a bad request: the scoring server answers 400 with the reason
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None


def pip_requirements() -> list[str]:
    """Explicit requirements (inference in a subprocess costs ~3 s per model)."""
    import pydantic
    import torch
    import yaml

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"pydantic=={pydantic.VERSION}",
        f"pyyaml=={yaml.__version__}",
    ]


def _package_dir() -> str:
    import seqlab

    return str(Path(seqlab.__file__).parent)


@dataclass(frozen=True)
class LoggedModel:
    model_uri: str
    model_id: str | None
    artifact_location: str
    """Where the model's files are: registered as the version's source, because MLflow's SQL
    registry resolves ``models:/m-...`` through the process-wide tracking URI."""


def log_pyfunc(
    client: MlflowClient,
    run_id: str,
    fitted: FittedForecaster,
    example: pd.DataFrame,
    prediction: pd.DataFrame,
) -> LoggedModel:
    """Log the pyfunc as an MLflow logged model of ``run_id`` through ``client``'s store only.

    The model is saved locally, then created, uploaded and finalised with the client's
    logged-model API and linked to the run as its output: no process-wide tracking URI and no
    fluent active run are involved.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import infer_signature

    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        weights, meta_path = fitted.save(Path(tmp, "files"))
        from mlflow.tracking.context.registry import resolve_tags

        logged = client.create_logged_model(
            run.info.experiment_id,
            name="model",
            source_run_id=run_id,
            model_type="seqlab-forecaster",
            tags=resolve_tags(None),
            params={k: v[:500] for k, v in run.data.params.items()},
        )
        local = Path(tmp, "model")
        try:
            mlflow.pyfunc.save_model(
                path=str(local),
                python_model=SeqlabForecaster(),
                artifacts={"weights": str(weights), "meta": str(meta_path)},
                signature=infer_signature(example, prediction),
                input_example=example,
                pip_requirements=pip_requirements(),
                code_paths=[_package_dir()],
                # Record the logged model's identity in MLmodel, as log_model does.
                mlflow_model=mlflow.models.Model(
                    model_id=logged.model_id,
                    run_id=run_id,
                    model_uuid=logged.model_id,
                    artifact_path=logged.artifact_location,
                ),
            )
            client.log_model_artifacts(logged.model_id, str(local))
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        except BaseException:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    return LoggedModel(f"models:/{logged.model_id}", logged.model_id, logged.artifact_location)


def link_version(client: MlflowClient, model_id: str | None, name: str, version: str) -> None:
    """Tag the logged model with its registered version, as ``mlflow.register_model`` does (the
    UI's model and run pages read it)."""
    if not model_id:
        return
    known = json.loads(client.get_logged_model(model_id).tags.get("mlflow.modelVersions", "[]"))
    client.set_logged_model_tags(
        model_id,
        {"mlflow.modelVersions": json.dumps([*known, {"name": name, "version": int(version)}])},
    )


def load_forecaster(client: MlflowClient, name: str, version: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a registered version through ``client``'s store only.

    MLflow's ``models:/`` loader resolves names through the process-wide registry URI, so the
    version's storage location is resolved here and the files loaded from there."""
    try:
        uri = client.get_model_version_download_uri(name, str(version))
        if uri.startswith("models:/"):  # a source without a storage location: the logged model
            uri = client.get_logged_model(
                uri.removeprefix("models:/").split("/")[0]
            ).artifact_location
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=client.tracking_uri
            )
            return mlflow.pyfunc.load_model(local)
    except MlflowException as e:
        raise RegistryError(
            f"cannot load model {name} v{version}: {str(e).splitlines()[0]}"
        ) from None
    except ImportError as e:  # pickled against module paths this seqlab no longer has
        if not str(getattr(e, "name", "") or "").startswith("seqlab"):
            raise
        raise ModelFormatError(
            f"model {name} v{version} was written by an older seqlab (it needs {e.name}, which "
            "this version no longer has): retrain it with `seqlab run`"
        ) from None


def data_encoding(meta: dict) -> str:
    """The text encoding of the data a model was trained on (its ``data.encoding``)."""
    return str(((meta.get("config") or {}).get("data") or {}).get("encoding") or "utf-8")


def predict_checked(model: mlflow.pyfunc.PyFuncModel, history: pd.DataFrame) -> pd.DataFrame:
    """Forecast with seqlab's own check of ``history`` (one-line errors naming the column,
    frequency or length at fault) instead of MLflow's schema enforcement, which would reject,
    say, an integer target column that seqlab reads as float."""
    inner = model.unwrap_python_model()
    if getattr(inner, "forecaster", None) is None:  # not a seqlab model
        return model.predict(history)
    return inner.forecaster.predict_frame(history)


def write_frame(frame: pd.DataFrame, output: str) -> str:
    """Write CSV or Parquet by suffix; the folder is created."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"output {output} must end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)  # atomic: readers never see a half-written forecast
    return str(path)
