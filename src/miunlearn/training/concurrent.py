"""Many small models of one architecture trained at once, as one vectorised model.

Shadow and reference models are small and many; trained one after another they leave a GPU mostly idle. Here
their parameters and buffers are stacked along a new leading dimension (``torch.func.stack_module_state``) and
one ``vmap``-ed ``functional_call`` runs all K forward and backward passes as batched kernels. Every model keeps
its own data and its own ``torch.Generator`` (seeded by its recipe), drawn in the same order as
:func:`~miunlearn.training.train_model` draws it, so the result equals K separate trainings up to float
numerics: SGD (momentum, weight decay) and AdamW are elementwise, so one optimizer over the stacked tensors
updates each model exactly as its own optimizer would, and the summed loss gives each model its own gradient.

BatchNorm's running statistics stay correct because the buffers are stacked and passed through ``vmap`` like the
parameters: BatchNorm's in-place update then writes each model's slice of the stacked buffer.

The recipe's ``compile`` and ``channels_last`` switches do not apply here (vmap runs the stacked tensors in
their default layout, uncompiled), so the results equal K trainings with ``channels_last=false`` up to float
rounding; with channels-last they differ from sequential ones by that format's rounding too.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from miunlearn.config import TrainConfig
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.training.loop import (
    OPTIMIZERS,
    SCHEDULES,
    augment,
    autocast,
    batches,
    progress,
    resolve_device,
    validate_train_config,
)


def train_models_concurrently(models: list[nn.Module], datasets: list[TensorData], recipes: list[TrainConfig],
                              desc: str = "train") -> list[list[dict[str, float]]]:
    """Train ``models[k]`` in place on ``datasets[k]`` with ``recipes[k]``, all K at once; return K histories.

    The recipes may differ only in ``seed`` and the datasets must have one length (callers group jobs by size).
    With fp16 autocast on CUDA one loss scale serves all K models, so an overflow in one skips the step for all;
    fp32 and bf16 match sequential training up to numerics. The data are stacked into one (K, N, ...) tensor, and
    each history row's ``seconds`` is the shared epoch's wall time. Built for GPUs: on CPU it is slower than K
    sequential trainings (``benchmarks/concurrent_models.py``; numbers in BENCHMARKS.md, "Many models at once").
    """
    config = _check_jobs(models, datasets, recipes)
    device = resolve_device(config.device)
    for model in models:
        model.to(device)
    xs = torch.stack([d.x for d in datasets]).to(device)
    ys = torch.stack([d.y for d in datasets]).to(device)
    n, k_models = len(datasets[0]), len(models)
    params, buffers = stack_module_state(models)
    template = _vmap_template(models[0])

    def forward(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = functional_call(template, (p, b), (x,))
        return F.cross_entropy(logits, y), logits

    batched_forward = vmap(forward)
    generators = [torch.Generator().manual_seed(r.seed) for r in recipes]
    optimizer = OPTIMIZERS.get(config.optimizer)(params.values(), config)
    steps_per_epoch = -(-n // config.batch_size)
    scheduler = SCHEDULES.get(config.schedule)(optimizer, config.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16" and device.type == "cuda")
    use_augment = config.augment and xs.ndim == 5
    rows = torch.arange(k_models, device=device)[:, None]
    histories: list[list[dict[str, float]]] = [[] for _ in models]
    for epoch in progress(range(config.epochs), config.epochs, desc, config.progress):
        start = time.perf_counter()
        total_loss = torch.zeros(k_models, device=device)
        correct = torch.zeros(k_models, device=device)
        orders = [batches(n, config.batch_size, g, device) for g in generators]
        for idx in map(torch.stack, zip(*orders)):
            x, y = xs[rows, idx], ys[rows, idx]
            if use_augment:
                x = torch.stack([augment(x_k, g) for x_k, g in zip(x, generators)])
            with autocast(device, config.precision):
                losses, logits = batched_forward(params, buffers, x, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses.sum()).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total_loss += losses.detach() * y.shape[1]
            correct += (logits.argmax(-1) == y).sum(1)
        seconds = time.perf_counter() - start
        for k, history in enumerate(histories):
            history.append({"epoch": epoch + 1, "loss": float(total_loss[k]) / n,
                            "train_acc": float(correct[k]) / n, "seconds": seconds})
    _write_back(models, params, buffers)
    return histories


def _check_jobs(models: list[nn.Module], datasets: list[TensorData], recipes: list[TrainConfig]) -> TrainConfig:
    """One recipe (up to seeds), one data length and one architecture, or a clear error naming the mismatch."""
    if not models or not (len(models) == len(datasets) == len(recipes)):
        raise MiunlearnError(f"concurrent training needs one dataset and one recipe per model, got "
                             f"{len(models)} models, {len(datasets)} datasets, {len(recipes)} recipes")
    config = recipes[0]
    validate_train_config(config)
    for recipe in recipes[1:]:
        differing = [f.name for f in dataclasses.fields(TrainConfig)
                     if f.name != "seed" and getattr(recipe, f.name) != getattr(config, f.name)]
        if differing:
            raise MiunlearnError(f"concurrently trained models may differ only in train.seed; these recipes also "
                                 f"differ in {', '.join(differing)}")
    shapes = {(len(d), tuple(d.x.shape[1:])) for d in datasets}
    if len(shapes) > 1:
        raise MiunlearnError(f"concurrently trained models need datasets of one length and sample shape, got "
                             f"{sorted(shapes)}; group the jobs by size")
    layout = _state_layout(models[0])
    if any(_state_layout(m) != layout for m in models[1:]):
        raise MiunlearnError("concurrently trained models must share one architecture (same parameter names/shapes)")
    return config


def _vmap_template(model: nn.Module) -> nn.Module:
    """A weightless copy of the architecture to run with the stacked state.

    In-place activations are switched off in it: on vmap's batched views they take a slow as_strided fallback
    (BENCHMARKS.md, "Measurements behind defaults"); out-of-place they compute the same values.
    """
    template = copy.deepcopy(model).to("meta").train()
    for module in template.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return template


def _state_layout(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items()]


@torch.no_grad()
def _write_back(models: list[nn.Module], params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]) -> None:
    """Copy each model's slice of the stacked weights and BatchNorm statistics into its own module."""
    for k, model in enumerate(models):
        for name, tensor in model.named_parameters():
            tensor.copy_(params[name][k])
        for name, tensor in model.named_buffers():
            tensor.copy_(buffers[name][k])
        model.eval()
