"""Helpers of the training flow that are not tasks: the summary's pieces, Prefect context."""

from __future__ import annotations

import logging
import os

from prefect.context import get_run_context

from seqlab.config import PipelineConfig
from seqlab.data import SeriesData
from seqlab.evaluation import Backtest
from seqlab.forecaster import FittedForecaster


def worst_series(bt: Backtest, series: SeriesData) -> dict:
    """How many series, the worst one by backtest MASE, and those no window could reach."""
    scores = bt.per_series[bt.per_series["method"] == "model"].dropna(subset=["mase"])
    worst = scores.loc[scores["mase"].idxmax()] if len(scores) else None
    evaluated = set(bt.frame["unique_id"])
    return {
        "series": len(series.series_ids),
        "worst_series": None if worst is None else str(worst["unique_id"]),
        "worst_mase": None if worst is None else float(worst["mase"]),
        "not_evaluated": [s for s in series.series_ids if s not in evaluated],
    }


def budget_cuts(evaluated: FittedForecaster, trained: PipelineConfig, length: dict) -> list[str]:
    """What the time budget cut in the evaluated fit, one line each."""
    out = []
    wanted = trained.model.ensemble_size
    if evaluated.ensemble_size < wanted:
        out.append(
            f"the ensemble keeps {evaluated.ensemble_size} of model.ensemble_size={wanted} "
            "members (the served refit repeats them)"
        )
    if evaluated.history is not None and evaluated.history.cut:
        planned = f"{length['steps']} steps" if "steps" in length else f"{length['epochs']} epochs"
        out.append(f"the evaluated fit stopped after {evaluated.steps} steps of {planned}")
    return out


def key_params(cfg: PipelineConfig) -> dict:
    """The parameters a run without tuning trained with, as the summary shows tuned ones."""
    return {
        "model.cell": cfg.model.cell,
        "model.hidden_size": cfg.model.hidden_size,
        "model.num_layers": cfg.model.num_layers,
        "train.lr": cfg.train.lr,
        "window.input_size": cfg.window.input_size,
    }


def _prefect_tags() -> dict[str, str]:
    """Link the MLflow run back to this Prefect flow run."""
    ctx = get_run_context()
    fr = getattr(ctx, "flow_run", None)
    if fr is None:
        return {}
    tags = {"prefect.flow_run_id": str(fr.id), "prefect.flow_run_name": fr.name}
    try:
        from prefect.settings import PREFECT_UI_URL

        from flows.prefect_server import TEMPORARY_ENV

        ui = PREFECT_UI_URL.value()
        if ui and not os.environ.get(TEMPORARY_ENV):  # a link only to a server that stays
            tags["prefect.flow_run_url"] = f"{ui}/runs/flow-run/{fr.id}"
    except Exception:
        pass
    if fr.deployment_id:
        tags["prefect.deployment_id"] = str(fr.deployment_id)
    return tags


def _show_seqlab_logs() -> None:
    """Trial progress from seqlab's own loggers on the console (and in Prefect's run logs)."""
    logger = logging.getLogger("seqlab")
    # `seqlab run` shows trials as a progress bar and sets WARNING; plain flow runs log them.
    logger.setLevel(os.environ.get("SEQLAB_LOG_LEVEL", "INFO").upper())
    if not any(getattr(h, "_seqlab", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"
            )
        )
        handler._seqlab = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def _scheduled_trigger() -> str | None:
    """``schedule`` when Prefect's scheduler created this flow run."""
    fr = getattr(get_run_context(), "flow_run", None)
    return "schedule" if fr is not None and getattr(fr, "auto_scheduled", False) else None
