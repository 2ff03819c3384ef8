"""``explain()``: every view for a run, as files; a failed part never fails the run."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqlab.evaluation.explain.attribution import Attribution, attribute_latest, attributions_json
from seqlab.evaluation.explain.permutation import permutation_importance
from seqlab.evaluation.explain.plots import (
    load_study,
    plot_attribution,
    plot_importance,
    plot_study,
)
from seqlab.evaluation.explain.windows import held_out_windows
from seqlab.features.windows import PreparedData

if TYPE_CHECKING:
    import optuna

    from seqlab.config import PipelineConfig
    from seqlab.data.series import SeriesData
    from seqlab.forecaster import FittedForecaster


log = logging.getLogger("seqlab.explain")


@dataclass
class Explanation:
    """What :func:`explain` wrote and found."""

    importance: pd.DataFrame | None = None
    attributions: list[Attribution] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    """Written files by name (``permutation_importance.csv``, ``attribution.png``...)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Parts that do not apply, with the reason (a study with one complete trial)."""
    errors: dict[str, str] = field(default_factory=dict)
    """Parts that failed, with the error's first line."""

    @property
    def top_feature(self) -> str | None:
        """The most important group of inputs, ``None`` without permutation importance."""
        if self.importance is None or not len(self.importance):
            return None
        return str(self.importance["group"].iloc[0])

    def metrics(self) -> dict[str, float]:
        if self.importance is None or not len(self.importance):
            return {}
        return {
            "explain/baseline_mase": float(self.importance["baseline_mase"].iloc[0]),
            "explain/top_importance": float(self.importance["importance"].iloc[0]),
        }


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def explain(
    fitted: FittedForecaster,
    series: SeriesData,
    cfg: PipelineConfig,
    out_dir: str | Path,
    study: optuna.Study | str | None = None,
    plots: bool = True,
    n_repeats: int = 5,
    max_windows: int | None = 2048,
    max_series: int = 3,
    steps: int = 32,
) -> Explanation:
    """Permutation importance and attributions of ``fitted``, the model trained before the
    first backtest cutoff with ``cfg`` (the trained configuration: tuned values included), and
    the plots of ``study`` (a study, or the name of one in ``cfg.tune.storage``; ``""``: none),
    as files in ``out_dir``: ``permutation_importance.csv``, ``attribution.json`` and, with
    ``plots``, their PNGs and the study's. Never raises for a part: a failed one is left out
    with its reason in ``errors`` (logged as a warning)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = Explanation()
    target, covs, seed = cfg.data.target, list(series.covariates), cfg.train.seed

    prepared: PreparedData | None = None
    try:
        prepared = held_out_windows(series, cfg)
        mine, theirs = prepared.scaler, fitted.spec.scaler
        same = mine.series_ids == theirs.series_ids and mine.loc.shape == theirs.loc.shape
        if not same or not (
            np.allclose(mine.loc, theirs.loc) and np.allclose(mine.scale, theirs.scale)
        ):
            raise ValueError(
                "the model was not trained on the part before the first backtest cutoff "
                f"(its holdout: {fitted.holdout}; expected {cfg.test_size})"
            )
    except Exception as e:  # noqa: BLE001 - explanations never fail a run
        result.errors["held_out_windows"] = _reason(e)
        prepared = None

    if prepared is not None:
        try:
            imp = permutation_importance(
                fitted.network, prepared, covs, n_repeats, seed, max_windows, target
            )
            imp.to_csv(out / "permutation_importance.csv", index=False)
            result.importance = imp
            result.files["permutation_importance.csv"] = out / "permutation_importance.csv"
            if plots:
                png = plot_importance(imp, out / "permutation_importance.png")
                result.files["permutation_importance.png"] = png
        except Exception as e:  # noqa: BLE001
            result.errors["permutation_importance"] = _reason(e)
        try:
            attrs = attribute_latest(fitted.network, prepared, covs, max_series, steps, target)
            if not attrs:
                raise ValueError("no held-out window to attribute")
            path = out / "attribution.json"
            path.write_text(json.dumps(attributions_json(attrs, steps), indent=1))
            result.attributions = attrs
            result.files["attribution.json"] = path
            if plots:
                png = plot_attribution(attrs[0], out / "attribution.png")
                result.files["attribution.png"] = png
        except Exception as e:  # noqa: BLE001
            result.errors["attribution"] = _reason(e)

    if plots and study is not None and study != "":
        try:
            if isinstance(study, str):
                study = load_study(study, cfg.tune.storage, cfg.tune.heartbeat_interval)
            written, skipped = plot_study(study, out)
            result.files.update({f"{k}.png": v for k, v in written.items()})
            result.skipped.update(skipped)
        except Exception as e:  # noqa: BLE001
            result.errors["study_plots"] = _reason(e)

    for part, reason in result.errors.items():
        log.warning("explanation %s failed: %s", part, reason)
    return result
