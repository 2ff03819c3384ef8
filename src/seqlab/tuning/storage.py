"""Study storage: URLs to Optuna storages, study identity (fingerprints), counts, publishing.

A study is named ``<base>-<fingerprint>``. The fingerprint hashes the data digest, every
setting that changes what a trial computes and seqlab's version (see :func:`fingerprint`), so a
run on new data, with another search space or after an upgrade opens a new study instead of
reusing trials scored on something else (or by other code); the new study is warm-started with
the previous study's best parameters. Resuming an interrupted run (same data, same settings,
same version) finds the same study and tops it up.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

import seqlab
from seqlab.config import PipelineConfig
from seqlab.redact import redact_tree
from seqlab.tuning.space import fits_space

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
ATTR_CONFIG = "seqlab.config"
ATTR_TRACKING = "seqlab.tracking"
ATTR_DIGEST = "seqlab.data_digest"
ATTR_FINGERPRINT = "seqlab.fingerprint"
ATTR_WARM_START = "seqlab.warm_started_from"

# Settings that do not change a trial's result: where and how fast trials run, where runs go.
_NOT_IN_FINGERPRINT = {
    "name": None,
    "time_budget": None,  # the deadline a trial may be cut at is recorded on the trial itself
    "data": {"source"},  # the digest identifies the data wherever the file lives
    "tune": {
        "n_trials",
        "timeout",
        "storage",
        "study_name",
        "workers",
        "trials_per_gpu",
        "heartbeat_interval",
        "wait_timeout",
        "max_fail_streak",
    },
    "train": {"device", "precision", "num_threads"},
    "eval": {"plot", "conformal"},  # calibrates after the trials
    "tracking": None,
    "registry": None,
}


def fingerprint(cfg: PipelineConfig, digest: str) -> str:
    """Hash of the data digest, the settings that decide what a trial computes, and seqlab's
    version: the code computes it too, so after an upgrade a finished study of the old code is
    not reused (the new one is warm-started from its best parameters)."""
    data = cfg.model_dump(mode="json")
    for section, keys in _NOT_IN_FINGERPRINT.items():
        if keys is None:
            data.pop(section, None)
        else:
            for k in keys:
                data[section].pop(k, None)
    blob = json.dumps(
        {"digest": digest, "config": data, "seqlab": seqlab.__version__}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def study_name_for(cfg: PipelineConfig, digest: str) -> str:
    return f"{cfg.study_name}-{fingerprint(cfg, digest)[:10]}"


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
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=heartbeat_interval * 2,
                )
        except sqlalchemy.exc.DBAPIError as e:
            if attempt == _SCHEMA_ATTEMPTS - 1 or not is_schema_race(e):
                raise
            time.sleep(0.05 * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


# Optuna creates its tables, version row and alembic stamp on first use, unguarded: processes
# that open a new storage at once (a pipeline and the workers started with it) collide there.
# The loser's retry finds the winner's schema and only reads it.
_SCHEMA_ATTEMPTS = 6
_SCHEMA_RACE = (
    "already exists",  # CREATE TABLE of a table another process just created
    "unique constraint failed",  # SQLite: the version row or alembic stamp inserted twice
    "duplicate key",  # PostgreSQL: the same, or a type created twice
    "database is locked",  # SQLite: the other process holds the write lock past the timeout
)


def is_schema_race(error: BaseException) -> bool:
    """Whether a storage error is another process creating the same schema at that moment."""
    text = str(error).lower()
    return any(marker in text for marker in _SCHEMA_RACE)


def make_sampler(cfg: PipelineConfig, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """TPE with the configured seed; each worker gets its own offset (same seed, same params)."""
    t = cfg.tune
    seed = None if t.sampler_seed is None else t.sampler_seed + seed_offset
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=t.n_startup_trials, constant_liar=True
    )  # running trials steer others away


def make_pruner(cfg: PipelineConfig) -> optuna.pruners.BasePruner:
    t = cfg.tune
    return optuna.pruners.MedianPruner(
        n_startup_trials=t.n_startup_trials, n_warmup_steps=t.n_warmup_steps
    )


def family(storage: optuna.storages.BaseStorage, base: str) -> list[str]:
    """Studies of one base name (``<base>-<fingerprint>``, or ``<base>`` itself), oldest first."""
    studies = storage.get_all_studies()

    def of_family(name: str) -> bool:
        suffix = name[len(base) + 1 :]
        return name == base or (
            name.startswith(base + "-")
            and len(suffix) == 10
            and all(c in "0123456789abcdef" for c in suffix)
        )

    named = [(s._study_id, s.study_name) for s in studies if of_family(s.study_name)]
    return [name for _, name in sorted(named)]


@dataclass(frozen=True)
class OpenedStudy:
    study: optuna.Study
    created: bool
    warm_started_from: str | None
    warm_start_params: dict[str, Any]


def previous_best(
    storage: optuna.storages.BaseStorage, names: list[str]
) -> tuple[str | None, dict[str, Any]]:
    """The newest study among ``names`` with a completed trial, and its best parameters."""
    for name in reversed(names):
        study = optuna.load_study(study_name=name, storage=storage)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if done:
            return name, dict(min(done, key=lambda t: t.value).params)  # type: ignore[arg-type]
    return None, {}


def open_study(
    cfg: PipelineConfig, storage: optuna.storages.BaseStorage, digest: str
) -> OpenedStudy:
    """Resume this data and config's study, or create it warm-started from the last one."""
    name = study_name_for(cfg, digest)
    earlier = [n for n in family(storage, cfg.study_name) if n != name]
    exists = name in family(storage, cfg.study_name)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=make_sampler(cfg),
        pruner=make_pruner(cfg),
        load_if_exists=True,
    )
    if exists or study.get_trials(deepcopy=False):
        return OpenedStudy(study, False, study.user_attrs.get(ATTR_WARM_START), {})
    source, params = previous_best(storage, earlier)
    params = fits_space(params, cfg.tune.search_space)
    if source and params:
        study.enqueue_trial(params, skip_if_exists=True)
        study.set_user_attr(ATTR_WARM_START, source)
    study.set_user_attr(ATTR_FINGERPRINT, fingerprint(cfg, digest))
    return OpenedStudy(study, True, source if params else None, params)


def resolve_study_name(storage: optuna.storages.BaseStorage, name: str) -> str:
    """A full study name, or a base name meaning the newest study of that family."""
    names = family(storage, name)
    if name in names or not names:
        return name
    return names[-1]


def load_study(
    name: str,
    storage: optuna.storages.BaseStorage | str,
    cfg: PipelineConfig | None = None,
    seed_offset: int = 0,
) -> optuna.Study:
    """Load a study by name; with ``cfg``, with the configured sampler (offset seed) and pruner."""
    kwargs: dict[str, Any] = {}
    if cfg is not None:
        kwargs = {"sampler": make_sampler(cfg, seed_offset), "pruner": make_pruner(cfg)}
    try:
        return optuna.load_study(study_name=name, storage=storage, **kwargs)
    except KeyError:
        raise ValueError(
            f"study {name!r} not found in the storage; start it with `seqlab run`"
        ) from None


def publish(study: optuna.Study, cfg: PipelineConfig, digest: str, tracking: dict | None) -> None:
    """Store what a worker needs on the study itself: config, data digest, tracking target."""
    # Passwords stay out (workers take the storage URL from their command line and MLflow
    # credentials from MLFLOW_TRACKING_USERNAME/PASSWORD).
    study.set_user_attr(ATTR_CONFIG, redact_tree(cfg.model_dump(mode="json")))
    study.set_user_attr(ATTR_DIGEST, digest)
    study.set_user_attr(ATTR_TRACKING, redact_tree(tracking))


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trial_counts(study: optuna.Study) -> tuple[int, int]:
    """(finished, running) trials."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running
