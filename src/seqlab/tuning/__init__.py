"""Hyper-parameter search with Optuna, one file per concern.

- :mod:`~seqlab.tuning.space`: search spaces as data (sampling dotted config keys)
- :mod:`~seqlab.tuning.storage`: storages, study identity (data + config fingerprint), counts
- :mod:`~seqlab.tuning.objective`: ``objective(trial) -> validation MASE``
- :mod:`~seqlab.tuning.liveness`: trial owners, heartbeats, reaping trials of dead workers
- :mod:`~seqlab.tuning.runner`: running trials in this process, waiting for other workers
- :mod:`~seqlab.tuning.pool`: local worker processes pinned to GPU slots
- :mod:`~seqlab.tuning.worker`: a worker that joins a published study (``seqlab tune-worker``)
- :mod:`~seqlab.tuning.session`: one tuning session, returning a :class:`TuningResult`

Nothing here imports MLflow or Prefect: trials are tracked through the ``TrialTracking``
protocol, which :mod:`seqlab.registry.tracking` implements.
"""

from seqlab.tuning.session import tune_study
from seqlab.tuning.summary import TuningResult

__all__ = ["TuningResult", "tune_study"]
