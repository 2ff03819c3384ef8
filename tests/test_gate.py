"""The gate's decisions, on backtests with known scores (no registry needed)."""

import math

import numpy as np
import pandas as pd
import pytest

from seqlab.evaluate import score_backtest
from seqlab.promotion import RETRAINED, UNSEEN, ChampionScores, decide, unseen_windows


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


def test_unseen_windows_follow_the_champions_training_end() -> None:
    b = bt([0.1, 0.2, 0.3])  # cutoffs 2024-01-01, -11, -21
    assert unseen_windows(b, {"a": "2024-01-11T00:00:00"}) == [1, 2]
    assert unseen_windows(b, {"a": "2024-02-01T00:00:00"}) == []
    assert unseen_windows(b, {"b": "2023-01-01T00:00:00"}) == []  # another series: unknown
    assert unseen_windows(b, {}) == []
    assert np.isfinite(b.mean["model"]["mase"])
