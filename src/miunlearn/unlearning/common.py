"""Pieces the baselines share: range checks, the optimiser step, forward passes, paired batches, relabelling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.training import autocast, batches
from miunlearn.training.loop import place_data, place_model
from miunlearn.unlearning.base import UnlearningRequest


def check_ranges(method: str, config: object, *, non_negative: tuple[str, ...] = (),
                 positive: tuple[str, ...] = (),
                 at_least_one: tuple[str, ...] = (), unit: tuple[str, ...] = (),
                 open_unit: tuple[str, ...] = ()) -> None:
    """Raise a one-line :class:`MiunlearnError` for the first hyper-parameter outside its range.

    ``unit``: in [0, 1]; ``open_unit``: in (0, 1).
    """
    rules = [(non_negative, lambda v: v >= 0, "must not be negative"), (positive, lambda v: v > 0, "must be positive"),
             (at_least_one, lambda v: v >= 1, "must be at least 1"), (unit, lambda v: 0 <= v <= 1, "must be in [0, 1]"),
             (open_unit, lambda v: 0 < v < 1, "must be in (0, 1)")]
    for keys, ok, message in rules:
        for key in keys:
            value = getattr(config, key)
            if not ok(value):
                raise MiunlearnError(f"{method}.{key} {message}, got {value}")


def start(model: nn.Module, request: UnlearningRequest
          ) -> tuple[torch.device, torch.Generator, Callable[[Any], Any]]:
    """Place ``model`` as ReMI and training do (:func:`~miunlearn.training.loop.place_model`: the recipe's
    device, channels-last for image models unless the recipe says otherwise), in training mode (BatchNorm as
    the target was trained, see remi.py). Returns the device, a generator seeded by the request (shuffles,
    random labels) and ``place``, which puts a :class:`TensorData` or another model the same way."""
    device, channels_last = place_model(model, request.recipe, request.forget)
    model.train()

    def place(item: Any) -> Any:
        if isinstance(item, nn.Module):
            return item.to(device, memory_format=torch.channels_last) if channels_last else item.to(device)
        return place_data(item, device, channels_last)

    return device, torch.Generator().manual_seed(request.seed), place


def logits_of(model: nn.Module, x: torch.Tensor, request: UnlearningRequest) -> torch.Tensor:
    with autocast(x.device, request.recipe.precision):
        return model(x).float()


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def paired_batches(main: TensorData, other: TensorData, main_batch: int, other_batch: int,
                   generator: torch.Generator, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over ``main`` in shuffled batches, each paired with a batch of ``other`` drawn cyclically
    (the reference codes' ``zip(retain_loader, cycle(forget_loader))``)."""
    other_iter = batches(len(other), other_batch, generator, device)
    for idx in batches(len(main), main_batch, generator, device):
        other_idx = next(other_iter, None)
        if other_idx is None:
            other_iter = batches(len(other), other_batch, generator, device)
            other_idx = next(other_iter)
        yield idx, other_idx


def class_count(model: nn.Module, data: TensorData) -> int:
    """The model's number of classes, read off its output width."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        width = model(data.x[:1].to(next(model.parameters()).device)).shape[1]
    model.train(was_training)
    return int(width)


def random_wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label other than the true one, per sample."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator).to(labels.device)
    return (labels + shift) % num_classes

