"""Hyper-parameter search: a search space stored as data, ``objective(trial) -> float``, a study.

The study lives in persistent storage (SQLite by default; any Optuna RDB URL, or a ``.log``
journal file) and is resumed by name. ``tune.n_trials`` is the number of finished trials
(COMPLETE + PRUNED) the study should hold: a run tops the study up to it, so a crashed run is
resumed by the next without losing or repeating work. Workers, local processes or other hosts,
share the study through its storage; the study itself carries the config and tracking target
(user attributes) so that ``seqlab tune-worker --study NAME --storage URL`` needs nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import optuna
from optuna.trial import TrialState

from seqlab.config import ParamSpec, PipelineConfig, with_overrides
from seqlab.data import SeriesData
from seqlab.pipeline import prepare_data, train_model
from seqlab.train import Callback, History, NonFiniteLossError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ATTR_CONFIG = "seqlab.config"
ATTR_TRACKING = "seqlab.tracking"
ATTR_DIGEST = "seqlab.data_digest"


class SurplusTrial(RuntimeError):
    """A trial started after the study already reached ``n_trials`` (a race between workers)."""


class TrialTracking(Protocol):
    """What the tuner needs from a tracker: one callback per trial, closed with its outcome."""

    def open(self, trial: optuna.Trial, params: dict[str, Any]) -> "TrialRunHandle": ...


class TrialRunHandle(Protocol):
    run_id: str

    def callback(self) -> Callback: ...

    def close(self, state: str, metrics: dict[str, float], reason: str | None = None) -> None: ...


# ---------------------------------------------------------------- storage and study


def is_journal(url: str) -> bool:
    return url.endswith(".log") or url.startswith("journal:")


def make_storage(url: str, heartbeat_interval: int = 10) -> optuna.storages.BaseStorage:
    """An Optuna storage for a URL; SQLite folders are created, stale trials get a heartbeat."""
    if is_journal(url):
        path = url.removeprefix("journal:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(path))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several worker processes write to one file: wait for locks instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=heartbeat_interval,
        grace_period=heartbeat_interval * 2,
    )


def make_study(cfg: PipelineConfig, storage: optuna.storages.BaseStorage | str) -> optuna.Study:
    t = cfg.tune
    sampler = optuna.samplers.TPESampler(seed=t.sampler_seed, n_startup_trials=t.n_startup_trials)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=t.n_startup_trials, n_warmup_steps=t.n_warmup_steps
    )
    return optuna.create_study(
        study_name=cfg.study_name, storage=storage, direction="minimize", sampler=sampler,
        pruner=pruner, load_if_exists=True,
    )


def load_study(name: str, storage: optuna.storages.BaseStorage | str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise ValueError(f"study {name!r} not found in the storage; start it with `seqlab run`") from None


def publish(study: optuna.Study, cfg: PipelineConfig, digest: str, tracking: dict | None) -> None:
    """Store what a worker needs on the study itself: config, data digest, tracking target."""
    study.set_user_attr(ATTR_CONFIG, cfg.model_dump(mode="json"))
    study.set_user_attr(ATTR_DIGEST, digest)
    study.set_user_attr(ATTR_TRACKING, tracking)


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose worker process on this host is gone (any storage).

    RDB storages also fail stale trials by heartbeat; journal files have no heartbeat, and a
    killed local worker should not leave its trial RUNNING until the grace period passes.
    """
    failed = []
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get("seqlab:owner") or {}
        if owner.get("host") != host or _pid_alive(int(owner.get("pid", -1))):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "worker process died")
            if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return failed


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- search space and objective


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """Sample one value per dotted key of the search space."""
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            out[name] = trial.suggest_categorical(name, spec.choices)  # type: ignore[arg-type]
        elif spec.type == "int":
            step = int(spec.step) if spec.step else 1
            out[name] = trial.suggest_int(name, int(spec.low), int(spec.high), step=step,  # type: ignore[arg-type]
                                          log=spec.log)
        else:
            out[name] = trial.suggest_float(name, spec.low, spec.high, step=spec.step,  # type: ignore[arg-type]
                                            log=spec.log)
    return out


class PruningCallback(Callback):
    """Report validation loss each epoch; raise ``TrialPruned`` when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.trial.report(metrics["val/loss"], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (val/loss {metrics['val/loss']:.4g})")


class _LastEpoch(Callback):
    def __init__(self) -> None:
        self.epoch = -1
        self.best = float("inf")

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epoch = epoch
        self.best = min(self.best, metrics["val/loss"])


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class Objective:
    """``objective(trial) -> best validation loss`` for one study; picklable for workers."""

    cfg: PipelineConfig
    series: SeriesData
    n_trials: int
    tracking: TrialTracking | None = None

    def __post_init__(self) -> None:
        self._prepared: dict[tuple, Any] = {}

    def _prepared_for(self, cfg: PipelineConfig):
        key = (cfg.window.input_size, cfg.window.horizon, cfg.val_size, cfg.window.stride,
               cfg.window.scaler)
        if key not in self._prepared:
            self._prepared[key] = prepare_data(self.series, cfg)
        return self._prepared[key]

    def __call__(self, trial: optuna.Trial) -> float:
        study = trial.study
        # Exactly n_trials: a trial that starts after the quota was met (by racing workers)
        # ends FAILED as surplus and is not counted.
        ahead = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                 if t.number < trial.number]
        if len(ahead) >= self.n_trials:
            study.stop()
            raise SurplusTrial(f"study already holds {self.n_trials} trials")
        study._storage.set_trial_system_attr(
            trial._trial_id, "seqlab:owner", {"host": socket.gethostname(), "pid": os.getpid()}
        )
        params = suggest(trial, self.cfg.tune.search_space)
        cfg = with_overrides(self.cfg, params)
        prepared = self._prepared_for(cfg)
        handle = self.tracking.open(trial, params) if self.tracking else None
        if handle is not None:
            trial.set_user_attr("mlflow_run_id", handle.run_id)
        last = _LastEpoch()
        callbacks: list[Callback] = [last, PruningCallback(trial)]
        if handle is not None:
            callbacks.insert(0, handle.callback())
        try:
            _, hist = train_model(prepared, cfg, callbacks)
        except optuna.TrialPruned as e:
            trial.set_user_attr("epochs", last.epoch + 1)
            if handle:
                handle.close("PRUNED", {"val/best_loss": last.best}, str(e))
            raise
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if _is_oom(e):
                reason = f"CUDA out of memory: {str(e).splitlines()[0][:200]}"
            trial.set_user_attr("fail_reason", reason)
            if handle:
                handle.close("FAILED", {}, reason)
            raise
        except BaseException:  # KeyboardInterrupt: leave nothing RUNNING in MLflow
            if handle:
                handle.close("KILLED", {}, "interrupted")
            raise
        trial.set_user_attr("epochs", hist.epochs)
        trial.set_user_attr("best_epoch", hist.best_epoch)
        summary = _history_metrics(hist)
        if handle:
            handle.close("COMPLETE", summary)
        return hist.best_val_loss


def _history_metrics(hist: History) -> dict[str, float]:
    out = {"val/best_loss": hist.best_val_loss, "train/epochs": float(hist.epochs),
           "train/samples_per_s": hist.samples_per_second, "train/seconds": hist.seconds}
    if hist.gpu_mem_peak_mb is not None:
        out["sys/gpu_mem_peak_mb"] = hist.gpu_mem_peak_mb
    return out


# ---------------------------------------------------------------- running


def _quota_callback(n_trials: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    def stop_when_full(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if finished_count(study) >= n_trials:
            study.stop()

    return stop_when_full


def _oom_callback(keep_on_oom: bool) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """Lower the packing: a worker sharing its GPU leaves after a CUDA OOM (one per GPU stays)."""

    def leave_on_oom(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.FAIL and "out of memory" in str(
            trial.user_attrs.get("fail_reason", "")
        ) and not keep_on_oom:
            study.stop()

    return leave_on_oom


def run_trials(
    study: optuna.Study,
    objective: Objective,
    timeout: float | None = None,
    keep_on_oom: bool = True,
) -> int:
    """Run trials in this process until the study holds ``n_trials`` finished ones (or timeout).

    Returns the number of trials this call finished.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    before = finished_count(study)
    if before >= objective.n_trials:
        return 0
    study.optimize(
        objective,
        n_trials=None,
        timeout=timeout,
        catch=(NonFiniteLossError, SurplusTrial, RuntimeError, ValueError),
        callbacks=[_quota_callback(objective.n_trials), _oom_callback(keep_on_oom)],
        gc_after_trial=False,
    )
    return finished_count(study) - before


def wait_for_trials(study: optuna.Study, n_trials: int, timeout: float | None,
                    poll: float = 2.0) -> int:
    """With no local workers: wait until external workers finish the study (or timeout)."""
    start = time.monotonic()
    while finished_count(study) < n_trials:
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(
                f"study {study.study_name!r} holds {finished_count(study)}/{n_trials} finished "
                f"trials after {timeout:.0f}s; start workers with `seqlab tune-worker`"
            )
        time.sleep(poll)
    return finished_count(study)


def best_params(study: optuna.Study) -> dict[str, Any]:
    """Parameters of the best COMPLETE trial; empty when there is none."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return {}
    return dict(min(done, key=lambda t: t.value).params)  # type: ignore[arg-type, return-value]


def study_summary(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(done, key=lambda t: t.value) if done else None  # type: ignore[arg-type]
    return {
        "study": study.study_name,
        "trials": counts,
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "best_params": json.loads(json.dumps(best.params)) if best else {},
    }
