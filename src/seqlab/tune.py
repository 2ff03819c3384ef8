"""Hyper-parameter search: a search space stored as data, ``objective(trial) -> float``, a study.

The study lives in persistent storage (SQLite by default; any Optuna RDB URL, or a ``.log``
journal file) and is resumed by name. ``tune.n_trials`` is the number of finished trials
(COMPLETE + PRUNED) the study should hold: a run tops the study up to it, so a crashed run is
resumed by the next without losing or repeating work. Workers, local processes or other hosts,
share the study through its storage; the study itself carries the config and tracking target
(user attributes) so that ``seqlab tune-worker --study NAME --storage URL`` needs nothing else.

Each trial records what the rest of the system needs to keep the count exact when workers race,
crash or run out of memory (:mod:`seqlab.workers` runs the trials and acts on it):

- a trial that starts when ``n_trials`` trials numbered before it are finished or running (a
  race between workers) fails as *surplus*, so the study never holds more than ``n_trials``;
- each trial names its worker (``seqlab:owner``: host, boot id, pid and process start time) and,
  on journal files, which have no heartbeat of their own, writes ``seqlab:heartbeat``;
- a failing trial (NaN loss, CUDA OOM, an invalid sampled config) fails alone, with a
  ``fail_reason`` user attribute (and ``oom``), and its MLflow run is closed as FAILED.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import optuna
import torch
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from seqlab.config import ParamSpec, PipelineConfig, with_overrides
from seqlab.data import SeriesData
from seqlab.devices import recurrent_params
from seqlab.pipeline import prepare_data, train_model
from seqlab.train import Callback, History, NonFiniteLossError

log = logging.getLogger("seqlab.tune")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ATTR_CONFIG = "seqlab.config"
ATTR_TRACKING = "seqlab.tracking"
ATTR_DIGEST = "seqlab.data_digest"
OWNER_ATTR = "seqlab:owner"  # trial system attr: which process on which machine runs it
HEARTBEAT_ATTR = "seqlab:heartbeat"  # trial system attr (journal storages): last sign of life
FAULTS_ENV = "SEQLAB_TEST_FAULTS"


class SurplusTrial(RuntimeError):
    """A trial started after the study already reached ``n_trials`` (a race between workers)."""


# Errors that fail one trial and let the study go on: NaN/inf losses, CUDA OOM (a RuntimeError),
# an invalid sampled config (ConfigError is a ValueError). Anything else is a bug and stops the
# worker at once; repeated trial errors stop it through the fail-streak guard (seqlab.workers).
TRIAL_ERRORS: tuple[type[Exception], ...] = (
    NonFiniteLossError, SurplusTrial, RuntimeError, ValueError, ArithmeticError, MemoryError,
)


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
    """An Optuna storage for a URL; SQLite folders are created, RDB trials get a heartbeat."""
    if is_journal(url):
        path = url.removeprefix("journal:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several worker processes write to one file: wait for locks instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=heartbeat_interval * 2,
        )


def make_sampler(cfg: PipelineConfig, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """TPE with the configured seed; each worker gets its own offset (same seed, same params)."""
    t = cfg.tune
    seed = None if t.sampler_seed is None else t.sampler_seed + seed_offset
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.n_startup_trials,
                                      constant_liar=True)  # running trials steer others away


def make_pruner(cfg: PipelineConfig) -> optuna.pruners.BasePruner:
    t = cfg.tune
    return optuna.pruners.MedianPruner(n_startup_trials=t.n_startup_trials,
                                       n_warmup_steps=t.n_warmup_steps)


def make_study(cfg: PipelineConfig, storage: optuna.storages.BaseStorage | str) -> optuna.Study:
    return optuna.create_study(
        study_name=cfg.study_name, storage=storage, direction="minimize",
        sampler=make_sampler(cfg), pruner=make_pruner(cfg), load_if_exists=True,
    )


def load_study(name: str, storage: optuna.storages.BaseStorage | str,
               cfg: PipelineConfig | None = None, seed_offset: int = 0) -> optuna.Study:
    """Load a study by name; with ``cfg``, with the configured sampler (offset seed) and pruner."""
    kwargs: dict[str, Any] = {}
    if cfg is not None:
        kwargs = {"sampler": make_sampler(cfg, seed_offset), "pruner": make_pruner(cfg)}
    try:
        return optuna.load_study(study_name=name, storage=storage, **kwargs)
    except KeyError:
        raise ValueError(f"study {name!r} not found in the storage; start it with `seqlab run`") from None


def publish(study: optuna.Study, cfg: PipelineConfig, digest: str, tracking: dict | None) -> None:
    """Store what a worker needs on the study itself: config, data digest, tracking target."""
    study.set_user_attr(ATTR_CONFIG, cfg.model_dump(mode="json"))
    study.set_user_attr(ATTR_DIGEST, digest)
    study.set_user_attr(ATTR_TRACKING, tracking)


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trial_counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def largest_model_params(cfg: PipelineConfig) -> int | None:
    """Parameters of the largest model the search space can sample (to choose GPU packing)."""
    space = cfg.tune.search_space

    def values(key: str, current: Any) -> list[Any]:
        spec = space.get(key)
        if spec is None:
            return [current]
        return list(spec.choices or []) if spec.type == "categorical" else [spec.high]

    try:
        hidden = max(int(v) for v in values("model.hidden_size", cfg.model.hidden_size))
        layers = max(int(v) for v in values("model.num_layers", cfg.model.num_layers))
        horizon = max(int(v) for v in values("window.horizon", cfg.window.horizon))
        n_features = 1 + len(cfg.data.covariates)
        return max(recurrent_params(str(c), n_features, hidden, layers, horizon)
                   for c in values("model.cell", cfg.model.cell))
    except (KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------- trial liveness


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process, from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def owner_record(pid: int | None = None) -> dict[str, Any]:
    """Who runs a trial: host, boot id and the process's pid and start time (pids get reused)."""
    pid = os.getpid() if pid is None else pid
    stat = process_stat(pid)
    return {"host": socket.gethostname(), "boot": boot_id(), "pid": pid,
            "start": stat[1] if stat else None}


@contextmanager
def _journal_heartbeat(study: optuna.Study, trial: optuna.Trial, interval: int) -> Iterator[None]:
    """Journal files have no heartbeat of their own: write one as a trial attribute."""
    storage = study._storage
    if not isinstance(storage, JournalStorage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time())
            except Exception:  # finished (failed as stale) or storage gone: stop beating
                return
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"seqlab-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ---------------------------------------------------------------- injected faults (tests)


FAULT_KINDS = ("oom", "nan", "error", "stall")


def injected_faults(spec: str | None = None) -> dict[int | str, tuple[str, float]]:
    """Parse ``SEQLAB_TEST_FAULTS``, which makes chosen trials fail, for tests on CPU.

    ``"2:oom,3:nan"`` makes trial 2 raise a (fake) CUDA out-of-memory error and trial 3 a
    non-finite loss; ``error`` raises a RuntimeError; ``stall`` (``stall=SECONDS``, default 0.5)
    sleeps every epoch so a test can kill a worker mid-trial; ``*`` matches every trial. The
    faults are raised from a training callback, through the same path as real ones.
    """
    spec = os.environ.get(FAULTS_ENV, "") if spec is None else spec
    out: dict[int | str, tuple[str, float]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        target, _, kind = item.partition(":")
        kind, _, arg = kind.partition("=")
        try:
            key: int | str = "*" if target.strip() == "*" else int(target)
            seconds = float(arg) if arg else 0.5
        except ValueError:
            key, seconds, kind = "", 0.0, ""
        if kind not in FAULT_KINDS or key == "":
            raise ValueError(f"{FAULTS_ENV}: bad entry {item!r}; expected TRIAL:KIND with TRIAL a "
                             f"number or *, KIND one of {', '.join(FAULT_KINDS)} (stall=SECONDS)")
        out[key] = (kind, seconds)
    return out


class InjectedFault(Callback):
    """Raises a chosen failure after the first epoch (or stalls every epoch)."""

    def __init__(self, kind: str, seconds: float = 0.5) -> None:
        self.kind, self.seconds = kind, seconds

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        tag = f"(injected by {FAULTS_ENV})"
        if self.kind == "stall":
            time.sleep(self.seconds)
        elif self.kind == "oom":
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 20.00 GiB {tag}")
        elif self.kind == "nan":
            raise NonFiniteLossError(f"loss became nan at epoch {epoch} {tag}")
        else:
            raise RuntimeError(f"trial failed {tag}")


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
    """Report validation loss to the pruner; raise ``TrialPruned`` when it says so.

    Each report and check is a storage round trip (two per epoch doubled a small model's epoch
    time on SQLite), so nothing is reported during the pruner's warm-up and then only every
    ``interval`` epochs; all trials report at the same steps, so medians stay comparable.
    """

    def __init__(self, trial: optuna.Trial, warmup: int = 0, interval: int = 1) -> None:
        self.trial, self.warmup, self.interval = trial, warmup, max(1, interval)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch < self.warmup or (epoch - self.warmup) % self.interval:
            return
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


def is_oom(exc: BaseException) -> bool:
    return (isinstance(exc, (torch.OutOfMemoryError, MemoryError))
            or "out of memory" in str(exc).lower())


def failure_reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, MemoryError) and not first:
        first = "out of host memory"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _gpu_peak_mb() -> float | None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def _close(handle: TrialRunHandle | None, state: str, metrics: dict[str, float],
           reason: str | None = None) -> None:
    """Close a trial's run; a tracking failure must not mask the trial's own outcome."""
    if handle is None:
        return
    try:
        handle.close(state, metrics, reason)
    except Exception as e:  # noqa: BLE001
        log.warning("could not close the run of a trial (%s): %s", state, e)


@dataclass
class Objective:
    """``objective(trial) -> best validation loss`` for one study; picklable for workers."""

    cfg: PipelineConfig
    series: SeriesData
    n_trials: int
    tracking: TrialTracking | None = None

    def __post_init__(self) -> None:
        self._prepared: dict[tuple, Any] = {}
        self.heartbeat_interval = self.cfg.tune.heartbeat_interval
        self.faults = injected_faults()  # a bad spec fails here, before any trial

    def _prepared_for(self, cfg: PipelineConfig):
        key = (cfg.window.input_size, cfg.window.horizon, cfg.val_size, cfg.window.stride,
               cfg.window.scaler, cfg.window.transform, cfg.window.local_norm)
        if key not in self._prepared:
            self._prepared[key] = prepare_data(self.series, cfg)
        return self._prepared[key]

    def __call__(self, trial: optuna.Trial) -> float:
        study = trial.study
        # Exactly n_trials: a trial that starts when n_trials trials numbered before it are
        # finished or running (racing workers) fails as surplus and is not counted.
        ahead = [t for t in study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
                 if t.number < trial.number]
        if len(ahead) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("fail_reason", f"surplus: {self.n_trials} trials were already "
                                               "finished or running when it started")
            raise SurplusTrial(f"study already holds {self.n_trials} trials")
        study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner_record())
        with _journal_heartbeat(study, trial, self.heartbeat_interval):
            return self._run(trial)

    def _run(self, trial: optuna.Trial) -> float:
        handle: TrialRunHandle | None = None
        last = _LastEpoch()
        try:
            params = suggest(trial, self.cfg.tune.search_space)
            cfg = with_overrides(self.cfg, params)  # ConfigError on an invalid sampled value
            prepared = self._prepared_for(cfg)
            if self.tracking is not None:
                handle = self.tracking.open(trial, params)
                trial.set_user_attr("mlflow_run_id", handle.run_id)
            callbacks: list[Callback] = [last, PruningCallback(
                trial, cfg.tune.n_warmup_steps, cfg.tune.prune_interval)]
            if handle is not None:
                callbacks.insert(0, handle.callback())
            fault = self.faults.get(trial.number) or self.faults.get("*")
            if fault:
                callbacks.append(InjectedFault(*fault))
            _, hist = train_model(prepared, cfg, callbacks)
        except optuna.TrialPruned as e:
            trial.set_user_attr("epochs", last.epoch + 1)
            _close(handle, "PRUNED", {"val/best_loss": last.best, **_peak_metric()}, str(e))
            raise
        except Exception as e:
            reason = failure_reason(e)
            trial.set_user_attr("fail_reason", reason)
            if is_oom(e):
                trial.set_user_attr("oom", True)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # give the memory back before the next trial
            _close(handle, "FAILED", _peak_metric(), reason)
            raise
        except BaseException:  # KeyboardInterrupt / SIGTERM: leave nothing RUNNING
            trial.set_user_attr("fail_reason", "interrupted (SIGTERM or Ctrl-C)")
            _close(handle, "KILLED", {}, "interrupted")
            raise
        trial.set_user_attr("epochs", hist.epochs)
        trial.set_user_attr("best_epoch", hist.best_epoch)
        if hist.gpu_mem_peak_mb is not None:
            trial.set_user_attr("gpu_mem_peak_mb", round(hist.gpu_mem_peak_mb, 1))
        _close(handle, "COMPLETE", _history_metrics(hist))
        return hist.best_val_loss


def _peak_metric() -> dict[str, float]:
    peak = _gpu_peak_mb()
    return {} if peak is None else {"sys/gpu_mem_peak_mb": peak}


def _history_metrics(hist: History) -> dict[str, float]:
    out = {"val/best_loss": hist.best_val_loss, "train/epochs": float(hist.epochs),
           "train/samples_per_s": hist.samples_per_second, "train/seconds": hist.seconds}
    if hist.gpu_mem_peak_mb is not None:
        out["sys/gpu_mem_peak_mb"] = hist.gpu_mem_peak_mb
    return out


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
    failed = [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")]
    return {
        "study": study.study_name,
        "trials": counts,
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
        "best_params": json.loads(json.dumps(best.params)) if best else {},
        "fail_reasons": {t.number: t.user_attrs.get("fail_reason", "") for t in failed[-10:]},
    }
