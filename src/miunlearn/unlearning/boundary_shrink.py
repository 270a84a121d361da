"""Boundary shrinking (Chen et al., CVPR 2023, "Boundary Unlearning").

Each forget sample is pushed across the original model's nearest decision boundary by one FGSM step; the
class the original model gives the perturbed sample (its "neighbour" label) becomes the sample's new
label, and the model is fine-tuned on D_f with those labels. Needs only D_f.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.training import batches, progress
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, logits_of, start, step
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class BoundaryShrinkConfig:
    """Chen et al.'s reference code: FGSM bound 0.1 (ℓ∞, no random start) on the original model, SGD with
    momentum 0.9, lr 1e-5, 10 epochs over D_f, batch 64 (larger lr and bound collapsed our CIFAR-10 CNN's
    retain accuracy: BENCHMARKS.md, "Measurements behind defaults")."""

    bound: float = 0.1
    epochs: int = 10
    lr: float = 1e-5
    momentum: float = 0.9
    batch_size: int = 64


def neighbour_labels(original: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float,
                     request: UnlearningRequest) -> torch.Tensor:
    """The original model's label for ``x`` after one ℓ∞ FGSM step of size ``bound`` away from ``y``."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits_of(original, x, request), y), x)
    with torch.no_grad():
        return logits_of(original, x + bound * grad.sign(), request).argmax(1)


@METHODS.register("boundary-shrink")
class BoundaryShrink(UnlearningMethod):
    Config = BoundaryShrinkConfig

    def validate(self) -> None:
        check_ranges(self.name, self.config, positive=("bound", "lr"), non_negative=("momentum",),
                     at_least_one=("epochs", "batch_size"))

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        c = self.config
        original = copy.deepcopy(model).eval()
        device, generator, place = start(model, request)
        place(original)
        for p in original.parameters():
            p.requires_grad_(False)
        forget = place(request.forget)
        optimizer = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum)
        for epoch in progress(range(c.epochs), c.epochs, self.name, request.recipe.progress):
            losses, moved = [], 0
            for idx in batches(len(forget), c.batch_size, generator, device):
                labels = neighbour_labels(original, forget.x[idx], forget.y[idx], c.bound, request)
                moved += int((labels != forget.y[idx]).sum())
                losses.append(step(optimizer, F.cross_entropy(logits_of(model, forget.x[idx], request), labels)))
            history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses),
                            "relabelled_fraction": moved / len(forget)})
        return f"epoch budget ({c.epochs}) reached"


@SEARCH_SPACES.register("boundary-shrink")
def _boundary_shrink_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-6, 1e-2), (1, 10)) | {
        "bound": trial.suggest_float("bound", 0.01, 1.0, log=True)}
