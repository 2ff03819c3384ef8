"""A run's time budget (``time_budget``, seconds) and how it is shared between the stages.

Deadlines are wall-clock times (``time.time()``): a worker process on the same host can be
handed one. The run's stages, in order, and what each may spend of the budget:

1. tuning: until ``start + TUNE_SHARE * seconds`` (or ``tune.timeout`` after tuning starts,
   the earlier). No trial starts after it, and the running trial stops at it with its best
   weights so far (``History.cut``);
2. the evaluated fit: ``FIT_SHARE`` of what is left. Its ensemble keeps the members that fit
   (at least one) and its first member stops at the deadline;
3. the served refit repeats that recipe (same members, same optimizer steps) with no deadline
   of its own: it costs about what the evaluated fit did, so it fits in the rest, with the
   backtest, the registration and the gate;
4. explanations run only while ``EXPLAIN_SHARE`` of the budget is left; else they are skipped
   with one line.

A run given ``T`` seconds thus ends within about ``T`` (1.5 T at worst: a champion retrained
for the gate costs its own fit), plus start-up. Without a budget nothing is cut, and the same
seed and data give the same result; with one, what fits depends on the machine's speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

TUNE_SHARE = 0.5
FIT_SHARE = 0.4
EXPLAIN_SHARE = 0.15


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Budget:
    """``seconds`` from ``start`` (wall clock); ``seconds=None``: no budget, no deadlines."""

    seconds: float | None
    start: float = field(default_factory=_now)

    @property
    def end(self) -> float | None:
        return None if self.seconds is None else self.start + self.seconds

    def left(self, now: float | None = None) -> float | None:
        """Seconds left (0 when spent); ``None`` without a budget."""
        end = self.end
        return None if end is None else max(0.0, end - (_now() if now is None else now))

    def tuning_deadline(
        self, tune_timeout: float | None = None, now: float | None = None
    ) -> float | None:
        """When tuning stops: ``TUNE_SHARE`` of the budget, or ``tune.timeout`` from ``now``
        (tuning's start), the earlier; ``None`` when neither is set."""
        now = _now() if now is None else now
        limits = []
        if self.seconds is not None:
            limits.append(self.start + TUNE_SHARE * self.seconds)
        if tune_timeout is not None:
            limits.append(now + tune_timeout)
        return min(limits) if limits else None

    def fit_deadline(self, now: float | None = None) -> float | None:
        """When the evaluated fit must end: ``FIT_SHARE`` of the time left."""
        now = _now() if now is None else now
        left = self.left(now)
        return None if left is None else now + FIT_SHARE * left

    def allows_explanations(self, now: float | None = None) -> bool:
        left = self.left(now)
        return left is None or self.seconds is None or left >= EXPLAIN_SHARE * self.seconds


def members_that_fit(
    wanted: int, first_seconds: float, started: float, deadline: float | None
) -> int:
    """Ensemble members (at least 1, at most ``wanted``) that fit before ``deadline`` when the
    first took ``first_seconds`` and training started at ``started``: each later member is
    assumed to cost as much as the first."""
    if deadline is None or wanted <= 1:
        return max(1, wanted)
    if first_seconds <= 0:
        return wanted
    room = deadline - started
    return max(1, min(wanted, int(room // first_seconds)))
