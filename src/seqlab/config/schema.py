"""Typed pipeline configuration: the sections and their defaults.

Defaults live here, beside the code; YAML files and ``key=value`` overrides only change them.
Every section forbids unknown keys so a typo fails loudly, naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqlab.redact import expand_env


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    source: str = "airpassengers"
    """A bundled dataset name (see ``seqlab.datasets``) or a path to a CSV/Parquet file."""
    time_column: str = "month"
    target: str = "passengers"
    series_id: str | None = None
    """Column naming the series in long format; several series train one global model."""
    covariates: list[str] = Field(default_factory=list)
    """Numeric columns fed to the model as extra (past) inputs."""
    future_covariates: list[str] = Field(default_factory=list)
    """Numeric columns known in advance (a calendar of promotions, holidays, a weather forecast):
    fed as inputs over the input window and for the forecast horizon. Forecasting needs their
    values for the ``horizon`` steps after each series' history: rows with an empty target."""
    static_covariates: list[str] = Field(default_factory=list)
    """Columns that describe a series and do not change over time (a store's type, region,
    size), constant within each series of a global model (``series_id``): fed to the network
    with every input step so it can tell series apart by what they are. Text columns are
    one-hot encoded over their levels, numeric ones standardised over the series; forecasts
    use the values trained on (a history may omit these columns)."""
    freq: str | None = None
    """Pandas offset alias (``MS``, ``D``, ``h``...). Inferred when unset."""
    fill: Literal["error", "ffill", "interpolate", "zero"] = "error"
    """What to do with missing timestamps (gaps): fail, or fill them from the past only
    (``ffill`` and ``interpolate`` carry the last observed value forward; ``zero``). Filled
    points are never scored."""
    nan_policy: Literal["error", "interpolate"] = "error"
    """What to do with NaN/inf target values: fail, or carry the last finite value forward
    (points before a series' first finite value are dropped, with a warning); never scored."""
    encoding: str = "utf-8"
    """Text encoding of a CSV source (``latin-1``, ``cp1252``...)."""

    @model_validator(mode="after")
    def _roles(self) -> DataConfig:
        both = sorted(set(self.covariates) & set(self.future_covariates))
        if both:
            raise ValueError(
                f"{', '.join(both)} listed in both data.covariates and data.future_covariates: "
                "keep each column in one (future_covariates if its future values are known)"
            )
        roles = {
            "data.covariates": self.covariates,
            "data.future_covariates": self.future_covariates,
            "data.target": [self.target],
            "data.time_column": [self.time_column],
            "data.series_id": [self.series_id] if self.series_id else [],
        }
        for key, cols in roles.items():
            clash = [c for c in self.static_covariates if c in cols]
            if clash:
                raise ValueError(
                    f"{', '.join(clash)} listed in both data.static_covariates and {key}: "
                    "give each column one role"
                )
        if self.static_covariates and not self.series_id:
            raise ValueError(
                "data.static_covariates needs data.series_id: they tell the series of a global "
                "model apart"
            )
        return self


class WindowConfig(_Section):
    input_size: int = Field(24, ge=1)
    horizon: int = Field(12, ge=1)
    stride: int = Field(1, ge=1)
    val_size: int | None = Field(None, ge=1)
    """Points of the validation part, right before the first backtest cutoff. Unset: room for
    ``val_windows`` windows ``max(1, horizon // 2)`` apart (``horizon + (val_windows - 1) *
    step``), fewer on a series too short for them. Set: exactly this part on every series,
    validated on every window inside it (stride 1). Validation targets lie wholly inside it
    (never in the training part)."""
    val_windows: int = Field(3, ge=1)
    """Rolling validation windows per series that tuning and early stopping score (mean over a
    series' windows, then over series), where its history allows; one window of ``horizon``
    points on a short noisy series is a coin toss. Ignored when ``val_size`` is set."""
    scaler: Literal["standard", "minmax", "mase", "none"] = "mase"
    """Per-series scaling, fitted on the training part only. ``mase``: the target divided by its
    in-sample seasonal-naive MAE, so the training loss weighs series as MASE does."""
    transform: Literal["none", "log"] = "none"
    """Applied to the target before scaling (``log`` for multiplicative series; needs y > 0)."""
    local_norm: Literal["last", "none"] = "last"
    """``last``: inputs and targets are taken relative to the window's last observed target, so
    the network learns changes, not levels (robust to trends the training part never reached)."""

    residual: Literal["auto", "none", "seasonal_naive"] = "auto"
    """``seasonal_naive``: the network learns the correction to the seasonal-naive forecast read
    from its input window (needs ``input_size`` >= the season), so an untrained network already
    forecasts seasonal naive. ``auto``: that wherever the input window holds a season, else
    ``none`` (the run logs ``window.residual_effective``). Chosen on the wide benchmark's
    development half (docs/benchmarks.md): on its monthly series it took the share beating
    seasonal naive from 23% to 62%."""
    calendar: bool = False
    """Feed calendar features of each timestamp, chosen by the frequency (month of year, day of
    week, hour of day...; ``seqlab.features.calendar``), over the input window and the horizon."""
    deseasonalize: Literal["none", "multiplicative", "additive"] = "none"
    """Remove each series' classical seasonal indices (fitted on the training part, only for
    series that test seasonal) before scaling, and put them back on the forecasts
    (``seqlab.features.seasonal``). ``multiplicative`` leaves series with values <= 0 unadjusted."""
    pad: bool = False
    """Let inputs start before a series does (filled with its first observation): series shorter
    than ``input_size + horizon`` still train and forecast."""


class ModelConfig(_Section):
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    quantiles: list[float] | None = None
    """Forecast these quantile levels (e.g. ``[0.1, 0.5, 0.9]``; 0.5, the median, is the point
    forecast) with ``train.loss: pinball``; the backtest adds interval coverage and the scaled
    pinball loss, and forecasts carry a ``q<level>`` column per level."""
    series_embedding: int = Field(0, ge=0)
    """Size of a learnt embedding of each series' identity fed with every input step (global
    models over several series, as DeepAR's item embedding); 0: off."""
    ensemble_size: int = Field(5, ge=1, le=100)
    """Final fits train this many members of the chosen architecture from seeds ``train.seed``,
    ``train.seed + 1``, ... and forecast their median (as N-BEATS and ES-RNN ensemble). Tuning
    trials train one member each, so the cost is K times the final fits only."""


class TrainConfig(_Section):
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(300, ge=1)
    patience: int | None = Field(30, ge=1)
    """Early-stopping patience in epochs on validation loss; ``null`` disables it."""
    grad_clip: float | None = Field(1.0, gt=0)
    loss: Literal["mse", "mae", "huber", "pinball"] = "mae"
    """``pinball``: the quantile loss, for ``model.quantiles`` (and only with them)."""
    windows_per_epoch: int | None = Field(2048, ge=1)
    """At most this many training windows per epoch: with more, an epoch samples this many
    (series first, then a window of it, both uniformly), so many or long series fit a time
    budget and long ones do not dominate; ``null``: every window, every epoch."""
    seed: int = 42
    device: str = "auto"
    """``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps``."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    num_threads: int | None = Field(None, ge=1)
    """CPU threads for torch. Unset: 1 for small models (their tiny matrix products gain nothing
    from threads, and spinning threads collapse when another process takes a core), torch's
    default for large ones."""


class ParamSpec(_Section):
    """One dimension of a search space; ``name`` is a dotted config key such as ``model.cell``."""

    type: Literal["categorical", "int", "float"]
    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"'low' ({self.low}) is above 'high' ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log-scaled parameter needs low > 0")
        return self


# The space searched unless a config gives its own: the architecture and the input window.
DEFAULT_SEARCH_SPACE: dict[str, ParamSpec] = {
    "model.cell": ParamSpec(type="categorical", choices=["lstm", "gru"]),
    "model.hidden_size": ParamSpec(type="categorical", choices=[16, 32, 64]),
    "model.num_layers": ParamSpec(type="int", low=1, high=2),
    "train.lr": ParamSpec(type="float", low=0.001, high=0.02, log=True),
    "window.input_size": ParamSpec(type="categorical", choices=[12, 24, 36]),
}


# The keys a search space may name: each one works in a study (tests/unit/test_search_keys.py runs
# them all). Left out, and refused when the config is read: keys that change the task or what
# validation measures (horizon, val_size, quantiles, eval.*), the data read once before the
# trials (data.*), where and how fast trials run (device, precision, threads, tune.*), and what
# happens after tuning (tracking.*, registry.*, ensemble_size).
SEARCHABLE_KEYS: tuple[str, ...] = (
    "window.input_size",
    "window.stride",
    "window.scaler",
    "window.transform",
    "window.local_norm",
    "window.residual",
    "window.calendar",
    "window.deseasonalize",
    "window.pad",
    "model.cell",
    "model.hidden_size",
    "model.num_layers",
    "model.dropout",
    "model.series_embedding",
    "train.optimizer",
    "train.lr",
    "train.weight_decay",
    "train.batch_size",
    "train.max_epochs",
    "train.patience",
    "train.grad_clip",
    "train.loss",
    "train.windows_per_epoch",
    "train.seed",
)


def _default_space() -> dict[str, ParamSpec]:
    return {key: spec.model_copy() for key, spec in DEFAULT_SEARCH_SPACE.items()}


class TuneConfig(_Section):
    n_trials: int = Field(12, ge=0)
    """Total trials the study should hold (COMPLETE + PRUNED). 0 trains the given parameters."""
    timeout: float | None = Field(None, gt=0)
    """Stop launching trials after this many seconds in this run."""
    storage: str = "sqlite:///mlruns/optuna.db"
    """Any Optuna storage URL, or a path ending in ``.log`` for a journal file."""
    study_name: str | None = None
    """Base name, defaulting to the experiment's. The study used is ``<base>-<fingerprint>``: the
    fingerprint covers the data digest, every setting that changes what a trial computes and
    seqlab's version, so new data, another search space or an upgrade starts a new study
    (warm-started with the last best parameters) instead of reusing trials scored on something
    else."""
    sampler_seed: int | None = 42
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(30, ge=0)
    prune_interval: int = Field(5, ge=1)
    """After the warm-up, report to the pruner every this many epochs (each report is a
    storage round trip)."""
    workers: int | Literal["auto"] = "auto"
    """Worker processes; ``auto``: one per GPU slot, one in-process worker on CPU; 0: wait for
    external ``seqlab tune-worker`` processes."""
    trials_per_gpu: int | Literal["auto"] = "auto"
    heartbeat_interval: int = Field(10, ge=1)
    """Seconds between trial heartbeats; a trial silent for 2x this is failed as stale."""
    wait_timeout: float | None = Field(None, gt=0)
    """With ``workers: 0``: give up waiting for external workers after this many seconds."""
    max_fail_streak: int = Field(5, ge=1)
    """A worker stops with an error after this many failed trials in a row (a broken config)."""
    search_space: dict[str, ParamSpec] = Field(default_factory=_default_space)
    """Dotted config keys to search; a space given in a config replaces this one whole."""

    @field_validator("search_space")
    @classmethod
    def _searchable(cls, v: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        if "model.ensemble_size" in v:
            raise ValueError(
                "model.ensemble_size cannot be searched (trials train one member; a larger "
                "ensemble only costs more time): set it directly, e.g. model.ensemble_size=5"
            )
        refused = [key for key in v if key not in SEARCHABLE_KEYS]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} cannot be searched: set it directly, or search only "
                f"these searchable keys: {', '.join(SEARCHABLE_KEYS)}"
            )
        return v

    @field_validator("storage")
    @classmethod
    def _storage_env(cls, v: str) -> str:
        return expand_env(v, "tune.storage")


class EvalConfig(_Section):
    season_length: int | None = Field(None, ge=1)
    """Season for the seasonal-naive baseline and MASE; inferred from the frequency when unset."""
    backtest_windows: int = Field(3, ge=1)
    """Rolling-origin test windows (cutoffs) at the end of each series; model and baselines are
    scored on the same ones (statsforecast/neuralforecast ``cross_validation``'s ``n_windows``)."""
    step: int | None = Field(None, ge=1)
    """Points between consecutive cutoffs; defaults to ``window.horizon``."""
    conformal: bool = True
    """For a quantile model: calibrate its central intervals on the backtest windows' errors
    (conformalized quantile regression, ``seqlab.evaluation.conformal``), so a P% band holds about
    P% of unseen actuals; the backtest scores each window calibrated on the others and logs the
    network's own coverage as ``raw_coverage_<P>``."""
    intervals: list[float] = Field(default_factory=lambda: [80.0, 95.0])
    """Central prediction intervals (coverage in percent) of a point model, from its backtest
    errors (split conformal, as statsforecast's ``PredictionIntervals``): forecasts carry
    ``q<level>`` columns (80 -> q0.1, q0.9). ``[]``: none. A quantile model uses its own levels."""
    plot: bool = True
    references: list[str] = Field(default_factory=list)
    """statsforecast models scored beside the baselines on the same cutoffs and histories
    (``AutoETS``, ``AutoTheta``, ``AutoARIMA``; ``pip install 'seqlab[stats]'``). ``[]``: none,
    so the core install runs without statsforecast."""

    @field_validator("references")
    @classmethod
    def _known_references(cls, v: list[str]) -> list[str]:
        from seqlab.evaluation.references import KNOWN

        by_lower = {k.lower(): k for k in KNOWN}
        bad = [r for r in v if str(r).lower() not in by_lower]
        if bad:
            raise ValueError(f"unknown reference {bad[0]!r}; known: {', '.join(KNOWN)}")
        return list(dict.fromkeys(by_lower[str(r).lower()] for r in v))

    @field_validator("intervals")
    @classmethod
    def _coverages(cls, v: list[float]) -> list[float]:
        bad = [c for c in v if not 0 < c < 100]
        if bad:
            raise ValueError(
                f"eval.intervals holds coverages in percent strictly between 0 and 100; got {bad}"
            )
        return sorted(set(v))


class TrackingConfig(_Section):
    tracking_uri: str | None = None
    """Defaults to ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns/mlflow.db``."""
    artifact_location: str | None = None
    """Defaults to ``mlruns/artifacts`` for the embedded SQLite store."""
    experiment: str | None = None
    """Defaults to ``seqlab-<dataset>``: runs of one dataset land in one experiment."""
    run_name: str | None = None
    trigger: str = "manual"

    @field_validator("tracking_uri")
    @classmethod
    def _uri_env(cls, v: str | None) -> str | None:
        return None if v is None else expand_env(v, "tracking.tracking_uri")


class RegistryConfig(_Section):
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, serialize_by_alias=True
    )
    model_name: str | None = None
    """Registered model name; defaults to ``seqlab-<dataset>``."""
    register_model: bool = Field(True, alias="register")
    """``registry.register: false`` trains and evaluates without registering."""
    promote: bool = True
    metric: Literal["mase", "mae", "rmse", "smape"] = "mase"
    margin: float = Field(0.0, ge=0.0, lt=1.0)
    """Relative improvement required: promote when challenger < champion * (1 - margin)."""
    require_beat_baseline: bool = True
    """A challenger whose mean backtest ``metric`` does not beat seasonal naive on the same
    windows is registered but never promoted (also when there is no champion yet)."""
    baseline: str = "seasonal_naive"
    """The bar the gate's first check uses: ``seasonal_naive``, ``best`` (the best of the
    baselines and ``eval.references`` by ``metric``) or a reference (``autoets``). The model
    must beat seasonal naive as well, whatever the bar."""
    serve: Literal["refit", "evaluated"] = "refit"
    """``refit``: the registered model is refit on the whole history with the chosen parameters
    and epoch count; ``evaluated``: register the very model the backtest scored."""


class PipelineConfig(_Section):
    name: str = "seqlab"
    time_budget: float | None = Field(None, gt=0)
    """Seconds for the whole run (``seqlab.budget``): tuning stops at half of it (the running
    trial with its best so far), the evaluated fit keeps the ensemble members that fit in 40% of
    what is left, explanations are skipped when little is left. The run ends within about this
    long, plus start-up (1.5x at worst, when the gate retrains the champion). ``null``: no bound,
    and the same seed gives the same result."""
    data: DataConfig = Field(default_factory=DataConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\ "):
            raise ValueError("name must be non-empty, without spaces or slashes")
        return v

    @model_validator(mode="after")
    def _validation_windows(self) -> PipelineConfig:
        # A validation target lies wholly inside the validation part: with fewer points than the
        # horizon there is no validation window, and tuning and early stopping would silently
        # score the training loss instead.
        w = self.window
        if w.val_size is not None and w.val_size < w.horizon:
            raise ValueError(
                f"window.val_size ({w.val_size}) is below window.horizon ({w.horizon}), which "
                f"leaves no validation window: set window.val_size to at least {w.horizon}, or "
                "null (window.val_windows rolling windows)"
            )
        return self

    @model_validator(mode="after")
    def _baseline_is_scored(self) -> PipelineConfig:
        bar = self.registry.baseline.lower()
        refs = [r.lower() for r in self.eval.references]
        if bar not in ("seasonal_naive", "best", *refs):
            raise ValueError(
                f"registry.baseline={self.registry.baseline}: use seasonal_naive, best or one of "
                f"eval.references ({', '.join(self.eval.references) or 'none listed'})"
            )
        if bar != self.registry.baseline:
            self.registry.baseline = bar
        return self

    @model_validator(mode="after")
    def _quantiles_and_loss(self) -> PipelineConfig:
        q = self.model.quantiles
        if q is not None:
            if not q or any(not 0 < v < 1 for v in q) or sorted(set(q)) != q:
                raise ValueError(
                    "model.quantiles: give increasing levels strictly between 0 and 1, e.g. "
                    "[0.1, 0.5, 0.9]"
                )
            if 0.5 not in q:
                raise ValueError("model.quantiles must include 0.5 (the point forecast)")
            if self.train.loss != "pinball":
                raise ValueError(
                    f"model.quantiles is set but train.loss is {self.train.loss}: quantiles are "
                    "trained with train.loss=pinball"
                )
        elif self.train.loss == "pinball":
            raise ValueError("train.loss=pinball needs model.quantiles, e.g. [0.1, 0.5, 0.9]")
        return self

    # Derived names: one place decides them.
    @property
    def dataset_name(self) -> str:
        src = self.data.source
        return Path(src).stem if ("/" in src or "." in src) else src

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or f"{self.name}-{self.dataset_name}"

    @property
    def model_name(self) -> str:
        return self.registry.model_name or f"{self.name}-{self.dataset_name}"

    @property
    def study_name(self) -> str:
        return self.tune.study_name or f"{self.experiment_name}"

    def residual_for(self, season: int) -> str:
        """``window.residual`` as a fit uses it: ``auto`` resolved against ``season``."""
        w = self.window
        if w.residual != "auto":
            return w.residual
        return "seasonal_naive" if season > 1 and w.input_size >= season else "none"

    @property
    def val_step(self) -> int:
        """Points between validation windows' origins: half the horizon, so 3 windows cost one
        horizon of training history more than one window, and every validation point is scored;
        1 (every window) in a ``window.val_size`` the user set."""
        return 1 if self.window.val_size else max(1, self.window.horizon // 2)

    @property
    def val_size(self) -> int:
        """The validation part of a series whose history allows all of it."""
        w = self.window
        return w.val_size or w.horizon + (w.val_windows - 1) * self.val_step

    @property
    def min_val_size(self) -> int:
        """The shortest validation part a series may fall back to (one window) before it is
        left out of tuning: the horizon, or the whole ``window.val_size`` the user set."""
        return self.window.val_size or self.window.horizon

    @property
    def backtest_step(self) -> int:
        return self.eval.step or self.window.horizon

    @property
    def test_size(self) -> int:
        """Points from the first backtest cutoff to the end of each series."""
        return self.window.horizon + (self.eval.backtest_windows - 1) * self.backtest_step
