"""LiRA, RMIA, the challenge score and the attack metrics: against hand computations and on an overfit model."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from miunlearn import build_model, train_model
from miunlearn.audit import REFERENCE_ATTACKS, ReferenceInputs
from miunlearn.audit.attack_metrics import attack_metrics, paired_auc_difference
from miunlearn.audit.challenge import epsilon_cap, forgetting_quality, per_example_epsilon
from miunlearn.audit.lira import lira_offline, lira_online
from miunlearn.audit.reference_models import membership_matrix
from miunlearn.audit.rmia import rmia_scores
from miunlearn.config import TrainConfig
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.errors import MiunlearnError

RECIPE = TrainConfig(epochs=40, weight_decay=0, progress=False)

# Three samples, four reference models; sample i is IN models where MEMBER[:, i].
TARGET = np.array([2.0, -1.0, 0.5])
REF = np.array([[3.0, -2.0, 1.0], [2.5, 0.0, -0.5], [0.0, -1.5, 0.0], [-1.0, 0.5, 2.0]])
MEMBER = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)


def _log_normal(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))


def _by_hand(variance):
    """Means per sample; per-example std with ddof 1, or one pooled within-sample std."""
    fits = {}
    for kind, mask in (("in", MEMBER), ("out", ~MEMBER)):
        groups = [REF[mask[:, i], i] for i in range(3)]
        means = [g.mean() for g in groups]
        if variance == "per-example":
            sds = [math.sqrt(((g - g.mean()) ** 2).sum() / (len(g) - 1)) for g in groups]
        else:
            pooled = math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / sum(len(g) - 1 for g in groups))
            sds = [pooled] * 3
        fits[kind] = (means, sds)
    return fits


@pytest.mark.parametrize("variance", ["global", "per-example"])
def test_lira_matches_a_direct_computation(variance):
    fits = _by_hand(variance)
    (mi, si), (mo, so) = fits["in"], fits["out"]
    online = [_log_normal(TARGET[i], mi[i], si[i]) - _log_normal(TARGET[i], mo[i], so[i]) for i in range(3)]
    offline = [math.log(0.5 * (1 + math.erf((TARGET[i] - mo[i]) / (so[i] * math.sqrt(2))))) for i in range(3)]
    np.testing.assert_allclose(lira_online(TARGET, REF, MEMBER, variance), online, rtol=1e-10)
    np.testing.assert_allclose(lira_offline(TARGET, REF, MEMBER, variance), offline, rtol=1e-10)


def test_rmia_matches_a_direct_computation():
    p_target = np.array([0.9, 0.2, 0.6])
    p_ref = np.clip(REF / 4 + 0.5, 0.01, 0.99)
    pop_target = np.array([0.3, 0.8, 0.5, 0.1])
    pop_ref = np.array([[0.4, 0.7, 0.5, 0.2]] * 2 + [[0.2, 0.9, 0.6, 0.3]] * 2)
    a, gamma = 0.3, 1.5
    for online in (True, False):
        expected = []
        for i in range(3):
            if online:
                px, pz = p_ref[:, i].mean(), pop_ref.mean(0)
            else:
                px = 0.5 * ((1 + a) * p_ref[~MEMBER[:, i], i].mean() + 1 - a)
                pz = 0.5 * ((1 + a) * pop_ref.mean(0) + 1 - a)
            expected.append(np.mean((p_target[i] / px) / (pop_target / pz) >= gamma))
        got = rmia_scores(p_target, p_ref, MEMBER, pop_target, pop_ref, online, a, gamma)
        np.testing.assert_allclose(got, expected)


def test_membership_is_balanced_and_too_few_models_are_refused():
    member = membership_matrix(4, 1000, seed=0)
    assert (member.sum(0) == 2).all()
    assert abs(member.sum(1).mean() - 500) < 1e-9
    with pytest.raises(MiunlearnError, match="too few reference models for lira-online"):
        REFERENCE_ATTACKS.get("lira-online")().check(membership_matrix(1, 100, 0))
    with pytest.raises(MiunlearnError, match="too few reference models"):
        REFERENCE_ATTACKS.get("lira-online")(variance="per-example").check(membership_matrix(2, 100, 0))
    REFERENCE_ATTACKS.get("rmia-online")().check(membership_matrix(1, 100, 0))


@pytest.fixture(scope="module")
def overfit_inputs(blobs_npz):
    """A target that memorises 400 noisy samples; 4 reference models on balanced halves of a 1600 pool."""
    with np.load(blobs_npz) as f:
        data = TensorData(torch.from_numpy(f["x"]), torch.from_numpy(f["y"]))
    info = DatasetInfo("blobs", (data.x.shape[1],), 5, is_image=False)
    pool = np.arange(1600)
    member = membership_matrix(4, len(pool), seed=0)
    refs = []
    for k in range(4):
        torch.manual_seed(k + 1)
        model = build_model("mlp", info, 128)
        train_model(model, data.subset(pool[member[k]]), RECIPE)
        refs.append(model)
    torch.manual_seed(0)
    target = build_model("mlp", info, 128)
    train_model(target, data.subset(range(400)), RECIPE)
    population = data.subset(range(1600, 2500))

    def inputs(indices):
        scored = data.subset(indices)
        with torch.no_grad():
            return ReferenceInputs(target(scored.x), scored.y, torch.stack([m(scored.x) for m in refs]),
                                   member[:, indices], target(population.x), population.y,
                                   torch.stack([m(population.x) for m in refs]))
    return inputs


@pytest.mark.parametrize("name", REFERENCE_ATTACKS.names())
def test_attack_separates_members_and_not_two_non_member_sets(overfit_inputs, name):
    attack = REFERENCE_ATTACKS.get(name)()

    def auc(positive, negative):
        s = attack.scores(overfit_inputs(np.r_[positive, negative]))
        return roc_auc_score(np.r_[np.ones(len(positive)), np.zeros(len(negative))], s)

    assert auc(np.arange(400), np.arange(400, 800)) > 0.75
    assert abs(auc(np.arange(400, 800), np.arange(800, 1200)) - 0.5) < 0.07


def test_attack_metrics_intervals_and_small_sample_notes():
    rng = np.random.default_rng(0)
    members, non_members = rng.normal(1, 1, 300), rng.normal(0, 1, 500)
    m = attack_metrics(members, non_members, (0.01, 0.001), bootstrap=100)
    assert 0.7 < m["auc"] < 0.8 and m["auc_ci"][0] < m["auc"] < m["auc_ci"][1]
    assert m["tpr_at_1%fpr"] is not None and m["tpr_at_0.1%fpr"] is None
    assert any("needs at least 1000 non-members" in n for n in m["notes"])
    assert 0.5 < m["balanced_accuracy"] < 1
    same = paired_auc_difference(members, non_members, members + 1e-9, non_members, bootstrap=50)
    assert abs(same["auc_difference"]) < 1e-9 and not same["distinguishable"]
    shifted = paired_auc_difference(members, non_members, members - 1, non_members, bootstrap=50)
    assert shifted["distinguishable"] and shifted["auc_difference"] > 0.2


def test_challenge_epsilon_is_small_for_one_population_and_capped_for_two():
    rng = np.random.default_rng(0)
    same = per_example_epsilon(rng.normal(0, 1, (64, 20)), rng.normal(0, 1, (64, 20)))
    apart = per_example_epsilon(rng.normal(10, 1, (64, 20)), rng.normal(0, 1, (64, 20)))
    assert same.mean() < 1.5
    np.testing.assert_allclose(apart, epsilon_cap(64))
    assert forgetting_quality(np.zeros(5)) == 1.0 and forgetting_quality(apart) < 0.01


def test_every_reference_attack_has_its_own_validated_config_settable_from_the_audit():
    """Per-component configs: each attack's Config fields are ``miunlearn audit`` keys, validated by the attack."""
    import dataclasses

    from miunlearn.audit.strong import StrongAuditConfig
    from miunlearn.errors import MiunlearnError

    audit_keys = {f.name for f in dataclasses.fields(StrongAuditConfig)}
    for name in REFERENCE_ATTACKS.names():
        cls = REFERENCE_ATTACKS.get(name)
        assert {f.name for f in dataclasses.fields(cls.Config)} <= audit_keys, name
        assert isinstance(StrongAuditConfig().build_attack(name).config, cls.Config)
    with pytest.raises(MiunlearnError, match="unknown variance 'wide'"):
        StrongAuditConfig(attacks=["lira-offline"], variance="wide").validate()
    with pytest.raises(MiunlearnError, match="rmia_gamma must be positive"):
        REFERENCE_ATTACKS.get("rmia-online")(rmia_gamma=0.0)
    with pytest.raises(MiunlearnError, match="unknown config key 'lira-online.gamma'"):
        REFERENCE_ATTACKS.get("lira-online")(gamma=2.0)
