"""Metrics that compare an unlearned model with the original and the retrained one."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon

from miunlearn.statistics import logit_confidence


class Metric:
    """Names of the per-model metrics a run records (``metrics.json``'s ``models``): written once, here."""

    RETAIN_ACC = "retain_acc"
    FORGET_ACC = "forget_acc"
    TEST_ACC = "test_acc"
    MIA_EFFICACY = "mia_efficacy"
    GAUSSIAN_KL = "gaussian_kl"
    PINSKER_BOUND = "pinsker_bound"
    JS_TO_RETRAIN = "js_to_retrain"
    AVG_GAP = "avg_gap"
    SECONDS = "seconds"
    SPEEDUP = "speedup"

    @staticmethod
    def of_attack(attack: str, key: str) -> str:
        """A population attack's metric: ``of_attack("m-entropy", "auc") == "m_entropy_auc"``."""
        return f"{attack.replace('-', '_')}_{key}"


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def js_divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Mean Jensen–Shannon divergence (bits, in [0, 1]) between two models' output distributions."""
    p = torch.softmax(logits_a.double(), 1).numpy()
    q = torch.softmax(logits_b.double(), 1).numpy()
    return float(np.mean(jensenshannon(p, q, axis=1, base=2) ** 2))


def gaussian_fit(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), max(float(values.std(unbiased=False)), 1e-4)


def gaussian_kl(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    """KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) in nats."""
    return math.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5


def pinsker_bound(kl: float) -> float:
    """Advantage (TPR − FPR) of any threshold attack on ``s`` under the fitted Gaussians is at most
    TV ≤ sqrt(KL/2). A property of the Gaussian fits, not a guarantee against every attacker."""
    return min(1.0, math.sqrt(max(kl, 0.0) / 2))


def membership_gaussian_bound(forget_logits: torch.Tensor, forget_labels: torch.Tensor,
                              other_logits: torch.Tensor, other_labels: torch.Tensor) -> dict[str, float]:
    """The spec's bound: KL between Gaussians fitted to ``s`` on D_f and on never-seen data, and Pinsker."""
    kl = gaussian_kl(*gaussian_fit(logit_confidence(forget_logits.float(), forget_labels)),
                     *gaussian_fit(logit_confidence(other_logits.float(), other_labels)))
    return {Metric.GAUSSIAN_KL: kl, Metric.PINSKER_BOUND: pinsker_bound(kl)}


def average_gap(metrics: dict[str, float], retrained: dict[str, float]) -> float:
    """SalUn's average gap (points): mean |Δ| of forget, retain, test accuracy and MIA-efficacy."""
    scale = {Metric.FORGET_ACC: 100, Metric.RETAIN_ACC: 100, Metric.TEST_ACC: 100, Metric.MIA_EFFICACY: 1}
    keys = tuple(scale)
    return float(np.mean([abs(metrics[k] - retrained[k]) * scale[k] for k in keys]))
