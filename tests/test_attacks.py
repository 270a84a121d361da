import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from miunlearn import APPROXIMATORS, AUDIT_ATTACKS, build_model, fit_approximator, load_approximator, train_model
from miunlearn.audit import AuditInputs
from miunlearn.config import ApproximatorConfig, TrainConfig
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.guidance import train_shadows
from miunlearn.statistics import logit_confidence, modified_entropy

RECIPE = TrainConfig(epochs=40, weight_decay=0, progress=False)


@pytest.fixture(scope="module")
def overfit(blobs_npz):
    """A target that memorises 400 noisy samples, its non-members, and shadow outputs from other data."""
    with np.load(blobs_npz) as f:
        x, y = torch.from_numpy(f["x"]), torch.from_numpy(f["y"])
    data = TensorData(x, y)
    members, non_members, shadow = data.subset(range(400)), data.subset(range(400, 800)), data.subset(range(800, 1600))
    info = DatasetInfo("blobs", (x.shape[1],), 5, is_image=False)
    torch.manual_seed(0)
    target = build_model("mlp", info, 128)
    train_model(target, members, RECIPE)
    outputs = train_shadows(lambda: build_model("mlp", info, 128), shadow, RECIPE, num_shadows=1, seed=0)
    return target, members, non_members, outputs


#: Approximators fitted on shadow outputs (``per-example`` is fitted on its own OUT models: tests/test_unlearning.py).
SHADOW_FITTED = [n for n in APPROXIMATORS.names() if not hasattr(APPROXIMATORS.get(n), "out_statistics")]


@pytest.mark.parametrize("name", SHADOW_FITTED)
def test_approximator_separates_members_of_an_overfit_target(overfit, name, tmp_path):
    target, members, non_members, outputs = overfit
    approximator = fit_approximator(ApproximatorConfig(name=name, attack_epochs=100), outputs)
    with torch.no_grad():
        scores = [approximator(target(d.x), d.y).numpy() for d in (members, non_members)]
    labels = np.r_[np.ones(len(scores[0])), np.zeros(len(scores[1]))]
    assert roc_auc_score(labels, np.r_[scores[0], scores[1]]) > 0.6

    approximator.save(tmp_path / "a.safetensors")
    reloaded = load_approximator(tmp_path / "a.safetensors")
    with torch.no_grad():
        assert torch.allclose(reloaded(target(members.x), members.y), approximator(target(members.x), members.y))


@pytest.mark.parametrize("name", SHADOW_FITTED)
def test_approximator_is_differentiable_and_frozen(overfit, name):
    _, members, _, outputs = overfit
    approximator = fit_approximator(ApproximatorConfig(name=name, attack_epochs=5), outputs)
    logits = torch.randn(8, 5, requires_grad=True)
    approximator(logits, members.y[:8]).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in approximator.parameters())


def test_logit_confidence_is_log_odds_of_true_class():
    logits = torch.randn(50, 7, dtype=torch.float64) * 5
    labels = torch.randint(0, 7, (50,))
    p = torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    assert torch.allclose(logit_confidence(logits, labels), torch.log(p) - torch.log1p(-p))


def test_logit_confidence_is_stable_for_confident_outputs():
    logits = torch.tensor([[60.0, 0.0, 0.0]])
    assert logit_confidence(logits, torch.tensor([0])).item() == pytest.approx(60.0 - np.log(2), abs=1e-4)


def test_modified_entropy_matches_song_mittal_formula():
    p = np.array([0.7, 0.2, 0.1])
    expected = -(1 - 0.7) * np.log(0.7) - 0.2 * np.log(0.8) - 0.1 * np.log(0.9)
    got = modified_entropy(torch.log(torch.from_numpy(p[None])), torch.tensor([0]))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def _inputs(member_shift: float) -> AuditInputs:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=g)

    def logits(shift: float) -> torch.Tensor:
        z = torch.randn(400, 4, generator=g)
        return z.scatter_add(1, labels[:, None], torch.full((400, 1), 1.0 + shift))

    return AuditInputs(logits(member_shift), labels, logits(0.0), labels, logits(member_shift), labels)


@pytest.mark.parametrize("name", AUDIT_ATTACKS.names())
def test_audit_attacks_find_leakage_and_not_noise(name):
    leaky, clean = AUDIT_ATTACKS.get(name)()(_inputs(3.0), 0.01), AUDIT_ATTACKS.get(name)()(_inputs(0.0), 0.01)
    if "auc" in leaky:
        assert leaky["auc"] > 0.75 and abs(clean["auc"] - 0.5) < 0.08
    else:  # MIA-efficacy: share of D_f called non-member
        assert leaky["efficacy"] < 30 and 25 < clean["efficacy"] < 75
