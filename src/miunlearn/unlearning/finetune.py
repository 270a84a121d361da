"""Fine-tuning on D_r only: forgetting D_f by catastrophic forgetting (the "FT" baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.training import OPTIMIZERS, batches, progress
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, logits_of, start, step
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class FinetuneConfig:
    """Optimiser as in Jia et al.'s reference code (NeurIPS 2023, "Model sparsity can simplify machine
    unlearning"; also SalUn's): SGD, lr 0.01, momentum 0.9, weight decay 5e-4. They fine-tune 10 epochs
    against a 182-epoch retrain (about 5%); our recipes retrain in 15-40 epochs, so the default is 2."""

    epochs: int = 2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128


@METHODS.register("finetune")
class Finetune(UnlearningMethod):
    Config = FinetuneConfig
    requires = ("retain",)

    def validate(self) -> None:
        check_ranges(self.name, self.config, positive=("lr",), non_negative=("momentum", "weight_decay"),
                     at_least_one=("epochs", "batch_size"))

    def penalty(self, model: nn.Module, epoch: int) -> torch.Tensor | None:
        """An extra term added to the retain loss (none here; ``l1-sparse`` adds one)."""
        return None

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        c = self.config
        device, generator, place = start(model, request)
        retain = place(request.retain)
        optimizer = OPTIMIZERS.get("sgd")(model.parameters(), c)
        for epoch in progress(range(c.epochs), c.epochs, self.name, request.recipe.progress):
            total, steps = 0.0, 0
            for idx in batches(len(retain), c.batch_size, generator, device):
                loss = F.cross_entropy(logits_of(model, retain.x[idx], request), retain.y[idx])
                extra = self.penalty(model, epoch)
                total += step(optimizer, loss if extra is None else loss + extra)
                steps += 1
            history.append({"epoch": epoch + 1, "loss": total / steps})
        return f"epoch budget ({c.epochs}) reached"


@SEARCH_SPACES.register("finetune")
def _finetune_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-3, 0.1), (1, 10))
