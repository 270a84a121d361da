"""Random-label unlearning (Golatkar et al. 2020; Hayase et al.): train on D_f relabelled with random wrong
labels together with D_r, so D_f's memorised labels are overwritten while D_r keeps the task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.data import TensorData
from miunlearn.training import batches, progress
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, class_count, logits_of, random_wrong_labels, start
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class RandomLabelConfig:
    """SalUn's reference settings for RL on CIFAR-10 (Fan et al., ICLR 2024): SGD, lr 0.013, momentum 0.9,
    weight decay 5e-4, one shuffled pass over D_f ∪ D_r per epoch. They run 10 epochs against a 182-epoch
    retrain; scaled to our recipes, 2."""

    epochs: int = 2
    lr: float = 0.013
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128


@METHODS.register("random-label")
class RandomLabel(UnlearningMethod):
    Config = RandomLabelConfig
    requires = ("retain",)

    def validate(self) -> None:
        check_ranges(self.name, self.config, positive=("lr",), non_negative=("momentum", "weight_decay"),
                     at_least_one=("epochs", "batch_size"))

    def masks(self, model: nn.Module, request: UnlearningRequest) -> list[torch.Tensor] | None:
        """Which weights may move (one 0/1 tensor per parameter); ``None``: all of them. SalUn overrides."""
        return None

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        c = self.config
        device, generator, place = start(model, request)
        masks = self.masks(model, request)
        forget, retain = place(request.forget), place(request.retain)
        wrong = random_wrong_labels(forget.y, class_count(model, forget), generator)
        data = TensorData(torch.cat([forget.x, retain.x]), torch.cat([wrong, retain.y]))
        params = list(model.parameters())
        # Weight decay is folded into the gradient by hand so that a mask also stops it (SGD's own decay
        # would shrink masked-out weights); momentum then only ever sees masked gradients.
        optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum)
        for epoch in progress(range(c.epochs), c.epochs, self.name, request.recipe.progress):
            total, steps = 0.0, 0
            for idx in batches(len(data), c.batch_size, generator, device):
                loss = F.cross_entropy(logits_of(model, data.x[idx], request), data.y[idx])
                optimizer.zero_grad(set_to_none=False)
                loss.backward()
                with torch.no_grad():
                    for i, p in enumerate(params):
                        if p.grad is None:  # a parameter this loss does not reach
                            continue
                        p.grad.add_(p, alpha=c.weight_decay)
                        if masks is not None:
                            p.grad.mul_(masks[i])
                optimizer.step()
                total += float(loss.detach())
                steps += 1
            history.append({"epoch": epoch + 1, "loss": total / steps})
        return f"epoch budget ({c.epochs}) reached"


@SEARCH_SPACES.register("random-label")
def _random_label_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-3, 0.1), (1, 5))
