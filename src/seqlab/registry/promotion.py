"""The promotion gate: must beat seasonal naive, then the champion on windows neither has seen.

1. A challenger whose mean backtest metric does not beat seasonal naive on the same windows is
   registered but never promoted, also when there is no champion yet
   (``registry.require_beat_baseline``). ``registry.baseline`` can raise that bar to the best
   baseline or statistical reference (``best``) or a named one (``autoets``).
2. Champion and challenger are compared on exactly the same (series, window) pairs, through one
   prediction path (:meth:`seqlab.forecaster.FittedForecaster.predict`, which the served pyfunc
   runs), and only on cutoffs after the champion's recorded training end for that series.
   Where the champion saw every window (it was refit on the history the challenger is tested
   on), its recipe (configuration and optimizer steps) is retrained on the history before the
   challenger's first cutoff: recipes are then compared on unseen data. A pair only one side
   can forecast is left out, with the reason, in the decision (``promotion/decision.json``). A
   champion that cannot forecast some series is compared on the rest; a challenger that does
   not forecast a series the champion does is not promoted automatically.
3. Ties and NaN keep the champion. Both score vectors and the cutoffs go into the audit trail.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from seqlab.config import PipelineConfig, build_config, with_overrides
from seqlab.data.series import SeriesData
from seqlab.evaluation import BASELINES, Backtest, score_backtest
from seqlab.registry.text_table import text_table

if TYPE_CHECKING:
    from seqlab.forecaster import FittedForecaster

NO_CHAMPION = "no champion"
UNSEEN = "champion scored on windows after its training end"
RETRAINED = "champion recipe retrained before the challenger's first cutoff"
NOT_COMPARED = "champion could not be scored"


@dataclass(frozen=True)
class ChampionScores:
    """The champion's backtest on the challenger's windows, how it was obtained, and the
    (series, window) pairs it could not forecast, with the reason."""

    version: str
    comparison: str  # UNSEEN | RETRAINED | NOT_COMPARED
    backtest: Backtest | None = None
    error: str | None = None
    left_out: dict[int, dict[str, str]] = field(default_factory=dict)
    """window -> series -> why the champion has no forecast there."""


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
    series: dict[str, list[str]] = field(default_factory=dict)
    """window -> the series both sides were scored on there."""
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)
    """window -> series -> why it was not compared there."""
    bar: str = "seasonal_naive"
    """The method the gate's first check used (``registry.baseline``); seasonal naive as well."""
    bar_score: float | None = None

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
            "seqlab.promotion.bar": self.bar,
            "seqlab.promotion.bar_score": fmt(self.bar_score),
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
        f"{'-' if d.baseline is None else f'{d.baseline:.4f}'}"
        + ("." if d.bar == "seasonal_naive" else f"; the gate's bar, {d.bar}: {d.bar_score:.4f}."),
        "",
    ]
    champ = d.champion_scores or [None] * len(d.windows)
    rows = []
    for w, c, mine, theirs in zip(d.windows, d.cutoffs, d.challenger_scores, champ):
        compared = d.series.get(str(w))
        shown = "all" if compared is None else f"{len(compared)}: {', '.join(compared[:5])}"
        rows.append([w, c[:10], f"{mine:.4f}", "-" if theirs is None else f"{theirs:.4f}", shown])
    header = ["window", "cutoff", "challenger", "champion", "series compared"]
    lines.append(text_table(header, rows, {0, 2, 3}))
    left = [(w, sid, why) for w, out in d.left_out.items() for sid, why in out.items()]
    if left:
        lines += ["", "Left out of the comparison:", ""]
        lines += [f"- window {w}, series `{sid}`: {why}" for w, sid, why in left[:20]]
        if len(left) > 20:
            lines.append(f"- ... and {len(left) - 20} more (promotion/decision.json)")
    return "\n".join(lines)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def gate_bar(challenger: Backtest, metric: str, baseline: str = "seasonal_naive") -> str:
    """The method named by ``registry.baseline``: ``best`` is the baseline or reference with the
    lowest finite mean ``metric`` (seasonal naive when none is finite)."""
    if baseline != "best":
        return baseline
    scored = {
        m: v[metric]
        for m, v in challenger.mean.items()
        if m != "model" and math.isfinite(v.get(metric, math.nan))
    }
    return min(scored, key=scored.get) if scored else "seasonal_naive"


def _bar_label(bar: str, baseline: str) -> str:
    name = bar.replace("_", " ") if bar in BASELINES else bar
    if baseline != "best":
        return name
    return f"{name} (best {'baseline' if bar in BASELINES else 'reference'})"


def decide(
    challenger: Backtest,
    metric: str,
    margin: float = 0.0,
    require_beat_baseline: bool = True,
    champion: ChampionScores | None = None,
    baseline: str = "seasonal_naive",
) -> Decision:
    """Whether to promote the challenger; pure, so every branch is testable without a registry.

    ``baseline`` (``registry.baseline``) is the bar of the first check: ``seasonal_naive``,
    ``best`` or a reference's column (``autoets``); the challenger must beat seasonal naive too.
    """
    bar_name = gate_bar(challenger, metric, baseline)
    bar_score = challenger.mean.get(bar_name, {}).get(metric, math.nan)
    score = challenger.mean["model"][metric]
    baseline_name, baseline = baseline, challenger.mean["seasonal_naive"][metric]
    base = dict(
        metric=metric,
        challenger=score,
        baseline=baseline,
        bar=bar_name,
        bar_score=bar_score,
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
    if require_beat_baseline and bar_name != "seasonal_naive" and not score < bar_score:
        return Decision(
            False,
            f"does not beat {_bar_label(bar_name, baseline_name)}: mean backtest {metric} "
            f"{score:.4f} vs {bar_score:.4f} on the same {len(challenger.windows)} "
            "windows; registered, not promoted",
            **base,
        )
    if require_beat_baseline and not score < baseline:
        return Decision(
            False,
            f"does not beat {_bar_label('seasonal_naive', baseline_name)}: mean backtest {metric} "
            f"{score:.4f} vs {baseline:.4f} on the same {len(challenger.windows)} "
            "windows; registered, not promoted",
            **base,
        )
    if champion is None:
        return Decision(
            True,
            f"no champion yet; {metric} {score:.4f} beats seasonal naive {baseline:.4f}"
            + (
                f" and {_bar_label(bar_name, baseline_name)} {bar_score:.4f}"
                if bar_name != "seasonal_naive"
                else ""
            ),
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
    pairs = common_pairs(challenger, champion)
    if pairs.blocked:
        return Decision(
            False,
            f"the challenger does not forecast {len(pairs.blocked)} series the champion "
            f"v{champion.version} does ({', '.join(sorted(pairs.blocked)[:5])}); not promoted "
            "automatically: promote it by hand if that is intended",
            champion_version=champion.version,
            comparison=champion.comparison,
            series=pairs.series,
            left_out=pairs.left_out,
            **base,
        )
    if not pairs.series:
        return Decision(
            False,
            f"no (series, window) pair both the challenger and champion v{champion.version} "
            "forecast; kept the champion, promote manually if intended",
            champion_version=champion.version,
            comparison=NOT_COMPARED,
            left_out=pairs.left_out,
            **base,
        )
    mine, theirs = pairs.challenger, pairs.champion
    windows = mine.windows
    ours, theirs_scores = mine.scores("model", metric), theirs.scores("model", metric)
    ours_mean, theirs_mean = _mean(ours), _mean(theirs_scores)
    fields = dict(
        metric=metric,
        baseline=baseline,
        bar=bar_name,
        bar_score=bar_score,
        champion=theirs_mean,
        champion_version=champion.version,
        comparison=champion.comparison,
        windows=windows,
        cutoffs=mine.cutoffs,
        challenger_scores=ours,
        champion_scores=theirs_scores,
        challenger=ours_mean,
        series=pairs.series,
        left_out=pairs.left_out,
    )
    n_pairs = sum(len(v) for v in pairs.series.values())
    where = (
        f"on {len(windows)} window(s), {n_pairs} (series, window) pair(s), {champion.comparison}"
    )
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


@dataclass(frozen=True)
class Pairs:
    """Both backtests cut to the (series, window) pairs both forecast, and what was left out."""

    challenger: Backtest
    champion: Backtest
    series: dict[str, list[str]]
    left_out: dict[str, dict[str, str]]
    blocked: set[str]
    """Series the champion forecasts in some window where the challenger does not."""


def _keys(frame: pd.DataFrame) -> set[tuple[str, int]]:
    pairs = frame[["unique_id", "window"]].drop_duplicates()
    return {(str(s), int(w)) for s, w in pairs.itertuples(index=False)}


def common_pairs(challenger: Backtest, champion: ChampionScores) -> Pairs:
    """The (series, window) pairs of the champion's windows that both sides forecast."""
    assert champion.backtest is not None
    theirs_frame = champion.backtest.frame
    windows = set(champion.backtest.windows) | set(champion.left_out)
    mine_frame = challenger.frame[challenger.frame["window"].isin(windows)]
    mine, theirs = _keys(mine_frame), _keys(theirs_frame)
    both = mine & theirs
    left_out: dict[str, dict[str, str]] = {}
    for sid, w in sorted(mine - theirs):
        why = champion.left_out.get(w, {}).get(sid, "the champion has no forecast")
        left_out.setdefault(str(w), {})[sid] = f"champion: {why}"
    blocked = set()
    for sid, w in sorted(theirs - mine):
        left_out.setdefault(str(w), {})[sid] = "challenger: no forecast (too short for it)"
        blocked.add(sid)
    series: dict[str, list[str]] = {}
    for sid, w in sorted(both, key=lambda p: (p[1], p[0])):
        series.setdefault(str(w), []).append(sid)

    def cut(frame: pd.DataFrame) -> pd.DataFrame:
        keys = list(zip(frame["unique_id"].astype(str), frame["window"].astype(int)))
        return frame[[k in both for k in keys]]

    season = champion.backtest.season
    return Pairs(
        score_backtest(cut(mine_frame), season) if both else challenger,
        score_backtest(cut(theirs_frame), season) if both else champion.backtest,
        series,
        left_out,
        blocked,
    )


def champion_recipe(config: dict, cfg: PipelineConfig) -> PipelineConfig:
    """The champion's configuration, on the challenger's data and evaluation windows."""
    recipe = build_config(config)
    return with_overrides(
        recipe,
        {
            "data": cfg.data.model_dump(mode="json"),
            "eval": cfg.eval.model_dump(mode="json"),
            "window.val_size": cfg.window.val_size,
            "window.val_windows": cfg.window.val_windows,
        },
    )


def score_champion(
    champion: FittedForecaster,
    version: str,
    series: SeriesData,
    cfg: PipelineConfig,
    challenger: Backtest,
) -> ChampionScores:
    """Score a champion (the loaded model) on the challenger's backtest windows, through its own
    prediction path: on the (series, window) pairs after its training end, else its recipe
    retrained before the challenger's first cutoff. Pairs it cannot forecast are left out with
    the reason; only a champion that cannot be scored at all is ``NOT_COMPARED``."""
    from seqlab.pipeline import backtest_offsets_for, refit, season_for

    horizon = cfg.window.horizon
    if champion.horizon != horizon:
        return ChampionScores(
            version,
            NOT_COMPARED,
            error=f"it forecasts {champion.horizon} steps, the challenger {horizon}",
        )
    offsets = backtest_offsets_for(cfg)
    season = season_for(cfg, series.freq)
    try:
        unseen = unseen_pairs(challenger, champion.training_end)
        if unseen:
            windows = sorted({w for _, w in unseen})
            scored = dataclasses.replace(champion, known=series.frame)
            left_out = _cannot_forecast(scored, series, offsets, windows)
            frame = scored.cross_validation(
                series, [offsets[k] for k in windows], season, labels=windows
            )
            seen = [
                (str(s), int(w)) not in unseen for s, w in zip(frame["unique_id"], frame["window"])
            ]
            for (sid, w), _ in frame[seen].groupby(["unique_id", "window"]):
                left_out.setdefault(int(w), {})[str(sid)] = "trained past this cutoff"
            frame = frame[[not x for x in seen]]
            return ChampionScores(version, UNSEEN, score_backtest(frame, season), left_out=left_out)
        recipe = champion_recipe(champion.config, cfg)
        fitted = refit(series, recipe, holdout=cfg.test_size, steps=champion.steps)
        windows = list(range(len(offsets)))
        left_out = _cannot_forecast(fitted, series, offsets, windows)
        frame = fitted.cross_validation(series, offsets, season)
        return ChampionScores(version, RETRAINED, score_backtest(frame, season), left_out=left_out)
    except Exception as e:  # an incompatible champion (columns, config of an older release)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ChampionScores(version, NOT_COMPARED, error=first[:300])


def unseen_pairs(bt: Backtest, trained_until: dict[str, str]) -> set[tuple[str, int]]:
    """(series, window) pairs of a backtest whose cutoff is at or after the model's training
    end for that series (a series it never trained on has none)."""
    ends = {sid: pd.Timestamp(ts) for sid, ts in trained_until.items()}
    out = set()
    cuts = bt.frame.groupby(["unique_id", "window"], sort=False)["cutoff"].first()
    for (sid, window), cutoff in cuts.items():
        if str(sid) in ends and pd.Timestamp(cutoff) >= ends[str(sid)]:
            out.add((str(sid), int(window)))
    return out


def _cannot_forecast(
    model: FittedForecaster, series: SeriesData, offsets: list[int], windows: list[int]
) -> dict[int, dict[str, str]]:
    return {w: why for w in windows if (why := model.can_forecast(series, offsets[w]))}
