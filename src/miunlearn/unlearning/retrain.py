"""Exact unlearning: retrain from scratch on D_r with the target's recipe (the gold standard)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from miunlearn.training import train_model
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest


@dataclass
class RetrainConfig:
    """Retraining takes the target's recipe (``UnlearningRequest.recipe``); nothing to tune here."""


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Fresh weights for the same architecture, as ``model``'s own layers initialise them."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


@METHODS.register("retrain")
class Retrain(UnlearningMethod):
    name = "retrain"
    Config = RetrainConfig
    requires = ("retain",)

    def run(self, model: nn.Module, request: UnlearningRequest) -> tuple[list[dict[str, float]], str]:
        reinitialise(model, request.seed)
        history = train_model(model, request.retain, replace(request.recipe, seed=request.seed), desc="retrain")
        return history, f"trained {request.recipe.epochs} epochs on D_r"
