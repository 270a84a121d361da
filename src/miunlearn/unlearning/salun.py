"""SalUn (Fan et al., ICLR 2024): saliency-masked random-label unlearning.

The saliency of a weight is |∇_θ CE(D_f)| at the original model; only the most salient fraction of
weights (one global threshold) are updated by random-label unlearning, the rest stay bit-for-bit as they
were: masked-out weights get no gradient, no weight decay and therefore no momentum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.training import batches
from miunlearn.unlearning.base import METHODS, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, logits_of
from miunlearn.unlearning.random_label import RandomLabel, RandomLabelConfig
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class SalUnConfig(RandomLabelConfig):
    """SalUn's reference code for CIFAR-10: a 50% saliency mask (``threshold 0.5``) from one pass over D_f,
    then RL with SGD lr 0.013, momentum 0.9, weight decay 5e-4 (budget scaled like ``random-label``'s)."""

    mask_fraction: float = 0.5
    """Fraction of weights (by saliency, over the whole model) that unlearning may change."""
    saliency_batch: int = 256


@METHODS.register("salun")
class SalUn(RandomLabel):
    Config = SalUnConfig

    def validate(self) -> None:
        super().validate()
        check_ranges(self.name, self.config, open_unit=("mask_fraction",), at_least_one=("saliency_batch",))

    def masks(self, model: nn.Module, request: UnlearningRequest) -> list[torch.Tensor]:
        params = list(model.parameters())
        forget = request.forget.to(params[0].device)
        model.zero_grad(set_to_none=True)
        for idx in batches(len(forget), self.config.saliency_batch, None, params[0].device):
            F.cross_entropy(logits_of(model, forget.x[idx], request), forget.y[idx], reduction="sum").backward()
        saliency = [torch.zeros_like(p) if p.grad is None else p.grad.detach().abs() for p in params]
        model.zero_grad(set_to_none=True)
        flat = torch.cat([s.flatten() for s in saliency])
        keep = max(1, round(self.config.mask_fraction * flat.numel()))
        threshold = torch.topk(flat, keep, sorted=False).values.min()
        return [(s >= threshold).to(s.dtype) for s in saliency]


@SEARCH_SPACES.register("salun")
def _salun_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-3, 0.1), (1, 5)) | {
        "mask_fraction": trial.suggest_float("mask_fraction", 0.1, 0.9)}
