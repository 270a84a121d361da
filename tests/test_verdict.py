import numpy as np
import pytest

from miunlearn.audit.verdict import auc, holm, judge, paired_tests, tpr_at, verdicts


def _scores(seed: int = 0, n_f: int = 400, n_a: int = 2000):
    """A retrained model whose D_f is shifted a little (no tail), and a method with the same AUC but 15% of D_f
    left far out (a member-like tail), both against the same kind of D_audit."""
    rng = np.random.default_rng(seed)
    audit = rng.normal(0, 1, n_a)
    retrain = rng.normal(0.27, 1, n_f)
    tail = rng.random(n_f) < 0.15
    method = np.where(tail, rng.normal(4, 0.3, n_f), rng.normal(0, 1, n_f))
    return method, audit, retrain, rng.normal(0, 1, n_a)


def test_a_member_like_tail_is_distinguishable_although_the_auc_matches():
    method_f, method_a, retrain_f, retrain_a = _scores()
    assert abs(auc(method_f, method_a) - auc(retrain_f, retrain_a)) < 0.03
    assert tpr_at(method_f, method_a, 0.01) > tpr_at(retrain_f, retrain_a, 0.01) + 0.1
    tests = paired_tests((method_f, method_a), (retrain_f, retrain_a), 0.01)
    by_metric = {t["metric"]: t for t in tests}
    assert by_metric["auc"]["p"] > 0.05, "the AUC alone cannot see the tail"
    assert by_metric["tpr_at_1%fpr"]["p"] < 1e-4
    verdict = judge([{"attack": "lira", **t} for t in tests])
    assert verdict["distinguishable"] and "tpr_at_1%fpr" in verdict["sentence"]


def test_a_model_like_retraining_is_not_distinguishable():
    rng = np.random.default_rng(1)
    scores = {}
    for attack in ("lira", "rmia"):
        for model in ("remi", "retrain"):
            scores[f"{attack}/{model}/forget"] = rng.normal(0.1, 1, 400)
            scores[f"{attack}/{model}/audit"] = rng.normal(0, 1, 2000)
    out = verdicts(scores, ["lira", "rmia"], ["remi", "retrain"])
    assert set(out) == {"remi"} and not out["remi"]["distinguishable"]
    assert len(out["remi"]["tests"]) == 4 and "not distinguishable" in out["remi"]["sentence"]


def test_holm_corrects_for_the_number_of_attacks():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # One test at p = 0.02 rejects alone, but not as one of five with nothing else to show.
    assert not judge([{"attack": "a", "metric": "auc", "value": 0.6, "retrain": 0.5, "p": 0.02}]
                     + [{"attack": f"b{i}", "metric": "auc", "value": 0.5, "retrain": 0.5, "p": 0.9}
                        for i in range(4)])["distinguishable"]
    assert judge([{"attack": "a", "metric": "auc", "value": 0.6, "retrain": 0.5, "p": 0.02}])["distinguishable"]


def test_without_bootstrap_resamples_there_is_no_verdict_rather_than_a_pass():
    """The p-values are bootstrap-based: with none a clearly leaking model must not be called "not distinguishable"."""
    method_f, method_a, retrain_f, retrain_a = _scores()
    scores = {"lira/remi/forget": method_f + 3, "lira/remi/audit": method_a,
              "lira/retrain/forget": retrain_f, "lira/retrain/audit": retrain_a}
    assert verdicts(scores, ["lira"], ["remi", "retrain"])["remi"]["distinguishable"]
    out = verdicts(scores, ["lira"], ["remi", "retrain"], bootstrap=0)["remi"]
    assert out["distinguishable"] is None and out["sentence"].startswith("no verdict")
    assert "bootstrap=0" in out["sentence"]
