"""Run summaries as typed data, rendered as Markdown (Prefect artifact, MLflow run description)
or a terminal table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

METRIC_ORDER = ("mase", "smape", "mae", "rmse")


@dataclass
class RunSummary:
    dataset: str
    experiment: str
    run_id: str
    tracking_uri: str
    model_name: str
    metrics: dict[str, float]  # test/... means over the backtest windows
    backtest_windows: int
    cutoffs: list[str]
    cell: str
    trained_params: dict[str, Any] = field(default_factory=dict)
    study: str = ""
    trials_finished: int = 0
    best_trial: int | None = None
    warm_started_from: str | None = None
    replaced_by_tuning: list[str] = field(default_factory=list)
    undefined_mase: list[str] = field(default_factory=list)
    """Series whose MASE is undefined (a constant history): left out of the mean MASE."""
    series: int = 1
    worst_series: str | None = None
    worst_mase: float | None = None
    not_evaluated: list[str] = field(default_factory=list)
    """Series too short for any backtest window (named in a warning, still forecast)."""
    version: str | None = None
    alias: str | None = None
    decision: str = "not registered (registry.register=false)"
    promoted: bool = False
    served: str = "refit"
    budget: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    """What killed runs had left (a RUNNING run, a half-registered version, an alias move without
    its alias), found and repaired by this run, one line each."""
    """What the run's time budget cut (trials, ensemble members, explanations), one line each."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def comparison_rows(metrics: dict[str, float]) -> list[tuple[str, dict[str, float]]]:
    """``{"test/mase":..,"test/naive/mase":..}`` -> rows of (name, {metric: value})."""
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] != "test" or len(parts) not in (2, 3):
            continue
        name = "model" if len(parts) == 2 else parts[1]
        rows.setdefault(name, {})[parts[-1]] = value
    order = ["model", "naive", "seasonal_naive"]
    return sorted(rows.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)


def _notes(s: RunSummary) -> list[str]:
    notes = []
    if s.warm_started_from:
        notes.append(
            f"data or settings changed since study {s.warm_started_from}: tuned anew in "
            f"{s.study}, warm-started with its best parameters"
        )
    if s.replaced_by_tuning:
        notes.append(
            "tuning replaced the value(s) you set for "
            + ", ".join(s.replaced_by_tuning)
            + " (they are in tune.search_space)"
        )
    coverage = sorted(k for k in s.metrics if k.startswith("test/coverage_"))
    if coverage:
        held = ", ".join(
            f"{k.rsplit('_', 1)[1]}% band held {100 * s.metrics[k]:.0f}%" for k in coverage
        )
        raw = [s.metrics.get(k.replace("test/", "test/raw_")) for k in coverage]
        calibrated = (
            " (calibrated on the other windows' errors; the network's own: "
            + ", ".join(f"{100 * r:.0f}%" for r in raw if r is not None)
            + ")"
            if all(r is not None for r in raw)
            else " (split conformal: each window calibrated on the other windows' errors)"
        )
        notes.append(
            f"intervals: {held} of the backtest actuals{calibrated}; scaled pinball loss "
            f"{s.metrics.get('test/spl', float('nan')):.4f}"
        )
    notes += [f"time budget: {line}" for line in s.budget]
    notes += [f"repaired: {line}" for line in s.repaired]
    if s.series > 1 and s.worst_series is not None:
        notes.append(
            f"{s.series} series; worst by backtest MASE: {s.worst_series} "
            f"({s.worst_mase:.3f}); per-series scores in the run's backtest/per_series.csv"
        )
    if s.not_evaluated:
        shown = ", ".join(s.not_evaluated[:5]) + (" ..." if len(s.not_evaluated) > 5 else "")
        notes.append(
            f"{len(s.not_evaluated)} series too short for any backtest window "
            f"({shown}): left out of the metrics, still trained on and forecast"
        )
    if s.undefined_mase:
        shown = ", ".join(s.undefined_mase[:5]) + (" ..." if len(s.undefined_mase) > 5 else "")
        notes.append(
            f"MASE is undefined for {len(s.undefined_mase)} series with a constant "
            f"history ({shown}): they are left out of the mean MASE; MAE covers them"
        )
    return notes


def _study_line(s: RunSummary) -> str:
    if not s.study:
        return "none: the parameters set were trained (tune.n_trials=0)"
    return f"{s.study} ({s.trials_finished} finished trials, best #{s.best_trial})"


def render_markdown(s: RunSummary) -> str:
    lines = [
        f"# seqlab training: {s.dataset}",
        "",
        f"Mean over {s.backtest_windows} rolling-origin backtest window(s) "
        f"(cutoffs {', '.join(c[:10] for c in s.cutoffs)}); lower is better.",
        "",
        "| | " + " | ".join(m.upper() for m in METRIC_ORDER) + " |",
        "|---|" + "---:|" * len(METRIC_ORDER),
    ]
    for name, ms in comparison_rows(s.metrics):
        lines.append(
            f"| {name} | "
            + " | ".join(f"{ms.get(m, float('nan')):.4f}" for m in METRIC_ORDER)
            + " |"
        )
    lines += [
        "",
        f"- Trained: `{s.cell}` with `{s.trained_params}` (served model: {s.served})",
        f"- MLflow run: `{s.run_id}` (experiment `{s.experiment}`)",
        f"- Model: `{s.model_name}` version **{s.version}**, alias `{s.alias}`",
        f"- Promotion: {s.decision}",
        f"- Study: {_study_line(s)}",
    ]
    lines += [f"- Note: {n}" for n in _notes(s)]
    return "\n".join(lines)


def render_rich(s: RunSummary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)  # long lines stay whole instead of wrapping at 80 columns
    table = Table(
        title=f"seqlab: {s.dataset}, mean over {s.backtest_windows} backtest "
        "window(s) (lower is better)"
    )
    table.add_column("forecaster")
    for m in METRIC_ORDER:
        table.add_column(m.upper(), justify="right")
    for name, ms in comparison_rows(s.metrics):
        style = "bold green" if name == "model" else None
        table.add_row(name, *(f"{ms.get(m, float('nan')):.4f}" for m in METRIC_ORDER), style=style)
    console.print(table)
    console.print(f"trained       : {s.cell} {s.trained_params}  (served: {s.served})")
    console.print(f"MLflow run id : {s.run_id}  (experiment {s.experiment})")
    console.print(f"model version : {s.model_name} v{s.version}  alias: {s.alias}")
    console.print(f"promotion     : {s.decision}")
    console.print(f"study         : {_study_line(s)}")
    for n in _notes(s):
        console.print(f"note          : {n}")
