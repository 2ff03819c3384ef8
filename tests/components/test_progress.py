"""Trials and epochs are reported to a progress sink (what `seqlab run` draws its bar from)."""

from seqlab import progress
from seqlab.data.checks import ingest, validate_data
from seqlab.tuning import tune_study


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[str, int, int]] = []

    def update(self, task: str, completed: int, total: int, info: str = "") -> None:
        self.updates.append((task, completed, total))


def test_tuning_reports_trials_and_epochs(tiny_config) -> None:
    cfg = tiny_config(**{"tune.n_trials": 2})
    series = validate_data(ingest(cfg), cfg)
    sink = Recorder()
    with progress.showing(sink):
        tune_study(cfg, series)
    trials = [u for u in sink.updates if u[0] == "trials"]
    epochs = [u for u in sink.updates if u[0] == "epochs"]
    assert trials[0] == ("trials", 0, 2) and trials[-1] == ("trials", 2, 2)
    assert ("epochs", 3, 3) in epochs and all(total == 3 for _, _, total in epochs)
    seen = len(sink.updates)
    progress.report("trials", 1, 1)  # after the block the sink is gone: nothing recorded
    assert len(sink.updates) == seen
