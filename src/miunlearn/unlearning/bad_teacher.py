"""Bad-teacher unlearning (Chundawat et al., AAAI 2023, "Can bad teaching induce forgetting?").

The student (a copy of the model) distils from two teachers: the original, competent one on a slice of
D_r, and a randomly initialised, incompetent one on D_f, so D_f's outputs become as uninformative as an
untrained network's while D_r's stay.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.data import TensorData
from miunlearn.training import batches, progress
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, logits_of, start, step
from miunlearn.unlearning.retrain import reinitialise
from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs

if TYPE_CHECKING:
    import optuna


@dataclass
class BadTeacherConfig:
    """Chundawat et al.'s reference code: 30% of D_r, KL temperature 1, batch 256, 1 epoch, Adam lr 1e-4
    (a larger lr collapsed our CIFAR-10 CNN's retain accuracy: BENCHMARKS.md, "Measurements behind defaults")."""

    retain_fraction: float = 0.3
    temperature: float = 1.0
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 256


@METHODS.register("bad-teacher")
class BadTeacher(UnlearningMethod):
    Config = BadTeacherConfig
    requires = ("retain",)

    def validate(self) -> None:
        check_ranges(self.name, self.config, positive=("lr", "temperature", "retain_fraction"),
                     unit=("retain_fraction",), at_least_one=("epochs", "batch_size"))

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        c = self.config
        competent = copy.deepcopy(model).eval()
        incompetent = reinitialise(copy.deepcopy(model), request.seed).eval()
        device, generator, place = start(model, request)
        place(competent), place(incompetent)
        forget, retain = place(request.forget), place(request.retain)
        keep = torch.randperm(len(retain), generator=generator)[:max(1, round(c.retain_fraction * len(retain)))]
        keep = keep.to(device)
        retain = TensorData(retain.x[keep], retain.y[keep])
        x = torch.cat([retain.x, forget.x])
        is_forget = torch.cat([torch.zeros(len(retain), dtype=torch.bool, device=device),
                               torch.ones(len(forget), dtype=torch.bool, device=device)])
        optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
        for epoch in progress(range(c.epochs), c.epochs, self.name, request.recipe.progress):
            losses = []
            for idx in batches(len(x), c.batch_size, generator, device):
                with torch.no_grad():
                    target = torch.where(is_forget[idx, None], logits_of(incompetent, x[idx], request),
                                         logits_of(competent, x[idx], request))
                student = logits_of(model, x[idx], request)
                loss = F.kl_div(F.log_softmax(student / c.temperature, dim=1),
                                F.log_softmax(target / c.temperature, dim=1), log_target=True, reduction="batchmean")
                losses.append(step(optimizer, loss))
            history.append({"epoch": epoch + 1, "kl": sum(losses) / len(losses)})
        return f"epoch budget ({c.epochs}) reached"


@SEARCH_SPACES.register("bad-teacher")
def _bad_teacher_space(trial: optuna.Trial) -> dict[str, Any]:
    return suggest_lr_epochs(trial, (1e-5, 1e-2), (1, 5)) | {
        "retain_fraction": trial.suggest_float("retain_fraction", 0.1, 1.0)}
