"""Training flow: ingest -> validate -> prepare -> tune -> fit final -> evaluate -> register -> promote.

Run it with ``seqlab run [CONFIG] [key=value ...]`` or ``python flows/training.py [CONFIG] [...]``.
Each task wraps one ``seqlab`` function; MLflow runs are passed around by id (``RunRef``), never
as the thread-local active run.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "seqlab")  # trial progress in flow logs

import logging  # noqa: E402
import sys  # noqa: E402
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE as NO_CACHE
from prefect.context import get_run_context

from seqlab import registry, tracking
from seqlab.config import PipelineConfig, load_config, with_overrides
from seqlab.data import SeriesData
from seqlab.pipeline import (
    EvaluationResult,
    evaluate_model,
    ingest,
    prepare_data,
    save_plot,
    season_for,
    train_model,
    validate_data,
)
from seqlab.report import render_markdown
from seqlab.windows import PreparedData

DEFAULT_CONFIG = "conf/default.yaml"


@task(name="ingest", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def ingest_task(cfg: PipelineConfig):
    return ingest(cfg)


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(raw, cfg: PipelineConfig) -> SeriesData:
    return validate_data(raw, cfg)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(series: SeriesData, cfg: PipelineConfig) -> PreparedData:
    return prepare_data(series, cfg)


@task(name="start-mlflow-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def start_run_task(cfg: PipelineConfig, series: SeriesData, tags: dict[str, str]) -> tracking.RunRef:
    return tracking.start_pipeline_run(cfg, series, tags)


@task(name="tune", cache_policy=NO_CACHE)
def tune_task(cfg: PipelineConfig, series: SeriesData, run: tracking.RunRef) -> dict[str, Any]:
    return tracking.tune_under_run(cfg, series, run)


@task(name="fit-final", cache_policy=NO_CACHE)
def fit_final_task(cfg: PipelineConfig, series: SeriesData, run: tracking.RunRef):
    prepared = prepare_data(series, cfg)
    model, history = train_model(prepared, cfg)
    tracking.log_metrics(run, {"final/best_val_loss": history.best_val_loss,
                               "final/epochs": history.epochs,
                               "final/samples_per_s": history.samples_per_second})
    return model, history, prepared


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model, prepared: PreparedData, cfg: PipelineConfig, run: tracking.RunRef
                  ) -> EvaluationResult:
    result = evaluate_model(model, prepared, cfg)
    tracking.log_metrics(run, result.evaluation.flat("test"))
    with tempfile.TemporaryDirectory() as tmp:
        if cfg.eval.plot:
            png = save_plot(result, prepared, f"{tmp}/forecast_vs_actual.png", cfg.dataset_name)
            tracking.log_artifact(run, png, "plots")
        csv = Path(tmp, "test_forecast.csv")
        result.forecast_frame.to_csv(csv, index=False)
        tracking.log_artifact(run, csv, "evaluation")
    return result


@task(name="log-model", retries=1, cache_policy=NO_CACHE)
def log_model_task(model, prepared: PreparedData, series: SeriesData, cfg: PipelineConfig,
                   run: tracking.RunRef) -> registry.LoggedModel:
    meta = registry.model_meta(model, prepared.scaler, cfg, series.freq, series.covariates)
    history = registry.user_frame(series, cfg.data)
    first = series.frame["unique_id"].iloc[0]
    example = history[(series.frame["unique_id"] == first).to_numpy()].tail(cfg.window.input_size)
    example = example.reset_index(drop=True)
    prediction = registry.forecast_history(model.cpu(), prepared.scaler, meta, example)
    return registry.log_pyfunc(run.run_id, run.tracking_uri, model, meta, example, prediction)


@task(name="register", cache_policy=NO_CACHE)
def register_task(cfg: PipelineConfig, logged: registry.LoggedModel, run: tracking.RunRef,
                  result: EvaluationResult, series: SeriesData, prepared: PreparedData) -> str:
    client = run.client()
    tags = {f"test/{k}": f"{v:.6g}" for k, v in result.evaluation.model.items()}
    tags.update({
        "seqlab.data_digest": series.digest,
        "seqlab.test_window": f"{prepared.test_start[0]}/{prepared.horizon}",
        "seqlab.dataset": cfg.dataset_name,
    })
    version = registry.register(client, cfg.model_name, logged.model_uri, run.run_id, tags,
                                description=f"{cfg.model.cell} on {cfg.dataset_name}")
    tracking.set_tags(run, {"seqlab.model_name": cfg.model_name, "seqlab.model_version": version})
    return version


@task(name="promote", cache_policy=NO_CACHE)
def promote_task(cfg: PipelineConfig, version: str, run: tracking.RunRef, result: EvaluationResult,
                 series: SeriesData, prepared: PreparedData) -> registry.Decision:
    client = run.client()
    name, metric = cfg.model_name, cfg.registry.metric
    champion_version = registry.alias_version(client, name, registry.CHAMPION)
    champion_score = None
    reason_suffix = ""
    if champion_version is not None:
        # Re-score the champion on the challenger's own test window: same data, same metric.
        test_at = {sid: start for sid, start in zip(prepared.series_ids, prepared.test_start)}
        frame = series.frame
        mask = frame["ds"] < frame["unique_id"].map(test_at)
        history = registry.user_frame(series, cfg.data)[mask.to_numpy()].reset_index(drop=True)
        try:
            scores = registry.score_on_window(
                f"models:/{name}/{champion_version}", run.tracking_uri, history, prepared.y_test,
                prepared.series_ids,
                prepared.train_target, season_for(cfg, prepared.freq), prepared.history_target)
            champion_score = scores[metric]
        except Exception as e:  # an incompatible champion: keep it, say why
            get_run_logger().warning("champion v%s could not be scored: %s", champion_version, e)
            reason_suffix = f"champion v{champion_version} could not be scored on this window: {e}"
    challenger = result.evaluation.model[metric]
    if reason_suffix:
        decision = registry.Decision(False, reason_suffix + "; promote manually if intended",
                                     metric, challenger, None, champion_version)
    else:
        decision = registry.decide(metric, challenger, champion_score, cfg.registry.margin,
                                   champion_version)
    registry.apply_decision(client, name, version, decision, run.run_id)
    return decision


@task(name="finish-run", cache_policy=NO_CACHE)
def finish_run_task(run: tracking.RunRef, status: str) -> None:
    tracking.end_run(run, status)


def _prefect_tags() -> dict[str, str]:
    """Link the MLflow run back to this Prefect flow run."""
    ctx = get_run_context()
    fr = getattr(ctx, "flow_run", None)
    if fr is None:
        return {}
    tags = {"prefect.flow_run_id": str(fr.id), "prefect.flow_run_name": fr.name}
    try:
        from prefect.settings import PREFECT_UI_URL

        ui = PREFECT_UI_URL.value()
        if ui:
            tags["prefect.flow_run_url"] = f"{ui}/runs/flow-run/{fr.id}"
    except Exception:
        pass
    if fr.deployment_id:
        tags["prefect.deployment_id"] = str(fr.deployment_id)
    return tags


def _show_seqlab_logs() -> None:
    """Trial progress from seqlab's own loggers on the console (and in Prefect's run logs)."""
    logger = logging.getLogger("seqlab")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "_seqlab", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
        handler._seqlab = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def _scheduled_trigger() -> str | None:
    """``schedule`` when Prefect's scheduler created this flow run."""
    fr = getattr(get_run_context(), "flow_run", None)
    return "schedule" if fr is not None and getattr(fr, "auto_scheduled", False) else None


@flow(name="seqlab-training", log_prints=True)
def training_pipeline(config: str = DEFAULT_CONFIG, overrides: list[str] | None = None,
                      trigger: str | None = None) -> dict[str, Any]:
    """Tune, train, evaluate, register and (maybe) promote a recurrent forecaster."""
    _show_seqlab_logs()
    cfg = load_config(config, overrides or [])
    trigger = trigger or _scheduled_trigger()
    if trigger:
        cfg = with_overrides(cfg, {"tracking.trigger": trigger})
    raw = ingest_task(cfg)
    series = validate_task(raw, cfg)
    prepare_task(series, cfg)  # fail fast on the split before any run is opened
    run = start_run_task(cfg, series, _prefect_tags())
    try:
        study = tune_task(cfg, series, run)
        final_cfg = with_overrides(cfg, study["best_params"])
        model, history, prepared = fit_final_task(final_cfg, series, run)
        result = evaluate_task(model, prepared, final_cfg, run)
        summary: dict[str, Any] = {
            "dataset": cfg.dataset_name, "experiment": cfg.experiment_name, "run_id": run.run_id,
            "tracking_uri": run.tracking_uri, "model_name": cfg.model_name,
            "metrics": result.evaluation.flat("test"), "study": study["study"],
            "trials_finished": study["finished_after"], "best_trial": study["best_trial"],
            "best_params": study["best_params"], "version": None, "alias": None,
            "decision": "not registered (registry.register=false)",
        }
        if cfg.registry.register_model:
            logged = log_model_task(model, prepared, series, final_cfg, run)
            version = register_task(final_cfg, logged, run, result, series, prepared)
            summary.update(version=version, alias=registry.CHALLENGER,
                           decision="not evaluated (registry.promote=false)")
            if cfg.registry.promote:
                decision = promote_task(final_cfg, version, run, result, series, prepared)
                summary["decision"] = ("promoted to champion: " if decision.promote
                                       else "kept champion: ") + decision.reason
                if decision.promote:
                    summary["alias"] = f"{registry.CHALLENGER}, {registry.CHAMPION}"
        finish_run_task(run, "FINISHED")
    except BaseException:
        finish_run_task(run, "FAILED")
        raise
    create_markdown_artifact(markdown=render_markdown(summary), key="seqlab-training-summary",
                             description="metrics vs baselines, MLflow run, model version, alias")
    return summary


if __name__ == "__main__":
    args = sys.argv[1:]
    cfg_path = args[0] if args and "=" not in args[0] else DEFAULT_CONFIG
    rest = args[1:] if args and "=" not in args[0] else args
    out = training_pipeline(cfg_path, rest)
    from seqlab.report import render_rich

    render_rich(out)
