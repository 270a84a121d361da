"""The training loop shared by targets, shadow models and retraining.

Data are in-memory tensors (:class:`~miunlearn.data.TensorData`), so a batch is an index into them and
augmentation (random crop + flip) is done on the whole batch at once, on whatever device holds it: on a
GPU no sample ever goes through a per-sample DataLoader. The recipe's fast-path switches (channels-last,
bf16 autocast, ``torch.compile``) change speed, not results beyond numerics.
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
from miunlearn.errors import MiunlearnError, WorkLimitReached
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


def augmentation_draws(batch: int, generator: torch.Generator,
                       pad: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample: crop offsets (rows, columns) in ``0..2*pad`` and whether to flip, drawn on the CPU."""
    oy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    return oy, ox, flip


def crop_and_flip(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor,
                  pad: int = 4) -> torch.Tensor:
    """Crop each sample of an NCHW batch at its offsets from the zero-padded batch, and mirror the flagged ones."""
    b, _, h, w = x.shape
    oy, ox, flip = oy.to(x.device), ox.to(x.device), flip.to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]
    cropped = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip of an NCHW batch, all samples at once."""
    return crop_and_flip(x, *augmentation_draws(len(x), generator, pad), pad=pad)


def wants_channels_last(config: TrainConfig, model: nn.Module, data: TensorData) -> bool:
    """The recipe's ``channels_last`` (default: on), for image data and models with convolutions.

    On by default on CPU too: with batches that are not already channels-last (no augmentation, unlearning
    steps, inference), the ``cnn`` ran faster on CPU as well (BENCHMARKS.md, "Measurements behind defaults").
    Off leaves memory formats as they come.
    """
    return config.channels_last and data.x.ndim == 4 and any(p.ndim == 4 for p in model.parameters())


def place_model(model: nn.Module, config: TrainConfig, data: TensorData) -> tuple[torch.device, bool]:
    """Move ``model`` to the recipe's device, channels-last where the recipe wants it; return both."""
    device = resolve_device(config.device)
    channels_last = wants_channels_last(config, model, data)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return device, channels_last


def is_channels_last(model: nn.Module) -> bool:
    """Whether ``model``'s convolution weights are stored channels-last, so its inputs should be too."""
    return any(p.ndim == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())


def in_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """An image batch channels-last when the model is (a no-op when it already is); else left as it is."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def place_data(data: TensorData, device: torch.device, channels_last: bool) -> TensorData:
    """``data`` on ``device``, its images in the memory format :func:`place_model` gave the model."""
    return TensorData(in_format(data.x.to(device), channels_last), data.y.to(device))


@contextlib.contextmanager
def compiled_forward(model: nn.Module, active: bool) -> Iterator[None]:
    """``torch.compile`` ``model.forward`` for the block, not the module: its hooks then run in Python around the
    compiled graph. Dynamo does not guard on module hooks, so a module compiled whole would reuse a graph cached
    without them, and the work counter (:func:`miunlearn.unlearning.work.count_work`) would see nothing."""
    if not active:
        yield
        return
    own = model.__dict__.get("forward")  # a forward the instance set itself is put back afterwards
    try:
        model.forward = torch.compile(model.forward)
    except Exception as exc:  # noqa: BLE001  (unsupported Python/platform: any error means "not available")
        raise MiunlearnError(_compile_failure(exc)) from None
    try:
        yield
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own


@contextlib.contextmanager
def compile_errors(active: bool) -> Iterator[None]:
    """Turn a failure of the first, compiling step (no C compiler, unsupported backend...) into one line."""
    if not active:
        yield
        return
    try:
        yield
    except (MiunlearnError, WorkLimitReached):
        raise
    except Exception as exc:  # noqa: BLE001  (whatever the compiler stack raises; only the first step is guarded)
        raise MiunlearnError(_compile_failure(exc)) from None


def _compile_failure(exc: Exception) -> str:
    first = next((line for line in str(exc).splitlines() if line.strip()), "")[:200]
    return f"train.compile=true but torch.compile failed here ({type(exc).__name__}: {first}); set train.compile=false"


def train_model(model: nn.Module, data: TensorData, config: TrainConfig, desc: str = "train",
                history: list[dict[str, float]] | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place on ``data`` with ``config``'s recipe; return the per-epoch log (``history``, when
    given, receives each row as it is made: a run stopped by a work limit keeps the epochs it finished)."""
    validate_train_config(config)
    device, channels_last = place_model(model, config, data)
    data = place_data(data, device, channels_last)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = OPTIMIZERS.get(config.optimizer)(model.parameters(), config)
    steps_per_epoch = -(-len(data) // config.batch_size)
    scheduler = SCHEDULES.get(config.schedule)(optimizer, config.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and device.type == "cuda")
    use_augment = config.augment and data.x.ndim == 4
    history = [] if history is None else history
    with compiled_forward(model, config.compile):
        for epoch in progress(range(config.epochs), config.epochs, desc, config.progress):
            model.train()
            start = time.perf_counter()
            total_loss, correct = torch.zeros((), device=device), torch.zeros((), device=device)
            for step, idx in enumerate(batches(len(data), config.batch_size, generator, device)):
                x, y = data.x[idx], data.y[idx]
                if use_augment:
                    x = augment(x, generator)
                with compile_errors(config.compile and epoch == 0 and step == 0):
                    with autocast(device, config.precision):
                        logits = model(in_format(x, channels_last))
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
            history.append(row)
    model.eval()
    return history


@torch.no_grad()
def predict_logits(model: nn.Module, data: TensorData, device: torch.device | None = None,
                   batch_size: int = 1024, precision: str = "fp32") -> torch.Tensor:
    """Logits of ``model`` (eval mode) on every sample of ``data``, returned on the CPU in fp32.

    Inputs take the model's memory format and ``precision`` autocast (pass the recipe's), so evaluation
    runs the kernels training ran.
    """
    device = device or next(model.parameters()).device
    channels_last = is_channels_last(model)
    was_training = model.training
    model.eval()
    with autocast(torch.device(device), precision):
        out = [model(in_format(data.x[i:i + batch_size].to(device), channels_last)).float().cpu()
               for i in range(0, len(data), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def evaluate_accuracy(model: nn.Module, data: TensorData, device: torch.device | None = None,
                      precision: str = "fp32") -> float:
    if len(data) == 0:
        return float("nan")
    return float((predict_logits(model, data, device, precision=precision).argmax(1) == data.y.cpu()).float().mean())
