"""The promotion gate: must beat seasonal naive, then the champion on windows neither has seen.

1. A challenger whose mean backtest metric does not beat seasonal naive on the same windows is
   registered but never promoted, also when there is no champion yet
   (``registry.require_beat_baseline``).
2. Champion and challenger are compared on the same backtest cutoffs through one prediction path
   (:func:`seqlab.inference.forecast_series`, which the served pyfunc runs), and only on cutoffs
   after the champion's recorded training end. Where the champion saw every window (it was
   refit on the history the challenger is tested on), its recipe (configuration and epoch
   count) is retrained on the history before the challenger's first cutoff: recipes are then
   compared on unseen data. The decision says which was done.
3. Ties and NaN keep the champion. Both score vectors and the cutoffs go into the audit trail.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqlab.config import PipelineConfig, build_config, with_overrides
from seqlab.data import SeriesData
from seqlab.evaluate import Backtest, backtest

NO_CHAMPION = "no champion"
UNSEEN = "champion scored on windows after its training end"
RETRAINED = "champion recipe retrained before the challenger's first cutoff"
NOT_COMPARED = "champion could not be scored"


@dataclass(frozen=True)
class ChampionScores:
    """The champion's scores on some of the challenger's backtest windows, and how obtained."""

    version: str
    comparison: str  # UNSEEN | RETRAINED | NOT_COMPARED
    backtest: Backtest | None = None
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    challenger: float
    baseline: float | None
    champion: float | None = None
    champion_version: str | None = None
    comparison: str = NO_CHAMPION
    windows: list[int] = field(default_factory=list)
    cutoffs: list[str] = field(default_factory=list)
    challenger_scores: list[float] = field(default_factory=list)
    champion_scores: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def tags(self) -> dict[str, str]:
        """Registry/run tags: the verdict, and every figure behind it."""

        def fmt(v: float | None) -> str:
            return "" if v is None else f"{v:.6g}"

        return {
            "seqlab.promotion.decision": "promoted" if self.promote else "not_promoted",
            "seqlab.promotion.reason": self.reason[:5000],
            "seqlab.promotion.metric": self.metric,
            "seqlab.promotion.challenger": fmt(self.challenger),
            "seqlab.promotion.seasonal_naive": fmt(self.baseline),
            "seqlab.promotion.champion": fmt(self.champion),
            "seqlab.promotion.champion_version": self.champion_version or "",
            "seqlab.promotion.comparison": self.comparison,
            "seqlab.promotion.scores": json.dumps(
                {
                    "windows": self.windows,
                    "cutoffs": self.cutoffs,
                    "challenger": self.challenger_scores,
                    "champion": self.champion_scores,
                }
            )[:5000],
        }


def decision_markdown(d: Decision) -> str:
    """The decision and the scores behind it, for the model version's page in the MLflow UI."""
    verdict = "**Promoted to champion**" if d.promote else "**Not promoted**"
    lines = [
        f"{verdict}: {d.reason}",
        "",
        f"Compared on `{d.metric}` ({d.comparison}); seasonal naive on all backtest windows: "
        f"{'-' if d.baseline is None else f'{d.baseline:.4f}'}.",
        "",
        "| window | cutoff | challenger | champion |",
        "|---:|---|---:|---:|",
    ]
    champ = d.champion_scores or [None] * len(d.windows)
    for w, c, mine, theirs in zip(d.windows, d.cutoffs, d.challenger_scores, champ):
        lines.append(
            f"| {w} | {c[:10]} | {mine:.4f} | {'-' if theirs is None else f'{theirs:.4f}'} |"
        )
    return "\n".join(lines)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def decide(
    challenger: Backtest,
    metric: str,
    margin: float = 0.0,
    require_beat_baseline: bool = True,
    champion: ChampionScores | None = None,
) -> Decision:
    """Whether to promote the challenger; pure, so every branch is testable without a registry."""
    score = challenger.mean["model"][metric]
    baseline = challenger.mean["seasonal_naive"][metric]
    base = dict(
        metric=metric,
        challenger=score,
        baseline=baseline,
        windows=challenger.windows,
        cutoffs=challenger.cutoffs,
        challenger_scores=challenger.scores("model", metric),
    )
    if not math.isfinite(score):
        why = f"challenger {metric} is not finite ({score})"
        if metric == "mase" and math.isnan(score) and math.isnan(baseline):
            why = (
                "mase is undefined: every series' history is constant, so seasonal naive "
                "makes no error to scale by; set registry.metric=mae to compare"
            )
        return Decision(False, why, **base)
    if require_beat_baseline and not score < baseline:
        return Decision(
            False,
            f"does not beat seasonal naive: mean backtest {metric} "
            f"{score:.4f} vs {baseline:.4f} on the same {len(challenger.windows)} "
            "windows; registered, not promoted",
            **base,
        )
    if champion is None:
        return Decision(
            True,
            f"no champion yet; {metric} {score:.4f} beats seasonal naive {baseline:.4f}",
            **base,
        )
    if champion.backtest is None:
        return Decision(
            False,
            f"champion v{champion.version} could not be scored on these "
            f"windows ({champion.error}); kept it, promote manually if intended",
            champion_version=champion.version,
            comparison=NOT_COMPARED,
            **base,
        )
    windows = champion.backtest.windows
    mine = challenger.subset(windows)
    ours, theirs = mine.scores("model", metric), champion.backtest.scores("model", metric)
    ours_mean, theirs_mean = _mean(ours), _mean(theirs)
    fields = dict(
        metric=metric,
        baseline=baseline,
        champion=theirs_mean,
        champion_version=champion.version,
        comparison=champion.comparison,
        windows=windows,
        cutoffs=mine.cutoffs,
        challenger_scores=ours,
        champion_scores=theirs,
        challenger=ours_mean,
    )
    where = f"on {len(windows)} window(s), {champion.comparison}"
    if not (math.isfinite(ours_mean) and math.isfinite(theirs_mean)):
        return Decision(
            False,
            f"a score is not finite (challenger {ours_mean}, champion "
            f"{theirs_mean}) {where}; kept the champion",
            **fields,
        )
    if ours_mean < theirs_mean * (1 - margin):
        return Decision(
            True,
            f"challenger {metric} {ours_mean:.4f} < champion v{champion.version} "
            f"{theirs_mean:.4f}" + (f" x (1 - {margin})" if margin else "") + f" {where}",
            **fields,
        )
    return Decision(
        False,
        f"challenger {metric} {ours_mean:.4f} does not beat champion "
        f"v{champion.version} {theirs_mean:.4f}"
        + (f" by margin {margin}" if margin else "")
        + f" {where}",
        **fields,
    )


def unseen_windows(bt: Backtest, trained_until: dict[str, str]) -> list[int]:
    """Windows whose cutoff is at or after the champion's training end, for every series."""
    if not trained_until:
        return []
    ends = {sid: pd.Timestamp(ts) for sid, ts in trained_until.items()}
    keep = []
    for window, g in bt.frame.groupby("window", sort=True):
        cut = g.groupby("unique_id", sort=False)["cutoff"].first()
        if all(sid in ends and pd.Timestamp(c) >= ends[sid] for sid, c in cut.items()):
            keep.append(int(window))
    return keep


def champion_recipe(meta: dict, cfg: PipelineConfig) -> PipelineConfig:
    """The champion's configuration, on the challenger's data and evaluation windows."""
    recipe = build_config(meta["config"])
    return with_overrides(
        recipe,
        {
            "data": cfg.data.model_dump(mode="json"),
            "eval": cfg.eval.model_dump(mode="json"),
            "window.val_size": cfg.window.val_size,
        },
    )


def score_champion(
    forecaster: Any,
    meta: dict,
    version: str,
    series: SeriesData,
    cfg: PipelineConfig,
    challenger: Backtest,
) -> ChampionScores:
    """Score a champion (a loaded pyfunc and its metadata) against the challenger's backtest."""
    from seqlab.inference import data_config, user_frame, with_future_rows
    from seqlab.pipeline import backtest_offsets_for, learn_epochs, refit, season_for

    horizon = cfg.window.horizon
    if int(meta.get("horizon", -1)) != horizon:
        return ChampionScores(
            version,
            NOT_COMPARED,
            error=f"it forecasts {meta.get('horizon')} steps, the challenger {horizon}",
        )
    offsets = backtest_offsets_for(cfg)
    season = season_for(cfg, series.freq)
    unseen = unseen_windows(challenger, meta.get("training_end") or {})
    try:
        if unseen:
            dcfg = data_config(meta)

            def predict(history: SeriesData) -> pd.DataFrame:
                if meta.get("future_covariates"):  # its known-future inputs, from the data
                    return forecaster.predict(with_future_rows(history, series, horizon, dcfg))
                return forecaster.predict(user_frame(history, dcfg))

            bt = backtest(
                series, [offsets[k] for k in unseen], horizon, season, predict, labels=unseen
            )
            return ChampionScores(version, UNSEEN, bt)
        recipe = champion_recipe(meta, cfg)
        epochs = int(meta.get("epochs") or learn_epochs(series, recipe))
        fitted = refit(series, recipe, epochs, holdout=cfg.test_size)
        bt = backtest(series, offsets, horizon, season, fitted.forecast)
        return ChampionScores(version, RETRAINED, bt)
    except Exception as e:  # an incompatible champion (columns, config of an older release)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ChampionScores(version, NOT_COMPARED, error=first[:300])
