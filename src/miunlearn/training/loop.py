"""The training loop shared by targets, shadow models and retraining.

Data are in-memory tensors (:class:`~miunlearn.data.TensorData`), so a batch is an index into them and
augmentation (random crop + flip) is done on the whole batch at once, on whatever device holds it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from miunlearn.config import TrainConfig
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.registry import Registry

OPTIMIZERS: Registry[Callable[[Iterable[nn.Parameter], TrainConfig], torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULES: Registry[Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]] = Registry("schedule")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


@SCHEDULES.register("cosine")
def _cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))


@SCHEDULES.register("constant")
def _constant(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MiunlearnError(f"device {name!r} requested but CUDA is not available here; use device=cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MiunlearnError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None


def validate_train_config(config: TrainConfig) -> None:
    OPTIMIZERS.validate(config.optimizer)
    SCHEDULES.validate(config.schedule)
    if config.precision not in PRECISIONS:
        raise MiunlearnError(f"unknown precision {config.precision!r}; valid: {', '.join(PRECISIONS)}")
    if config.epochs < 1:
        raise MiunlearnError(f"train.epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 1:
        raise MiunlearnError(f"train.batch_size must be at least 1, got {config.batch_size}")
    for key in ("lr", "momentum", "weight_decay"):
        if getattr(config, key) < 0:
            raise MiunlearnError(f"train.{key} must not be negative, got {getattr(config, key)}")
    if config.lr == 0:
        raise MiunlearnError("train.lr must be positive")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only; CPU runs stay in fp32 so results are reproducible."""
    dtype = PRECISIONS[precision]
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def progress(iterable: Iterable, total: int, desc: str, enabled: bool = True) -> Iterable:
    """A progress bar on an interactive terminal only; logs and CI stay clean."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=not (enabled and sys.stderr.isatty()))


def batches(n: int, batch_size: int, generator: torch.Generator | None, device: torch.device,
            drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``, shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(device)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of an NCHW batch, all samples at once."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    cropped = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, cropped.flip(3), cropped)


def train_model(model: nn.Module, data: TensorData, config: TrainConfig, desc: str = "train",
                eval_data: TensorData | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place on ``data`` with ``config``'s recipe; return the per-epoch log."""
    validate_train_config(config)
    device = resolve_device(config.device)
    model.to(device)
    data = data.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = OPTIMIZERS.get(config.optimizer)(model.parameters(), config)
    steps_per_epoch = -(-len(data) // config.batch_size)
    scheduler = SCHEDULES.get(config.schedule)(optimizer, config.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and device.type == "cuda")
    use_augment = config.augment and data.x.ndim == 4
    history = []
    for epoch in progress(range(config.epochs), config.epochs, desc, config.progress):
        model.train()
        start = time.perf_counter()
        total_loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
        for idx in batches(len(data), config.batch_size, generator, device):
            x, y = data.x[idx], data.y[idx]
            if use_augment:
                x = augment(x, generator)
            with autocast(device, config.precision):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total_loss += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        row = {"epoch": epoch + 1, "loss": float(total_loss) / len(data), "train_acc": float(correct) / len(data),
               "seconds": time.perf_counter() - start}
        if eval_data is not None:
            row["eval_acc"] = evaluate_accuracy(model, eval_data, device)
        history.append(row)
    model.eval()
    return history


@torch.no_grad()
def predict_logits(model: nn.Module, data: TensorData, device: torch.device | None = None,
                   batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on every sample of ``data``, returned on the CPU in fp32."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(data.x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(data), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def evaluate_accuracy(model: nn.Module, data: TensorData, device: torch.device | None = None) -> float:
    if len(data) == 0:
        return float("nan")
    return float((predict_logits(model, data, device).argmax(1) == data.y.cpu()).float().mean())
