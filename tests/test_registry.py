import math

import pytest

from seqlab.registry import AliasMove, decide


def test_first_model_becomes_champion() -> None:
    d = decide("mase", 0.8, None, 0.0)
    assert d.promote and d.reason == "no champion yet"


@pytest.mark.parametrize("challenger, champion, margin, promote", [
    (0.7, 0.8, 0.0, True),     # better
    (0.8, 0.8, 0.0, False),    # tie keeps the champion
    (0.9, 0.8, 0.0, False),    # worse
    (0.78, 0.8, 0.05, False),  # better, but inside the 5% margin
    (0.75, 0.8, 0.05, True),   # better by more than the margin
])
def test_gate_margin_and_ties(challenger: float, champion: float, margin: float, promote: bool) -> None:
    d = decide("mase", challenger, champion, margin, champion_version="3")
    assert d.promote is promote
    assert d.figures() == {"metric": "mase", "challenger": challenger, "champion": champion,
                           "champion_version": "3"}


def test_non_finite_challenger_never_promotes() -> None:
    assert not decide("mase", math.nan, 1.0, 0.0).promote
    assert not decide("mase", math.inf, None, 0.0).promote


def test_alias_move_serialises() -> None:
    m = AliasMove(1, "2026-01-01T00:00:00Z", "champion", None, "2", "manual", "why", {"a": 1})
    assert '"to_version": "2"' in m.to_json()
