"""Training flow: ingest -> validate -> tune -> refit -> backtest -> refit for serving ->
register -> promotion gate.

Run it with ``seqlab run [CONFIG] [key=value ...]`` or ``python flows/training.py [...]``. Each
task wraps one ``seqlab`` function; MLflow runs are passed around by id (``RunRef``), never as
the thread-local active run.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "seqlab")  # trial progress in flow logs
# seqlab logs outside a flow run (a worker, a test) are fine: no warning about the missing run.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NONE as NO_CACHE  # noqa: E402

from flows.report import RunSummary, render_markdown  # noqa: E402
from flows.training_support import (  # noqa: E402
    _prefect_tags,
    _scheduled_trigger,
    _show_seqlab_logs,
    budget_cuts,
    key_params,
    worst_series,
)
from seqlab import registry  # noqa: E402
from seqlab.budget import Budget  # noqa: E402
from seqlab.config import (  # noqa: E402
    ConfigError,
    PipelineConfig,
    load_config,
    parse_override_args,
    with_overrides,
)
from seqlab.data import DataError, SeriesData  # noqa: E402
from seqlab.data.checks import validation_windows  # noqa: E402
from seqlab.evaluation import Backtest, plot_backtest  # noqa: E402
from seqlab.killpoints import kill_point  # noqa: E402
from seqlab.pipeline import (  # noqa: E402
    FittedForecaster,
    backtest_model,
    calibrate,
    ingest,
    learn_steps,
    refit,
    season_for,
    validate_data,
)
from seqlab.registry import promotion, serving, tracking  # noqa: E402
from seqlab.tuning import TuningResult  # noqa: E402
from seqlab.tuning.space import replaced_by_tuning  # noqa: E402
from seqlab.tuning.tracked import tune_under_run  # noqa: E402


def _transient(task, task_run, state) -> bool:
    """Retry I/O hiccups, never a deterministic user error (bad config or data)."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, (ConfigError, DataError, registry.RegistryError))


@task(
    name="ingest",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_transient,
    cache_policy=NO_CACHE,
)
def ingest_task(cfg: PipelineConfig):
    return ingest(cfg)


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(raw, cfg: PipelineConfig) -> SeriesData:
    from seqlab.evaluation.references import check_available

    check_available(cfg.eval.references)  # the optional extra, before any tuning
    return validate_data(raw, cfg)


@task(name="start-mlflow-run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def start_run_task(
    cfg: PipelineConfig, series: SeriesData, tags: dict[str, str]
) -> tracking.RunRef:
    return tracking.start_pipeline_run(cfg, series, tags)


@task(name="tune", cache_policy=NO_CACHE)
def tune_task(
    cfg: PipelineConfig, series: SeriesData, run: tracking.RunRef, deadline: float | None = None
) -> TuningResult:
    return tune_under_run(cfg, series, run, deadline=deadline)


@task(name="record-config", cache_policy=NO_CACHE)
def record_config_task(
    run: tracking.RunRef, trained: PipelineConfig, tuning: TuningResult, series: SeriesData
) -> None:
    searched = sorted(trained.tune.search_space) if tuning.tuned else []
    tracking.record_trained_config(run, trained, searched)
    if tuning.val_windows is not None:  # validation windows per series the selection used
        held = [tuning.val_windows, tuning.val_windows_max]
    elif trained.train.patience is not None:  # early stopping without tuning
        held = [k for k in validation_windows(trained, series.lengths()).values() if k]
    else:
        held = []
    if held:
        tracking.log_params(run, {"tune.val_windows": min(held), "tune.val_windows_max": max(held)})
    season = season_for(trained, series.freq)  # window.residual=auto, as the fits resolved it
    tracking.log_params(run, {"window.residual_effective": trained.residual_for(season)})
    tags = {"seqlab.study": tuning.study, "seqlab.cell": trained.model.cell}
    if tuning.warm_started_from:
        tags["seqlab.warm_started_from"] = tuning.warm_started_from
    tracking.set_tags(run, tags)


@task(name="learn-steps", cache_policy=NO_CACHE)
def learn_steps_task(
    series: SeriesData, cfg: PipelineConfig, deadline: float | None = None
) -> int | None:
    return learn_steps(series, cfg, deadline)


@task(name="refit", cache_policy=NO_CACHE)
def refit_task(
    series: SeriesData,
    cfg: PipelineConfig,
    holdout: int,
    epochs: int | None = None,
    steps: int | None = None,
    deadline: float | None = None,
) -> FittedForecaster:
    kill_point("evaluated-refit" if holdout else "serving-refit")
    return refit(series, cfg, epochs, holdout, steps, deadline)


@task(name="repair", cache_policy=NO_CACHE)
def repair_task(cfg: PipelineConfig, run: tracking.RunRef) -> list[str]:
    """What killed runs left, found and repaired, one line each (logged and in the summary)."""
    from seqlab.registry.repair import repair_registry

    lines = [
        f"run {r} marked KILLED: its process died before the run finished" for r in run.killed_runs
    ]
    if cfg.registry.register_model:
        lines += repair_registry(run.client(), cfg.model_name)
    record_repairs(run, lines)
    return lines


def record_repairs(run: tracking.RunRef, lines: list[str]) -> None:
    """Each line as a warning, and all of them as the run's ``seqlab.repaired`` tag."""
    for line in lines:
        get_run_logger().warning("repaired: %s", line)
    if lines:
        tracking.set_tags(run, {"seqlab.repaired": "\n".join(lines)[:5000]})


@task(name="backtest", cache_policy=NO_CACHE)
def backtest_task(
    fitted: FittedForecaster, series: SeriesData, cfg: PipelineConfig, run: tracking.RunRef
) -> Backtest:
    kill_point("backtest")
    bt = backtest_model(fitted, series, cfg)
    tracking.log_backtest(run, bt)
    # What the evaluated fit trained, as params too: compared and filtered in the runs table.
    tracking.log_params(
        run,
        {
            "final.epochs": fitted.epochs,
            "final.steps": fitted.steps,
            "final.ensemble_size": fitted.ensemble_size,
        },
    )
    tracking.log_metrics(
        run,
        {
            "final/epochs": fitted.epochs,
            "final/steps": fitted.steps,
            "final/ensemble_size": fitted.ensemble_size,
            "final/samples_per_s": fitted.history.samples_per_second if fitted.history else 0.0,
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        if cfg.eval.plot:
            png = plot_backtest(series, bt, f"{tmp}/backtest.png", cfg.dataset_name)
            tracking.log_artifact(run, png, "plots")
        for name, frame in (
            ("cross_validation", bt.frame),
            ("per_window", bt.per_window),
            ("per_series", bt.per_series),
        ):
            path = Path(tmp, f"{name}.csv")
            frame.to_csv(path, index=False)
            tracking.log_artifact(run, path, "backtest")
    return bt


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(
    fitted: FittedForecaster,
    series: SeriesData,
    cfg: PipelineConfig,
    run: tracking.RunRef,
    tuning: TuningResult,
) -> None:
    """Permutation importance, attributions and the study's plots under ``explain/`` on the
    parent run, the most important input group as tag ``seqlab.top_feature``. A failure here
    is a warning: it never fails the training run."""
    from seqlab.evaluation import explain

    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = explain.explain(fitted, series, cfg, tmp, tuning.study, cfg.eval.plot)
            for path in result.files.values():
                tracking.log_artifact(run, path, "explain")
        tracking.log_metrics(run, result.metrics())
        if result.top_feature is not None:
            tracking.set_tags(run, {"seqlab.top_feature": result.top_feature})
    except Exception as e:  # noqa: BLE001 - explanations never fail a run
        get_run_logger().warning("explanations not logged: %s", str(e).splitlines()[0][:300])


@task(name="log-model", retries=1, cache_policy=NO_CACHE)
def log_model_task(
    fitted: FittedForecaster, series: SeriesData, cfg: PipelineConfig, run: tracking.RunRef
) -> serving.LoggedModel:
    history = fitted.columns.user_frame(series)
    first = (series.frame["unique_id"] == series.frame["unique_id"].iloc[0]).to_numpy()
    example = history[first].tail(cfg.window.input_size).reset_index(drop=True)
    if series.future:  # an input with known-future covariates ends with the horizon's rows
        example = history[first].tail(cfg.window.input_size + cfg.window.horizon)
        example = example.reset_index(drop=True)
        example.loc[cfg.window.input_size :, cfg.data.target] = float("nan")
    prediction = fitted.predict_frame(example)
    logged = serving.log_pyfunc(run.client(), run.run_id, fitted, example, prediction)
    kill_point("log-model")  # logged, not registered
    return logged


@task(name="register", cache_policy=NO_CACHE)
def register_task(
    cfg: PipelineConfig,
    logged: serving.LoggedModel,
    run: tracking.RunRef,
    bt: Backtest,
    served: FittedForecaster,
    series: SeriesData,
) -> str:
    import json

    tags = {f"test/{k}": f"{v:.6g}" for k, v in bt.mean["model"].items()}
    tags.update(
        {f"test/seasonal_naive/{k}": f"{v:.6g}" for k, v in bt.mean["seasonal_naive"].items()}
    )
    ends = served.training_end
    tags.update(
        {
            "seqlab.data_digest": series.digest,
            "seqlab.dataset": cfg.dataset_name,
            "seqlab.cell": cfg.model.cell,
            "seqlab.served": cfg.registry.serve,
            "seqlab.backtest_cutoffs": json.dumps(bt.cutoffs),
            "seqlab.training_end": max(ends.values()),
            "seqlab.training_end_by_series": json.dumps(ends)[:5000],
        }
    )
    version = registry.register(
        run.client(),
        cfg.model_name,
        logged.artifact_location,
        run.run_id,
        tags,
        f"{cfg.model.cell} on {cfg.dataset_name}",
        logged.model_id,
    )
    tracking.set_tags(run, {"seqlab.model_name": cfg.model_name, "seqlab.model_version": version})
    serving.link_version(run.client(), logged.model_id, cfg.model_name, version)
    return version


@task(name="promote", cache_policy=NO_CACHE)
def promote_task(
    cfg: PipelineConfig, version: str, run: tracking.RunRef, bt: Backtest, series: SeriesData
) -> promotion.Decision:
    client, name = run.client(), cfg.model_name
    champion_version = registry.alias_version(client, name, registry.CHAMPION)
    champion = None
    if champion_version is not None and champion_version != version:
        try:
            model = serving.load_forecaster(client, name, champion_version)
            loaded = model.unwrap_python_model().forecaster
            champion = promotion.score_champion(loaded, champion_version, series, cfg, bt)
        except Exception as e:  # noqa: BLE001 - an unloadable champion is kept, with the reason
            champion = promotion.ChampionScores(
                champion_version, promotion.NOT_COMPARED, error=str(e).splitlines()[0][:300]
            )
        if champion.backtest is None:
            get_run_logger().warning("champion v%s: %s", champion_version, champion.error)
    r = cfg.registry
    decision = promotion.decide(
        bt, r.metric, r.margin, r.require_beat_baseline, champion, baseline=r.baseline
    )
    if decision.promote:  # the move (audit line, then alias) first: a kill after it is repaired
        registry.move_alias(
            client,
            name,
            registry.CHAMPION,
            version,
            decision.reason,
            "automatic",
            decision.figures(),
        )
        kill_point("promote")
    registry.record_decision(client, name, version, decision.tags(), run.run_id)
    client.update_model_version(name, version, description=promotion.decision_markdown(decision))
    tracking.log_dict(run, decision.figures(), "promotion/decision.json")
    return decision


@task(name="finish-run", cache_policy=NO_CACHE)
def finish_run_task(
    run: tracking.RunRef, status: str, summary: RunSummary | None, cfg: PipelineConfig
) -> None:
    if summary is not None:
        if not cfg.tracking.run_name:  # the trained cell and its score, readable in the UI
            trained = with_overrides(cfg, {"model.cell": summary.cell})
            tracking.rename_run(
                run, tracking.run_name_for(trained, summary.metrics.get("test/mase"))
            )
        tracking.set_tags(run, {"mlflow.note.content": render_markdown(summary)})
    tracking.end_run(run, status)


@flow(name="seqlab-training", log_prints=True)
def training_pipeline(
    config: str | None = None, overrides: list[str] | None = None, trigger: str | None = None
) -> RunSummary:
    """Tune, train, backtest, register and (maybe) promote a recurrent forecaster."""
    _show_seqlab_logs()
    logger = get_run_logger()
    cfg = load_config(config, overrides or [])
    trigger = trigger or _scheduled_trigger()
    if trigger:
        cfg = with_overrides(cfg, {"tracking.trigger": trigger})
    replaced = (
        replaced_by_tuning(parse_override_args(overrides or []), cfg.tune.search_space)
        if cfg.tune.n_trials
        else []
    )
    for key in replaced:
        logger.warning(
            "%s is in tune.search_space: tuning replaces the value you set; remove "
            "it from the search space (or set tune.n_trials=0) to keep it",
            key,
        )
    budget = Budget(cfg.time_budget)
    series = validate_task(ingest_task(cfg), cfg)
    run = start_run_task(cfg, series, _prefect_tags())
    summary: RunSummary | None = None
    try:
        repaired = repair_task(cfg, run)
        tuning = tune_task(cfg, series, run, budget.tuning_deadline(cfg.tune.timeout))
        if tuning.orphaned_failed:
            repaired += [f"trial {n} of a dead process failed" for n in tuning.orphaned_failed]
            record_repairs(run, repaired)
        trained = with_overrides(cfg, tuning.best_params)
        cuts = [
            f"trial {n} stopped at the deadline, with its best so far" for n in tuning.cut_trials
        ]
        length = (  # the evaluated fit trains as many optimizer steps as the chosen trial did
            {"steps": tuning.best_steps}
            if tuning.best_steps is not None
            else {"epochs": tuning.best_epoch + 1}
            if tuning.best_epoch is not None
            else {"steps": learn_steps_task(series, trained, budget.tuning_deadline())}
        )
        if length.get("steps", 0) is None:  # no early stopping: max_epochs epochs
            length = {"epochs": trained.train.max_epochs}
        evaluated = refit_task(
            series, trained, cfg.test_size, **length, deadline=budget.fit_deadline()
        )
        cuts += budget_cuts(evaluated, trained, length)
        trained = with_overrides(trained, {"model.ensemble_size": evaluated.ensemble_size})
        for line in cuts:
            logger.warning("time budget: %s", line)
        record_config_task(run, trained, tuning, series)
        bt = backtest_task(evaluated, series, trained, run)
        if budget.allows_explanations():
            explain_task(evaluated, series, trained, run, tuning)
        else:
            cuts.append(f"explanations skipped ({budget.left():.0f} s of {cfg.time_budget:g} left)")
            logger.warning("time budget: %s", cuts[-1])
        summary = RunSummary(
            dataset=cfg.dataset_name,
            experiment=cfg.experiment_name,
            run_id=run.run_id,
            tracking_uri=run.tracking_uri,
            model_name=cfg.model_name,
            metrics=bt.flat("test"),
            backtest_windows=len(bt.windows),
            cutoffs=bt.cutoffs,
            cell=trained.model.cell,
            trained_params=tuning.best_params or key_params(trained),
            study=tuning.study,
            trials_finished=tuning.finished_after,
            best_trial=tuning.best_trial,
            warm_started_from=tuning.warm_started_from,
            replaced_by_tuning=replaced,
            served=cfg.registry.serve,
            undefined_mase=sorted(
                map(str, bt.frame.loc[bt.frame["mase_scale"].isna(), "unique_id"].unique())
            ),
            budget=cuts,
            repaired=repaired
            + [f"trial {n} of a dead worker failed" for n in tuning.orphaned_failed],
            **worst_series(bt, series),
        )
        if cfg.registry.register_model:
            served = (  # the judged recipe, for as many optimizer steps, on the whole history
                refit_task(series, trained, 0, steps=evaluated.steps)
                if cfg.registry.serve == "refit"
                else evaluated
            )
            served = calibrate(served, bt, trained, series)  # interval margins from the backtest
            logged = log_model_task(served, series, trained, run)
            version = register_task(trained, logged, run, bt, served, series)
            summary.version, summary.alias = version, registry.CHALLENGER
            summary.decision = "not evaluated (registry.promote=false)"
            if cfg.registry.promote:
                decision = promote_task(trained, version, run, bt, series)
                summary.promoted = decision.promote
                summary.decision = (
                    "promoted to champion: " if decision.promote else "not promoted: "
                ) + decision.reason
                if decision.promote:
                    summary.alias = f"{registry.CHALLENGER}, {registry.CHAMPION}"
        finish_run_task(run, "FINISHED", summary, cfg)
    except BaseException:
        finish_run_task(run, "FAILED", None, cfg)
        raise
    create_markdown_artifact(
        markdown=render_markdown(summary),
        key="seqlab-training-summary",
        description="metrics vs baselines, MLflow run, model version, alias",
    )
    return summary


if __name__ == "__main__":
    args = sys.argv[1:]
    cfg_path = args[0] if args and "=" not in args[0] else None
    rest = args[1:] if args and "=" not in args[0] else args
    from flows.prefect_server import temporary_prefect_api
    from flows.report import render_rich

    with temporary_prefect_api():  # PREFECT_API_URL's server, else one that ends with this one
        summary = training_pipeline(cfg_path, rest)
    render_rich(summary)
