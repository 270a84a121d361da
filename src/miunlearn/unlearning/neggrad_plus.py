"""NegGrad+ (Kurmanji et al., NeurIPS 2023): descend on D_r and ascend on D_f in the same step,

    L = α · CE(b_r) − (1 − α) · CE(b_f)

one pass over D_r per epoch, each retain batch paired with a forget batch drawn cyclically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.training import OPTIMIZERS, progress
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, logits_of, paired_batches, start, step
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class NegGradPlusConfig:
    """Kurmanji et al.'s reference code (github.com/meghdadk/SCRUB): α = 0.999 on the retain loss, SGD with
    momentum 0.9 and weight decay 5e-4; lr 0.01 and 2 epochs scaled like ``finetune``'s budget."""

    alpha: float = 0.999
    epochs: int = 2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    retain_batch: int = 128
    forget_batch: int = 64


@METHODS.register("neggrad-plus")
class NegGradPlus(UnlearningMethod):
    Config = NegGradPlusConfig
    requires = ("retain",)

    def validate(self) -> None:
        check_ranges(self.name, self.config, open_unit=("alpha",), positive=("lr",),
                     non_negative=("momentum", "weight_decay"), at_least_one=("epochs", "retain_batch", "forget_batch"))

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        c = self.config
        device, generator, place = start(model, request)
        retain, forget = place(request.retain), place(request.forget)
        optimizer = OPTIMIZERS.get("sgd")(model.parameters(), c)
        for epoch in progress(range(c.epochs), c.epochs, self.name, request.recipe.progress):
            total, steps = 0.0, 0
            for r_idx, f_idx in paired_batches(retain, forget, c.retain_batch, c.forget_batch, generator, device):
                logits = logits_of(model, torch.cat([retain.x[r_idx], forget.x[f_idx]]), request)
                logits_r, logits_f = logits.split([len(r_idx), len(f_idx)])
                loss = c.alpha * F.cross_entropy(logits_r, retain.y[r_idx]) - (1 - c.alpha) * F.cross_entropy(
                    logits_f, forget.y[f_idx])
                total += step(optimizer, loss)
                steps += 1
            history.append({"epoch": epoch + 1, "loss": total / steps})
        return f"epoch budget ({c.epochs}) reached"


@SEARCH_SPACES.register("neggrad-plus")
def _neggrad_plus_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-3, 0.1), (1, 5)) | {
        "alpha": trial.suggest_float("alpha", 0.5, 0.9999)}
