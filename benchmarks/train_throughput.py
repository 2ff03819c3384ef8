"""Training throughput: seqlab's trainer vs a bare PyTorch loop, same model, data and batches.

Both sides train seqlab's ``RecurrentForecaster`` (one nn.LSTM + nn.Linear head) with Adam and
MSE on synthetic windows that already live on the device, taking shuffled batches by index and
never calling ``loss.item()`` per batch. seqlab's side is ``seqlab.training.trainer.fit`` (no early
stopping, no validation set, explicit fp32), timed as a whole call; the bare side is the loop in
:func:`bare_fit` below. Repetitions are interleaved (seqlab, bare, seqlab, bare, ...) so that a
neighbour loading the machine hurts both alike; the medians are reported with their ratio.

    python benchmarks/train_throughput.py                  # auto device, default sizes
    python benchmarks/train_throughput.py --device cpu --quick --out /tmp/tt.json

Targets: seqlab/bare >= 0.95 on a GPU for the small and medium models, >= 0.90 on CPU.
Compare figures only within one invocation: other processes change absolute rates a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from seqlab.config import TrainConfig  # noqa: E402
from seqlab.models import RecurrentForecaster  # noqa: E402
from seqlab.training.trainer import DeviceData, fit  # noqa: E402


@dataclass(frozen=True)
class Size:
    name: str
    batch: int
    seq: int
    feat: int
    hidden: int
    layers: int
    gpu_only: bool = False

    def label(self) -> str:
        return (
            f"{self.name} (batch {self.batch}, seq {self.seq}, feat {self.feat}, "
            f"hidden {self.hidden}, layers {self.layers})"
        )


SIZES = [
    Size("small", 64, 48, 1, 64, 1),
    Size("medium", 256, 96, 7, 128, 2),
    Size("large", 1024, 168, 32, 512, 2, gpu_only=True),
]
# Most batches per epoch; fewer when a probe says a timed run would take over --seconds-per-run
# (so that a default CPU run stays near 2 minutes even on a loaded machine).
STEPS = {
    "cuda": {"small": 200, "medium": 100, "large": 20},
    "cpu": {"small": 100, "medium": 20, "large": 2},
}
QUICK_STEPS = {"small": 8, "medium": 2, "large": 2}
SECONDS_PER_RUN = {"cuda": 3.0, "cpu": 2.5, "quick": 0.5}
TARGET = {"cuda": {"small": 0.95, "medium": 0.95, "large": None}, "cpu": 0.90}
HORIZON = 12
LR = 1e-3


def synthetic(n: int, size: Size, device: torch.device, seed: int = 0) -> DeviceData:
    """Noisy sines as (n, seq, feat) inputs and (n, horizon) targets, made on the device."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(size.seq + HORIZON, dtype=torch.float32)
    phase = torch.rand(n, 1, size.feat, generator=g) * 6.28
    freq = 0.05 + 0.25 * torch.rand(n, 1, size.feat, generator=g)
    series = torch.sin(t[None, :, None] * freq + phase)
    series += 0.1 * torch.randn(series.shape, generator=g)
    x = series[:, : size.seq, :].contiguous()
    y = series[:, size.seq :, 0].contiguous()
    empty_x = torch.empty(0, size.seq, size.feat)
    empty_y = torch.empty(0, HORIZON)
    return DeviceData(x.to(device), y.to(device), empty_x.to(device), empty_y.to(device))


def _head(d: DeviceData, n: int) -> DeviceData:
    return DeviceData(d.x_train[:n], d.y_train[:n], d.x_val, d.y_val)


def new_model(size: Size, device: torch.device) -> RecurrentForecaster:
    torch.manual_seed(0)
    return RecurrentForecaster(size.feat, HORIZON, "lstm", size.hidden, size.layers).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seqlab_fit(
    model: nn.Module, data: DeviceData, batch: int, epochs: int, grad_clip: float | None
) -> None:
    # On CPU, fit() picks its own thread count unless told: pin it to the benchmark's setting,
    # which the bare loop uses too, so that only the loops differ.
    threads = torch.get_num_threads() if data.device.type == "cpu" else None
    cfg = TrainConfig(
        lr=LR,
        batch_size=batch,
        max_epochs=epochs,
        patience=None,
        grad_clip=grad_clip,
        loss="mse",
        optimizer="adam",
        precision="fp32",
        num_threads=threads,
    )
    fit(model, data, cfg)


def bare_fit(
    model: nn.Module, data: DeviceData, batch: int, epochs: int, grad_clip: float | None
) -> None:
    """What one writes by hand: shuffled on-device batches by index, no per-batch host sync."""
    x, y = data.x_train, data.y_train
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.MSELoss()
    n = x.shape[0]
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, device=x.device)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
            opt.step()


RUNNERS = {"seqlab": seqlab_fit, "bare": bare_fit}


def time_one(
    kind: str,
    size: Size,
    data: DeviceData,
    epochs: int,
    grad_clip: float | None,
    device: torch.device,
) -> float:
    """Samples per second of one whole training call (model built outside the timing)."""
    model = new_model(size, device)
    sync(device)
    t0 = time.perf_counter()
    RUNNERS[kind](model, data, size.batch, epochs, grad_clip)
    sync(device)
    seconds = time.perf_counter() - t0
    return data.x_train.shape[0] * epochs / seconds


def bench_size(
    size: Size,
    device: torch.device,
    repeats: int,
    epochs: int,
    max_steps: int,
    grad_clip: float | None,
    seconds_per_run: float,
    quick: bool = False,
) -> dict:
    full = synthetic(size.batch * max_steps, size, device)
    # Warm-up (cuDNN plans, allocator, first-call costs): a short untimed run of each, then
    # size the epoch so one timed run takes about ``seconds_per_run`` (a loaded CPU stays bounded).
    probe = _head(full, size.batch * 2)
    for kind in RUNNERS:
        time_one(kind, size, probe, 1, grad_clip, device)
    step_s = size.batch / time_one("bare", size, probe, 1, grad_clip, device)
    steps = max(2, min(max_steps, int(seconds_per_run / (epochs * step_s))))
    data = _head(full, size.batch * steps)
    rates: dict[str, list[float]] = {k: [] for k in RUNNERS}
    for _ in range(repeats):  # interleaved: seqlab, bare, seqlab, bare, ...
        for kind in RUNNERS:
            rates[kind].append(time_one(kind, size, data, epochs, grad_clip, device))
    med = {k: statistics.median(v) for k, v in rates.items()}
    target = TARGET["cpu"] if device.type != "cuda" else TARGET["cuda"][size.name]
    target = None if quick else target  # two-batch epochs time fixed costs, not the loop
    ratio = med["seqlab"] / med["bare"]
    return {
        "size": size.name,
        "label": size.label(),
        "samples_per_epoch": size.batch * steps,
        "batches_per_epoch": steps,
        "epochs": epochs,
        "repeats": repeats,
        "seqlab_samples_per_s": rates["seqlab"],
        "bare_samples_per_s": rates["bare"],
        "seqlab_median": med["seqlab"],
        "bare_median": med["bare"],
        "ratio": ratio,
        "target": target,
        "meets_target": None if target is None else ratio >= target,
    }


def resolve(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    return torch.device(device)


def free_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(torch.get_num_threads(), (cores or 1) - busy))


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (5; quick 2)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per timed run (3 on GPU, 2 on CPU; quick 1)",
    )
    p.add_argument("--sizes", default="small,medium,large", help="comma-separated subset")
    p.add_argument(
        "--grad-clip",
        type=float,
        default=None,
        help="clip gradients to this norm in BOTH loops (default: no clipping)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the cores not busy by the 1-minute load)",
    )
    p.add_argument(
        "--seconds-per-run",
        type=float,
        default=None,
        help="size epochs so one timed run takes about this long (GPU 3, CPU 2.5)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a figure")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args(argv)

    device = resolve(a.device)
    if device.type == "cpu":
        # Two torch threads on two cores where another process holds one run ~10x slower than
        # one thread: use the cores that are free now, the same for both loops.
        torch.set_num_threads(a.threads or free_cores())
    elif a.threads:
        torch.set_num_threads(a.threads)
    repeats = a.repeats or (2 if a.quick else 5)
    dev_kind = "cuda" if device.type == "cuda" else "cpu"
    epochs = a.epochs or (1 if a.quick else 3 if dev_kind == "cuda" else 2)
    wanted = set(a.sizes.split(","))
    print(
        f"train_throughput on {machine(device)}, torch {torch.__version__}; "
        f"{repeats} interleaved repeats x {epochs} epochs; grad_clip={a.grad_clip}"
        + ("; QUICK (smoke test sizes)" if a.quick else ""),
        flush=True,
    )
    results = []
    for size in SIZES:
        if size.name not in wanted:
            continue
        if size.gpu_only and device.type != "cuda":
            print(f"  {size.name:<7} skipped (GPU only)")
            continue
        if a.quick:  # tiny shapes: this only checks that both loops run and are timed
            size = replace(
                size, batch=min(size.batch, 32), seq=min(size.seq, 24), hidden=min(size.hidden, 32)
            )
        steps = QUICK_STEPS[size.name] if a.quick else STEPS[dev_kind][size.name]
        budget = a.seconds_per_run or SECONDS_PER_RUN["quick" if a.quick else dev_kind]
        r = bench_size(size, device, repeats, epochs, steps, a.grad_clip, budget, a.quick)
        results.append(r)
        if r["target"] is None:
            verdict = "  (no verdict: quick)" if a.quick else "  (no target)"
        else:
            verdict = f"  target >= {r['target']:.2f} {'OK' if r['meets_target'] else 'BELOW'}"
        print(
            f"  {size.name:<7} ({r['batches_per_epoch']} batches/epoch) "
            f"seqlab {r['seqlab_median']:>10,.0f}  bare {r['bare_median']:>10,.0f} samples/s  "
            f"ratio {r['ratio']:.3f}{verdict}",
            flush=True,
        )
    report = {
        "benchmark": "train_throughput",
        "device": str(device),
        "machine": machine(device),
        "torch": torch.__version__,
        "quick": a.quick,
        "grad_clip": a.grad_clip,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": results,
    }
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
