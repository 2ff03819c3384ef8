"""Explanations of a trained forecaster: what it relies on, for every run.

Three views, as plain functions (numpy, torch, pandas, matplotlib, Optuna; no MLflow, no
Prefect), which the training flow logs under ``explain/`` on the parent run:

- **Permutation importance** on held-out windows (:func:`permutation_importance`): a group of
  inputs (a block of the target's lags, one covariate with all its lags, the calendar
  features) is shuffled across windows, and the model's validation MASE (decoded, data units)
  is compared with the score on the intact windows. The windows are those of the backtest part
  (:func:`held_out_windows`), which the backtested model never trained on.
- **Integrated gradients** for single forecasts (:func:`integrated_gradients`,
  :func:`attribute_latest`): how much each input (time step x feature) moved the sum of the
  horizon's point forecasts away from their value at a zero input, by hand in torch.

Point forecasts are a quantile model's median. Features known in advance (future covariates,
calendar) are also read from the ``horizon`` rows after the input window: their groups and
attributions include those rows.
- **The study's** optimisation history and parameter importances (:func:`plot_study`), with
  Optuna's own matplotlib plots and its PED-ANOVA evaluator (no scikit-learn needed).

What the model sees. Both views act on the model's *input space*: scaled with the statistics
of the training part, and, with ``window.local_norm=last``, the target relative to the window's
last observed value (so the target's lag 1 is always 0 there, and carries nothing to permute or
attribute: the level is added back when forecasts are decoded). Permuting after normalisation
is exactly what the model would see for another window's shape; what decoding adds back (the
last value, the seasonal-naive forecast of ``window.residual``, the seasonal indices of
``window.deseasonalize``) stays with each window, so these views explain the network's part of
the forecast, not those fixed parts.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from seqlab.models import point_index
from seqlab.train import predict as train_predict
from seqlab.windows import PreparedData

if TYPE_CHECKING:
    import optuna

    from seqlab.config import PipelineConfig
    from seqlab.data import SeriesData
    from seqlab.forecaster import FittedForecaster
    from seqlab.models import Forecaster

log = logging.getLogger("seqlab.explain")

TARGET_LAGS, COVARIATE = "target lags", "covariate"
GroupKind = Literal["target lags", "covariate"]


# ---------------------------------------------------------------- the held-out windows


def held_out_windows(series: SeriesData, cfg: PipelineConfig) -> PreparedData:
    """Windows whose targets lie in the backtest part, in the input space of the model that is
    backtested (``refit(series, cfg, epochs, holdout=cfg.test_size)``).

    Its training part is the same (everything before the first cutoff), so the scaler, the
    seasonal indices and the MASE scale (seasonal-naive MAE of the training part) are the ones
    of that fit, and ``val_mase`` scores decoded forecasts in data units. These are all the
    stride-1 windows of the backtest part (``test_size - horizon + 1`` per series), a superset of
    the backtest's cutoffs, scaled by MASE of the part before the first cutoff (the backtest
    scales each cutoff by the history before it): a close proxy of ``test/mase``, not equal.
    """
    from seqlab.pipeline import prepare_fit

    return prepare_fit(series, cfg, holdout=cfg.test_size, val_size=cfg.test_size)


def _val_fields(prepared: PreparedData) -> list[str]:
    """The per-window validation fields: ``x_val``, ``y_val`` and every ``val_*`` array."""
    n = len(prepared.x_val)
    out = []
    for f in dataclasses.fields(prepared):
        value = getattr(prepared, f.name)
        per_window = f.name in ("x_val", "y_val") or f.name.startswith("val_")
        if per_window and isinstance(value, np.ndarray) and value.ndim and len(value) == n:
            out.append(f.name)
    return out


def subset_windows(prepared: PreparedData, rows: np.ndarray) -> PreparedData:
    """The same fit with only the validation windows ``rows`` (every per-window field cut)."""
    return dataclasses.replace(
        prepared, **{name: getattr(prepared, name)[rows] for name in _val_fields(prepared)}
    )


def sample_windows(prepared: PreparedData, max_windows: int | None, seed: int = 0) -> PreparedData:
    """At most ``max_windows`` validation windows, drawn without replacement with ``seed``
    (kept in their order); all of them when there are no more."""
    n = len(prepared.x_val)
    if max_windows is None or n <= max_windows:
        return prepared
    rows = np.sort(np.random.default_rng(seed).choice(n, size=max_windows, replace=False))
    return subset_windows(prepared, rows)


# ---------------------------------------------------------------- groups of inputs


@dataclass(frozen=True)
class FeatureGroup:
    """Inputs permuted together: window rows ``positions`` (0 = the oldest step) of the input
    features ``features`` (0 = the target)."""

    name: str
    kind: GroupKind
    features: tuple[int, ...]
    positions: tuple[int, ...]


def lag_blocks(input_size: int, season: int, max_groups: int = 6) -> list[tuple[int, int]]:
    """Blocks of the target's lags as ``(first, last)`` lags, lag 1 = the last observed step.

    By season when the window holds more than one (``1 < season < input_size``): lags
    ``1..m, m+1..2m, ...``, the last block possibly shorter; beyond ``max_groups`` blocks the
    rest is one block. Otherwise (no season, or one season or less in the window) a few
    (``min(4, input_size)``) equal blocks.
    """
    lags = input_size
    if 1 < season < lags:
        starts = list(range(1, lags + 1, season))[:max_groups]
        ends = [s - 1 for s in starts[1:]] + [lags]
        return list(zip(starts, ends))
    parts = np.array_split(np.arange(1, lags + 1), min(4, lags, max(max_groups, 1)))
    return [(int(p[0]), int(p[-1])) for p in parts]


def feature_names(
    n_features: int,
    covariates: Sequence[str] = (),
    target: str = "y",
    n_calendar: int = 0,
    freq: str | None = None,
) -> list[str]:
    """Names of the model's input features: the target, the covariates (past-only, then known
    in advance, as ``SeriesData.covariates`` lists them), the calendar features."""
    calendar = [f"calendar{i + 1}" for i in range(n_calendar)]
    if n_calendar and freq:
        try:
            from seqlab.features import calendar_names

            named = calendar_names(freq)
            calendar = named if len(named) == n_calendar else calendar
        except ImportError:
            pass
    names = [target, *covariates, *calendar][:n_features]
    return names + [f"feature{i}" for i in range(len(names), n_features)]


def feature_groups(
    input_size: int,
    n_features: int,
    covariates: Sequence[str] = (),
    season: int = 1,
    target: str = "y",
    max_lag_groups: int = 6,
    future_features: Sequence[int] = (),
    horizon: int = 0,
    n_calendar: int = 0,
) -> list[FeatureGroup]:
    """The target's lags in blocks (:func:`lag_blocks`), then each covariate with all its lags,
    then the calendar features together (one group).

    Feature 0 is the target, features ``1..`` the covariates in ``covariates`` order, then
    ``n_calendar`` calendar features (extra unnamed features are ``feature<i>``). Features in
    ``future_features`` are known for the horizon: their ``horizon`` rows after the input
    window belong to their group too."""
    groups = []
    for first, last in lag_blocks(input_size, season, max_lag_groups):
        name = f"{target} lag {first}" if first == last else f"{target} lags {first}-{last}"
        positions = tuple(range(input_size - last, input_size - first + 1))
        groups.append(FeatureGroup(name, TARGET_LAGS, (0,), positions))
    names = feature_names(n_features, covariates, target, n_calendar)
    rows = input_size + (horizon if future_features else 0)

    def span(features: Sequence[int]) -> tuple[int, ...]:
        known = any(f in future_features for f in features)
        return tuple(range(rows if known else input_size))

    first_calendar = n_features - n_calendar
    for i in range(1, first_calendar):
        groups.append(FeatureGroup(names[i], COVARIATE, (i,), span([i])))
    if n_calendar:
        features = tuple(range(first_calendar, n_features))
        groups.append(FeatureGroup("calendar", COVARIATE, features, span(features)))
    return groups


def groups_for(
    prepared: PreparedData,
    covariates: Sequence[str] = (),
    target: str = "y",
    max_lag_groups: int = 6,
) -> list[FeatureGroup]:
    """:func:`feature_groups` of a fit's windows (its season, known-future and calendar
    features)."""
    return feature_groups(
        prepared.input_size,
        prepared.n_features,  # a series-index column (series embedding) is never permuted
        covariates,
        prepared.season,
        target,
        max_lag_groups,
        getattr(prepared, "future_features", None) or (),
        prepared.horizon,
        getattr(prepared, "n_calendar", 0),
    )


# ---------------------------------------------------------------- the model on CPU


def cpu_copy(model: Forecaster) -> Forecaster:
    """A CPU copy in eval mode (the trained model is left as it is). On CPU an RNN's backward
    works in eval mode; cuDNN's would need train mode, which dropout would make random."""
    return copy.deepcopy(model).cpu().eval()


def _point(model: torch.nn.Module, out: torch.Tensor) -> torch.Tensor:
    """The point forecast (N, H) of a model's output: the median of a quantile model's."""
    point = point_index(model)
    return out if point is None else out[..., point]


def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Point forecasts (N, H), in the model's output space, for inputs ``x`` in its input
    space, on the model's device, in batches (the median of a quantile model)."""
    out = train_predict(model, x, chunk=batch_size)
    point = point_index(model)
    return out if point is None or out.ndim < 3 else out[..., point]


# ---------------------------------------------------------------- permutation importance


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


# ---------------------------------------------------------------- integrated gradients


def _output_sum(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The sum of each window's point forecasts over the horizon: (N,)."""
    return _point(model, model(x)).reshape(len(x), -1).sum(dim=1)


def integrated_gradients(
    model: Forecaster,
    x: np.ndarray,
    baseline: np.ndarray | None = None,
    steps: int = 32,
    max_batch: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrated gradients of the sum of the horizon's point forecasts (a quantile model's
    median) with respect to the inputs.

    ``x`` (N, rows, F) in the model's input space; ``baseline`` defaults to zeros there (the
    training mean of each feature, and, with ``local_norm=last``, "no change from the last
    value" for the target). The path integral from the baseline to ``x`` is computed with
    ``steps``-point Gauss-Legendre quadrature on a CPU copy of the model in eval mode.

    Returns ``(attributions (N, rows, F), output (N,), baseline output (N,))``; by
    completeness, ``attributions.sum((1, 2)) ~= output - baseline output``: to float precision
    for one smooth network, up to the quadrature's error (about 1% at 32 steps, falling as
    1/steps) where the output has kinks: the median of 3 or more ensemble members, or quantile
    levels sorted where they cross.
    """
    net = cpu_copy(model)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    bt = torch.zeros_like(xt) if baseline is None else torch.as_tensor(baseline).to(xt)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.as_tensor((nodes + 1) / 2, dtype=torch.float32)
    w = torch.as_tensor(weights / 2, dtype=torch.float32)
    diff = xt - bt
    total = torch.zeros_like(xt)
    per_chunk = max(1, max_batch // max(len(xt), 1))
    for i in range(0, steps, per_chunk):
        a = alphas[i : i + per_chunk]
        path = (bt[None] + a[:, None, None, None] * diff[None]).reshape(-1, *xt.shape[1:])
        path.requires_grad_(True)
        (grad,) = torch.autograd.grad(_output_sum(net, path).sum(), path)
        grad = grad.reshape(len(a), *xt.shape)
        total += (w[i : i + per_chunk, None, None, None] * grad).sum(dim=0)
    with torch.no_grad():
        out, base_out = _output_sum(net, xt), _output_sum(net, bt)
    return (diff * total).numpy(), out.numpy(), base_out.numpy()


@dataclass
class Attribution:
    """Integrated gradients of one forecast: ``values`` (rows, n_features), row ``t`` the
    window's step ``t`` (lag ``input_size - t``; rows after ``input_size`` are the horizon's
    steps, with the known-future features), column ``f`` the feature ``features[f]``."""

    series_id: str
    features: list[str]
    values: np.ndarray
    output: float
    """Sum of the horizon's point forecasts at the window (model output units: scaled, and
    relative to the last value with ``local_norm=last``)."""
    baseline_output: float
    """The same at the all-zero baseline."""
    target_scale: float
    """Multiply by it for data units (``window.transform=none``, no deseasonalisation)."""
    input_size: int = 0
    """Rows of the input window (0: all rows)."""

    @property
    def completeness_gap(self) -> float:
        """``sum(values) - (output - baseline_output)``: the quadrature's error."""
        return float(self.values.sum() - (self.output - self.baseline_output))

    def row_labels(self) -> list[str]:
        """``lag L`` ... ``lag 1`` for the input window, ``+1`` ... ``+H`` for horizon rows."""
        length = self.input_size or len(self.values)
        future = len(self.values) - length
        return [f"lag {length - t}" for t in range(length)] + [f"+{h + 1}" for h in range(future)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_id": self.series_id,
            "output_sum": self.output,
            "baseline_output_sum": self.baseline_output,
            "completeness_gap": self.completeness_gap,
            "target_scale": self.target_scale,
            "rows": self.row_labels(),
            "attributions": {f: self.values[:, i].tolist() for i, f in enumerate(self.features)},
        }


def attribute_latest(
    model: Forecaster,
    prepared: PreparedData,
    covariates: Sequence[str] = (),
    max_series: int = 3,
    steps: int = 32,
    target: str = "y",
) -> list[Attribution]:
    """Integrated gradients (:func:`integrated_gradients`) of the latest held-out window of the
    first ``max_series`` series: the window whose target is each series' last ``horizon``
    validation points (with :func:`held_out_windows`, the series' last points)."""
    rows, sids = [], []
    for i, sid in enumerate(prepared.series_ids):
        mine = np.flatnonzero(prepared.val_series == i)
        if len(mine):
            rows.append(int(mine[-1]))
            sids.append((i, sid))
        if len(rows) >= max_series:
            break
    if not rows:
        return []
    x = prepared.x_val[rows]
    baseline = np.zeros_like(x)
    f = prepared.n_features
    baseline[..., f:] = x[..., f:]  # a series-index column stays the window's own series
    values, out, base = integrated_gradients(model, x, baseline, steps=steps)
    values = values[..., :f]
    n_calendar = getattr(prepared, "n_calendar", 0)
    names = feature_names(f, covariates, target, n_calendar, prepared.freq)
    return [
        Attribution(
            sid,
            names,
            values[k],
            float(out[k]),
            float(base[k]),
            float(prepared.scaler.scale[i, 0]),
            prepared.input_size,
        )
        for k, (i, sid) in enumerate(sids)
    ]


def attributions_json(attributions: Sequence[Attribution], steps: int = 32) -> dict[str, Any]:
    return {
        "method": "integrated gradients",
        "steps": steps,
        "quadrature": "gauss-legendre",
        "baseline": "zeros in the model's input space (scaled; relative to the last value "
        "with local_norm=last)",
        "output": "sum of the horizon's point forecasts in the model's output space (scaled; "
        "x target_scale for data units with transform=none)",
        "window": "the latest held-out window of each series (its target: the last points)",
        "series": [a.to_dict() for a in attributions],
    }


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_importance(importance: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Horizontal bars of :func:`permutation_importance` (most important on top), with the
    standard deviation over repeats as error bars."""
    plt = _pyplot()
    frame = importance.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(frame)))
    colors = ["tab:blue" if k == TARGET_LAGS else "tab:orange" for k in frame["kind"]]
    ax.barh(frame["group"], frame["importance"], xerr=frame["std"], color=colors, capsize=3)
    ax.axvline(0, color="0.3", lw=0.8)
    base = float(importance["baseline_mase"].iloc[0]) if len(importance) else float("nan")
    ax.set_xlabel(f"increase of held-out MASE when shuffled (intact: {base:.3f})")
    ax.set_title(title or "Permutation importance (blue: target lags, orange: covariates)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_attribution(attribution: Attribution, path: str | Path, title: str = "") -> Path:
    """Heatmap of one forecast's attributions: features as rows, the window's steps as columns
    (oldest on the left, lag 1 then the horizon's known-future rows on the right); red pushes
    the forecast up, blue down."""
    plt = _pyplot()
    values = attribution.values.T  # (F, rows)
    n_feat, length = values.shape
    labels = attribution.row_labels()
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.3 * length), 1.6 + 0.5 * n_feat))
    lim = float(np.abs(values).max()) or 1.0
    im = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ticks = sorted({0, length - 1, *range(0, length, max(1, length // 12))})
    ax.set_xticks(ticks, [labels[t].removeprefix("lag ") for t in ticks])
    ax.set_yticks(range(n_feat), attribution.features)
    if attribution.input_size and attribution.input_size < length:
        ax.axvline(attribution.input_size - 0.5, color="0.2", lw=1)
    ax.set_xlabel("lag (steps before the forecast; +h: the horizon's known inputs)")
    fig.colorbar(im, ax=ax, label="attribution (output units)")
    ax.set_title(
        title
        or f"Integrated gradients, series {attribution.series_id}: "
        f"output {attribution.output:.3g} vs {attribution.baseline_output:.3g} at baseline"
    )
    return _save(fig, path)


def plot_study(study: optuna.Study, out_dir: str | Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Optuna's optimisation history and parameter importances (PED-ANOVA: no scikit-learn) of
    ``study`` as PNGs in ``out_dir``. Returns ``(written, skipped)``: file paths by plot name,
    and the reason each skipped plot was not drawn (too few complete trials, one parameter)."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as optuna_plt

    _pyplot()
    written: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = sorted({k for t in done for k in t.params})
    varied = [k for k in params if len({repr(t.params.get(k)) for t in done}) > 1]
    out = Path(out_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if len(done) < 2:
            reason = f"{len(done)} complete trial(s): a history and importances need 2"
            skipped["optimization_history"] = skipped["param_importances"] = reason
        else:
            ax = optuna_plt.plot_optimization_history(study)
            written["optimization_history"] = _save(ax.figure, out / "optimization_history.png")
            if len(varied) < 2:
                skipped["param_importances"] = (
                    f"{len(varied)} parameter(s) varied over the complete trials "
                    f"({', '.join(params) or 'none searched'}): importances compare 2 or more"
                )
            else:
                ax = optuna_plt.plot_param_importances(
                    study, evaluator=PedAnovaImportanceEvaluator(), params=varied
                )
                written["param_importances"] = _save(ax.figure, out / "param_importances.png")
    for name, reason in skipped.items():
        log.info("study plot %s skipped: %s", name, reason)
    return written, skipped


# ---------------------------------------------------------------- everything, for a run


@dataclass
class Explanation:
    """What :func:`explain` wrote and found."""

    importance: pd.DataFrame | None = None
    attributions: list[Attribution] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    """Written files by name (``permutation_importance.csv``, ``attribution.png``...)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Parts that do not apply, with the reason (a study with one complete trial)."""
    errors: dict[str, str] = field(default_factory=dict)
    """Parts that failed, with the error's first line."""

    @property
    def top_feature(self) -> str | None:
        """The most important group of inputs, ``None`` without permutation importance."""
        if self.importance is None or not len(self.importance):
            return None
        return str(self.importance["group"].iloc[0])

    def metrics(self) -> dict[str, float]:
        if self.importance is None or not len(self.importance):
            return {}
        return {
            "explain/baseline_mase": float(self.importance["baseline_mase"].iloc[0]),
            "explain/top_importance": float(self.importance["importance"].iloc[0]),
        }


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def explain(
    fitted: FittedForecaster,
    series: SeriesData,
    cfg: PipelineConfig,
    out_dir: str | Path,
    study: optuna.Study | str | None = None,
    plots: bool = True,
    n_repeats: int = 5,
    max_windows: int | None = 2048,
    max_series: int = 3,
    steps: int = 32,
) -> Explanation:
    """Permutation importance and attributions of ``fitted``, the model trained before the
    first backtest cutoff with ``cfg`` (the trained configuration: tuned values included), and
    the plots of ``study`` (a study, or the name of one in ``cfg.tune.storage``; ``""``: none),
    as files in ``out_dir``: ``permutation_importance.csv``, ``attribution.json`` and, with
    ``plots``, their PNGs and the study's. Never raises for a part: a failed one is left out
    with its reason in ``errors`` (logged as a warning)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = Explanation()
    target, covs, seed = cfg.data.target, list(series.covariates), cfg.train.seed

    prepared: PreparedData | None = None
    try:
        prepared = held_out_windows(series, cfg)
        mine, theirs = prepared.scaler, fitted.spec.scaler
        same = mine.series_ids == theirs.series_ids and mine.loc.shape == theirs.loc.shape
        if not same or not (
            np.allclose(mine.loc, theirs.loc) and np.allclose(mine.scale, theirs.scale)
        ):
            raise ValueError(
                "the model was not trained on the part before the first backtest cutoff "
                f"(its holdout: {fitted.holdout}; expected {cfg.test_size})"
            )
    except Exception as e:  # noqa: BLE001 - explanations never fail a run
        result.errors["held_out_windows"] = _reason(e)
        prepared = None

    if prepared is not None:
        try:
            imp = permutation_importance(
                fitted.network, prepared, covs, n_repeats, seed, max_windows, target
            )
            imp.to_csv(out / "permutation_importance.csv", index=False)
            result.importance = imp
            result.files["permutation_importance.csv"] = out / "permutation_importance.csv"
            if plots:
                png = plot_importance(imp, out / "permutation_importance.png")
                result.files["permutation_importance.png"] = png
        except Exception as e:  # noqa: BLE001
            result.errors["permutation_importance"] = _reason(e)
        try:
            attrs = attribute_latest(fitted.network, prepared, covs, max_series, steps, target)
            if not attrs:
                raise ValueError("no held-out window to attribute")
            path = out / "attribution.json"
            path.write_text(json.dumps(attributions_json(attrs, steps), indent=1))
            result.attributions = attrs
            result.files["attribution.json"] = path
            if plots:
                png = plot_attribution(attrs[0], out / "attribution.png")
                result.files["attribution.png"] = png
        except Exception as e:  # noqa: BLE001
            result.errors["attribution"] = _reason(e)

    if plots and study is not None and study != "":
        try:
            if isinstance(study, str):
                study = load_study(study, cfg.tune.storage, cfg.tune.heartbeat_interval)
            written, skipped = plot_study(study, out)
            result.files.update({f"{k}.png": v for k, v in written.items()})
            result.skipped.update(skipped)
        except Exception as e:  # noqa: BLE001
            result.errors["study_plots"] = _reason(e)

    for part, reason in result.errors.items():
        log.warning("explanation %s failed: %s", part, reason)
    return result


def load_study(name: str, storage: str, heartbeat_interval: int = 10) -> optuna.Study:
    """The tuning study ``name`` in ``storage`` (a ``tune.storage`` URL)."""
    import optuna

    from seqlab.tuning.storage import make_storage

    return optuna.load_study(
        study_name=name, storage=make_storage(storage, heartbeat_interval), sampler=None
    )
