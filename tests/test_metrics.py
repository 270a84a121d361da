"""Our metrics against direct computations (not against the library calls they wrap)."""

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from miunlearn.audit import average_gap, gaussian_kl, js_divergence, pinsker_bound
from miunlearn.audit.population import roc_metrics


def test_auc_is_the_mann_whitney_probability():
    rng = np.random.default_rng(0)
    members, non_members = rng.normal(0.5, 1, 300), rng.normal(0, 1, 200)
    pairs = (members[:, None] > non_members[None, :]).mean() + 0.5 * (members[:, None] == non_members[None, :]).mean()
    assert roc_metrics(members, non_members, 0.01)["auc"] == pytest.approx(pairs)


def test_tpr_at_low_fpr_by_brute_force():
    rng = np.random.default_rng(1)
    members, non_members = rng.normal(1, 1, 500), rng.normal(0, 1, 1000)
    best = 0.0
    for t in np.r_[members, non_members, np.inf]:
        if (non_members >= t).mean() <= 0.01:
            best = max(best, (members >= t).mean())
    assert roc_metrics(members, non_members, 0.01)["tpr_at_low_fpr"] == pytest.approx(best)


def test_gaussian_kl_matches_numerical_integration():
    p, q = stats.norm(1.0, 0.5), stats.norm(-0.5, 2.0)
    numeric, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -20, 20)
    assert gaussian_kl(1.0, 0.5, -0.5, 2.0) == pytest.approx(numeric, rel=1e-6)
    assert gaussian_kl(0.3, 1.2, 0.3, 1.2) == pytest.approx(0.0, abs=1e-12)


def test_pinsker_bounds_the_true_total_variation():
    p, q = stats.norm(0.0, 1.0), stats.norm(0.8, 1.3)
    tv, _ = integrate.quad(lambda x: 0.5 * abs(p.pdf(x) - q.pdf(x)), -30, 30)
    assert tv <= pinsker_bound(gaussian_kl(0.0, 1.0, 0.8, 1.3)) <= 1.0
    assert pinsker_bound(50.0) == 1.0


def test_js_divergence_matches_definition():
    a, b = torch.randn(20, 5), torch.randn(20, 5)
    p, q = torch.softmax(a.double(), 1).numpy(), torch.softmax(b.double(), 1).numpy()
    m = (p + q) / 2
    kl = lambda u, v: (u * np.log2(u / v)).sum(1)  # noqa: E731
    assert js_divergence(a, b) == pytest.approx(np.mean(0.5 * kl(p, m) + 0.5 * kl(q, m)))
    assert js_divergence(a, a) == pytest.approx(0.0, abs=1e-12)


def test_average_gap_is_salun_definition():
    retrained = {"forget_acc": 0.90, "retain_acc": 1.0, "test_acc": 0.88, "mia_efficacy": 20.0}
    model = {"forget_acc": 0.94, "retain_acc": 0.98, "test_acc": 0.88, "mia_efficacy": 14.0}
    assert average_gap(model, retrained) == pytest.approx((4 + 2 + 0 + 6) / 4)
