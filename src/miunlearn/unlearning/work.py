"""Work counters: how many samples a model processed, counted from outside the method that ran it.

Seconds depend on the machine and on whoever else shares it; samples processed do not, so a record
that states both lets a reader tell a slow method from a slow machine, and compare a method's work with
the least any method could do (see benchmarks/scaling.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch._C import _functorch

from miunlearn.errors import WorkLimitReached

INFERENCE_COST = 1 / 3
"""An inferred sample's cost in trained samples: one forward pass against a forward and a backward (about 2×)."""


def weighted_work(samples_trained: float, samples_inferred: float) -> float:
    """Samples processed in trained-sample equivalents, an inferred one counted at :data:`INFERENCE_COST`: one
    number to set a method's work against retraining's or against its own floor."""
    return samples_trained + INFERENCE_COST * samples_inferred


@dataclass
class WorkCount:
    samples_trained: int = 0
    """Samples through a forward pass with autograd on: a training step's forward, a backward follows."""
    samples_inferred: int = 0
    """Samples through a forward pass with autograd off (evaluation, teachers, stopping checks)."""


def batch_size(x: torch.Tensor) -> int:
    """Samples in ``x``, including those a ``torch.func`` transform (vmap) hides from the traced function:
    inside ``vmap`` a per-sample function sees one sample, while the physical tensor holds the whole batch."""
    if x.ndim == 0:
        return 0
    physical = x
    while _functorch.is_functorch_wrapped_tensor(physical):
        physical = _functorch.get_unwrapped(physical)
    return x.shape[0] * (physical.numel() // max(x.numel(), 1))


def max_cost_problem(max_cost: object, name: str = "max_cost") -> str | None:
    """Why ``max_cost`` is not a work limit (None, or a positive finite fraction of a retrain's work), if it is not:
    the one check behind ``unlearn``, the run config, ``forget`` and the leaderboard's ``--max-cost``."""
    number = isinstance(max_cost, (int, float)) and not isinstance(max_cost, bool)
    if max_cost is None or (number and math.isfinite(max_cost) and max_cost > 0):
        return None
    return f"{name} must be a positive fraction of a retrain's work, got {max_cost!r}"


def retrain_work(epochs: int, retain_size: int) -> float:
    """Retraining's work: ``epochs`` passes over D_r, every sample trained (what ``max_cost`` is a fraction of)."""
    return float(epochs * retain_size)


@contextmanager
def count_work(model: nn.Module, limit: float | None = None) -> Iterator[WorkCount]:
    """Count the samples ``model`` processes inside the block, by a forward pre-hook on its top module.

    Methods report nothing themselves. Copies of ``model`` made inside the block with ``copy.deepcopy``
    (the teachers of bad-teacher and SCRUB) carry the hook, so their forward passes count too. Not counted:
    backward passes beyond one per trained sample (Fisher's per-class Jacobian) and other networks such as
    the privacy approximator, which reads logits and costs a fraction of one forward pass.

    With a ``limit`` (in :func:`weighted_work` units), the forward pass that would exceed it raises
    :class:`WorkLimitReached` before it runs, so the model is left as the last completed step made it.
    """
    work = WorkCount()

    def hook(module: nn.Module, args: tuple) -> None:
        if not args or not isinstance(args[0], torch.Tensor):
            return
        samples, trained = batch_size(args[0]), torch.is_grad_enabled()
        if limit is not None and weighted_work(work.samples_trained + samples * trained,
                                               work.samples_inferred + samples * (not trained)) > limit:
            raise WorkLimitReached
        if trained:
            work.samples_trained += samples
        else:
            work.samples_inferred += samples

    handle = model.register_forward_pre_hook(hook)
    try:
        yield work
    finally:
        handle.remove()
