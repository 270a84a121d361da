"""The NeurIPS 2023 unlearning-challenge score (Triantafillou et al. 2024, "Are we making progress in unlearning?").

Unlearning is run N times and retraining N times; for every forget sample the two populations of the
model's logit-scaled confidence are compared with threshold tests, whose best false-positive and
false-negative rates give a per-example (ε, δ) estimate
``ε = max_t max(log((1 - δ - FPR) / FNR), log((1 - δ - FNR) / FPR))``. Each ε falls into a bucket of
width ``bucket``; bucket ``b`` scores ``2^-b`` (1 when indistinguishable), the forgetting quality F is the
mean over D_f, and the final score multiplies F by the utility ratios (retain and test accuracy of the
unlearned over the retrained models). With N copies, rates below 1/N cannot be seen, so they are
clipped to 1/N and ε is capped near log(N): N = 512 in the challenge; a handful here is only a smoke
test. Cost: N trainings from scratch plus N unlearning runs per method.
"""

from __future__ import annotations

import numpy as np

from miunlearn.audit.metrics import Metric


def per_example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 0.01) -> np.ndarray:
    """ε for each sample from (N_u, n) and (N_r, n) statistics, over all thresholds and both directions."""
    n_u, n_r = unlearned.shape[0], retrained.shape[0]
    eps = np.zeros(unlearned.shape[1])
    for i in range(unlearned.shape[1]):
        u, r = np.sort(unlearned[:, i]), np.sort(retrained[:, i])
        thresholds = np.unique(np.r_[u, r, np.inf])
        # Call "unlearned" when the statistic is at least t; the other direction swaps the roles.
        fnr = np.searchsorted(u, thresholds, side="left") / n_u
        fpr = 1 - np.searchsorted(r, thresholds, side="left") / n_r
        best = 0.0
        for a, b in ((fpr, fnr), (1 - fpr, 1 - fnr)):
            a, b = np.clip(a, 1 / n_r, 1), np.clip(b, 1 / n_u, 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                candidates = np.r_[np.log(np.clip(1 - delta - a, 1e-300, None) / b),
                                   np.log(np.clip(1 - delta - b, 1e-300, None) / a)]
            best = max(best, float(np.nanmax(candidates)))
        eps[i] = best
    return eps


def epsilon_cap(copies: int, delta: float = 0.01) -> float:
    """The largest ε that N copies can show: both error rates at their floor 1/N."""
    return float(np.log((1 - delta - 1 / copies) * copies))


def forgetting_quality(eps: np.ndarray, bucket: float = 0.5) -> float:
    """Mean of ``2^-floor(ε / bucket)`` over the forget set: 1 when no sample is distinguishable."""
    return float(np.mean(2.0 ** -np.floor(eps / bucket)))


def challenge_score(unlearned: np.ndarray, retrained: np.ndarray, utility_unlearned: dict[str, float],
                    utility_retrained: dict[str, float], delta: float = 0.01, bucket: float = 0.5) -> dict:
    eps = per_example_epsilon(unlearned, retrained, delta)
    quality = forgetting_quality(eps, bucket)
    ratios = {f"{k}_ratio": utility_unlearned[k] / utility_retrained[k] for k in (Metric.RETAIN_ACC, Metric.TEST_ACC)}
    return {"score": quality * float(np.prod(list(ratios.values()))), "forgetting_quality": quality, **ratios,
            "epsilon_mean": float(eps.mean()), "epsilon_max": float(eps.max()),
            "epsilon_cap": epsilon_cap(min(unlearned.shape[0], retrained.shape[0]), delta),
            "copies": int(min(unlearned.shape[0], retrained.shape[0])), "delta": delta, "bucket": bucket,
            "utility_unlearned": utility_unlearned, "utility_retrained": utility_retrained}
