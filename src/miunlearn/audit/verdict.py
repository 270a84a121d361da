"""Verdicts that cannot hide a tail: is an unlearned model distinguishable from the retrained one?

Every attack run gives two tests against retraining on the same samples (D_f members, D_audit non-members):
its AUC (two-sided; the bulk of the scores) and its TPR at a low FPR (one-sided, "more of D_f caught than on
the retrained model": a member-like tail that an AUC averages away). U-LiRA, which scores the unlearned model
against the retrained one directly, adds AUC > 0.5 and TPR > FPR. The p-values (normal approximation with a
paired bootstrap standard error) are Holm-corrected over all tests of a model, so running more attacks does
not make a method look worse by chance, and one clear failure is enough to call it distinguishable.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score


def tpr_at(members: np.ndarray, non_members: np.ndarray, fpr: float) -> float:
    """Share of members above the non-members' ``1 - fpr`` quantile (the attack's threshold at that FPR)."""
    return float(np.mean(members > np.quantile(non_members, 1 - fpr)))


def auc(members: np.ndarray, non_members: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(members)), np.zeros(len(non_members))], np.r_[members, non_members]))


def _p_value(difference: float, draws: np.ndarray, one_sided: bool) -> float:
    se = float(np.std(draws))
    if se == 0:
        return 1.0 if difference <= 0 or (not one_sided and difference == 0) else 0.0
    z = difference / se
    return float(stats.norm.sf(z) if one_sided else 2 * stats.norm.sf(abs(z)))


def paired_tests(method: tuple[np.ndarray, np.ndarray], retrain: tuple[np.ndarray, np.ndarray], fpr: float,
                 bootstrap: int = 200, seed: int = 0) -> list[dict]:
    """AUC and TPR-at-``fpr`` differences (method − retrain) of one attack, with paired bootstrap p-values."""
    (mf, ma), (rf, ra) = (tuple(np.asarray(v, float) for v in pair) for pair in (method, retrain))
    metrics = {"auc": (auc, False), f"tpr_at_{fpr * 100:g}%fpr": (lambda m, n: tpr_at(m, n, fpr), True)}
    rng = np.random.default_rng(seed)
    draws = {key: [] for key in metrics}
    for _ in range(bootstrap):
        i, j = rng.integers(0, len(mf), len(mf)), rng.integers(0, len(ma), len(ma))
        for key, (fn, _) in metrics.items():
            draws[key].append(fn(mf[i], ma[j]) - fn(rf[i], ra[j]))
    out = []
    for key, (fn, one_sided) in metrics.items():
        value, base = fn(mf, ma), fn(rf, ra)
        out.append({"metric": key, "value": value, "retrain": base, "difference": value - base,
                    "alternative": "greater" if one_sided else "two-sided",
                    "p": _p_value(value - base, np.asarray(draws[key]), one_sided)})
    return out


def chance_tests(members: np.ndarray, non_members: np.ndarray, fpr: float, bootstrap: int = 200,
                 seed: int = 0) -> list[dict]:
    """AUC > 0.5 and TPR at ``fpr`` > ``fpr`` for an attack that should be at chance (U-LiRA)."""
    members, non_members = np.asarray(members, float), np.asarray(non_members, float)
    rng = np.random.default_rng(seed)
    metrics = {"auc": (auc, 0.5), f"tpr_at_{fpr * 100:g}%fpr": (lambda m, n: tpr_at(m, n, fpr), fpr)}
    out = []
    for key, (fn, chance) in metrics.items():
        value = fn(members, non_members)
        draws = np.array([fn(rng.choice(members, len(members)), rng.choice(non_members, len(non_members)))
                          for _ in range(bootstrap)])
        out.append({"metric": key, "value": value, "retrain": chance, "difference": value - chance,
                    "alternative": "greater", "p": _p_value(value - chance, draws, True)})
    return out


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    order = np.argsort(p_values)
    adjusted, running = np.empty(len(p_values)), 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def judge(tests: list[dict], alpha: float = 0.05) -> dict:
    """Holm-correct a model's tests and say in one sentence whether it is distinguishable from retraining."""
    for test, p in zip(tests, holm([t["p"] for t in tests])):
        test["p_holm"] = p
        test["rejected"] = p < alpha
    failed = sorted((t for t in tests if t["rejected"]), key=lambda t: t["p_holm"])
    if failed:
        worst = failed[0]
        sentence = (f"distinguishable from retraining: {worst['attack']} {worst['metric']} {worst['value']:.3f} vs "
                    f"{worst['retrain']:.3f} (Holm-adjusted p={worst['p_holm']:.2g}; {len(failed)} of {len(tests)} "
                    "tests reject)")
    else:
        smallest = min((t["p_holm"] for t in tests), default=1.0)
        sentence = (f"not distinguishable from retraining by any of {len(tests)} tests (AUC and TPR at low FPR of "
                    f"every attack, Holm-corrected at {alpha:g}; smallest adjusted p={smallest:.2g})")
    return {"distinguishable": bool(failed), "alpha": alpha, "sentence": sentence, "tests": tests}


def verdicts(scores: dict[str, np.ndarray], attacks: list[str], models: list[str], fpr: float = 0.01,
             bootstrap: int = 200, seed: int = 0, alpha: float = 0.05) -> dict[str, dict]:
    """Per unlearned model: every attack's AUC and TPR-at-``fpr`` against retraining's (and U-LiRA's against
    chance where ``scores`` holds ``ulira/<model>/forget|retrain``), Holm-corrected together.

    ``scores`` maps ``<attack>/<model>/forget`` and ``<attack>/<model>/audit`` to attack scores. The p-values come
    from the bootstrap's spread: with fewer than 2 resamples there is none, and no verdict is given."""
    if "retrain" not in models:
        return {}
    if bootstrap < 2:
        sentence = (f"no verdict: its tests need bootstrap resamples for their standard errors, and "
                    f"bootstrap={bootstrap} was asked for (the default is 200)")
        return {m: {"distinguishable": None, "alpha": alpha, "sentence": sentence, "tests": []}
                for m in models if m != "retrain"}
    out = {}
    for model in [m for m in models if m != "retrain"]:
        tests = []
        for attack in attacks:
            pair = (scores[f"{attack}/{model}/forget"], scores[f"{attack}/{model}/audit"])
            base = (scores[f"{attack}/retrain/forget"], scores[f"{attack}/retrain/audit"])
            tests += [{"attack": attack, **t} for t in paired_tests(pair, base, fpr, bootstrap, seed)]
        if f"ulira/{model}/forget" in scores:
            tests += [{"attack": "u-lira", **t} for t in chance_tests(
                scores[f"ulira/{model}/forget"], scores[f"ulira/{model}/retrain"], fpr, bootstrap, seed)]
        out[model] = judge(tests, alpha)
    return out
