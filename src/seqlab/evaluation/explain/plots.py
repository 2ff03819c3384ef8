"""Plots of permutation importance, an attribution and the tuning study (Optuna's own)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from seqlab.evaluation.explain.attribution import Attribution
from seqlab.evaluation.explain.groups import TARGET_LAGS

if TYPE_CHECKING:
    import optuna


log = logging.getLogger("seqlab.explain")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_importance(importance: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Horizontal bars of :func:`permutation_importance` (most important on top), with the
    standard deviation over repeats as error bars."""
    plt = _pyplot()
    frame = importance.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(frame)))
    colors = ["tab:blue" if k == TARGET_LAGS else "tab:orange" for k in frame["kind"]]
    ax.barh(frame["group"], frame["importance"], xerr=frame["std"], color=colors, capsize=3)
    ax.axvline(0, color="0.3", lw=0.8)
    base = float(importance["baseline_mase"].iloc[0]) if len(importance) else float("nan")
    ax.set_xlabel(f"increase of held-out MASE when shuffled (intact: {base:.3f})")
    ax.set_title(title or "Permutation importance (blue: target lags, orange: covariates)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_attribution(attribution: Attribution, path: str | Path, title: str = "") -> Path:
    """Heatmap of one forecast's attributions: features as rows, the window's steps as columns
    (oldest on the left, lag 1 then the horizon's known-future rows on the right); red pushes
    the forecast up, blue down."""
    plt = _pyplot()
    values = attribution.values.T  # (F, rows)
    n_feat, length = values.shape
    labels = attribution.row_labels()
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.3 * length), 1.6 + 0.5 * n_feat))
    lim = float(np.abs(values).max()) or 1.0
    im = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ticks = sorted({0, length - 1, *range(0, length, max(1, length // 12))})
    ax.set_xticks(ticks, [labels[t].removeprefix("lag ") for t in ticks])
    ax.set_yticks(range(n_feat), attribution.features)
    if attribution.input_size and attribution.input_size < length:
        ax.axvline(attribution.input_size - 0.5, color="0.2", lw=1)
    ax.set_xlabel("lag (steps before the forecast; +h: the horizon's known inputs)")
    fig.colorbar(im, ax=ax, label="attribution (output units)")
    ax.set_title(
        title
        or f"Integrated gradients, series {attribution.series_id}: "
        f"output {attribution.output:.3g} vs {attribution.baseline_output:.3g} at baseline"
    )
    return _save(fig, path)


def plot_study(study: optuna.Study, out_dir: str | Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Optuna's optimisation history and parameter importances (PED-ANOVA: no scikit-learn) of
    ``study`` as PNGs in ``out_dir``. Returns ``(written, skipped)``: file paths by plot name,
    and the reason each skipped plot was not drawn (too few complete trials, one parameter)."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plt

    _pyplot()
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = sorted({k for t in done for k in t.params})
    varied = [k for k in params if len({repr(t.params.get(k)) for t in done}) > 1]
    out = Path(out_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if len(done) < 2:
            reason = f"{len(done)} complete trial(s): a history and importances need 2"
            skipped["optimization_history"] = skipped["param_importances"] = reason
        else:
            ax = optuna_plt.plot_optimization_history(study)
            written["optimization_history"] = _save(ax.figure, out / "optimization_history.png")
            if len(varied) < 2:
                skipped["param_importances"] = (
                    f"{len(varied)} parameter(s) varied over the complete trials "
                    f"({', '.join(params) or 'none searched'}): importances compare 2 or more"
                )
            else:
                ax = optuna_plt.plot_param_importances(
                    study, evaluator=PedAnovaImportanceEvaluator(), params=varied
                )
                written["param_importances"] = _save(ax.figure, out / "param_importances.png")
    for name, reason in skipped.items():
        log.info("study plot %s skipped: %s", name, reason)
    return written, skipped


def load_study(name: str, storage: str, heartbeat_interval: int = 10) -> optuna.Study:
    """The tuning study ``name`` in ``storage`` (a ``tune.storage`` URL)."""
    import optuna

    from seqlab.tuning.storage import make_storage

    return optuna.load_study(
        study_name=name, storage=make_storage(storage, heartbeat_interval), sampler=None
    )
