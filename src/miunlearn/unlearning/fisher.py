"""Fisher forgetting (Golatkar et al., CVPR 2020, "Eternal Sunshine of the Spotless Net").

Each weight gets Gaussian noise whose variance is α times the inverse of the diagonal Fisher information
of D_r: weights D_r pins down barely move, weights only D_f needed are scrambled. The Fisher is the
expected one, F = E_x Σ_k p_k(x) (∂ log p_k(x))², computed exactly from per-sample, per-class gradients
batched with ``torch.func`` (vmap of a Jacobian) instead of the reference code's one backward pass per
sample and class, which is the same sum and the bulk of this method's cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from miunlearn.data import TensorData
from miunlearn.training import progress
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest
from miunlearn.unlearning.common import check_ranges, class_count, start
from miunlearn.unlearning.search_space import SEARCH_SPACES

if TYPE_CHECKING:
    import optuna


@dataclass
class FisherConfig:
    """Golatkar et al.'s reference code (github.com/AdityaGolatkar/SelectiveForgetting): α = 1e-6, inverse
    Fisher clamped at 1e3 (1e2 for the classifier), variance ×10 for the classifier and 1-D parameters,
    averaged over each weight row's inputs; in class-wise forgetting the forgotten classes' classifier
    rows are zeroed."""

    alpha: float = 1e-6
    batch_size: int = 16
    """Samples per vmapped Jacobian: memory is batch_size × classes × parameters floats."""


@torch.no_grad()
def _no_grad_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.softmax(model(x).float(), dim=1)


def diagonal_fisher(model: nn.Module, data: TensorData, batch_size: int = 32,
                    show_progress: bool = False) -> dict[str, torch.Tensor]:
    """Expected diagonal Fisher of ``model`` (eval mode) over ``data``, one tensor per named parameter."""
    was_training = model.training
    model.eval()
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def log_probs(weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(functional_call(model, (weights, buffers), (x.unsqueeze(0),)).float(), dim=1)[0]

    per_sample_jacobian = vmap(jacrev(log_probs), in_dims=(None, 0))
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    device = next(iter(params.values())).device
    starts = range(0, len(data), batch_size)
    for i in progress(starts, len(starts), "fisher", show_progress):
        x = data.x[i:i + batch_size].to(device)
        probs = _no_grad_probs(model, x)
        for name, jac in per_sample_jacobian(params, x).items():  # jac: (batch, classes, *shape)
            fisher[name] += torch.einsum("bk,bk...->...", probs, jac.pow(2))
    model.train(was_training)
    return {name: f / len(data) for name, f in fisher.items()}


@METHODS.register("fisher")
class Fisher(UnlearningMethod):
    Config = FisherConfig
    requires = ("retain",)

    def validate(self) -> None:
        check_ranges(self.name, self.config, positive=("alpha",), at_least_one=("batch_size",))

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        device, generator, place = start(model, request)
        num_classes = class_count(model, request.forget)
        fisher = diagonal_fisher(model, place(request.retain), self.config.batch_size, request.recipe.progress)
        head = _classifier_parameters(model, num_classes)
        forgotten = sorted(set(request.forget.y.tolist()) - set(request.retain.y.tolist()))
        noise_std = []
        with torch.no_grad():
            for name, p in model.named_parameters():
                var = (1 / (fisher[name] + 1e-8)).clamp(max=1e2 if name in head else 1e3) * self.config.alpha
                if p.ndim > 1:
                    var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
                if name in head or p.ndim == 1:
                    var *= 10
                mean = p.clone()
                if name in head and forgotten:
                    mean[forgotten] = 0
                    var[forgotten] = 1e-4
                noise = torch.randn(p.shape, generator=generator).to(device)
                p.copy_(mean + var.sqrt() * noise)
                noise_std.append(float(var.sqrt().mean()))
        model.eval()
        history.append({"mean_noise_std": sum(noise_std) / len(noise_std), "forgotten_classes": len(forgotten)})
        return "one-shot: noise from the inverse Fisher of D_r"


def _classifier_parameters(model: nn.Module, num_classes: int) -> set[str]:
    """Names of the last linear layer's parameters when it is the classifier (``num_classes`` outputs)."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != num_classes:
        return set()
    prefix = linears[-1][0]
    return {f"{prefix}.{n}" if prefix else n for n, _ in linears[-1][1].named_parameters()}


@SEARCH_SPACES.register("fisher")
def _fisher_space(trial: optuna.Trial) -> dict[str, Any]:
    return {"alpha": trial.suggest_float("alpha", 1e-9, 1e-4, log=True)}
