"""Training: ``fit(model, data, cfg, callbacks) -> History`` and the devices it runs on.

- :mod:`~seqlab.training.trainer`: epochs, losses, early stopping on validation MASE, callbacks
- :mod:`~seqlab.training.recipe`: one fit of a config (windows, a seeded network, training)
- :mod:`~seqlab.training.devices`: CPU/GPU discovery, worker slots (several small trials per GPU)
"""

from seqlab.errors import NonFiniteLossError, TrainingError
from seqlab.training.devices import (
    WorkerSlot,
    cpu_threads_per_worker,
    default_trials_per_gpu,
    gpu_count,
    plan_slots,
    recurrent_params,
    resolve_device,
)
from seqlab.training.recipe import (
    build_from_config,
    prepare_fit,
    season_for,
    train_model,
    training_end,
)
from seqlab.training.trainer import (
    LOSSES,
    SMALL_MODEL_PARAMS,
    Callback,
    DeviceData,
    History,
    PinballLoss,
    ValScorer,
    WindowSampler,
    autocast_for,
    choose_precision,
    cpu_threads_for,
    eval_loss,
    fit,
    make_loss,
    make_optimizer,
    predict,
    seed_everything,
    train_epoch,
)

__all__ = [
    "NonFiniteLossError",
    "TrainingError",
    "Callback",
    "DeviceData",
    "History",
    "LOSSES",
    "PinballLoss",
    "SMALL_MODEL_PARAMS",
    "ValScorer",
    "WindowSampler",
    "WorkerSlot",
    "autocast_for",
    "build_from_config",
    "choose_precision",
    "cpu_threads_for",
    "cpu_threads_per_worker",
    "default_trials_per_gpu",
    "eval_loss",
    "fit",
    "gpu_count",
    "make_loss",
    "make_optimizer",
    "plan_slots",
    "predict",
    "prepare_fit",
    "recurrent_params",
    "resolve_device",
    "season_for",
    "seed_everything",
    "train_epoch",
    "train_model",
    "training_end",
]
