"""The one module that logs runs to MLflow.

MLflow's fluent "active run" is thread-local and Prefect runs tasks in threads, so everything
here goes through ``MlflowClient`` with explicit run ids; trials running in other threads or
processes nest under the parent through the ``mlflow.parentRunId`` tag.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from seqlab.config import PipelineConfig
from seqlab.processes import owner_alive, owner_record
from seqlab.redact import redact, redact_tree
from seqlab.training.trainer import Callback

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


# ---------------------------------------------------------------- where runs go


def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///mlruns/mlflow.db`` is relative to the cwd: pin it so workers agree."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///")).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def resolve_tracking_uri(configured: str | None = None) -> str:
    return _absolute_sqlite(
        configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    )


def default_artifact_root(tracking_uri: str, configured: str | None = None) -> str | None:
    """Artifacts beside a local SQLite store (``mlruns/artifacts``); servers choose their own."""
    if configured:
        return configured if "://" in configured else Path(configured).resolve().as_uri()
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return (db.parent / "artifacts").as_uri()
    return None


@functools.lru_cache(maxsize=16)
def client_for(tracking_uri: str) -> MlflowClient:
    """One client per store, with explicit URIs: nothing process-wide is changed."""
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if EXPERIMENT_KIND_TAG not in exp.tags:  # created by an older seqlab or by hand
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    try:
        # The MLflow 3 UI opens experiments in its GenAI view unless they say otherwise.
        return client.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and create.
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@dataclass(frozen=True)
class RunRef:
    """Where a run lives; passed between tasks, threads and processes instead of active runs."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    killed_runs: tuple[str, ...] = ()
    """Runs of dead processes this run found RUNNING and marked KILLED when it started."""

    def client(self) -> MlflowClient:
        return client_for(self.tracking_uri)

    def trial_spec(self) -> dict[str, str]:
        """What a tuning worker needs to nest its trials under this run (JSON-able)."""
        return {
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.run_id,
        }


def git_commit(cwd: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_name_for(cfg: PipelineConfig, score: float | None = None) -> str:
    """``gru-mase0.612-airpassengers``: what differs between runs first (the trained cell and
    its mean backtest MASE), then the dataset, short enough for the runs table's name column
    (its Created column has the time). While tuning: ``tuning-airpassengers``."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    if score is None:
        return f"tuning-{cfg.dataset_name}"
    return f"{cfg.model.cell}-mase{score:.3f}-{cfg.dataset_name}"


OWNER_TAG = "seqlab.owner"


def kill_dead_parent_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark pipeline runs KILLED whose process on this machine is gone (a SIGKILL, a crash):
    nothing else would ever end them, and a RUNNING run that never finishes misleads."""
    runs = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    killed = []
    for r in runs:
        owner = r.data.tags.get(OWNER_TAG)
        if not owner or owner_alive(json.loads(owner)) is not False:
            continue
        client.set_tag(
            r.info.run_id,
            "seqlab.fail_reason",
            "its process died (killed or crashed) before the run finished",
        )
        client.set_terminated(r.info.run_id, "KILLED")
        killed.append(r.info.run_id)
    return killed


def start_parent_run(cfg: PipelineConfig, tags: dict[str, str]) -> RunRef:
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
    client = client_for(uri)
    exp_id = ensure_experiment(
        client, cfg.experiment_name, default_artifact_root(uri, cfg.tracking.artifact_location)
    )
    killed = kill_dead_parent_runs(client, exp_id)
    all_tags = {
        "seqlab.trigger": cfg.tracking.trigger,
        "seqlab.dataset": cfg.dataset_name,
        "mlflow.source.type": "JOB",
        "mlflow.user": os.environ.get("USER", "seqlab"),
    }
    commit = git_commit()
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    all_tags[OWNER_TAG] = json.dumps(owner_record())
    all_tags.update(tags)
    run = client.create_run(exp_id, run_name=run_name_for(cfg), tags=all_tags)
    return RunRef(uri, exp_id, run.info.run_id, tuple(killed))


def rename_run(ref: RunRef, name: str) -> None:
    ref.client().update_run(ref.run_id, name=name)


# ---------------------------------------------------------------- logging


def log_params(ref: RunRef, params: dict[str, Any]) -> None:
    client = ref.client()
    items = [Param(k, redact(str(v))[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(ref.run_id, params=items[i : i + 100])


def log_metrics(ref: RunRef, metrics: dict[str, float], step: int = 0) -> None:
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]  # drop NaN
    for i in range(0, len(items), 1000):
        ref.client().log_batch(ref.run_id, metrics=items[i : i + 1000])


def set_tags(ref: RunRef, tags: dict[str, Any]) -> None:
    items = [RunTag(k, redact(str(v))[:8000]) for k, v in tags.items()]
    ref.client().log_batch(ref.run_id, tags=items)


def log_dataset(ref: RunRef, frame: pd.DataFrame, source: str, digest: str, name: str) -> None:
    """Record the training data as an MLflow dataset input (schema, digest, source)."""
    import warnings

    with warnings.catch_warnings():  # MLflow registers the local source resolver twice
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(
            frame, source=source, targets="y", name=name, digest=digest[:36]
        )
    ref.client().log_inputs(
        ref.run_id,
        datasets=[
            DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])
        ],
    )


def log_artifact(ref: RunRef, path: str | Path, artifact_path: str | None = None) -> None:
    ref.client().log_artifact(ref.run_id, str(path), artifact_path)


def log_dict(ref: RunRef, data: Any, artifact_file: str) -> None:
    ref.client().log_dict(ref.run_id, redact_tree(data), artifact_file)


def end_run(ref: RunRef, status: str = "FINISHED") -> None:
    ref.client().set_terminated(ref.run_id, status)


# ---------------------------------------------------------------- trials as child runs


class _EpochLogger(Callback):
    """Buffers per-epoch metrics and writes them in batches (one write per epoch is too slow)."""

    def __init__(self, client: MlflowClient, run_id: str, flush_every_s: float = 5.0) -> None:
        self.client, self.run_id, self.flush_every_s = client, run_id, flush_every_s
        self.buffer: list[Metric] = []
        self.last_flush = time.monotonic()

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.buffer += [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        if len(self.buffer) >= 900 or time.monotonic() - self.last_flush > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.client.log_batch(self.run_id, metrics=self.buffer)
            self.buffer = []
        self.last_flush = time.monotonic()


@dataclass
class MlflowTrialRun:
    client: MlflowClient
    run_id: str
    logger: _EpochLogger
    name: str = "trial"

    def callback(self) -> Callback:
        return self.logger

    def close(self, state: str, metrics: dict[str, float], reason: str | None = None) -> None:
        self.logger.flush()
        now = int(time.time() * 1000)
        tags = [RunTag("optuna.trial_state", state)]
        if reason and state == "COMPLETE":  # a trial stopped at the deadline, its best kept
            tags.append(RunTag("seqlab.cut_at_deadline", "true"))
        elif reason:
            tags.append(RunTag("seqlab.fail_reason", reason[:5000]))
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v],
            tags=tags,
        )
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "KILLED": "KILLED"}.get(
            state, "FAILED"
        )
        # The runs table shows FINISHED for a pruned trial too: the name says what it was.
        score = metrics.get("val/best_mase")
        outcome = {"COMPLETE": "", "PRUNED": "pruned-", "KILLED": "killed-"}.get(state, "failed-")
        if state == "COMPLETE" and reason:
            outcome = "cut-"  # stopped at the time budget with its best so far
        shown = f"val{score:.3f}" if score is not None and score == score else ""
        name = f"{self.name}-{outcome}{shown}".rstrip("-")
        self.client.update_run(self.run_id, status=status, name=name)
        self.client.set_terminated(self.run_id, status)


@dataclass
class MlflowTrialTracking:
    """Opens one child run per trial under ``parent_run_id``; picklable (no live client)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    _client: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_client"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _client=None)

    def to_dict(self) -> dict[str, str]:
        return {
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
        }

    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def open(self, trial: Any, params: dict[str, Any]) -> MlflowTrialRun:
        client = self.client()
        run = client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.number:03d}",
            tags={
                PARENT_TAG: self.parent_run_id,
                "optuna.study_name": trial.study.study_name,
                "optuna.trial_number": str(trial.number),
                "seqlab.worker": f"{socket.gethostname()}:{os.getpid()}",
                "mlflow.source.type": "JOB",
            },
        )
        client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        logger = _EpochLogger(client, run.info.run_id)
        return MlflowTrialRun(client, run.info.run_id, logger, f"trial-{trial.number:03d}")


def child_runs(ref: RunRef) -> list[Any]:
    return ref.client().search_runs(
        [ref.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{ref.run_id}'", max_results=5000
    )


def fail_dangling_trial_runs(
    tracking_uri: str, experiment_id: str, study_name: str, running_trials: set[int]
) -> list[str]:
    """Mark trial runs FAILED whose worker died (status RUNNING, trial no longer running)."""
    client = client_for(tracking_uri)
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"attributes.status = 'RUNNING' and tags.`optuna.study_name` = '{study_name}'"
        ),
        max_results=5000,
    )
    fixed = []
    for r in runs:
        number = int(r.data.tags.get("optuna.trial_number", -1))
        if number in running_trials:
            continue
        client.set_tag(r.info.run_id, "seqlab.fail_reason", "worker process died")
        client.set_tag(r.info.run_id, "optuna.trial_state", "FAIL")
        client.set_terminated(r.info.run_id, "FAILED")
        fixed.append(r.info.run_id)
    return fixed


def start_pipeline_run(
    cfg: PipelineConfig, series: Any, tags: dict[str, str] | None = None
) -> RunRef:
    """Open the parent run: settings as params (all but the searched ones, which are logged with
    their tuned values by :func:`record_trained_config`), data digest, dataset input, commit."""
    from seqlab.config import flatten
    from seqlab.data.series import resolve_source

    ref = start_parent_run(
        cfg, {"seqlab.data_digest": series.digest, "seqlab.freq": series.freq, **(tags or {})}
    )
    searched = set(cfg.tune.search_space) if cfg.tune.n_trials else set()
    flat = {**flatten(cfg), **effective_params(cfg, series.freq, ref.tracking_uri)}
    log_params(ref, {k: v for k, v in flat.items() if k not in searched})
    log_dataset(
        ref, series.frame, str(resolve_source(cfg.data.source)), series.digest, cfg.dataset_name
    )
    return ref


def effective_params(cfg: PipelineConfig, freq: str, tracking_uri: str) -> dict[str, str]:
    """The values seqlab derives for settings left unset (``None`` in the config), as the run
    used them: compared in the UI, not ``None``."""
    from seqlab.training.recipe import season_for

    derived = {
        "registry.model_name": cfg.model_name,
        "tracking.experiment": cfg.experiment_name,
        "tracking.tracking_uri": tracking_uri,
        "tune.study_name": cfg.study_name,
        "window.val_size": cfg.val_size,
        "eval.step": cfg.backtest_step,
        "eval.season_length": season_for(cfg, freq),
        "data.freq": freq,
    }
    return {k: str(v) for k, v in derived.items()}


def record_trained_config(ref: RunRef, trained: PipelineConfig, searched: list[str]) -> None:
    """The configuration the model was trained with: tuned values as params, config.json."""
    from seqlab.config import flatten

    flat = flatten(trained)
    log_params(ref, {k: flat[k] for k in searched if k in flat})
    log_dict(ref, trained.model_dump(mode="json"), "config.json")


def log_backtest(ref: RunRef, bt: Any) -> None:
    """Mean metrics (``test/...``) and one value per window (``backtest/...``, step = window)."""
    log_metrics(ref, bt.flat("test"))
    now = int(time.time() * 1000)
    items = []
    for row in bt.per_window.itertuples(index=False):
        head = "backtest" if row.method == "model" else f"backtest/{row.method}"
        for m in bt.per_window.columns.drop(["window", "cutoff", "method"]):
            value = float(getattr(row, m))
            if value == value:
                items.append(Metric(f"{head}/{m}", value, now, int(row.window)))
    for i in range(0, len(items), 1000):
        ref.client().log_batch(ref.run_id, metrics=items[i : i + 1000])


def record_forecast(
    tracking_uri: str,
    resolved: dict[str, str],
    input_path: str,
    output: str,
    forecast: pd.DataFrame,
) -> str:
    """One run in ``<model>-forecasts`` naming the model version used, with the output attached."""
    client = client_for(tracking_uri)
    exp_id = ensure_experiment(
        client, f"{resolved['name']}-forecasts", default_artifact_root(tracking_uri)
    )
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    run = client.create_run(
        exp_id,
        run_name=f"{stamp}-{resolved['name']}-v{resolved['version']}",
        tags={
            "seqlab.model_name": resolved["name"],
            "seqlab.model_version": resolved["version"],
            "seqlab.model_alias": resolved.get("alias", ""),
            "seqlab.training_run_id": resolved.get("run_id", ""),
            "mlflow.source.type": "JOB",
        },
    )
    ref = RunRef(tracking_uri, exp_id, run.info.run_id)
    log_params(ref, {"input": input_path, "output": output, "model_uri": resolved["model_uri"]})
    log_metrics(
        ref, {"forecast/series": forecast["unique_id"].nunique(), "forecast/rows": len(forecast)}
    )
    log_artifact(ref, output, "forecast")
    end_run(ref)
    return run.info.run_id
