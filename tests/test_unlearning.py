import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from miunlearn import METHODS, MiunlearnError, build_model, fit_approximator, train_model, unlearn
from miunlearn.audit import accuracy
from miunlearn.config import ApproximatorConfig, TrainConfig
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.guidance import load_approximator, train_shadows
from miunlearn.guidance.per_example import PerExampleOut
from miunlearn.statistics import cross_entropy, logit_confidence
from miunlearn.training.executors import ModelSpec
from miunlearn.unlearning.remi import ClassObjective, RemiConfig, distribution_match, kl_anchor, logit_anchor

RECIPE = TrainConfig(epochs=40, weight_decay=0, progress=False)

#: Defaults follow the papers and are sized for 50k-sample CIFAR-10, where an epoch is hundreds of steps.
#: On this 500-sample memorised set (training loss ~0.01) these take a handful of steps with vanishing
#: gradients and leave D_f memorised, so the test scales their step size as each paper scales it per
#: dataset (the values that pass here took our CIFAR-10 CNN to 10-40% accuracy as defaults: measured).
FIXTURE_PARAMS = {
    "gradient-ascent": {"lr": 0.1},
    "scrub": {"lr": 0.01, "forget_batch": 8, "retain_batch": 32},
    "bad-teacher": {"lr": 5e-3},
    "boundary-shrink": {"lr": 1e-3, "bound": 0.3},
    # Fine-tuning on D_r has no gradient to forget a memorised set with: at their 2-epoch defaults these
    # change nothing measurable here; given the budget of the papers' CIFAR runs, D_f's loss-attack AUC falls.
    "finetune": {"lr": 0.1, "epochs": 10},
    "l1-sparse": {"lr": 0.1, "epochs": 10},
    "neggrad-plus": {"lr": 0.1, "epochs": 10},
}


def _loss_auc(model, members, non_members) -> float:
    """AUC of the loss attack, D_f against held-out data no method sees."""
    with torch.no_grad():
        scores = [-cross_entropy(model(d.x), d.y).numpy() for d in (members, non_members)]
    return roc_auc_score(np.r_[np.ones(len(scores[0])), np.zeros(len(scores[1]))], np.r_[scores[0], scores[1]])


@pytest.fixture(scope="module")
def request_parts(blobs_npz):
    with np.load(blobs_npz) as f:
        data = TensorData(torch.from_numpy(f["x"]), torch.from_numpy(f["y"]))
    info = DatasetInfo("blobs", (data.x.shape[1],), 5, is_image=False)
    train, reference, shadow = data.subset(range(500)), data.subset(range(500, 800)), data.subset(range(800, 1600))
    forget, retain = train.subset(range(50)), train.subset(range(50, 500))
    torch.manual_seed(0)
    target = build_model("mlp", info, 128)
    train_model(target, train, RECIPE)
    return {"model": target, "forget": forget, "retain": retain, "reference": reference,
            "approximator": per_example_approximator(info, shadow, reference), "recipe": RECIPE}


def per_example_approximator(info: DatasetInfo, shadow: TensorData, reference: TensorData) -> PerExampleOut:
    """Two OUT models at D_train's size (500) on overlapping parts of D_shadow; calibration: half of D_ref."""
    spec = ModelSpec("mlp", info, 128)
    parts = [shadow.subset(range(0, 500)), shadow.subset(range(300, 800))]
    models = [_trained(spec, part, k) for k, part in enumerate(parts)]
    return PerExampleOut.from_models(ApproximatorConfig(num_shadows=2), spec, models,
                                     reference.subset(range(150)), parts, info.num_classes)


def _trained(spec: ModelSpec, part: TensorData, k: int):
    torch.manual_seed(100 + k)
    model = spec()
    train_model(model, part, replace(RECIPE, seed=100 + k))
    return model.eval()


@pytest.fixture(scope="module")
def shadow_nn(blobs_npz, request_parts):
    """The spec's default approximator (an MLP attack on one shadow model), for the population objective."""
    with np.load(blobs_npz) as f:
        data = TensorData(torch.from_numpy(f["x"]), torch.from_numpy(f["y"]))
    info = DatasetInfo("blobs", (data.x.shape[1],), 5, is_image=False)
    outputs = train_shadows(lambda: build_model("mlp", info, 128), data.subset(range(800, 1600)), RECIPE, 1, seed=0)
    return fit_approximator(ApproximatorConfig(name="shadow-nn", attack_epochs=100), outputs)


@pytest.fixture(scope="module")
def held_out(blobs_npz):
    """Non-members no method sees (D_ref above is the unlearner's; this is the test's own audit set)."""
    with np.load(blobs_npz) as f:
        return TensorData(torch.from_numpy(f["x"]), torch.from_numpy(f["y"])).subset(range(1600, 2000))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", METHODS.names())
def test_method_contract(method, request_parts, held_out):
    parts = dict(request_parts)
    model = parts.pop("model")
    before = _state(model)
    config = FIXTURE_PARAMS.get(method)
    first = unlearn(model, method=method, config=config, seed=1, **parts)
    second = unlearn(model, method=method, config=config, seed=1, **parts)

    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "input model was modified"
    assert type(first.model) is type(model)
    assert {k: v.shape for k, v in first.model.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert all(torch.equal(v, second.model.state_dict()[k]) for k, v in first.model.state_dict().items()), \
        "not deterministic for a seed"
    assert first.record.method == method and first.record.seconds > 0 and first.record.stop_reason
    assert first.record.samples_trained + first.record.samples_inferred > 0, "no work counted"
    assert not model._forward_pre_hooks and not first.model._forward_pre_hooks, "the work counter's hook is left"

    with torch.no_grad():
        retain_before = accuracy(model(parts["retain"].x), parts["retain"].y)
        retain_after = accuracy(first.model(parts["retain"].x), parts["retain"].y)
        forget_before = accuracy(model(parts["forget"].x), parts["forget"].y)
        forget_after = accuracy(first.model(parts["forget"].x), parts["forget"].y)
    assert retain_after >= retain_before - 0.05, "retain accuracy must hold within 5 points"
    auc_before, auc_after = (_loss_auc(m, parts["forget"], held_out) for m in (model, first.model))
    forgets = forget_after < forget_before or auc_after < auc_before - 0.01
    assert forgets, "forget-set membership (accuracy or loss-attack AUC) of a memorised set must drop"


def test_remi_population_objective_records_the_three_loss_terms(request_parts, shadow_nn):
    parts = dict(request_parts, approximator=shadow_nn)
    result = unlearn(parts.pop("model"), method="remi", config={"objective": "population", "min_epochs": 1}, **parts)
    for row in result.record.history:
        assert {"ce", "leakage", "kl", "forget_member_prob", "ref_member_prob", "kl_full"} <= set(row)
    first, last = result.record.history[0], result.record.history[-1]
    assert last["forget_member_prob"] < first["forget_member_prob"]


def test_remi_needs_reference_and_approximator(request_parts):
    parts = dict(request_parts)
    with pytest.raises(MiunlearnError, match="needs reference, approximator"):
        unlearn(parts["model"], parts["forget"], parts["retain"], method="remi")


@pytest.mark.parametrize("params,message", [
    ({"alpha": -1}, "alpha must not be negative"), ({"beta": -0.5}, "beta must not be negative"),
    ({"lr": -0.1}, "lr must not be negative"), ({"epochs": 0}, "epochs must be at least 1"),
    ({"alpah": 1}, "did you mean unlearn.params.remi.alpha"),
    ({"targets": "sorted"}, "unknown remi.targets 'sorted'; valid: out-mean, rank, random"),
    ({"tolerance": 0}, "remi.tolerance must be positive"),
    ({"anchor": "l2"}, "unknown remi anchor 'l2'; valid: kl, logits"),
])
def test_remi_rejects_bad_hyper_parameters(request_parts, params, message):
    parts = dict(request_parts)
    with pytest.raises(MiunlearnError, match=message):
        unlearn(parts.pop("model"), method="remi", config=params, **parts)


def test_remi_moves_audit_toward_retrain_and_keeps_accuracy(blobs_run):
    """The behaviour that matters, on a full experiment: forget-set audit AUCs move from the original's
    toward the retrained model's, retain accuracy holds, forget accuracy does not collapse."""
    m = blobs_run.metrics
    original, remi, retrain = m["original"], m["remi"], m["retrain"]
    for attack in ("loss_auc", "entropy_auc", "m_entropy_auc"):
        assert abs(remi[attack] - retrain[attack]) < 0.5 * abs(original[attack] - retrain[attack]), attack
    assert remi["retain_acc"] >= original["retain_acc"] - 0.03
    assert remi["forget_acc"] >= retrain["forget_acc"] - 0.15
    assert remi["avg_gap"] < original["avg_gap"]
    assert remi["pinsker_bound"] < original["pinsker_bound"]
    assert remi["js_to_retrain"] < original["js_to_retrain"]


def test_the_logit_anchor_holds_the_confidence_that_the_kl_anchor_barely_sees():
    original = torch.tensor([[12.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.0, -1.0]])
    targets = torch.log_softmax(original, 1)
    assert logit_anchor(original + torch.tensor([[3.0], [-5.0]]), targets) < 1e-10, "a per-sample shift changes nothing"
    confident, halved = targets[:1], original[:1] / 2  # the same argmax, s down from 10.9 to 4.9
    assert logit_anchor(halved, confident) > 100 * kl_anchor(halved, confident)


def test_the_logit_anchor_moves_never_seen_samples_less_than_the_kl_anchor(request_parts, held_out):
    """Per unit of change in D_f's confidence, ``s`` on samples nobody trained on (which the anchor never saw either)
    moves less with the logit anchor: the original's confidence there is what a retrain keeps."""
    parts = dict(request_parts)
    model = parts.pop("model")
    moved = {}
    for anchor in ("logits", "kl"):
        config = {"anchor": anchor, "gamma": 3.0, "min_epochs": 10, "epochs": 10, "lr": 1e-3}
        after = unlearn(model, method="remi", config=config, **parts).model
        moved[anchor] = [float((_s(after, d) - _s(model, d)).abs().mean()) for d in (held_out, parts["forget"])]
    collateral = {anchor: held / forget for anchor, (held, forget) in moved.items()}
    assert collateral["logits"] < 0.8 * collateral["kl"]


def test_remi_frozen_layers_keep_their_weights_and_the_rest_moves(request_parts):
    parts = dict(request_parts)
    model = parts.pop("model")
    names = [name for name, _ in model.named_parameters()]
    frozen_prefix = names[0].split(".")[0] + "."
    result = unlearn(model, method="remi", config={"frozen": [frozen_prefix], "min_epochs": 2}, **parts)
    before, after = dict(model.named_parameters()), dict(result.model.named_parameters())
    for name in names:
        unchanged = torch.equal(before[name], after[name])
        assert unchanged == name.startswith(frozen_prefix), name
        assert after[name].requires_grad  # the returned model is trainable as usual


def test_remi_frozen_names_must_exist(request_parts):
    parts = dict(request_parts)
    with pytest.raises(MiunlearnError, match="remi.frozen: no parameter named 'layer9'"):
        unlearn(parts.pop("model"), method="remi", config={"frozen": ["layer9"]}, **parts)


def test_retrain_starts_from_its_own_initialisation():
    """The gold standard is an independent retraining: its initial weights are not the original's, which the
    pipeline draws after the same seed number (``train.seed`` = ``seed`` = 0 by default)."""
    from miunlearn.unlearning.retrain import independent_seed, reinitialise

    info = DatasetInfo("blobs", (8,), 5, is_image=False)
    torch.manual_seed(0)
    original_init = build_model("mlp", info)
    retrain_init = reinitialise(build_model("mlp", info), independent_seed(0))
    for a, b in zip(original_init.state_dict().values(), retrain_init.state_dict().values()):
        if a.is_floating_point() and a.numel() > 1:
            assert not torch.equal(a, b)
    assert independent_seed(0) != independent_seed(1)


def _s(model, data):
    with torch.no_grad():
        return logit_confidence(model(data.x), data.y)


def test_per_example_approximator_predicts_a_new_out_models_statistic(request_parts, blobs_npz):
    """μ_out(x) tracks the ``s`` of a model it never saw (trained without D_train) far better than one mean does."""
    with np.load(blobs_npz) as f:
        data = TensorData(torch.from_numpy(f["x"]), torch.from_numpy(f["y"]))
    info = DatasetInfo("blobs", (data.x.shape[1],), 5, is_image=False)
    new_out = _trained(ModelSpec("mlp", info, 128), data.subset(range(1000, 1500)), 7)
    train = TensorData(torch.cat([request_parts["forget"].x, request_parts["retain"].x]),
                       torch.cat([request_parts["forget"].y, request_parts["retain"].y]))
    mu, sigma = request_parts["approximator"].out_statistics(train)
    s = _s(new_out, train)
    per_example_error, pooled_error = (s - mu).abs().mean(), (s - mu.mean()).abs().mean()
    assert per_example_error < 0.6 * pooled_error
    assert 0.2 < float(((s - mu) / sigma).std()) < 5, "σ_out is on the scale of a new model's deviations"


@pytest.mark.parametrize("targets", ["out-mean", "rank", "random"])
def test_remi_per_example_moves_forget_z_scores_to_held_out_ones_without_collapsing_accuracy(request_parts, held_out,
                                                                                             targets):
    """OUT-mean targets pull each forgotten sample to its own OUT mean (z → 0, below the held-out spread);
    calibrated ones make D_f's z-scores distributed like the held-out samples'."""
    parts = dict(request_parts)
    model = parts.pop("model")
    approximator = parts["approximator"]
    result = unlearn(model, method="remi", config={"targets": targets}, **parts)
    mu_f, sigma = approximator.out_statistics(parts["forget"])
    mu_cal, _ = approximator.out_statistics(approximator.calibration)

    def z_scores(m):
        return (_s(m, parts["forget"]) - mu_f) / sigma, (_s(m, approximator.calibration) - mu_cal) / sigma

    if targets == "out-mean":
        (before, _), (after, z_cal) = z_scores(model), z_scores(result.model)
        assert (after**2).mean() < 0.25 * (before**2).mean()
        assert after.quantile(0.95) < z_cal.quantile(0.95), "no member-like tail left"
    else:
        assert distribution_match(*z_scores(result.model))["distance"] < 0.5 * distribution_match(
            *z_scores(model))["distance"]
    with torch.no_grad():
        forget_acc = accuracy(result.model(parts["forget"].x), parts["forget"].y)
        held_out_acc = accuracy(model(held_out.x), held_out.y)
    assert forget_acc >= held_out_acc - 0.15, "forgetting means non-member-like, not wrong"
    assert result.record.history[-1]["distance"] >= 0
    assert any(key in result.record.stop_reason for key in ("Anderson–Darling", "Mann–Whitney", "closest", "budget"))


def test_remi_stops_at_once_on_a_request_that_is_already_met(request_parts, held_out):
    """Samples the target never saw are already "forgotten": the stopping rule says so within two passes."""
    parts = dict(request_parts, forget=held_out.subset(range(100)))
    result = unlearn(parts.pop("model"), method="remi", **parts)
    assert "Anderson–Darling" in result.record.stop_reason
    assert result.record.history[-1]["epoch"] <= 2


def test_remi_forgets_a_whole_class_like_retraining(request_parts):
    parts = dict(request_parts)
    model = parts.pop("model")
    train = TensorData(torch.cat([parts["forget"].x, parts["retain"].x]), torch.cat([parts["forget"].y,
                                                                                      parts["retain"].y]))
    forget, retain = train.subset(np.flatnonzero(train.y == 0)), train.subset(np.flatnonzero(train.y != 0))
    parts.update(forget=forget, retain=retain)
    remi = unlearn(model, method="remi", **parts)
    retrain = unlearn(model, method="retrain", **{k: parts[k] for k in ("forget", "retain", "recipe")})
    with torch.no_grad():
        acc = {name: (accuracy(m(forget.x), forget.y), accuracy(m(retain.x), retain.y))
               for name, m in (("original", model), ("remi", remi.model), ("retrain", retrain.model))}
    assert acc["original"][0] > 0.9 and acc["retrain"][0] < 0.05
    assert abs(acc["remi"][0] - acc["retrain"][0]) <= 0.05, acc
    assert acc["remi"][1] >= acc["original"][1] - 0.05, acc
    assert "names the forgotten classes" in remi.record.stop_reason
    assert "no less than by the original" in remi.record.stop_reason
    last = remi.record.history[-1]
    assert last["kept_p"] >= RemiConfig().level and last["kept_acc"] >= last["original_kept_acc"] - 0.05


def test_a_class_request_does_not_stop_while_the_other_classes_lost_accuracy():
    """Forgetting a class costs the other classes accuracy in the first steps; a retrained model has not lost it."""
    objective = ClassObjective.__new__(ClassObjective)
    objective.config = RemiConfig()
    status = {"named_p": 0.9, "forget_named": 0.0, "held_out_named": 0.0, "kept_acc": 0.80,
              "original_kept_acc": 0.95, "kept_p": 1e-6}
    assert objective.reached(status) is None
    assert "no less than by the original" in objective.reached(status | {"kept_acc": 0.95, "kept_p": 0.6})


def test_per_example_approximator_round_trips_through_its_file(request_parts, tmp_path):
    approximator = request_parts["approximator"]
    approximator.save(tmp_path / "a.safetensors")
    reloaded = load_approximator(tmp_path / "a.safetensors")
    forget = request_parts["forget"]
    for got, want in zip(reloaded.out_statistics(forget), approximator.out_statistics(forget)):
        assert torch.allclose(got, want)
    assert torch.equal(reloaded.calibration.x, approximator.calibration.x)
    logits = torch.randn(8, 5, requires_grad=True)
    reloaded(logits, forget.y[:8]).sum().backward()
    assert logits.grad.abs().sum() > 0 and not any(p.requires_grad for p in reloaded.parameters())


def test_remi_acts_on_a_one_sample_request(request_parts):
    """One person's deletion is the commonest request: ReMI must take steps on it, not skip batches of one."""
    parts = dict(request_parts, forget=request_parts["forget"].subset([0]))
    model = parts.pop("model")
    before = _s(model, parts["forget"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = unlearn(model, method="remi", config={"min_epochs": 1, "epochs": 1}, **parts)
    assert result.record.history[-1]["epoch"] >= 1
    assert _s(result.model, parts["forget"]) < before


def test_remi_population_objective_refuses_a_one_sample_request_with_a_way_out(request_parts, shadow_nn):
    parts = dict(request_parts, approximator=shadow_nn, forget=request_parts["forget"].subset([0]))
    with pytest.raises(MiunlearnError, match="needs at least 2 forgotten samples.*per-example"):
        unlearn(parts.pop("model"), method="remi", config={"objective": "population"}, **parts)


def test_remi_accuracy_check_brings_forget_accuracy_down_toward_held_out_samples(request_parts, held_out):
    """Matching z-scores to held-out ones (rank targets) can leave D_f classified as the original did; the check
    keeps going until D_f is classified right no more often than held-out samples would be. (With the default
    logit anchor, ReMI stops here at its closest model either way, at the same accuracy: the KL anchor leaves
    the argmax the room this test needs.)"""
    parts = dict(request_parts)
    model = parts.pop("model")
    config = {"targets": "rank", "distill": 1.0, "anchor": "kl"}
    runs = {check: unlearn(model, method="remi", config=config | {"accuracy_check": check}, **parts)
            for check in (False, True)}
    with torch.no_grad():
        acc = {check: accuracy(r.model(parts["forget"].x), parts["forget"].y) for check, r in runs.items()}
        held_out_acc = accuracy(model(held_out.x), held_out.y)
    assert {"forget_acc", "expected_acc", "acc_p"} <= set(runs[True].record.history[-1])
    assert acc[True] < acc[False] and acc[True] >= held_out_acc - 0.15
