"""The MLflow model: a pyfunc bundling weights, scaler and config; registry aliases and audit.

Promotion is champion/challenger with aliases (stages are deprecated). Every alias move is
written to the registered model's own tags (``seqlab.audit.000001`` ...), so the history lives
in the registry and survives without seqlab's files.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seqlab.config import DataConfig, PipelineConfig
from seqlab.data import DataError, SeriesData, validate
from seqlab.models import RecurrentForecaster
from seqlab.windows import Scaler, apply_transform, decode_forecasts, normalise_windows

CHAMPION, CHALLENGER = "champion", "challenger"
AUDIT_PREFIX = "seqlab.audit."


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked; the message says why."""


# ---------------------------------------------------------------- the pyfunc model


def model_meta(model: RecurrentForecaster, scaler: Scaler, cfg: PipelineConfig, freq: str,
               covariates: tuple[str, ...]) -> dict[str, Any]:
    return {
        "format": 1,
        "hparams": model.hparams,
        "scaler": scaler.to_dict(),
        "input_size": cfg.window.input_size,
        "horizon": cfg.window.horizon,
        "freq": freq,
        "transform": cfg.window.transform,
        "local_norm": cfg.window.local_norm,
        "covariates": list(covariates),
        "time_column": cfg.data.time_column,
        "target": cfg.data.target,
        "series_id": cfg.data.series_id,
        "config": cfg.model_dump(mode="json"),
    }


def user_frame(series: SeriesData, data_cfg: DataConfig, meta: dict | None = None) -> pd.DataFrame:
    """The canonical frame back in the user's column names (what ``predict`` takes)."""
    time_col = (meta or {}).get("time_column", data_cfg.time_column)
    target = (meta or {}).get("target", data_cfg.target)
    sid_col = (meta or {}).get("series_id", data_cfg.series_id)
    out = pd.DataFrame({time_col: series.frame["ds"], target: series.frame["y"]})
    if sid_col:
        out.insert(0, sid_col, series.frame["unique_id"])
    for c in series.covariates:
        out[c] = series.frame[c]
    return out


class SeqlabForecaster(mlflow.pyfunc.PythonModel):
    """``predict(history)`` -> the next ``horizon`` steps of each series in ``history``.

    ``history`` is long format with the training data's columns (time, target, optional series
    id and covariates) and at least ``input_size`` regular steps per series.
    """

    def load_context(self, context: Any) -> None:
        import torch

        self.meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.scaler = Scaler.from_dict(self.meta["scaler"])
        self.model = RecurrentForecaster(**self.meta["hparams"])
        state = torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return forecast_history(self.model, self.scaler, self.meta, model_input)


def forecast_history(model: RecurrentForecaster, scaler: Scaler, meta: dict,
                     history: pd.DataFrame) -> pd.DataFrame:
    import torch

    if not isinstance(history, pd.DataFrame):
        raise DataError("forecast input must be a DataFrame in long format")
    data_cfg = DataConfig(
        source="<history>", time_column=meta["time_column"], target=meta["target"],
        series_id=meta["series_id"], covariates=meta["covariates"], freq=meta["freq"],
    )
    # The model's own columns and frequency, and at least one input window per series.
    series = validate(history, data_cfg, min_length=meta["input_size"], source="history")
    L, H = meta["input_size"], meta["horizon"]
    xs, sids, starts = [], [], []
    for sid, g in series.frame.groupby("unique_id", sort=False):
        try:
            idx = scaler.index_of(str(sid))
        except KeyError:
            known = ", ".join(scaler.series_ids[:5])
            raise DataError(
                f"series {sid!r} was not in the training data (known: {known}); "
                "forecast only series the model was trained on"
            ) from None
        vals = g[["y", *meta["covariates"]]].to_numpy("float64", copy=True)[-L:]
        vals[:, 0] = apply_transform(vals[:, 0], meta.get("transform", "none"))
        xs.append(scaler.transform(vals, idx))
        sids.append((str(sid), idx))
        starts.append(g["ds"].iloc[-1] + pd.tseries.frequencies.to_offset(meta["freq"]))
    x, _, ref = normalise_windows(np.stack(xs).astype(np.float32), None, meta.get("local_norm", "none"))
    with torch.no_grad():
        scaled = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    values = decode_forecasts(scaled, ref.astype("float64"), scaler, np.array([i for _, i in sids]),
                              meta.get("transform", "none"))
    rows = [
        pd.DataFrame({"unique_id": sid, "ds": pd.date_range(start, periods=H, freq=meta["freq"]),
                      "forecast": values[k]})
        for k, ((sid, _), start) in enumerate(zip(sids, starts))
    ]
    return pd.concat(rows, ignore_index=True)


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


def log_pyfunc(run_id: str, tracking_uri: str, model: RecurrentForecaster, meta: dict,
               example: pd.DataFrame, prediction: pd.DataFrame) -> LoggedModel:
    """Log the pyfunc under the parent run (fluent API, opened and closed in this call)."""
    import torch
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp, "weights.pt")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
        meta_path = Path(tmp, "meta.json")
        meta_path.write_text(json.dumps(meta, indent=1))
        signature = infer_signature(example, prediction)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=SeqlabForecaster(),
                artifacts={"weights": str(weights), "meta": str(meta_path)},
                signature=signature,
                input_example=example,
                pip_requirements=pip_requirements(),
                # The model carries seqlab's own code: it loads where seqlab is not installed.
                code_paths=[_package_dir()],
            )
    # start_run(...) marks the run FINISHED on exit; the flow sets the final status later.
    MlflowClient(tracking_uri).update_run(run_id, status="RUNNING")
    return LoggedModel(info.model_uri, getattr(info, "model_id", None))


def load_forecaster(uri: str, tracking_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a pyfunc; ``models:/`` URIs resolve against ``tracking_uri``'s registry (MLflow's
    loader only reads the process-wide registry URI, so it is set here, where it is needed)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as e:
        raise RegistryError(f"cannot load model {uri}: {str(e).splitlines()[0]}") from None


# ---------------------------------------------------------------- registration


def register(client: MlflowClient, name: str, model_uri: str, run_id: str,
             tags: dict[str, Any], description: str = "") -> str:
    """Register a model version and set ``challenger``; undo the version if any step fails."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="Recurrent forecaster trained and promoted by seqlab.")
        except MlflowException:
            pass  # created concurrently
    # MLflow 3 logged models ("models:/m-...") must be named by id when registered on a server.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    mv = client.create_model_version(name, model_uri, run_id=run_id, description=description,
                                     model_id=model_id)
    try:
        _wait_ready(client, name, mv.version)
        for k, v in tags.items():
            client.set_model_version_tag(name, mv.version, k, str(v))
        move_alias(client, name, CHALLENGER, mv.version, reason="new model version from training",
                   mode="automatic", figures={})
    except BaseException:
        client.delete_model_version(name, mv.version)
        raise
    return str(mv.version)


def _wait_ready(client: MlflowClient, name: str, version: str, timeout: float = 60) -> None:
    start = time.monotonic()
    while True:
        mv = client.get_model_version(name, version)
        if mv.status == "READY":
            return
        if mv.status == "FAILED_REGISTRATION" or time.monotonic() - start > timeout:
            raise RegistryError(f"model {name} version {version} did not become READY ({mv.status})")
        time.sleep(0.2)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


# ---------------------------------------------------------------- audit trail


@dataclass(frozen=True)
class AliasMove:
    seq: int
    time: str
    alias: str
    from_version: str | None
    to_version: str
    mode: str  # automatic | manual | rollback
    reason: str
    figures: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def alias_history(client: MlflowClient, name: str) -> list[AliasMove]:
    """Every recorded alias move of a registered model, oldest first."""
    try:
        rm = client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"registered model {name!r} not found; train one with `seqlab run`") from None
    moves = [AliasMove(**json.loads(v)) for k, v in rm.tags.items() if k.startswith(AUDIT_PREFIX)]
    return sorted(moves, key=lambda m: m.seq)


def move_alias(client: MlflowClient, name: str, alias: str, version: str, reason: str, mode: str,
               figures: dict[str, Any]) -> AliasMove:
    """Point ``alias`` at ``version`` and append the move to the registry's audit trail."""
    previous = alias_version(client, name, alias)
    history = alias_history(client, name)
    seq = (history[-1].seq if history else 0) + 1
    move = AliasMove(seq, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), alias, previous,
                     str(version), mode, reason, figures)
    # Audit first: a failure after it leaves a record of an attempted move, never a silent one.
    client.set_registered_model_tag(name, f"{AUDIT_PREFIX}{seq:06d}", move.to_json())
    client.set_registered_model_alias(name, alias, str(version))
    return move


# ---------------------------------------------------------------- the promotion gate


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    champion_version: str | None

    def figures(self) -> dict[str, Any]:
        return {"metric": self.metric, "challenger": self.challenger, "champion": self.champion,
                "champion_version": self.champion_version}


def decide(metric: str, challenger: float, champion: float | None, margin: float,
           champion_version: str | None = None) -> Decision:
    """Promote when there is no champion, or ``challenger < champion * (1 - margin)``.

    Lower is better for every metric used here. A tie (or an improvement inside the margin)
    keeps the champion: changing the model in production must be worth it.
    """
    if not np.isfinite(challenger):
        return Decision(False, f"challenger {metric} is not finite", metric, challenger, champion,
                        champion_version)
    if champion is None or not np.isfinite(champion):
        why = "no champion yet" if champion_version is None else "champion has no finite score"
        return Decision(True, why, metric, challenger, champion, champion_version)
    threshold = champion * (1 - margin)
    if challenger < threshold:
        return Decision(True, f"challenger {metric} {challenger:.4f} < champion {champion:.4f}"
                        + (f" x (1 - {margin})" if margin else ""), metric, challenger, champion,
                        champion_version)
    return Decision(False, f"challenger {metric} {challenger:.4f} does not beat champion "
                    f"{champion:.4f}" + (f" by margin {margin}" if margin else ""), metric,
                    challenger, champion, champion_version)


def apply_decision(client: MlflowClient, name: str, version: str, decision: Decision,
                   run_id: str | None = None) -> None:
    """Record the decision on the version (and run), and move ``champion`` if promoted."""
    tags = {
        "seqlab.promotion.decision": "promoted" if decision.promote else "kept_champion",
        "seqlab.promotion.reason": decision.reason,
        "seqlab.promotion.metric": decision.metric,
        "seqlab.promotion.challenger": f"{decision.challenger:.6g}",
        "seqlab.promotion.champion": "" if decision.champion is None else f"{decision.champion:.6g}",
        "seqlab.promotion.champion_version": decision.champion_version or "",
    }
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
        if run_id:
            client.set_tag(run_id, k, v)
    if decision.promote:
        move_alias(client, name, CHAMPION, version, decision.reason, "automatic", decision.figures())


def promote_manual(client: MlflowClient, name: str, version: str, reason: str) -> AliasMove:
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(f"model {name!r} has no version {version}; see `seqlab models {name}`") from None
    if not reason.strip():
        raise RegistryError("a manual promotion needs --reason")
    champ = alias_version(client, name, CHAMPION)
    if champ == str(version):
        raise RegistryError(f"version {version} of {name!r} is already the champion")
    figures = {"version_test_metrics": {k: v for k, v in mv.tags.items() if k.startswith("test/")}}
    return move_alias(client, name, CHAMPION, str(version), reason, "manual", figures)


def rollback(client: MlflowClient, name: str, reason: str = "rollback") -> AliasMove:
    """Move ``champion`` back to the version that held it before the current one."""
    moves = [m for m in alias_history(client, name) if m.alias == CHAMPION]  # raises if unknown
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"model {name!r} has no champion to roll back")
    target = next((m.from_version for m in reversed(moves) if m.to_version == current), None)
    if target is None:
        raise RegistryError(f"model {name!r} has no previous champion before version {current}")
    try:
        client.get_model_version(name, target)
    except MlflowException:
        raise RegistryError(f"previous champion version {target} of {name!r} no longer exists") from None
    return move_alias(client, name, CHAMPION, target, reason, "rollback",
                      {"from_version": current, "to_version": target})


def versions_table(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Versions, newest first, with aliases, key metrics and the promotion decision."""
    try:
        rm = client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"registered model {name!r} not found; train one with `seqlab run`") from None
    aliases: dict[str, list[str]] = {}
    for alias, v in (rm.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        rows.append({
            "version": str(mv.version),
            "aliases": sorted(aliases.get(str(mv.version), [])),
            "created": pd.Timestamp(mv.creation_timestamp, unit="ms").strftime("%Y-%m-%d %H:%M"),
            "test/mase": mv.tags.get("test/mase"),
            "test/mae": mv.tags.get("test/mae"),
            "decision": mv.tags.get("seqlab.promotion.decision"),
            "run_id": mv.run_id,
        })
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def score_on_window(model_uri: str, tracking_uri: str, history: pd.DataFrame, y_test: np.ndarray,
                    series_ids: list[str], train_parts: list[np.ndarray], season: int,
                    history_parts: list[np.ndarray]) -> dict[str, float]:
    """Score any registered model on a test window: forecast from ``history`` (the data up to
    the window, in the user's columns) and compare with ``y_test`` (S, H) as the challenger was."""
    from seqlab.evaluate import evaluate_forecasts

    model = load_forecaster(model_uri, tracking_uri)
    out = model.predict(history)
    horizon = y_test.shape[1]
    fc = []
    for sid in series_ids:
        vals = out.loc[out["unique_id"] == sid, "forecast"].to_numpy("float64")
        if len(vals) < horizon:
            raise RegistryError(f"model {model_uri} forecasts {len(vals)} steps, the window has {horizon}")
        fc.append(vals[:horizon])
    ev = evaluate_forecasts(y_test, np.stack(fc), train_parts, history_parts, series_ids, season)
    return ev.model


# ---------------------------------------------------------------- batch forecasting


def resolve_version(client: MlflowClient, name: str, alias: str | None = CHAMPION,
                    version: str | None = None) -> dict[str, str]:
    """Which version ``name@alias`` (or ``name/version``) is, as a loadable URI."""
    try:
        if version is not None:
            mv = client.get_model_version(name, str(version))
        else:
            mv = client.get_model_version_by_alias(name, alias or CHAMPION)
    except MlflowException:
        what = f"version {version}" if version is not None else f"alias @{alias}"
        raise RegistryError(
            f"model {name!r} has no {what}; list versions and aliases with `seqlab models {name}`"
        ) from None
    out = {"name": name, "version": str(mv.version), "run_id": mv.run_id or "",
           "model_uri": f"models:/{name}/{mv.version}"}
    if version is None:
        out["alias"] = alias or CHAMPION
    return out


def predict_checked(model: mlflow.pyfunc.PyFuncModel, history: pd.DataFrame) -> pd.DataFrame:
    """Forecast with seqlab's own check of ``history`` (one-line errors naming the column,
    frequency or length at fault) instead of MLflow's schema enforcement, which would reject,
    say, an integer target column that seqlab reads as float."""
    inner = model.unwrap_python_model()
    if getattr(inner, "meta", None) is None:  # not a seqlab model
        return model.predict(history)
    return forecast_history(inner.model, inner.scaler, inner.meta, history)


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
