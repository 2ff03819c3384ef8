import optuna
import pytest

from seqlab.tune import PruningCallback


def test_reports_only_after_warmup_and_every_interval() -> None:
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    cb = PruningCallback(trial, warmup=3, interval=5)
    for epoch in range(20):
        cb.on_epoch_end(epoch, {"val/loss": float(epoch)})
    study.tell(trial, 0.0)
    assert sorted(study.trials[0].intermediate_values) == [3, 8, 13, 18]


def test_prunes_a_clearly_worse_trial() -> None:
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    for e in range(5):
        PruningCallback(good).on_epoch_end(e, {"val/loss": 0.1})
    study.tell(good, 0.1)
    bad = study.ask()
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 0"):
        PruningCallback(bad).on_epoch_end(0, {"val/loss": 9.0})
