"""LiRA (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022).

For each sample, Gaussians are fitted to the logit-scaled confidence of reference models trained with
it (IN) and without it (OUT). Online scores the likelihood ratio IN vs OUT of the audited model's
confidence; offline, with OUT models only, scores how far above the OUT distribution it lies (the
one-sided test ``log Φ((φ - μ_out) / σ_out)``). With few reference models a per-example variance is
noisy; ``global`` shares one standard deviation across samples, as the paper recommends below 64 models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from miunlearn.audit.reference_attacks import REFERENCE_ATTACKS, ReferenceAttack, ReferenceInputs, lira_statistic
from miunlearn.errors import MiunlearnError

VARIANCES = ("global", "per-example")


@dataclass
class LiRAConfig:
    variance: str = "global"
    """``global`` (one spread for all samples; right for few reference models) or ``per-example``."""

    def validate(self) -> None:
        if self.variance not in VARIANCES:
            raise MiunlearnError(f"unknown variance {self.variance!r}; valid: {', '.join(VARIANCES)}")


def fit_gaussians(stat: np.ndarray, mask: np.ndarray, variance: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample mean and standard deviation of ``stat`` (K, n) over the models where ``mask`` holds.

    ``global``: one pooled within-sample standard deviation for all samples (the spread of every
    value around its own sample's mean); if no sample has two such models, the spread of all values.
    """
    if variance not in VARIANCES:
        raise MiunlearnError(f"unknown variance {variance!r}; valid: {', '.join(VARIANCES)}")
    count = mask.sum(0)
    mean = np.where(mask, stat, 0).sum(0) / np.maximum(count, 1)
    sq = np.where(mask, (stat - mean) ** 2, 0)
    if variance == "per-example":
        std = np.sqrt(sq.sum(0) / np.maximum(count - 1, 1))
    else:
        dof = int((count - 1).clip(min=0).sum())
        pooled = np.sqrt(sq.sum() / dof) if dof > 0 else float(np.std(stat[mask]))
        std = np.full(stat.shape[1], pooled)
    return mean, np.maximum(std, 1e-6)


def lira_online(target: np.ndarray, ref: np.ndarray, member: np.ndarray, variance: str = "global") -> np.ndarray:
    """``log N(φ; μ_in, σ_in) - log N(φ; μ_out, σ_out)`` per sample; ``ref`` and ``member`` are (K, n)."""
    mu_in, sd_in = fit_gaussians(ref, member, variance)
    mu_out, sd_out = fit_gaussians(ref, ~member, variance)
    return norm.logpdf(target, mu_in, sd_in) - norm.logpdf(target, mu_out, sd_out)


def lira_offline(target: np.ndarray, ref: np.ndarray, member: np.ndarray, variance: str = "global") -> np.ndarray:
    """``log Φ((φ - μ_out) / σ_out)``: how far above what models without the sample give."""
    mu_out, sd_out = fit_gaussians(ref, ~member, variance)
    return norm.logcdf(target, mu_out, sd_out)


class _LiRA(ReferenceAttack):
    Config = LiRAConfig

    def requirements(self) -> tuple[int, int, int]:
        per = 2 if self.config.variance == "per-example" else 1
        return (per if self.needs_in else 0), per, self.needs_any

    def _stats(self, inputs: ReferenceInputs) -> tuple[np.ndarray, np.ndarray]:
        return lira_statistic(inputs.logits, inputs.labels), lira_statistic(inputs.ref_logits, inputs.labels)


@REFERENCE_ATTACKS.register("lira-online")
class LiRAOnline(_LiRA):
    needs_in, needs_out = 1, 1

    def scores(self, inputs: ReferenceInputs) -> np.ndarray:
        self.check(inputs.member)
        return lira_online(*self._stats(inputs), inputs.member, self.config.variance)


@REFERENCE_ATTACKS.register("lira-offline")
class LiRAOffline(_LiRA):
    needs_in, needs_out = 0, 1

    def scores(self, inputs: ReferenceInputs) -> np.ndarray:
        self.check(inputs.member)
        return lira_offline(*self._stats(inputs), inputs.member, self.config.variance)
