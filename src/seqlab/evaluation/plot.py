"""The backtest plot: actuals, model and seasonal-naive forecasts of every window."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seqlab.data.series import SeriesData
from seqlab.evaluation.backtest import Backtest
from seqlab.evaluation.metrics import quantile_levels
from seqlab.evaluation.references import COLUMNS as REFERENCES


def plot_backtest(
    series: SeriesData,
    bt: Backtest,
    path: str | Path,
    title: str = "",
    max_series: int = 4,
    context: int | None = None,
) -> Path:
    """Actuals, model and seasonal-naive forecasts of every window on a dated x-axis, zoomed on
    the backtest (plus ``context`` points of history before it, default two windows' worth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sids = list(dict.fromkeys(bt.frame["unique_id"]))[:max_series]
    fig, axes = plt.subplots(len(sids), 1, figsize=(11, 3.4 * len(sids)), squeeze=False)
    for ax, sid in zip(axes[:, 0], sids):
        fc = bt.frame[bt.frame["unique_id"] == sid]
        g = series.frame[series.frame["unique_id"] == sid]
        horizon = int(fc.groupby("window").size().max())
        first = fc["ds"].min()
        before = g[g["ds"] < first].tail(context if context is not None else 2 * horizon)
        shown = pd.concat([before, g[g["ds"] >= first]])
        ax.plot(shown["ds"], shown["y"], color="black", lw=1.6, label="actual")
        levels = quantile_levels(fc)
        for w, part in fc.groupby("window", sort=True):
            label = w == fc["window"].min()
            if len(levels) >= 2:  # the widest interval the model forecasts
                lo, hi = levels[0], levels[-1]
                ax.fill_between(
                    part["ds"],
                    part[f"q{lo:g}"],
                    part[f"q{hi:g}"],
                    color="tab:blue",
                    alpha=0.2,
                    lw=0,
                    label=f"model {lo:g}-{hi:g} quantiles" if label else None,
                )
            ax.plot(
                part["ds"], part["model"], color="tab:blue", lw=2, label="model" if label else None
            )
            ax.plot(
                part["ds"],
                part["seasonal_naive"],
                color="tab:orange",
                lw=1,
                ls="--",
                label="seasonal naive" if label else None,
            )
            for ref, color in zip(
                [r for r in REFERENCES if r in part], ("tab:green", "tab:red", "tab:purple")
            ):
                ax.plot(
                    part["ds"], part[ref], color=color, lw=1, ls="--", label=ref if label else None
                )
            ax.axvline(part["cutoff"].iloc[0], color="0.6", lw=0.8, ls=":")
        ax.set_title(f"{title} {sid}: {fc['window'].nunique()} backtest windows".strip())
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
