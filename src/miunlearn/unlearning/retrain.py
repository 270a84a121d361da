"""Exact unlearning: retrain from scratch on D_r with the target's recipe (the gold standard)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
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


def independent_seed(seed: int) -> int:
    """The retrain's own seed for initialisation and batch order, derived from the request's ``seed``.

    The target is trained after ``train.seed`` and requests usually run with the same number; a retrain
    seeded with it would start from the original's initial weights and batch order, and so stay far closer
    to the original than an independent retraining does, flattering every method that barely moves.
    """
    return int(np.random.SeedSequence([seed, 0x7E7A1]).generate_state(1)[0] % 2**31)


@METHODS.register("retrain")
class Retrain(UnlearningMethod):
    Config = RetrainConfig
    requires = ("retain",)

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        seed = independent_seed(request.seed)
        reinitialise(model, seed)
        train_model(model, request.retain, replace(request.recipe, seed=seed), desc="retrain", history=history)
        return f"trained {request.recipe.epochs} epochs on D_r from an independent initialisation"
