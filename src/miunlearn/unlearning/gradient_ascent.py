"""Gradient ascent ("NegGrad"): maximise the training loss on D_f, with no retain data at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
from torch import nn

from miunlearn.training import OPTIMIZERS, batches, progress
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, logits_of, start, step
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class GradientAscentConfig:
    """SalUn's reference settings for GA on CIFAR-10 (Fan et al., ICLR 2024): SGD, 5 epochs over D_f,
    momentum 0.9, weight decay 5e-4, lr searched in [1e-5, 1e-3]. We take 1e-4: the top of that range collapsed
    our CIFAR-10 CNN's retain accuracy (BENCHMARKS.md, "Measurements behind defaults")."""

    epochs: int = 5
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64


@METHODS.register("gradient-ascent")
class GradientAscent(UnlearningMethod):
    """Needs only D_f (retain-free); nothing stops it from destroying the model, which is the point of
    keeping it as a baseline."""

    Config = GradientAscentConfig

    def validate(self) -> None:
        check_ranges(self.name, self.config, positive=("lr",), non_negative=("momentum", "weight_decay"),
                     at_least_one=("epochs", "batch_size"))

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        c = self.config
        device, generator, place = start(model, request)
        forget = place(request.forget)
        optimizer = OPTIMIZERS.get("sgd")(model.parameters(), c)
        for epoch in progress(range(c.epochs), c.epochs, self.name, request.recipe.progress):
            losses = [-step(optimizer, -F.cross_entropy(logits_of(model, forget.x[idx], request), forget.y[idx]))
                      for idx in batches(len(forget), c.batch_size, generator, device)]
            history.append({"epoch": epoch + 1, "forget_ce": sum(losses) / len(losses)})
        return f"epoch budget ({c.epochs}) reached"


@SEARCH_SPACES.register("gradient-ascent")
def _gradient_ascent_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-5, 1e-2), (1, 5))
