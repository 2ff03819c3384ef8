"""What a tuning session leaves behind, as a typed result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState


@dataclass(frozen=True)
class TuningResult:
    study: str
    mode: str  # in-process | N worker processes | external workers | already complete | no tuning
    n_trials: int
    workers: int = 0
    finished_before: int = 0
    finished_after: int = 0
    trial_states: dict[str, int] = field(default_factory=dict)
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None
    """Early stopping's best epoch (0-based) of the best trial."""
    best_steps: int | None = None
    """Optimizer steps of the best trial up to its best epoch: what the evaluated refit trains
    (studies of seqlab < 0.3 lack it; their refits train ``best_epoch + 1`` epochs)."""
    cut_trials: list[int] = field(default_factory=list)
    """Trials stopped at the deadline (time budget or ``tune.timeout``) with their best so far."""
    val_windows: int | None = None
    """Validation windows per series the best trial was scored on: the fewest of any series
    (``val_windows_max``: the most), fewer than ``window.val_windows`` on short series."""
    val_windows_max: int | None = None
    fail_reasons: dict[int, str] = field(default_factory=dict)
    orphaned_failed: list[int] = field(default_factory=list)
    running_trials: list[int] = field(default_factory=list)
    warm_started_from: str | None = None
    created: bool = False

    @property
    def tuned(self) -> bool:
        return self.mode != "no tuning"


def failure_reasons(study: optuna.Study, last: int = 10) -> dict[int, str]:
    """Reasons of the last failed trials (surplus trials of worker races left out)."""
    failed = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if not t.user_attrs.get("surplus")
    ]
    return {t.number: str(t.user_attrs.get("fail_reason", "")) for t in failed[-last:]}


def summarise(study: optuna.Study, **extra: Any) -> TuningResult:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(done, key=lambda t: t.value) if done else None  # type: ignore[arg-type, return-value]
    return TuningResult(
        study=study.study_name,
        trial_states={s.name: n for s in TrialState if (n := sum(t.state == s for t in trials))},
        best_trial=best.number if best else None,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_epoch=int(best.user_attrs["best_epoch"])
        if best and "best_epoch" in best.user_attrs
        else None,
        best_steps=int(best.user_attrs["best_steps"])
        if best and "best_steps" in best.user_attrs
        else None,
        cut_trials=sorted(t.number for t in trials if t.user_attrs.get("cut_at_deadline")),
        val_windows=best.user_attrs.get("val_windows") if best else None,
        val_windows_max=best.user_attrs.get("val_windows_max") if best else None,
        fail_reasons=failure_reasons(study),
        running_trials=sorted(t.number for t in trials if t.state == TrialState.RUNNING),
        **extra,
    )
