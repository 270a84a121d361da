"""ReMI: membership-inference-guided unlearning (Sula et al. 2024), as specified in docs/remi-method.md.

    L = CE(b_r) + α · mean softplus(a(b_f)) + β · KL(N(μ_f, σ_f²) ‖ N(μ_ref, σ_ref²))

``a`` is the frozen privacy approximator; μ, σ are moments of the logit-scaled confidence ``s`` on the
forget batch and (gradient stopped) on a reference batch of never-seen data. Both privacy terms aim
at *non-member-like*, not *wrong*, and training stops as soon as D_f is as member-like as D_ref.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from miunlearn.attacks.statistics import logit_confidence
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.training import autocast, batches, predict_logits, progress, resolve_device
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest


@dataclass
class RemiConfig:
    alpha: float = 1.0
    """Weight of the leakage term ``softplus(a)`` (BCE towards "non-member" under the approximator)."""
    beta: float = 1.0
    """Weight of the Gaussian KL term that matches D_f's ``s`` distribution to D_ref's."""
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 10
    """Budget: passes over D_f."""
    forget_batch: int = 32
    retain_batch: int = 128
    ref_batch: int = 128
    member_tolerance: float = 0.02
    """Stop when mean σ(a) on D_f is at most this much above its mean on D_ref ..."""
    kl_threshold: float = 0.05
    """... and the KL between the fitted Gaussians of ``s`` on D_f and D_ref is below this."""
    min_epochs: int = 1


def gaussian_kl(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """KL(N(μ1, σ1²) ‖ N(μ2, σ2²))."""
    return torch.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5


def moments(values: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) standard deviation, floored so the KL stays finite."""
    return values.mean(), values.std(unbiased=False).clamp_min(eps)


@METHODS.register("remi")
class ReMI(UnlearningMethod):
    name = "remi"
    Config = RemiConfig
    requires = ("retain", "reference", "approximator")

    def validate(self) -> None:
        c = self.config
        for key in ("alpha", "beta", "lr", "momentum", "weight_decay", "member_tolerance", "kl_threshold"):
            if getattr(c, key) < 0:
                raise MiunlearnError(f"remi.{key} must not be negative, got {getattr(c, key)}")
        if c.lr == 0:
            raise MiunlearnError("remi.lr must be positive")
        if c.epochs < 1:
            raise MiunlearnError(f"remi.epochs must be at least 1, got {c.epochs}")
        if min(c.forget_batch, c.retain_batch, c.ref_batch) < 2:
            raise MiunlearnError("remi batch sizes must be at least 2 (the KL term needs a standard deviation)")
        if c.min_epochs < 0 or c.min_epochs > c.epochs:
            raise MiunlearnError(f"remi.min_epochs must be in 0..epochs ({c.epochs}), got {c.min_epochs}")

    def run(self, model: nn.Module, request: UnlearningRequest) -> tuple[list[dict[str, float]], str]:
        c = self.config
        device = resolve_device(request.recipe.device)
        model.to(device)
        # Frozen BatchNorm: the unlearner edits weights; attacks see eval-mode outputs, so optimise those.
        model.eval()
        approximator = request.approximator.to(device)
        forget, retain, reference = (d.to(device) for d in (request.forget, request.retain, request.reference))
        optimizer = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        generator = torch.Generator().manual_seed(request.seed)
        history: list[dict[str, float]] = []
        status = self._status(model, approximator, forget, reference)
        if c.min_epochs == 0 and self._done(status):
            return [{"epoch": 0, **status}], "D_f already as member-like as D_ref"
        for epoch in progress(range(c.epochs), c.epochs, "remi", request.recipe.progress):
            start = time.perf_counter()
            sums = {"ce": 0.0, "leakage": 0.0, "kl": 0.0}
            steps = 0
            for f_idx in batches(len(forget), c.forget_batch, generator, device):
                if len(f_idx) < 2:
                    continue
                r_idx = torch.randint(len(retain), (c.retain_batch,), generator=generator).to(device)
                ref_idx = torch.randint(len(reference), (c.ref_batch,), generator=generator).to(device)
                with torch.no_grad(), autocast(device, request.recipe.precision):
                    s_ref = logit_confidence(model(reference.x[ref_idx]).float(), reference.y[ref_idx])
                mu_ref, sigma_ref = moments(s_ref)
                x = torch.cat([retain.x[r_idx], forget.x[f_idx]])
                with autocast(device, request.recipe.precision):
                    logits = model(x).float()
                logits_r, logits_f = logits[: len(r_idx)], logits[len(r_idx):]
                y_f = forget.y[f_idx]
                ce = F.cross_entropy(logits_r, retain.y[r_idx])
                leakage = F.softplus(approximator(logits_f, y_f)).mean()
                kl = gaussian_kl(*moments(logit_confidence(logits_f, y_f)), mu_ref, sigma_ref)
                loss = ce + c.alpha * leakage + c.beta * kl
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for key, value in (("ce", ce), ("leakage", leakage), ("kl", kl)):
                    sums[key] += float(value.detach())
                steps += 1
            status = self._status(model, approximator, forget, reference)
            history.append({"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()}, **status,
                            "seconds": time.perf_counter() - start})
            if epoch + 1 >= c.min_epochs and self._done(status):
                return history, f"D_f as member-like as D_ref after {epoch + 1} epoch(s)"
        return history, f"epoch budget ({c.epochs}) reached"

    @torch.no_grad()
    def _status(self, model: nn.Module, approximator: nn.Module, forget: TensorData,
                reference: TensorData) -> dict[str, float]:
        """Full-set view of the stopping rule: mean σ(a) on D_f and D_ref and the Gaussian KL of ``s``."""
        out = {}
        stats = {}
        for key, data in (("forget", forget), ("ref", reference)):
            logits = predict_logits(model, data).to(data.y.device)
            out[f"{key}_member_prob"] = float(torch.sigmoid(approximator(logits, data.y)).mean())
            stats[key] = moments(logit_confidence(logits, data.y))
        out["kl_full"] = float(gaussian_kl(*stats["forget"], *stats["ref"]))
        return out

    def _done(self, status: dict[str, float]) -> bool:
        gap = status["forget_member_prob"] - status["ref_member_prob"]
        return gap <= self.config.member_tolerance and status["kl_full"] <= self.config.kl_threshold

