import optuna
import pytest

from seqlab.tuning.objective import PruningCallback


def test_reports_only_after_warmup_and_every_interval() -> None:
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    cb = PruningCallback(trial, warmup=3, interval=5)
    for epoch in range(20):
        cb.on_epoch_end(epoch, {"val/loss": 1.0, "val/mase": float(epoch)})
    study.tell(trial, 0.0)
    assert study.trials[0].intermediate_values == {3: 3.0, 8: 8.0, 13: 13.0, 18: 18.0}


def test_reports_validation_mase_not_the_loss_and_falls_back_to_the_loss() -> None:
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    PruningCallback(trial).on_epoch_end(0, {"train/loss": 5.0, "val/loss": 0.2, "val/mase": 0.7})
    PruningCallback(trial).on_epoch_end(1, {"train/loss": 5.0, "val/loss": 0.3})  # no scorer
    PruningCallback(trial).on_epoch_end(2, {"train/loss": 5.0})  # no validation: nothing
    study.tell(trial, 0.0)
    assert study.trials[0].intermediate_values == {0: 0.7, 1: 0.3}


def test_prunes_a_clearly_worse_trial() -> None:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(pruner=pruner)
    good = study.ask()
    for e in range(5):
        PruningCallback(good, monitor="val/mase").on_epoch_end(e, {"val/mase": 0.1})
    study.tell(good, 0.1)
    bad = study.ask()
    with pytest.raises(optuna.TrialPruned, match=r"pruned at epoch 0 \(val/mase 9\)"):
        PruningCallback(bad, monitor="val/mase").on_epoch_end(
            0, {"val/loss": 0.01, "val/mase": 9.0}
        )
