"""Shadow models: the "shadows" of ReMI, trained as an attacker would on disjoint data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from miunlearn.config import TrainConfig
from miunlearn.data import TensorData
from miunlearn.training import predict_logits, train_model


@dataclass
class ShadowOutputs:
    """Logits of the shadow models on their own members (``member=1``) and non-members (``member=0``)."""

    logits: torch.Tensor
    labels: torch.Tensor
    member: torch.Tensor

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]


def train_shadows(model_factory: Callable[[], nn.Module], shadow: TensorData, recipe: TrainConfig,
                  num_shadows: int, seed: int) -> ShadowOutputs:
    """Train ``num_shadows`` models on random halves of D_shadow and collect their outputs.

    Each model sees one half (its members); the other half is its non-members, so the attack learns
    the member/non-member contrast of this architecture and recipe without touching the target's data.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(num_shadows):
        order = rng.permutation(len(shadow))
        members, non_members = order[: len(order) // 2], order[len(order) // 2:]
        torch.manual_seed(seed * 1000 + k)
        model = model_factory()
        train_model(model, shadow.subset(members), replace(recipe, seed=seed * 1000 + k),
                    desc=f"shadow {k + 1}/{num_shadows}")
        for idx, flag in ((members, 1), (non_members, 0)):
            part = shadow.subset(idx)
            logits = predict_logits(model, part, precision=recipe.precision)
            parts.append((logits, part.y.cpu(), torch.full((len(idx),), flag)))
    logits, labels, member = (torch.cat(items) for items in zip(*parts))
    return ShadowOutputs(logits, labels, member.float())

