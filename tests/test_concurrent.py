"""Concurrent (vmap-ed) training must be K sequential trainings in one pass: same weights, BN stats, logs."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from sklearn.datasets import load_digits

from miunlearn.config import TrainConfig
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.models import build_model
from miunlearn.training import train_model, train_models_concurrently

DIGITS = DatasetInfo("digits", (1, 8, 8), 10, is_image=True)


def digit_slices(k: int, n: int) -> list[TensorData]:
    """``k`` disjoint slices of ``n`` digits each: every model sees its own data."""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div(16).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    return [TensorData(x[i * n:(i + 1) * n], y[i * n:(i + 1) * n]) for i in range(k)]


def recipes(k: int, **overrides) -> list[TrainConfig]:
    # 100 samples in batches of 32 leave a short last batch, so the ragged end is covered too.
    base = TrainConfig(**{"epochs": 2, "batch_size": 32, "lr": 0.05, "device": "cpu", "progress": False, **overrides})
    return [dataclasses.replace(base, seed=10 + k_) for k_ in range(k)]


@pytest.mark.parametrize(("model_name", "k", "optimizer", "augment"), [
    ("cnn", 3, "sgd", False),
    ("cnn", 3, "sgd", True),
    ("cnn", 3, "adam", True),
    ("mlp", 2, "sgd", False),
    ("mlp", 2, "adam", True),
])
def test_concurrent_training_equals_sequential(model_name: str, k: int, optimizer: str, augment: bool) -> None:
    torch.manual_seed(0)
    models = [build_model(model_name, DIGITS, width=8) for _ in range(k)]
    twins = copy.deepcopy(models)
    datasets = digit_slices(k, 100)
    jobs = recipes(k, optimizer=optimizer, augment=augment, lr=0.01 if optimizer == "adam" else 0.05)

    histories = train_models_concurrently(models, datasets, jobs)
    expected = [train_model(twin, data, job) for twin, data, job in zip(twins, datasets, jobs)]

    for model, twin, history, want in zip(models, twins, histories, expected):
        assert not model.training
        for (name, got), (_, ref) in zip(model.state_dict().items(), twin.state_dict().items()):
            assert torch.allclose(got.float(), ref.float(), rtol=1e-4, atol=1e-5), name
        assert [r["epoch"] for r in history] == [r["epoch"] for r in want]
        for row, ref_row in zip(history, want):
            assert row["loss"] == pytest.approx(ref_row["loss"], rel=1e-4)
            assert row["train_acc"] == pytest.approx(ref_row["train_acc"])
    # Different seeds and data must give different models: the stacking must not tie them together.
    assert not torch.allclose(next(models[0].parameters()), next(models[1].parameters()))


def test_batchnorm_running_statistics_are_trained_per_model() -> None:
    models = [build_model("cnn", DIGITS, width=8) for _ in range(2)]
    train_models_concurrently(models, digit_slices(2, 64), recipes(2))
    means = [m[1].running_mean for m in models]
    assert all(int(m[1].num_batches_tracked) == 2 * 2 for m in models)
    assert not torch.allclose(means[0], torch.zeros_like(means[0]))
    assert not torch.allclose(means[0], means[1])


def test_unequal_dataset_lengths_are_refused() -> None:
    models = [build_model("mlp", DIGITS, width=8) for _ in range(2)]
    small, large = digit_slices(1, 50)[0], digit_slices(1, 60)[0]
    with pytest.raises(MiunlearnError, match="one length"):
        train_models_concurrently(models, [small, large], recipes(2))


def test_recipes_differing_beyond_the_seed_are_refused() -> None:
    models = [build_model("mlp", DIGITS, width=8) for _ in range(2)]
    mixed = [recipes(1)[0], dataclasses.replace(recipes(1)[0], seed=3, lr=0.1, epochs=3)]
    with pytest.raises(MiunlearnError, match="epochs, lr"):
        train_models_concurrently(models, digit_slices(2, 50), mixed)


def test_mismatched_job_lists_and_architectures_are_refused() -> None:
    data = digit_slices(2, 50)
    with pytest.raises(MiunlearnError, match="one dataset and one recipe per model"):
        train_models_concurrently([build_model("mlp", DIGITS, width=8)], data, recipes(2))
    mixed = [build_model("mlp", DIGITS, width=8), build_model("mlp", DIGITS, width=16)]
    with pytest.raises(MiunlearnError, match="one architecture"):
        train_models_concurrently(mixed, data, recipes(2))
