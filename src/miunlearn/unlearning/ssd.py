"""Selective Synaptic Dampening (Foster et al., AAAI 2024): retrain-free, two importance passes.

A weight's importance on a set is its mean squared mini-batch gradient (a diagonal-Fisher proxy). Weights
far more important to D_f than to the whole training set D = D_r ∪ D_f are shrunk in proportion:

    if I_f > α · I_D:   θ ← θ · min(λ · I_D / I_f, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.data import TensorData
from miunlearn.training import batches
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, logits_of, start
from miunlearn.unlearning.search_space import SEARCH_SPACES

if TYPE_CHECKING:
    import optuna


@dataclass
class SsdConfig:
    """Foster et al.'s reference code and paper settings for CIFAR: selection weighting α = 10, dampening
    constant λ = 1 (exponent 1, update capped at 1).

    D contains D_f, so I_D ≳ (|D_f|/|D|) · I_f and a weight can only be selected when α < |D|/|D_f|: the
    paper's α = 10 suits its CIFAR-100 classes (1% of D) and selects nothing for a 10% forget set."""

    selection_weighting: float = 10.0
    dampening_constant: float = 1.0
    batch_size: int = 16
    """Mini-batch of the squared-gradient importance; small batches keep it close to a per-sample Fisher."""


def batch_importance(model: nn.Module, data: TensorData, batch_size: int,
                     request: UnlearningRequest) -> list[torch.Tensor]:
    """Mean over mini-batches of the squared gradient of the batch CE, per parameter (model in eval mode)."""
    params = list(model.parameters())
    device = params[0].device
    importance = [torch.zeros_like(p) for p in params]
    count = 0
    for idx in batches(len(data), batch_size, None, device):
        loss = F.cross_entropy(logits_of(model, data.x[idx], request), data.y[idx])
        for imp, grad in zip(importance, torch.autograd.grad(loss, params)):
            imp += grad.pow(2)
        count += 1
    return [imp / count for imp in importance]


@METHODS.register("ssd")
class Ssd(UnlearningMethod):
    Config = SsdConfig
    requires = ("retain",)

    def validate(self) -> None:
        check_ranges(self.name, self.config, positive=("selection_weighting", "dampening_constant"),
                     at_least_one=("batch_size",))

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        c = self.config
        device, _, place = start(model, request)
        model.eval()
        forget, retain = place(request.forget), place(request.retain)
        whole = TensorData(torch.cat([retain.x, forget.x]), torch.cat([retain.y, forget.y]))
        importance_d = batch_importance(model, whole, c.batch_size, request)
        importance_f = batch_importance(model, forget, c.batch_size, request)
        dampened, total = 0, 0
        with torch.no_grad():
            for p, imp_d, imp_f in zip(model.parameters(), importance_d, importance_f):
                selected = imp_f > c.selection_weighting * imp_d
                factor = (c.dampening_constant * imp_d / imp_f.clamp_min(1e-30)).clamp(max=1.0)
                p.mul_(torch.where(selected, factor, torch.ones_like(factor)))
                dampened += int(selected.sum())
                total += p.numel()
        reason = f"one-shot: dampened {dampened} of {total} weights"
        if dampened == 0 and c.selection_weighting >= len(whole) / len(forget):
            reason += (f" (selection_weighting {c.selection_weighting:g} >= |D|/|D_f| = "
                       f"{len(whole) / len(forget):.3g}: no weight can be selected; lower it)")
        history.append({"dampened_fraction": dampened / total})
        return reason


@SEARCH_SPACES.register("ssd")
def _ssd_space(trial: optuna.Trial) -> dict[str, Any]:
    return {"selection_weighting": trial.suggest_float("selection_weighting", 1.0, 100.0, log=True),
            "dampening_constant": trial.suggest_float("dampening_constant", 0.05, 1.0)}
