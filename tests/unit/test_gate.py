"""The gate's decisions, on backtests with known scores (no registry needed)."""

import math

import numpy as np
import pandas as pd
import pytest

from seqlab.evaluation import score_backtest
from seqlab.registry.promotion import (
    RETRAINED,
    UNSEEN,
    ChampionScores,
    decide,
    decision_markdown,
    unseen_pairs,
)


def bt(errors: list[float], snaive: float = 1.0, windows: list[int] | None = None):
    """A one-series backtest whose model has absolute error ``errors[k]`` in window k (MASE
    scale 1), seasonal naive ``snaive`` everywhere."""
    windows = windows if windows is not None else list(range(len(errors)))
    rows = []
    for w, e in zip(windows, errors):
        cutoff = pd.Timestamp("2024-01-01") + pd.Timedelta(days=10 * w)
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": "a",
                    "window": w,
                    "cutoff": cutoff,
                    "ds": pd.date_range(cutoff + pd.Timedelta(days=1), periods=2, freq="D"),
                    "y": 0.0,
                    "model": e,
                    "naive": 5.0,
                    "seasonal_naive": snaive,
                    "mase_scale": 1.0,
                }
            )
        )
    return score_backtest(pd.concat(rows, ignore_index=True), season=1)


def test_first_model_becomes_champion_only_when_it_beats_seasonal_naive() -> None:
    d = decide(bt([0.5, 0.7]), "mase")
    assert d.promote and d.reason.startswith("no champion yet")
    assert d.challenger_scores == pytest.approx([0.5, 0.7]) and d.windows == [0, 1]
    bad = decide(bt([1.5, 1.2]), "mase")
    assert not bad.promote and "does not beat seasonal naive" in bad.reason
    assert bad.baseline == pytest.approx(1.0)
    tie = decide(bt([1.0, 1.0]), "mase")
    assert not tie.promote
    assert decide(bt([1.5, 1.2]), "mase", require_beat_baseline=False).promote


@pytest.mark.parametrize(
    "mine, theirs, margin, promote",
    [
        ([0.5, 0.6], [0.7, 0.8], 0.0, True),  # better
        ([0.7, 0.8], [0.7, 0.8], 0.0, False),  # tie keeps the champion
        ([0.8, 0.9], [0.7, 0.8], 0.0, False),  # worse
        ([0.74, 0.74], [0.75, 0.75], 0.05, False),  # better, but inside the 5% margin
        ([0.6, 0.6], [0.75, 0.75], 0.05, True),  # better by more than the margin
    ],
)
def test_gate_margin_and_ties(mine, theirs, margin, promote) -> None:
    champ = ChampionScores("3", RETRAINED, bt(theirs))
    d = decide(bt(mine), "mase", margin, champion=champ)
    assert d.promote is promote
    assert d.champion_version == "3" and d.comparison == RETRAINED
    assert d.challenger_scores == pytest.approx(mine) and d.champion_scores == pytest.approx(theirs)
    tags = d.tags()
    assert tags["seqlab.promotion.decision"] == ("promoted" if promote else "not_promoted")
    assert '"champion": [' in tags["seqlab.promotion.scores"]


def test_champion_compared_only_on_the_windows_it_did_not_see() -> None:
    challenger = bt([0.9, 0.2, 0.3])
    champ = ChampionScores("2", UNSEEN, bt([0.5, 0.5], windows=[1, 2]))
    d = decide(challenger, "mase", champion=champ)
    assert d.windows == [1, 2] and d.challenger == pytest.approx(0.25) and d.promote
    assert d.cutoffs == challenger.subset([1, 2]).cutoffs


def test_nan_and_unscorable_champions_keep_the_champion() -> None:
    assert not decide(bt([math.nan, 0.5]), "mase").promote  # NaN challenger
    nan_champ = ChampionScores("2", RETRAINED, bt([math.nan, math.nan]))
    assert not decide(bt([0.2, 0.2]), "mase", champion=nan_champ).promote
    broken = ChampionScores("2", "champion could not be scored", error="missing column")
    d = decide(bt([0.2, 0.2]), "mase", champion=broken)
    assert not d.promote and "missing column" in d.reason


def test_non_finite_challenger_never_promotes() -> None:
    assert not decide(bt([math.inf, 0.1]), "mase").promote


def test_unseen_pairs_follow_the_champions_training_end_per_series() -> None:
    b = bt([0.1, 0.2, 0.3])  # cutoffs 2024-01-01, -11, -21
    assert unseen_pairs(b, {"a": "2024-01-11T00:00:00"}) == {("a", 1), ("a", 2)}
    assert unseen_pairs(b, {"a": "2024-02-01T00:00:00"}) == set()
    assert unseen_pairs(b, {"b": "2023-01-01T00:00:00"}) == set()  # another series: unknown
    assert unseen_pairs(b, {}) == set()
    assert np.isfinite(b.mean["model"]["mase"])


def pairs_bt(errors: dict[tuple[str, int], float]):
    """A backtest with model error ``errors[(series, window)]`` (MASE scale 1) on those pairs
    only, seasonal naive 1.0 everywhere."""
    rows = []
    for (sid, w), e in errors.items():
        cutoff = pd.Timestamp("2024-01-01") + pd.Timedelta(days=10 * w)
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": sid,
                    "window": w,
                    "cutoff": cutoff,
                    "ds": pd.date_range(cutoff + pd.Timedelta(days=1), periods=2, freq="D"),
                    "y": 0.0,
                    "model": e,
                    "naive": 5.0,
                    "seasonal_naive": 1.0 if sid == "long" else 3.0,
                    "mase_scale": 1.0,
                }
            )
        )
    return score_backtest(pd.concat(rows, ignore_index=True), season=1)


def test_the_audits_case_a_challenger_worse_on_both_series_is_not_promoted() -> None:
    """Two series of different lengths; the challenger is worse on both (0.5 vs 0.4 on the long
    one, 2.0 vs 1.6 on the short one) but cannot forecast the short one in window 0. Scored on
    different series per window it looked better (0.875 < 1.0); on the same pairs it is not."""
    challenger = pairs_bt({("long", 0): 0.5, ("long", 1): 0.5, ("short", 1): 2.0})
    champion = pairs_bt({("long", 0): 0.4, ("short", 0): 1.6, ("long", 1): 0.4, ("short", 1): 1.6})
    d = decide(challenger, "mase", champion=ChampionScores("1", UNSEEN, champion))
    assert not d.promote and "does not forecast 1 series" in d.reason and "short" in d.reason
    assert d.left_out == {"0": {"short": "challenger: no forecast (too short for it)"}}
    assert d.series == {"0": ["long"], "1": ["long", "short"]}
    # The champion that cannot forecast the short series in window 0 (a longer input) is
    # compared on the common pairs and still wins: 0.875 vs 0.7.
    narrow = pairs_bt({("long", 0): 0.4, ("long", 1): 0.4, ("short", 1): 1.6})
    left = {0: {"short": "3 points of history before the cutoff; the model reads 5"}}
    d = decide(challenger, "mase", champion=ChampionScores("1", UNSEEN, narrow, left_out=left))
    assert not d.promote and d.champion == pytest.approx(0.7)
    assert d.challenger == pytest.approx(0.875)
    assert d.series == {"0": ["long"], "1": ["long", "short"]}
    figures = d.figures()  # what promotion/decision.json holds
    assert figures["series"] == {"0": ["long"], "1": ["long", "short"]}
    assert figures["left_out"] == {}  # both sides lack (short, 0): nothing to compare there


def test_a_champion_that_cannot_forecast_a_series_never_blocks_promotion() -> None:
    challenger = pairs_bt({("long", 0): 0.2, ("short", 0): 0.5, ("long", 1): 0.2})
    champion = pairs_bt({("long", 0): 0.4, ("long", 1): 0.4})
    left = {0: {"short": "not in the model's training data"}}
    d = decide(challenger, "mase", champion=ChampionScores("4", UNSEEN, champion, left_out=left))
    assert d.promote and d.challenger == pytest.approx(0.2) and d.champion == pytest.approx(0.4)
    assert d.left_out == {"0": {"short": "champion: not in the model's training data"}}
    assert "series `short`: champion: not in the model's training data" in decision_markdown(d)


def with_reference(backtest, name: str, error: float):
    """``backtest`` with a reference column ``name`` of absolute error ``error`` everywhere."""
    return score_backtest(backtest.frame.assign(**{name: error}), backtest.season)


def test_best_bar_refuses_a_model_that_beats_seasonal_naive_but_not_the_best_reference() -> None:
    challenger = with_reference(bt([0.7, 0.7]), "autoets", 0.5)  # snaive 1.0, autoets 0.5
    assert decide(challenger, "mase").promote  # today's gate: seasonal naive only
    d = decide(challenger, "mase", baseline="best")
    assert not d.promote and d.bar == "autoets" and d.bar_score == pytest.approx(0.5)
    assert d.reason.startswith("does not beat autoets (best reference): mean backtest mase")
    assert d.tags()["seqlab.promotion.bar"] == "autoets"
    better = decide(with_reference(bt([0.4, 0.4]), "autoets", 0.5), "mase", baseline="best")
    assert better.promote and "autoets (best reference) 0.5000" in better.reason


def test_named_bar_and_seasonal_naive_are_both_required() -> None:
    # autoets is weaker than seasonal naive here: beating it is not enough.
    challenger = with_reference(bt([1.2, 1.2]), "autoets", 2.0)
    d = decide(challenger, "mase", baseline="autoets")
    assert not d.promote and d.bar == "autoets"
    assert d.reason.startswith("does not beat seasonal naive")
    # best picks seasonal naive when no reference beats it.
    d = decide(challenger, "mase", baseline="best")
    assert d.bar == "seasonal_naive" and "seasonal naive (best baseline)" in d.reason
    # A reference that could not be scored (NaN) is never the best bar, and as a named bar
    # it refuses: an unscored bar is not beaten.
    unscored = with_reference(bt([0.5, 0.5]), "autoets", float("nan"))
    assert decide(unscored, "mase", baseline="best").bar == "seasonal_naive"
    assert not decide(unscored, "mase", baseline="autoets").promote
