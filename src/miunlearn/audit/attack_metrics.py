"""Membership-attack metrics with bootstrap confidence intervals: AUC, TPR at low FPR, balanced accuracy.

A TPR at FPR ``f`` is only reported when there are at least ``1/f`` non-members: with fewer, the lowest
non-zero FPR the sample can show is above ``f`` and the number would be an artefact of the sample size.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from miunlearn.audit.population import roc_metrics


def _point(members: np.ndarray, non_members: np.ndarray, fprs: tuple[float, ...]) -> dict[str, float | None]:
    roc = roc_metrics(members, non_members, fprs[0])
    fpr, tpr = roc["fpr"], roc["tpr"]
    out: dict[str, float | None] = {"auc": roc["auc"], "balanced_accuracy": float(0.5 + 0.5 * np.max(tpr - fpr))}
    for f in fprs:
        out[tpr_key(f)] = float(tpr[fpr <= f].max()) if len(non_members) * f >= 1 else None
    return out


def tpr_key(fpr: float) -> str:
    return f"tpr_at_{fpr * 100:g}%fpr"


def attack_metrics(members: np.ndarray, non_members: np.ndarray, fprs: tuple[float, ...] = (0.01, 0.001),
                   bootstrap: int = 200, seed: int = 0, level: float = 0.95) -> dict:
    """Point estimates, percentile bootstrap intervals (members and non-members resampled separately),
    the sample sizes and a log-spaced ROC curve for plotting. Scores are higher for members."""
    members, non_members = np.asarray(members, float), np.asarray(non_members, float)
    result: dict = {**_point(members, non_members, fprs), "n_members": len(members),
                    "n_non_members": len(non_members)}
    notes = [f"TPR at {f * 100:g}% FPR needs at least {int(np.ceil(1 / f))} non-members; this sample has "
             f"{len(non_members)}" for f in fprs if len(non_members) * f < 1]
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = [_point(rng.choice(members, len(members)), rng.choice(non_members, len(non_members)), fprs)
                 for _ in range(bootstrap)]
        tail = (1 - level) / 2 * 100
        for key, value in list(result.items()):
            if key.startswith("n_") or value is None:
                continue
            values = np.array([d[key] for d in draws], dtype=float)
            result[f"{key}_ci"] = [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
    result["notes"] = notes
    result["roc"] = roc_points(members, non_members)
    return result


def roc_points(members: np.ndarray, non_members: np.ndarray, points: int = 300) -> dict[str, list[float]]:
    """The ROC curve thinned to about ``points`` vertices, log-spaced in FPR so the low-FPR end survives."""
    y = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    fpr, tpr, _ = roc_curve(y, np.r_[members, non_members])
    grid = np.unique(np.r_[0.0, np.geomspace(max(1.0 / max(len(non_members), 1), 1e-5), 1, points)])
    # For each grid FPR, the best TPR reachable without exceeding it (the ROC is a step function).
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return {"fpr": grid.tolist(), "tpr": tpr[np.clip(idx, 0, len(tpr) - 1)].tolist()}


def paired_auc_difference(members_a: np.ndarray, non_members_a: np.ndarray, members_b: np.ndarray,
                          non_members_b: np.ndarray, bootstrap: int = 200, seed: int = 0,
                          level: float = 0.95) -> dict:
    """AUC(a) - AUC(b) for two models scored on the same samples, with a paired bootstrap interval
    (the same resampled samples for both), which is much tighter than comparing two separate intervals."""
    def auc(m: np.ndarray, n: np.ndarray) -> float:
        return float(roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n]))

    out: dict = {"auc_difference": auc(members_a, non_members_a) - auc(members_b, non_members_b)}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        diffs = []
        for _ in range(bootstrap):
            i, j = rng.integers(0, len(members_a), len(members_a)), rng.integers(0, len(non_members_a),
                                                                                 len(non_members_a))
            diffs.append(auc(members_a[i], non_members_a[j]) - auc(members_b[i], non_members_b[j]))
        tail = (1 - level) / 2 * 100
        lo, hi = float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))
        out["auc_difference_ci"] = [lo, hi]
        out["distinguishable"] = bool(lo > 0 or hi < 0)
    return out
