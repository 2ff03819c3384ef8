"""``objective(trial) -> validation MASE``: one trial trains one sampled configuration.

The value is the mean MASE of the decoded validation forecasts (data units), so trials with
another loss, scaler or transform are comparable. A failing trial (NaN loss, CUDA OOM, an
invalid sampled config) fails alone, with a ``fail_reason`` user attribute (and ``oom``), and
its MLflow run is closed as FAILED. A trial that starts when the study already holds
``n_trials`` finished or running trials numbered before it (a race between workers) fails as
*surplus*, so a study never holds more than ``n_trials``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
import torch
from optuna.trial import TrialState

from seqlab import progress
from seqlab.config import PipelineConfig, with_overrides
from seqlab.data.series import SeriesData
from seqlab.killpoints import kill_point
from seqlab.pipeline import prepare_data, train_model
from seqlab.training.trainer import Callback, History, NonFiniteLossError
from seqlab.tuning.liveness import OWNER_ATTR, journal_heartbeat, owner_record
from seqlab.tuning.space import suggest
from seqlab.tuning.storage import FINISHED

log = logging.getLogger("seqlab.tuning")


class SurplusTrial(RuntimeError):
    """A trial started after the study already reached ``n_trials`` (a race between workers)."""


# Errors that fail one trial and let the study go on: NaN/inf losses, CUDA OOM (a RuntimeError),
# an invalid sampled config (ConfigError is a ValueError). Anything else is a bug and stops the
# worker at once; repeated trial errors stop it through the fail-streak guard (tuning.runner).
TRIAL_ERRORS: tuple[type[Exception], ...] = (
    NonFiniteLossError,
    SurplusTrial,
    RuntimeError,
    ValueError,
    ArithmeticError,
    MemoryError,
)

CallbackFactory = Callable[[optuna.Trial], list[Callback]]
"""Extra training callbacks per trial (tests use it to inject faults)."""


class TrialRunHandle(Protocol):
    run_id: str

    def callback(self) -> Callback: ...

    def close(self, state: str, metrics: dict[str, float], reason: str | None = None) -> None: ...


class TrialTracking(Protocol):
    """What the tuner needs from a tracker: one callback per trial, closed with its outcome."""

    def open(self, trial: optuna.Trial, params: dict[str, Any]) -> TrialRunHandle: ...


class PruningCallback(Callback):
    """Report the validation score to the pruner; raise ``TrialPruned`` when it says so.

    Each report and check is a storage round trip (two per epoch doubled a small model's epoch
    time on SQLite), so nothing is reported during the pruner's warm-up and then only every
    ``interval`` epochs; all trials report at the same steps, so medians stay comparable.
    """

    def __init__(
        self, trial: optuna.Trial, warmup: int = 0, interval: int = 1, monitor: str = "val/mase"
    ) -> None:
        self.trial, self.warmup, self.interval = trial, warmup, max(1, interval)
        self.monitor = monitor

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch < self.warmup or (epoch - self.warmup) % self.interval:
            return
        value = metrics.get(self.monitor, metrics.get("val/loss"))
        if value is None:
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} ({self.monitor} {value:.4g})")


class _Progress(Callback):
    """Tracks the epoch and best score (for pruned trials) and reports epochs to a progress bar."""

    def __init__(self, trial_number: int = 0, max_epochs: int = 0) -> None:
        self.epoch = -1
        self.best = float("inf")
        self.trial_number, self.max_epochs = trial_number, max_epochs

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        kill_point("tuning")
        self.epoch = epoch
        self.best = min(self.best, metrics.get("val/mase", metrics.get("val/loss", self.best)))
        progress.report(
            "epochs",
            epoch + 1,
            self.max_epochs,
            f"trial {self.trial_number}, best val/mase {self.best:.4g}",
        )


def is_oom(exc: BaseException) -> bool:
    return (
        isinstance(exc, (torch.OutOfMemoryError, MemoryError))
        or "out of memory" in str(exc).lower()
    )


def failure_reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, MemoryError) and not first:
        first = "out of host memory"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _gpu_peak() -> dict[str, float]:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"sys/gpu_mem_peak_mb": torch.cuda.max_memory_allocated() / 2**20}
    return {}


def _history_metrics(hist: History) -> dict[str, float]:
    out = {
        "val/best_mase": hist.best_score,
        "val/best_loss": hist.best_val_loss,
        "train/epochs": float(hist.epochs),
        "train/best_epoch": float(hist.best_epoch),
        "train/samples_per_s": hist.samples_per_second,
        "train/seconds": hist.seconds,
    }
    if hist.gpu_mem_peak_mb is not None:
        out["sys/gpu_mem_peak_mb"] = hist.gpu_mem_peak_mb
    return out


def _close(
    handle: TrialRunHandle | None, state: str, metrics: dict[str, float], reason: str | None = None
) -> None:
    """Close a trial's run; a tracking failure must not mask the trial's own outcome."""
    if handle is None:
        return
    try:
        handle.close(state, metrics, reason)
    except Exception as e:  # noqa: BLE001
        log.warning("could not close the run of a trial (%s): %s", state, e)


@dataclass
class Objective:
    """``objective(trial) -> best validation MASE`` for one study; picklable for workers."""

    cfg: PipelineConfig
    series: SeriesData
    n_trials: int
    tracking: TrialTracking | None = None
    extra_callbacks: CallbackFactory | None = None
    heartbeat_interval: int = field(default=0)
    deadline: float | None = None
    """``time.time()`` at which the running trial stops with its best so far (the run's time
    budget or ``tune.timeout``): recorded as ``cut_at_deadline``, scored like any other."""

    def __post_init__(self) -> None:
        self._prepared: dict[tuple, Any] = {}
        self.heartbeat_interval = self.heartbeat_interval or self.cfg.tune.heartbeat_interval

    def _prepared_for(self, cfg: PipelineConfig):
        # Everything prepare_data reads: trials that differ in any of it need their own windows
        # (a series embedding adds the series-index input column).
        key = (
            cfg.window.model_dump_json(),
            cfg.val_size,
            cfg.test_size,
            cfg.eval.season_length,
            cfg.model.series_embedding > 0,
        )
        if key not in self._prepared:
            self._prepared[key] = prepare_data(self.series, cfg)
        return self._prepared[key]

    def __call__(self, trial: optuna.Trial) -> float:
        study = trial.study
        ahead = [
            t
            for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if t.number < trial.number
        ]
        if len(ahead) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            trial.set_user_attr(
                "fail_reason",
                f"surplus: {self.n_trials} trials were already finished or running when it started",
            )
            raise SurplusTrial(f"study already holds {self.n_trials} trials")
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner_record())
        with journal_heartbeat(study, trial, self.heartbeat_interval):
            return self._run(trial)

    def _run(self, trial: optuna.Trial) -> float:
        handle: TrialRunHandle | None = None
        tracker = _Progress(trial.number, self.cfg.train.max_epochs)
        try:
            params = suggest(trial, self.cfg.tune.search_space)
            cfg = with_overrides(self.cfg, params)  # ConfigError on an invalid sampled value
            prepared = self._prepared_for(cfg)
            held = prepared.val_window_counts()
            held = held[held > 0]  # series too short to validate on are skipped
            trial.set_user_attr("val_windows", int(held.min()) if held.size else 0)
            trial.set_user_attr("val_windows_max", int(held.max()) if held.size else 0)
            if self.tracking is not None:
                handle = self.tracking.open(trial, params)
                trial.set_user_attr("mlflow_run_id", handle.run_id)
            callbacks: list[Callback] = [
                tracker,
                PruningCallback(trial, cfg.tune.n_warmup_steps, cfg.tune.prune_interval),
            ]
            if handle is not None:
                callbacks.insert(0, handle.callback())
            if self.extra_callbacks is not None:
                callbacks += self.extra_callbacks(trial)
            _, hist = train_model(prepared, cfg, callbacks, deadline=self.deadline)
        except optuna.TrialPruned as e:
            trial.set_user_attr("epochs", tracker.epoch + 1)
            _close(handle, "PRUNED", {"val/best_mase": tracker.best, **_gpu_peak()}, str(e))
            raise
        except Exception as e:
            reason = failure_reason(e)
            trial.set_user_attr("fail_reason", reason)
            if is_oom(e):
                trial.set_user_attr("oom", True)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # give the memory back before the next trial
            _close(handle, "FAILED", _gpu_peak(), reason)
            raise
        except BaseException:  # KeyboardInterrupt / SIGTERM: leave nothing RUNNING
            trial.set_user_attr("fail_reason", "interrupted (SIGTERM or Ctrl-C)")
            _close(handle, "KILLED", {}, "interrupted")
            raise
        trial.set_user_attr("epochs", hist.epochs)
        trial.set_user_attr("best_epoch", hist.best_epoch)
        trial.set_user_attr("best_steps", hist.best_steps)
        if hist.cut:
            trial.set_user_attr("cut_at_deadline", True)
            log.warning(
                "trial %d stopped at the time budget after %d epochs (val/mase %.4g so far)",
                trial.number,
                hist.epochs,
                hist.best_score,
            )
        trial.set_user_attr("monitor", hist.monitor)
        if hist.gpu_mem_peak_mb is not None:
            trial.set_user_attr("gpu_mem_peak_mb", round(hist.gpu_mem_peak_mb, 1))
        _close(handle, "COMPLETE", _history_metrics(hist), "cut" if hist.cut else None)
        return hist.best_score
