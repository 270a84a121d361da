"""The GPU fast path keeps the plain pipeline's results: device-resident batching, batched augmentation,
channels-last and torch.compile are checked here on the CPU, through the same code the GPU runs."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader, Sampler, TensorDataset

from miunlearn.audit.reference_models import reference_key
from miunlearn.config import TrainConfig, load_config
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.models import build_model
from miunlearn.training import predict_logits, train_model
from miunlearn.training.loop import augment, augmentation_draws, is_channels_last, place_model

INFO = DatasetInfo("tiny", (3, 8, 8), 3, True)
RECIPE = TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cpu", progress=False, seed=3)


@pytest.fixture(scope="module")
def images() -> TensorData:
    """70 samples, so the last batch of 16 is partial (6) as real data sets' last batches are."""
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (70,), generator=generator)
    x = torch.randn(70, 3, 8, 8, generator=generator) + y[:, None, None, None].float()
    return TensorData(x, y)


class EpochPermutations(Sampler[int]):
    """A fresh ``torch.randperm`` each epoch from one seeded generator: the shuffle ``train_model`` promises.

    (torch's RandomSampler draws one extra permutation per epoch, so it drifts from the second epoch on.)
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("cnn", INFO, 4)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, **tolerance: float) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], **tolerance, msg=key)


def test_device_resident_batching_matches_a_dataloader_pipeline(images: TensorData) -> None:
    model, reference = tiny_cnn(), tiny_cnn()
    train_model(model, images, RECIPE)

    # The plain pipeline: a per-sample DataLoader over a TensorDataset, shuffled by the same permutations,
    # with the optimiser and schedule built directly from torch.
    loader = DataLoader(TensorDataset(images.x, images.y), batch_size=RECIPE.batch_size,
                        sampler=EpochPermutations(len(images), RECIPE.seed))
    optimizer = torch.optim.SGD(reference.parameters(), lr=RECIPE.lr, momentum=RECIPE.momentum,
                                weight_decay=RECIPE.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=RECIPE.epochs * len(loader))
    reference.train()
    for _ in range(RECIPE.epochs):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(reference(x), y).backward()
            optimizer.step()
            schedule.step()
    assert_same_weights(model, reference, rtol=1e-5, atol=1e-6)
    assert not torch.equal(weights(model)["0.weight"], weights(tiny_cnn())["0.weight"])  # it did train


def test_batched_augmentation_matches_per_sample_crop_and_flip(images: TensorData) -> None:
    x = images.x[:64]
    augmented = augment(x, torch.Generator().manual_seed(5))
    oy, ox, flip = augmentation_draws(len(x), torch.Generator().manual_seed(5))
    h, w = x.shape[2:]
    for i in range(len(x)):
        expected = TF.crop(TF.pad(x[i], [4]), int(oy[i]), int(ox[i]), h, w)
        if flip[i]:
            expected = TF.hflip(expected)
        torch.testing.assert_close(augmented[i], expected, rtol=0, atol=0)
    # The draws themselves: every offset in 0..8 occurs, and about half the samples are flipped.
    oy, ox, flip = augmentation_draws(4000, torch.Generator().manual_seed(6))
    assert set(oy.tolist()) == set(ox.tolist()) == set(range(9))
    assert abs(flip.float().mean().item() - 0.5) < 0.03


def test_channels_last_on_cpu_gives_the_contiguous_results(images: TensorData) -> None:
    plain, fast = tiny_cnn(), tiny_cnn()
    recipe = replace(RECIPE, augment=True)
    train_model(plain, images, replace(recipe, channels_last=False))
    train_model(fast, images, replace(recipe, channels_last=True))
    assert is_channels_last(fast) and not is_channels_last(plain)
    assert_same_weights(plain, fast, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(predict_logits(fast, images), predict_logits(plain, images), rtol=1e-3, atol=1e-4)


def test_channels_last_is_the_default_and_leaves_tabular_models_alone(images: TensorData) -> None:
    model = tiny_cnn()
    train_model(model, images, replace(RECIPE, epochs=1, channels_last=TrainConfig().channels_last))
    assert is_channels_last(model)
    mlps = []
    for channels_last in (False, True):  # no convolutions: nothing to convert, bit-identical results
        torch.manual_seed(0)
        mlps.append(build_model("mlp", INFO, 8))
        train_model(mlps[-1], images, replace(RECIPE, epochs=1, channels_last=channels_last))
    assert_same_weights(*mlps, rtol=0, atol=0)


def test_loaded_models_are_placed_as_training_would_leave_them(images: TensorData) -> None:
    """A target read from a weights file must reach the unlearning methods in the recipe's memory format."""
    model = tiny_cnn()
    assert place_model(model, replace(RECIPE, channels_last=True), images) == (torch.device("cpu"), True)
    assert is_channels_last(model)


def test_compiled_training_matches_eager_training(images: TensorData, monkeypatch: pytest.MonkeyPatch) -> None:
    # The inductor backend needs ~30 s of C++ compilation per model on this CPU; the eager backend runs the
    # same dynamo capture of the training step (and its recompile for the partial last batch) in ~2 s.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    plain, compiled = tiny_cnn(), tiny_cnn()
    train_model(plain, images, RECIPE)
    train_model(compiled, images, replace(RECIPE, compile=True))
    assert_same_weights(plain, compiled, rtol=1e-5, atol=1e-6)
    assert "forward" not in compiled.__dict__  # the class's forward again, uncompiled

    wrapped = tiny_cnn()
    own = wrapped.forward  # a forward the instance set itself (a user's wrapper) survives the compiled training
    wrapped.forward = own
    train_model(wrapped, images, replace(RECIPE, compile=True))
    assert wrapped.__dict__["forward"] is own


@pytest.mark.parametrize("where", ["at compile", "at the first step"])
def test_compile_failure_is_one_clear_error(images: TensorData, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    def unavailable(model: torch.nn.Module) -> torch.nn.Module:
        if where == "at compile":
            raise RuntimeError("Dynamo is not supported on this Python\nlong traceback text")

        def broken(*args: object) -> torch.Tensor:
            raise OSError("no working C++ compiler found")
        return broken

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.raises(MiunlearnError, match=r"torch\.compile failed here .*set train\.compile=false"):
        train_model(tiny_cnn(), images, replace(RECIPE, compile=True))


def test_fast_path_switches_do_not_change_the_reference_model_cache_key() -> None:
    plain = load_config(None, ["train.device=cpu"])
    fast = load_config(None, ["train.device=cuda", "train.channels_last=true", "train.compile=true",
                              "train.progress=false"])
    data = TensorData(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    assert reference_key(plain, 10, 4, 0, data) == reference_key(fast, 10, 4, 0, data)
    bf16 = load_config(None, ["train.precision=bf16"])
    assert reference_key(plain, 10, 4, 0, data) != reference_key(bf16, 10, 4, 0, data)


def test_channels_last_override_parses_and_rejects_non_booleans() -> None:
    with pytest.raises(MiunlearnError, match="train.channels_last must be true or false"):
        load_config(None, ["train.channels_last=maybe"])
    assert load_config(None, ["train.channels_last=false"]).train.channels_last is False
    with pytest.raises(MiunlearnError, match="train.compile must be true or false"):
        load_config(None, ["train.compile=maybe"])


def test_the_work_counter_sees_compiled_training_even_from_a_cached_graph(
        images: TensorData, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamo does not guard on module hooks: a graph cached by an earlier compile (the target's training) was reused
    for a retrain and the counter saw no sample. And a work limit that falls inside the first, guarded step is the
    limit, not a failure of torch.compile."""
    from miunlearn import unlearn

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    recipe = replace(RECIPE, compile=True)
    train_model(tiny_cnn(), images, recipe)  # caches the graph, compiled without the counter's hook
    forget, retain = images.subset(range(8)), images.subset(range(8, len(images)))
    full = unlearn(tiny_cnn(), forget, retain, "retrain", recipe=recipe)
    assert full.record.samples_trained == recipe.epochs * len(retain)
    half_a_step = 0.5 * recipe.batch_size / (recipe.epochs * len(retain))
    limited = unlearn(tiny_cnn(), forget, retain, "retrain", recipe=recipe, max_cost=half_a_step)
    assert limited.record.stop_reason.startswith("work limit reached") and limited.record.samples_trained == 0
