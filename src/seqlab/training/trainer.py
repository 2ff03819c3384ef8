"""The training loop: on-device batches, one host sync per epoch, callbacks for the rest.

``fit`` knows nothing of MLflow or Optuna: tracking, pruning and checkpointing are callbacks.
Windows live on the training device and batches are taken by index, so there is no DataLoader
and no per-batch host-to-device copy; losses are summed on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from seqlab.config import TrainConfig
from seqlab.errors import NonFiniteLossError  # noqa: F401 (raised here, re-exported)
from seqlab.features.windows import PreparedData
from seqlab.models import point_index
from seqlab.training.devices import resolve_device


class Callback:
    """Hooks called by :func:`fit`. Raise from a hook to stop training (e.g. Optuna pruning)."""

    def on_fit_start(self, model: nn.Module, info: dict) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, history: History) -> None: ...


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    monitor: str = "val/loss"
    """What early stopping and best weights follow: ``val/mase`` (data units) when the data can
    decode validation forecasts, else ``val/loss``; ``train/loss`` with no validation windows
    (then the weights of the last epoch are kept)."""
    best_epoch: int = -1
    best_score: float = math.inf
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    samples_seen: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    gpu_mem_peak_mb: float | None = None
    steps: int = 0
    """Optimizer steps taken: what a refit repeats, so it trains as long as the fit it repeats."""
    best_steps: int = 0
    """Optimizer steps up to the end of ``best_epoch``."""
    cut: bool = False
    """Stopped at a deadline (the run's time budget) before early stopping or ``max_epochs``."""

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ValScorer:
    """Mean MASE of validation forecasts in the data's units, decoded by the fit's own
    :class:`~seqlab.features.spec.FeatureSpec` (``PreparedData.val_mase``): the decoder every
    forecast uses, so early stopping and tuning score exactly what the backtest and the served model
    would. One (N_val, H) copy to the host per epoch: small beside the epoch's training."""

    prepared: PreparedData

    @classmethod
    def from_prepared(cls, p: PreparedData, device: torch.device) -> ValScorer:
        return cls(p)

    def __call__(self, pred: torch.Tensor) -> torch.Tensor:
        score = self.prepared.val_mase(pred.detach().float().cpu().numpy().astype("float64"))
        return torch.tensor(score, dtype=torch.float32, device=pred.device)


@dataclass
class WindowSampler:
    """Draws training windows series first, then a window of that series, both uniformly (as
    neuralforecast's ``windows_batch_size`` sampling): long series do not dominate an epoch and
    an epoch over thousands of series costs what ``train.windows_per_epoch`` says."""

    first: torch.Tensor  # (S,) index of each series' first window
    count: torch.Tensor  # (S,) its number of windows (series without windows left out)

    @classmethod
    def from_series(cls, train_series: np.ndarray, device: torch.device) -> WindowSampler | None:
        if len(train_series) == 0:
            return None
        _, first, count = np.unique(train_series, return_index=True, return_counts=True)
        return cls(torch.as_tensor(first, device=device), torch.as_tensor(count, device=device))

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = self.first.device
        s = torch.randint(len(self.first), (n,), device=dev, generator=generator)
        u = torch.rand(n, device=dev, generator=generator)
        return self.first[s] + (u * self.count[s]).long().clamp_max(self.count[s] - 1)


@dataclass
class DeviceData:
    """Training and validation windows resident on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    val_scorer: ValScorer | None = None
    sampler: WindowSampler | None = None

    @classmethod
    def from_prepared(cls, p: PreparedData, device: torch.device) -> DeviceData:
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

        scorer = ValScorer.from_prepared(p, device) if len(p.x_val) else None
        sampler = WindowSampler.from_series(p.train_series, device)
        return cls(t(p.x_train), t(p.y_train), t(p.x_val), t(p.y_val), scorer, sampler)

    @property
    def device(self) -> torch.device:
        return self.x_train.device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class PinballLoss(nn.Module):
    """Mean quantile (pinball) loss of forecasts (B, H, Q) at levels ``quantiles`` against (B, H);
    at level 0.5 it is half the absolute error."""

    def __init__(self, quantiles: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(list(quantiles), dtype=torch.float32))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = target.unsqueeze(-1) - pred  # (B, H, Q)
        return torch.maximum(self.levels * diff, (self.levels - 1) * diff).mean()


def make_loss(name: str, model: nn.Module) -> nn.Module:
    """The loss ``train.loss`` names; ``pinball`` at the model's quantile levels."""
    if name == "pinball":
        quantiles = getattr(model, "quantiles", None)
        if not quantiles:
            raise ValueError("train.loss=pinball needs a model with quantiles (model.quantiles)")
        return PinballLoss(quantiles)
    return LOSSES[name]()


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "mae": nn.L1Loss,
    "huber": nn.HuberLoss,
}


SMALL_MODEL_PARAMS = 250_000
_DEFAULT_THREADS = torch.get_num_threads()


def cpu_threads_for(model: nn.Module) -> int:
    """1 thread for small models, torch's default otherwise.

    Measured on the 2-core CI machine (default LSTM on AirPassengers, 20 epochs, interleaved):
    1 thread 2.2 s vs 2 threads 25-30 s while another process used a core; threads only pay
    for large matrix products.
    """
    n = sum(p.numel() for p in model.parameters())
    return 1 if n < SMALL_MODEL_PARAMS else _DEFAULT_THREADS


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    kwargs: dict = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if device.type == "cuda":
        kwargs["fused"] = True  # one kernel for the whole update: fewer launches per step
    return cls(model.parameters(), **kwargs)


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    loss_fn: nn.Module,
    grad_clip: float | None,
    precision: str,
    generator: torch.Generator | None = None,
    order: torch.Tensor | None = None,
    max_batches: int | None = None,
) -> torch.Tensor:
    """One pass over on-device batches in ``order`` (default: every window, shuffled), or its
    first ``max_batches`` batches; returns the mean loss as a 0-d device tensor."""
    model.train()
    perm = (
        order
        if order is not None
        else torch.randperm(x.shape[0], device=x.device, generator=generator)
    )
    if max_batches is not None:
        perm = perm[: max_batches * batch_size]
    n = perm.shape[0]
    total = torch.zeros((), device=x.device)
    params = [p for p in model.parameters() if p.requires_grad]
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        with autocast_for(x.device, precision):
            pred = model(xb)
        loss = loss_fn(pred.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            # foreach clipping: no host sync (error_if_nonfinite stays False).
            torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
        optimizer.step()
        total.add_(loss.detach(), alpha=float(xb.shape[0]))  # one kernel, no host sync
    return total / max(n, 1)


@torch.no_grad()
def eval_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    precision: str,
    chunk: int = 8192,
    scorer: ValScorer | None = None,
    point: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over (x, y) and the scorer's value (the loss without one), as 0-d tensors.
    ``point``: for a quantile model, the index of the level the scorer scores (the median)."""
    model.eval()
    total = torch.zeros((), device=x.device)
    preds = []
    for start in range(0, x.shape[0], chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        with autocast_for(x.device, precision):
            pred = model(xb).float()
        total += loss_fn(pred, yb) * xb.shape[0]
        if scorer is not None:
            preds.append(pred if point is None else pred[..., point])
    loss = total / max(x.shape[0], 1)
    return loss, (scorer(torch.cat(preds)) if scorer is not None else loss)


@torch.no_grad()
def predict(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    device: torch.device | None = None,
    chunk: int = 8192,
) -> np.ndarray:
    """Scaled forecasts (N, horizon) for inputs (N, L, F), in fp32."""
    model.eval()
    dev = device or next(model.parameters()).device
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32) if not torch.is_tensor(x) else x).to(dev)
    outs = [model(xt[i : i + chunk]).float().cpu() for i in range(0, xt.shape[0], chunk)]
    return torch.cat(outs).numpy() if outs else np.empty((0, 0), np.float32)


def choose_precision(
    model: nn.Module, data: DeviceData, cfg: TrainConfig, loss_fn: nn.Module
) -> str:
    """``auto``: fp32 off CUDA and for small models; on CUDA time a few steps of each otherwise.

    Measured on an H200, bf16 autocast only paid for large recurrent models (hidden 512, batch
    1024, sequence 168: 1.6x) and lost for small and medium ones, so we measure only when the
    model is big enough to have a chance, and keep bf16 only when it is clearly faster.
    """
    if cfg.precision != "auto":
        return cfg.precision
    dev = data.device
    hidden = getattr(model, "hparams", {}).get("hidden_size", 0)
    if dev.type != "cuda" or not torch.cuda.is_bf16_supported() or hidden < 256:
        return "fp32"
    trial_model = copy.deepcopy(model)
    opt = make_optimizer(trial_model, cfg, dev)
    n = min(data.x_train.shape[0], cfg.batch_size * 6)
    x, y = data.x_train[:n], data.y_train[:n]
    timings = {}
    for prec in ("fp32", "bf16", "fp32", "bf16"):  # interleaved; the second of each counts
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_epoch(trial_model, opt, x, y, cfg.batch_size, loss_fn, cfg.grad_clip, prec)
        torch.cuda.synchronize()
        timings[prec] = time.perf_counter() - t0
    return "bf16" if timings["bf16"] < 0.9 * timings["fp32"] else "fp32"


def fit(
    model: nn.Module,
    data: DeviceData | PreparedData,
    cfg: TrainConfig,
    callbacks: Sequence[Callback] | Iterable[Callback] = (),
    max_steps: int | None = None,
    deadline: float | None = None,
) -> History:
    """Train ``model`` with early stopping on the validation score; the best weights are restored.

    The score is validation MASE in the data's units when ``data`` can decode forecasts (see
    :class:`ValScorer`), else validation loss. Without validation windows, ``cfg.max_epochs``
    epochs are run and the last weights kept (a refit for an epoch count learnt earlier).
    ``max_steps``: stop after that many optimizer steps (a refit that repeats another fit's
    length on more data), the last epoch cut short if need be. ``deadline`` (a ``time.time()``
    value): stop after the epoch that reaches it, with the best weights so far (``History.cut``);
    at least one epoch always runs.

    Raises :class:`NonFiniteLossError` when a loss becomes NaN/inf, and whatever a callback
    raises (``optuna.TrialPruned`` from the pruning callback, for instance).
    """
    callbacks = list(callbacks)
    if isinstance(data, PreparedData):
        data = DeviceData.from_prepared(data, resolve_device(cfg.device))
    device = data.device
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads or cpu_threads_for(model))
    model.to(device)
    loss_fn = make_loss(cfg.loss, model).to(device)
    point = point_index(model)
    optimizer = make_optimizer(model, cfg, device)
    precision = choose_precision(model, data, cfg, loss_fn)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    has_val = data.x_val.shape[0] > 0
    monitor = (
        ("val/mase" if data.val_scorer is not None else "val/loss") if has_val else "train/loss"
    )
    hist = History(device=str(device), precision=precision, monitor=monitor)
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs = 0
    for cb in callbacks:
        cb.on_fit_start(model, {"device": str(device), "precision": precision})
    t0 = time.perf_counter()
    for epoch in range(cfg.max_epochs if max_steps is None else 2**31):
        if max_steps is not None and hist.steps >= max_steps:
            break
        order = None
        if (
            cfg.windows_per_epoch is not None
            and data.sampler is not None
            and data.x_train.shape[0] > cfg.windows_per_epoch
        ):
            order = data.sampler.draw(cfg.windows_per_epoch, generator)
        tr = train_epoch(
            model,
            optimizer,
            data.x_train,
            data.y_train,
            cfg.batch_size,
            loss_fn,
            cfg.grad_clip,
            precision,
            generator,
            order,
            None if max_steps is None else max_steps - hist.steps,
        )
        n_windows = int(order.shape[0] if order is not None else data.x_train.shape[0])
        batches = -(-n_windows // cfg.batch_size)
        if max_steps is not None and batches == 0:
            break  # no training window: no step can ever be taken
        hist.steps += batches if max_steps is None else min(batches, max_steps - hist.steps)
        if has_val:
            va, sc = eval_loss(
                model,
                data.x_val,
                data.y_val,
                loss_fn,
                precision,
                scorer=data.val_scorer,
                point=point,
            )
        else:
            va = sc = tr
        # The one host sync of the epoch.
        tr_f, va_f, sc_f = (float(v) for v in torch.stack([tr, va, sc]).cpu())
        hist.train_loss.append(tr_f)
        hist.val_loss.append(va_f)
        hist.val_score.append(sc_f)
        hist.samples_seen += int(order.shape[0] if order is not None else data.x_train.shape[0])
        if not (math.isfinite(tr_f) and math.isfinite(va_f)):
            hist.seconds = time.perf_counter() - t0
            bad = tr_f if not math.isfinite(tr_f) else va_f
            raise NonFiniteLossError(
                f"loss became {bad} at epoch {epoch}; lower train.lr or enable train.grad_clip"
            )
        # Without validation windows (a refit on all history for a fixed epoch count) the last
        # epoch's weights are the result; otherwise the best epoch's.
        if not has_val or sc_f < hist.best_score:
            hist.best_score, hist.best_val_loss, hist.best_epoch = sc_f, va_f, epoch
            hist.best_steps = hist.steps
            if has_val:
                best_state = copy.deepcopy(model.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        metrics = {"train/loss": tr_f}
        if has_val:
            metrics["val/loss"] = va_f
            if data.val_scorer is not None:
                metrics["val/mase"] = sc_f
        for cb in callbacks:
            cb.on_epoch_end(epoch, metrics)
        if cfg.patience is not None and bad_epochs >= cfg.patience:
            hist.stopped_early = True
            break
        if deadline is not None and time.time() >= deadline:
            hist.cut = True
            break
    hist.seconds = time.perf_counter() - t0
    if has_val:
        model.load_state_dict(best_state)
    if device.type == "cuda":
        hist.gpu_mem_peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    for cb in callbacks:
        cb.on_fit_end(hist)
    return hist
