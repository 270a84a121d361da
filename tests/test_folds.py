"""The ``folds`` approximator: every training sample is predicted by the one model that left its fold out."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from miunlearn import MiunlearnError, build_model, train_model, unlearn
from miunlearn.audit import accuracy
from miunlearn.config import ApproximatorConfig, RunConfig, TrainConfig
from miunlearn.data import DatasetInfo, Splits, TensorData
from miunlearn.guidance import approximator_problems, load_approximator
from miunlearn.guidance.folds import FoldOut, fold_plan, sample_hashes
from miunlearn.guidance.per_example import PerExampleOut
from miunlearn.statistics import logit_confidence
from miunlearn.training.executors import ModelSpec

RECIPE = TrainConfig(epochs=40, weight_decay=0, progress=False)
K = 4


@pytest.fixture(scope="module")
def parts(blobs_npz):
    with np.load(blobs_npz) as f:
        data = TensorData(torch.from_numpy(f["x"]), torch.from_numpy(f["y"]))
    info = DatasetInfo("blobs", (data.x.shape[1],), 5, is_image=False)
    spec = ModelSpec("mlp", info, 128)
    train, reference, shadow = data.subset(range(500)), data.subset(range(500, 800)), data.subset(range(800, 1600))
    calibration = data.subset(range(1700, 2000))  # held out from everything, the anchor's reference samples too
    torch.manual_seed(0)
    target = build_model("mlp", info, 128)
    train_model(target, train, RECIPE)
    fold = np.random.default_rng(0).permutation(len(train)) % K
    folds = FoldOut.from_folds(ApproximatorConfig(num_shadows=K), spec,
                               [_trained(spec, train.subset(np.flatnonzero(fold != k)), 10 + k) for k in range(K)],
                               train, fold, calibration, info.num_classes)
    halves = [shadow.subset(range(0, 500)), shadow.subset(range(300, 800))]
    disjoint = PerExampleOut.from_models(ApproximatorConfig(name="per-example", num_shadows=2), spec,
                                         [_trained(spec, h, k) for k, h in enumerate(halves)],
                                         calibration, halves, info.num_classes)
    forget, retain = train.subset(range(50)), train.subset(range(50, 500))
    retrains = [_trained(spec, retain, 50 + r) for r in range(3)]
    return {"train": train, "fold": fold, "folds": folds, "disjoint": disjoint, "target": target, "forget": forget,
            "retain": retain, "reference": reference, "retrains": retrains, "held_out": data.subset(range(1600, 1700)),
            "spec": spec, "shadow": shadow}


def _trained(spec: ModelSpec, part: TensorData, seed: int):
    torch.manual_seed(seed)
    model = spec()
    train_model(model, part, replace(RECIPE, seed=seed))
    return model.eval()


def _s(model, data):
    with torch.no_grad():
        return logit_confidence(model(data.x), data.y)


def test_each_training_sample_is_predicted_by_the_model_that_never_saw_it(parts):
    folds, train = parts["folds"], parts["train"]
    assert torch.equal(folds.out_model_of(train), torch.as_tensor(parts["fold"]))
    shuffled = np.random.default_rng(1).permutation(len(train))[:64]  # found by content, in any order
    assert torch.equal(folds.out_model_of(train.subset(shuffled)), torch.as_tensor(parts["fold"][shuffled]))
    mu = folds.predict_out(train).mu
    for k, model in enumerate(folds.out_models):
        mine = parts["fold"] == k
        assert torch.allclose(mu[mine], _s(model, train.subset(np.flatnonzero(mine))), atol=1e-5)
    other = folds.out_model_of(parts["held_out"])  # never trained on by any model: one chosen by content
    assert set(other.tolist()) <= set(range(K)) and torch.equal(other, folds.out_model_of(parts["held_out"]))
    assert len(set(other.tolist())) == K


def test_a_label_is_part_of_a_samples_identity(parts):
    sample = parts["train"].subset([0])
    relabelled = TensorData(sample.x, (sample.y + 1) % 5)
    assert sample_hashes(sample)[0] != sample_hashes(relabelled)[0]


def test_folds_predict_a_retrained_model_better_than_out_models_on_disjoint_data(parts):
    """The point of the folds: a model that saw the rest of D_train is nearer to a retrain on each forgotten sample
    than models that never saw D_train (measured on CIFAR-10, Fashion-MNIST and Location too: BENCHMARKS.md)."""
    forget = parts["forget"]
    retrained = torch.stack([_s(r, forget) for r in parts["retrains"]]).mean(0)  # less of one retrain's own noise
    error = {name: float((retrained - parts[name].predict_out(forget).mu).abs().mean())
             for name in ("folds", "disjoint")}
    assert error["folds"] < 0.9 * error["disjoint"], error


def test_remi_guided_by_folds_lands_nearer_a_retrain_than_guided_by_disjoint_out_models(parts):
    forget, retain = parts["forget"], parts["retain"]
    models = {"original": parts["target"]}
    for name in ("folds", "disjoint"):
        models[name] = unlearn(parts["target"], forget=forget, retain=retain, reference=parts["reference"],
                               approximator=parts[name], recipe=RECIPE, method="remi").model
    with torch.no_grad():
        acc = {name: accuracy(m(forget.x), forget.y) for name, m in models.items()}
        retrained = np.mean([accuracy(r(forget.x), forget.y) for r in parts["retrains"]])
        kept = accuracy(models["folds"](retain.x), retain.y)
    assert acc["original"] == 1.0 and retrained < 0.8
    assert abs(acc["folds"] - retrained) <= 0.1, (acc, retrained)
    assert kept >= 0.95
    distance = {name: np.mean([float((_s(m, forget) - _s(r, forget)).abs().mean()) for r in parts["retrains"]])
                for name, m in models.items()}
    assert distance["folds"] < 0.8 * distance["original"] and distance["folds"] < distance["disjoint"], distance


def test_folds_round_trip_through_their_file(parts, tmp_path):
    parts["folds"].save(tmp_path / "a.safetensors")
    reloaded = load_approximator(tmp_path / "a.safetensors")
    assert isinstance(reloaded, FoldOut)
    forget = parts["forget"]
    assert torch.equal(reloaded.out_model_of(forget), parts["folds"].out_model_of(forget))
    assert torch.allclose(reloaded.predict_out(forget).mu, parts["folds"].predict_out(forget).mu)


def test_fold_plan_leaves_each_fold_out_of_exactly_one_model():
    splits = Splits(train=np.arange(100, 203), audit=np.arange(0, 50), ref=np.arange(50, 80), shadow=np.arange(80, 100),
                    forget=np.arange(100, 110), test_size=10)
    plan = fold_plan(splits, 0.25, 3, seed=0)
    assert np.bincount(plan["fold"]).tolist() == [35, 34, 34]
    for k, order in enumerate(plan["orders"]):
        assert not np.isin(order, np.flatnonzero(plan["fold"] == k)).any()
    assert len({len(o) for o in plan["orders"]}) == 1, "equal sizes, so they can be trained together"
    assert np.isin(plan["calibration"], np.r_[splits.ref, splits.shadow]).all() and len(plan["calibration"]) == 12
    assert np.array_equal(plan["fold"], fold_plan(splits, 0.25, 3, seed=0)["fold"])


def test_remi_scores_the_calibration_samples_only_when_its_rule_could_stop(parts):
    """With fixed targets the rule needs D_f converged (``fit`` within tolerance) before its tests count, so the
    calibration samples are scored at the first check and from then on only at checks where D_f has converged;
    the run stops at the first such check whose tests pass."""
    result = unlearn(parts["target"], forget=parts["forget"], retain=parts["retain"], reference=parts["reference"],
                     approximator=parts["folds"], recipe=RECIPE, method="remi")
    history, tolerance = result.record.history, result.record.config["tolerance"]
    assert "shift_p" in history[0] and history[0]["epoch"] == 0
    later = history[1:]
    assert any(entry["fit"] > tolerance for entry in later), "the run never checked before converging"
    for entry in later:
        assert ("shift_p" in entry) == (entry["fit"] <= tolerance), entry
    assert "converged on its targets" in result.record.stop_reason
    assert later[-1]["fit"] <= tolerance and later[-1]["shift_p"] >= result.record.config["level"]
    assert all(entry["fit"] > tolerance or entry["shift_p"] < result.record.config["level"]
               or entry.get("acc_p", 1.0) < result.record.config["level"] for entry in later[:-1])


def test_approximator_seed_draws_another_approximator_for_the_same_run():
    """``approximator.seed`` re-draws the calibration samples and folds alone; unset, the run's seed draws them."""
    splits = Splits(train=np.arange(100, 203), audit=np.arange(0, 50), ref=np.arange(50, 80), shadow=np.arange(80, 100),
                    forget=np.arange(100, 110), test_size=10)

    def plan(run_seed: int, seed: int | None) -> dict:
        return FoldOut.plan(RunConfig(seed=run_seed, approximator=ApproximatorConfig(seed=seed)), splits)[0]

    default = plan(0, None)
    assert all(np.array_equal(default[k], plan(0, 0)[k]) and np.array_equal(default[k], plan(7, 0)[k])
               for k in default)
    other = plan(0, 1)
    assert not np.array_equal(default["calibration"], other["calibration"])
    assert not np.array_equal(default["fold"], other["fold"])
    assert np.array_equal(plan(1, None)["fold"], other["fold"])
    assert approximator_problems(ApproximatorConfig(seed=-1)) == [
        "approximator.seed must be a non-negative integer or null (the run's seed), got -1"]


def test_folds_need_two_folds_and_say_why():
    assert approximator_problems(ApproximatorConfig(name="folds", num_shadows=1)) == [
        "approximator 'folds' needs num_shadows (its folds) of at least 2, got 1: with one fold its model would "
        "train on nothing"]
    with pytest.raises(MiunlearnError, match="miunlearn forget"):
        FoldOut.fit_held_out(ApproximatorConfig(), None, None, 5, 10, RECIPE, 0, None)


def test_an_owner_of_another_model_fits_folds_on_its_own_training_set(parts, tmp_path):
    """U-LiRA runs ReMI on reference models: each gets fold models trained on its own training set (cached), the
    target's calibration samples, and never the target's fold models; an approximator that never read the
    target's training set is shared as is."""
    from miunlearn.guidance.owners import owner_approximator

    folds, disjoint, spec = parts["folds"], parts["disjoint"], parts["spec"]
    other = parts["shadow"].subset(range(100, 600))  # another model's training set
    recipe = replace(RECIPE, epochs=5)
    own = owner_approximator(folds, other, spec, recipe, seed=3, store=tmp_path)
    assert isinstance(own, FoldOut) and own is not folds
    assert np.array_equal(own.train_hashes.numpy(), np.sort(sample_hashes(other)))
    assert torch.equal(own.calibration.x, folds.calibration.x)
    owner = own.out_model_of(other).numpy()
    assert sorted(np.bincount(owner).tolist()) == [125] * K  # each of its samples left out of exactly one model
    assert sorted(p.name for p in tmp_path.glob("fold-*.safetensors")) == [f"fold-{k:02d}.safetensors"
                                                                          for k in range(K)]
    again = owner_approximator(folds, other, spec, recipe, seed=3, store=tmp_path)  # loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(own.state_dict().values(), again.state_dict().values()))
    assert owner_approximator(disjoint, other, spec, recipe, seed=3) is disjoint
