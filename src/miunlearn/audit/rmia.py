"""RMIA (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", ICML 2024).

The likelihood ratio ``LR(x) = p(x|θ) / p(x)`` (``p`` = probability of the true label, ``p(x)`` its
average over reference models) is compared with the same ratio on population samples ``z`` that no
model saw: the score is the share of ``z`` with ``LR(x) / LR(z) ≥ γ``. Online averages all reference
models; offline uses only those trained without ``x`` and corrects for their missing IN half with
``p(x) ≈ ((1 + a)·p_out(x) + (1 - a)) / 2`` (the paper's linear approximation). Works with one
reference model (online) or one OUT model per sample (offline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miunlearn.audit.reference_attacks import (
    REFERENCE_ATTACKS,
    ReferenceAttack,
    ReferenceInputs,
    true_class_probability,
)
from miunlearn.errors import MiunlearnError


@dataclass
class RMIAConfig:
    rmia_offline_a: float = 0.3
    """Offline only: ``a`` of ``p(x) ≈ ((1 + a)·p_out(x) + (1 − a)) / 2``."""
    rmia_gamma: float = 1.0
    """The likelihood-ratio threshold ``γ`` against population samples."""

    def validate(self) -> None:
        if not 0 <= self.rmia_offline_a <= 1:
            raise MiunlearnError(f"rmia_offline_a must be in [0, 1], got {self.rmia_offline_a}")
        if not self.rmia_gamma > 0:
            raise MiunlearnError(f"rmia_gamma must be positive, got {self.rmia_gamma}")


def rmia_scores(target: np.ndarray, ref: np.ndarray, member: np.ndarray, population_target: np.ndarray,
                population_ref: np.ndarray, online: bool, a: float = 0.3, gamma: float = 1.0) -> np.ndarray:
    """Scores of the scored samples from ``p_y`` of the audited model (n,), the reference models (K, n),
    and the same on the population (m,), (K, m); the population is OUT for every reference model."""
    if online:
        p_x = ref.mean(0)
        p_z = population_ref.mean(0)
    else:
        out = ~member
        p_x = 0.5 * ((1 + a) * np.where(out, ref, 0).sum(0) / np.maximum(out.sum(0), 1) + (1 - a))
        p_z = 0.5 * ((1 + a) * population_ref.mean(0) + (1 - a))
    eps = 1e-30
    ratio_x = target / np.maximum(p_x, eps)
    ratio_z = np.sort(population_target / np.maximum(p_z, eps))
    return np.searchsorted(ratio_z, ratio_x / gamma, side="right") / len(ratio_z)


class _RMIA(ReferenceAttack):
    Config = RMIAConfig
    online: bool

    def scores(self, inputs: ReferenceInputs) -> np.ndarray:
        self.check(inputs.member)
        return rmia_scores(true_class_probability(inputs.logits, inputs.labels),
                           true_class_probability(inputs.ref_logits, inputs.labels), inputs.member,
                           true_class_probability(inputs.population_logits, inputs.population_labels),
                           true_class_probability(inputs.population_ref_logits, inputs.population_labels),
                           self.online, self.config.rmia_offline_a, self.config.rmia_gamma)


@REFERENCE_ATTACKS.register("rmia-online")
class RMIAOnline(_RMIA):
    online, needs_any = True, 1


@REFERENCE_ATTACKS.register("rmia-offline")
class RMIAOffline(_RMIA):
    online, needs_out = False, 1
