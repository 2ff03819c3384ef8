"""Run summaries as plain data, rendered as Markdown (Prefect artifact) or a terminal table."""

from __future__ import annotations

from typing import Any

METRIC_ORDER = ("mase", "smape", "mae", "rmse")


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


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# seqlab training: {summary.get('dataset', '')}", ""]
    lines += ["| | " + " | ".join(m.upper() for m in METRIC_ORDER) + " |",
              "|---|" + "---:|" * len(METRIC_ORDER)]
    for name, ms in comparison_rows(summary.get("metrics", {})):
        lines.append(f"| {name} | " + " | ".join(f"{ms.get(m, float('nan')):.4f}" for m in METRIC_ORDER) + " |")
    lines += [
        "",
        f"- MLflow run: `{summary.get('run_id')}` (experiment `{summary.get('experiment')}`)",
        f"- Model: `{summary.get('model_name')}` version **{summary.get('version')}**, alias "
        f"`{summary.get('alias')}`",
        f"- Promotion: {summary.get('decision')}",
        f"- Study: `{summary.get('study')}` ({summary.get('trials_finished')} finished trials, best "
        f"#{summary.get('best_trial')})",
        f"- Best parameters: `{summary.get('best_params')}`",
    ]
    if summary.get("tracking_uri"):
        lines.append(f"- Tracking URI: `{summary['tracking_uri']}`")
    return "\n".join(lines)


def render_rich(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"seqlab: test window of {summary.get('dataset')} (lower is better)")
    table.add_column("forecaster")
    for m in METRIC_ORDER:
        table.add_column(m.upper(), justify="right")
    for name, ms in comparison_rows(summary.get("metrics", {})):
        style = "bold green" if name == "model" else None
        table.add_row(name, *(f"{ms.get(m, float('nan')):.4f}" for m in METRIC_ORDER), style=style)
    console.print(table)
    console.print(f"MLflow run id : {summary.get('run_id')}  (experiment {summary.get('experiment')})")
    console.print(f"model version : {summary.get('model_name')} v{summary.get('version')}  "
                  f"alias: {summary.get('alias')}")
    console.print(f"promotion     : {summary.get('decision')}")
    console.print(f"study         : {summary.get('study')}  finished trials: "
                  f"{summary.get('trials_finished')}  best: #{summary.get('best_trial')} "
                  f"{summary.get('best_params')}")
