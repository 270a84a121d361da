"""Method-specific behaviour of the baselines and the sequential-requests scenario."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import blobs_overrides
from miunlearn import MiunlearnError, build_model, load_config, run_experiment, unlearn
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.unlearning import UnlearningRequest, build_method
from miunlearn.unlearning.fisher import diagonal_fisher
from test_unlearning import request_parts  # noqa: F401  (the shared tiny memorised-set fixture)


@pytest.fixture(scope="module")
def parts(request_parts):  # noqa: F811
    return dict(request_parts)


def test_salun_leaves_masked_out_weights_bit_for_bit_unchanged(parts):
    """Weight decay and momentum included: SGD's own decay would shrink every weight."""
    config = {"weight_decay": 0.05, "momentum": 0.9, "epochs": 3, "mask_fraction": 0.3}
    model = parts["model"]
    result = unlearn(model, parts["forget"], parts["retain"], "salun", config, seed=3, recipe=parts["recipe"])
    method = build_method("salun", config)
    masks = method.masks(copy.deepcopy(model).train(), UnlearningRequest(parts["forget"], parts["retain"],
                                                                         recipe=parts["recipe"]))
    kept = moved = 0
    for before, after, mask in zip(model.parameters(), result.model.parameters(), masks):
        frozen = mask == 0
        assert torch.equal(before[frozen], after[frozen])
        kept += int(frozen.sum())
        moved += int((before[~frozen] != after[~frozen]).sum())
    total = sum(p.numel() for p in model.parameters())
    assert kept == pytest.approx(0.7 * total, abs=0.01 * total)
    assert moved > 0.5 * (total - kept), "the salient weights must actually be trained"


def test_fisher_batched_per_sample_gradients_match_a_naive_loop():
    torch.manual_seed(0)
    model = build_model("cnn", DatasetInfo("tiny", (1, 8, 8), 3, is_image=True), 4)
    model.eval()
    data = TensorData(torch.randn(7, 1, 8, 8), torch.randint(0, 3, (7,)))
    fast = diagonal_fisher(model, data, batch_size=3)  # 3 does not divide 7: the ragged last batch counts too
    naive = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for i in range(len(data)):
        log_p = F.log_softmax(model(data.x[i:i + 1]), dim=1)[0]
        for k in range(3):
            grads = torch.autograd.grad(log_p[k], list(model.parameters()), retain_graph=True)
            for (name, _), g in zip(model.named_parameters(), grads):
                naive[name] += log_p[k].exp().detach() * g.pow(2) / len(data)
    for name in naive:
        torch.testing.assert_close(fast[name], naive[name], rtol=1e-4, atol=1e-9)


def test_fisher_zeroes_the_classifier_rows_of_a_forgotten_class(parts):
    forget_class = int(parts["forget"].y[0])
    keep = parts["retain"].y != forget_class
    retain = TensorData(parts["retain"].x[keep], parts["retain"].y[keep])
    forget = TensorData(parts["retain"].x[~keep], parts["retain"].y[~keep])
    result = unlearn(parts["model"], forget, retain, "fisher", recipe=parts["recipe"])
    head = list(result.model.parameters())[-2]
    assert head[forget_class].abs().max() < 0.1  # mean 0, std 1e-2: the class is gone
    assert float((result.model(forget.x).argmax(1) == forget_class).float().mean()) < 0.1


@pytest.mark.parametrize("method", ["gradient-ascent", "boundary-shrink"])
def test_retain_free_methods_need_only_the_forget_set(parts, method):
    result = unlearn(parts["model"], parts["forget"], None, method, recipe=parts["recipe"])
    assert result.record.stop_reason


@pytest.mark.parametrize("method", ["finetune", "neggrad-plus", "random-label", "fisher", "scrub", "salun", "ssd",
                                    "l1-sparse", "bad-teacher"])
def test_methods_that_need_retain_say_so(parts, method):
    with pytest.raises(MiunlearnError, match=f"method '{method}' needs retain"):
        unlearn(parts["model"], parts["forget"], None, method)


@pytest.mark.parametrize("method,params,message", [
    ("finetune", {"lr": 0}, "finetune.lr must be positive"),
    ("finetune", {"epochs": 0}, "finetune.epochs must be at least 1"),
    ("gradient-ascent", {"momentum": -0.1}, "gradient-ascent.momentum must not be negative"),
    ("neggrad-plus", {"alpha": 1.0}, r"neggrad-plus.alpha must be in \(0, 1\)"),
    ("random-label", {"batch_size": 0}, "random-label.batch_size must be at least 1"),
    ("fisher", {"alpha": -1e-6}, "fisher.alpha must be positive"),
    ("scrub", {"max_epochs": 5}, r"scrub.max_epochs must be at most epochs \(3\)"),
    ("scrub", {"temperature": 0}, "scrub.temperature must be positive"),
    ("salun", {"mask_fraction": 1.5}, r"salun.mask_fraction must be in \(0, 1\)"),
    ("ssd", {"selection_weighting": 0}, "ssd.selection_weighting must be positive"),
    ("l1-sparse", {"alpha": -1}, "l1-sparse.alpha must not be negative"),
    ("bad-teacher", {"retain_fraction": 2}, r"bad-teacher.retain_fraction must be in \[0, 1\]"),
    ("boundary-shrink", {"bound": 0}, "boundary-shrink.bound must be positive"),
    ("ssd", {"dampening": 1}, "did you mean unlearn.params.ssd.dampening_constant"),
])
def test_bad_hyper_parameters_are_one_line_errors(parts, method, params, message):
    with pytest.raises(MiunlearnError, match=message):
        unlearn(parts["model"], parts["forget"], parts["retain"], method, params)


def test_class_wise_forgetting_of_every_class_is_rejected(blobs_npz, tmp_path):
    config = load_config(None, [*blobs_overrides(blobs_npz), "forget.mode=class", "forget.classes=[0,1,2,3,4]",
                                "unlearn.methods=[scrub,retrain]"])
    with pytest.raises(MiunlearnError, match="cannot forget every class"):
        run_experiment(config, tmp_path / "run")


@pytest.mark.parametrize("requests,message", [(0, "forget.requests must be at least 1"),
                                              (10_000, "forget.requests=10000 but the forget set has only")])
def test_bad_request_counts(blobs_npz, tmp_path, requests, message):
    config = load_config(None, [*blobs_overrides(blobs_npz), f"forget.requests={requests}",
                                "unlearn.methods=[finetune,retrain]"])
    with pytest.raises(MiunlearnError, match=message):
        run_experiment(config, tmp_path / "run")


def test_sequential_requests_are_applied_one_after_another(blobs_npz, tmp_path):
    config = load_config(None, [*blobs_overrides(blobs_npz), "forget.requests=3",
                                "unlearn.methods=[random-label,retrain]"])
    run = run_experiment(config, tmp_path / "run")
    sizes = [r["forget_size"] for r in run.requests]
    assert len(run.requests) == 3 and max(sizes) - min(sizes) <= 1
    assert [r["forgotten_total"] for r in run.requests] == [sum(sizes[:i + 1]) for i in range(3)]
    assert len({r["retain_size"] + r["forgotten_total"] for r in run.requests}) == 1, "D_r shrinks by each request"
    for request in run.requests:
        assert {"original", "random-label", "retrain"} == set(request["metrics"])
        assert "avg_gap" in request["metrics"]["random-label"] and request["metrics"]["retrain"]["avg_gap"] == 0
    assert run.metrics == run.requests[-1]["metrics"]
    assert run.timings["random-label"] == pytest.approx(
        sum(r["metrics"]["random-label"]["seconds"] for r in run.requests))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["request"] for r in saved["requests"]] == [1, 2, 3]
    table = (tmp_path / "run" / "table.md").read_text()
    assert table.count("after request") == 3


@pytest.mark.parametrize("method", ["finetune", "gradient-ascent", "neggrad-plus", "random-label", "bad-teacher",
                                    "scrub", "boundary-shrink", "ssd", "fisher", "l1-sparse", "salun"])
def test_baselines_place_image_models_as_remi_does(method):
    """One placement path: every method stores an image model channels-last (the recipe's default), as ReMI and
    training do, so speed ratios compare methods, not memory formats."""
    from miunlearn.config import TrainConfig
    from miunlearn.training.loop import is_channels_last

    torch.manual_seed(0)
    info = DatasetInfo("tiny", (3, 8, 8), 3, is_image=True)
    data = TensorData(torch.randn(24, 3, 8, 8), torch.arange(24) % 3)
    forget, retain = data.subset(range(6)), data.subset(range(6, 24))
    params = {"ssd": {}, "fisher": {}, "scrub": {"epochs": 1, "max_epochs": 1}}.get(method, {"epochs": 1})
    recipe = TrainConfig(progress=False)
    placed = unlearn(build_model("cnn", info, 4), forget, retain, method, params, seed=0, recipe=recipe,
                     reference=retain)
    assert is_channels_last(placed.model)
    plain = unlearn(build_model("cnn", info, 4), forget, retain, method, params, seed=0,
                    recipe=TrainConfig(progress=False, channels_last=False), reference=retain)
    assert not is_channels_last(plain.model)
