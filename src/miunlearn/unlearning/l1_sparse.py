"""ℓ1-sparse unlearning (Jia et al., NeurIPS 2023): fine-tune on D_r with an ℓ1 penalty on the weights.

Sparsity shrinks the weights that only D_f needed; the penalty's weight decays linearly to zero over
the epochs, as in the reference code, so the last epoch recovers accuracy unpenalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from miunlearn.unlearning.base import METHODS
from miunlearn.unlearning.common import check_ranges
from miunlearn.unlearning.finetune import Finetune, FinetuneConfig
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class L1SparseConfig(FinetuneConfig):
    """Jia et al.'s reference code: ``alpha`` 5e-4 (their range 5e-5..5e-4) times the sum of |θ| over all
    parameters, decayed linearly; SGD lr 0.01 as for fine-tuning. Budget scaled like ``finetune``'s."""

    alpha: float = 5e-4


@METHODS.register("l1-sparse")
class L1Sparse(Finetune):
    Config = L1SparseConfig

    def validate(self) -> None:
        super().validate()
        check_ranges(self.name, self.config, non_negative=("alpha",))

    def penalty(self, model: nn.Module, epoch: int) -> torch.Tensor | None:
        weight = self.config.alpha * (1 - epoch / self.config.epochs)
        return weight * sum(p.abs().sum() for p in model.parameters())


@SEARCH_SPACES.register("l1-sparse")
def _l1_sparse_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-3, 0.1), (1, 10)) | {
        "alpha": trial.suggest_float("alpha", 1e-6, 1e-2, log=True)}
