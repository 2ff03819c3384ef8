"""Permutation importance of groups of inputs on held-out windows (validation MASE)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seqlab.evaluation.explain.cpu import cpu_copy, predict
from seqlab.evaluation.explain.groups import groups_for
from seqlab.evaluation.explain.windows import sample_windows
from seqlab.features.windows import PreparedData

if TYPE_CHECKING:
    from seqlab.models import Forecaster


log = logging.getLogger("seqlab.explain")


def permutation_importance(
    model: Forecaster,
    prepared: PreparedData,
    covariates: Sequence[str] = (),
    n_repeats: int = 5,
    seed: int = 0,
    max_windows: int | None = 2048,
    target: str = "y",
    max_lag_groups: int = 6,
) -> pd.DataFrame:
    """Increase of the validation MASE when a group of inputs is shuffled across windows.

    For each group (:func:`groups_for`), ``x_val[:, positions, features]`` is permuted over
    windows (rows move jointly, so a group keeps its own shape but comes from another window),
    ``n_repeats`` times; the same ``n_repeats`` permutations (drawn from ``seed``) serve every
    group. ``importance`` is the mean increase of :meth:`PreparedData.val_mase` over the intact
    score ``baseline_mase``, ``std`` its standard deviation over the repeats. At most
    ``max_windows`` windows are used (sampled with ``seed``).

    Returns a frame ``group, kind, importance, std, baseline_mase, n_windows``, most important
    first.
    """
    if n_repeats < 1:
        raise ValueError("n_repeats must be at least 1")
    data = sample_windows(prepared, max_windows, seed)
    n = len(data.x_val)
    if n < 2:
        raise ValueError(f"permutation importance needs at least 2 held-out windows; got {n}")
    net = cpu_copy(model)
    x = data.x_val
    baseline = data.val_mase(predict(net, x))
    if not math.isfinite(baseline):
        raise ValueError("the held-out MASE is undefined (constant series?): nothing to compare")
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(n) for _ in range(n_repeats)]
    rows = []
    for g in groups_for(data, covariates, target, max_lag_groups):
        cells = np.ix_(np.arange(n), g.positions, g.features)
        increases = []
        for perm in perms:
            shuffled = x.copy()
            shuffled[cells] = x[np.ix_(perm, g.positions, g.features)]
            increases.append(data.val_mase(predict(net, shuffled)) - baseline)
        rows.append(
            {
                "group": g.name,
                "kind": g.kind,
                "importance": float(np.mean(increases)),
                "std": float(np.std(increases, ddof=1)) if n_repeats > 1 else 0.0,
                "baseline_mase": baseline,
                "n_windows": n,
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
