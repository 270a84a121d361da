"""The ``folds`` approximator: OUT models that saw the rest of D_train, as a retrained model does.

D_train is split into K folds and model k trains on every fold but k (the target's recipe), so each training
sample is OUT of exactly one model, and that model saw most of the data a retrained model sees. Models on data
disjoint from D_train (``per-example``) miss what the rest of D_train does to a sample (near-duplicates, its
neighbourhood): their averaged ``s`` lies further from a retrained model's than one retrain from another
(BENCHMARKS.md, "An approximator that saw the rest of D_train"). Each forgotten sample's OUT prediction is its
own fold model's; held-out calibration samples (D_shadow ∪ D_ref, never seen by the target nor any fold model)
each get one model too, so their z-scores carry the same one-model noise.

A sample is found by its content (a hash of its features and label), so any subset of D_train works as a
request, however it was indexed. The costs: K trainings at (K−1)/K of D_train's size, once per target; a forgotten
sample's fold model saw the *other* forgotten samples of its request that lie in other folds (harmless for a random
request, not for one of related samples, such as one person's records); and the fold models keep what they learnt
from D_train, so after a deletion they still hold the forgotten samples, as the original did (``per-example``'s
models never saw D_train).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn.config import ApproximatorConfig, RunConfig, TrainConfig
from miunlearn.data import Splits, TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.guidance.approximators import APPROXIMATORS
from miunlearn.guidance.per_example import ModelSeries, OutPredictions, PerExampleOut
from miunlearn.statistics import logit_confidence
from miunlearn.training import predict_logits


@dataclass
class FoldsConfig:
    num_shadows: int = ApproximatorConfig.num_shadows
    calibration_fraction: float = ApproximatorConfig.calibration_fraction

    def validate(self) -> None:
        if self.num_shadows < 2:
            raise MiunlearnError(f"approximator 'folds' needs num_shadows (its folds) of at least 2, got "
                                 f"{self.num_shadows}: with one fold its model would train on nothing")
        if not 0 < self.calibration_fraction < 1:
            raise MiunlearnError("approximator.calibration_fraction must be in (0, 1), got "
                                 f"{self.calibration_fraction}")


def sample_hashes(data: TensorData) -> np.ndarray:
    """A 64-bit content hash per sample (features and label): how a request's samples are found in D_train."""
    x = data.x.detach().cpu().contiguous()
    rows = x.view(torch.uint8).reshape(len(x), -1).numpy() if x.numel() else np.zeros((len(x), 0), np.uint8)
    labels = data.y.detach().cpu().numpy().astype(np.int64)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes() + label.tobytes(), digest_size=8).digest(),
                                    "little", signed=True) for row, label in zip(rows, labels)], dtype=np.int64)


def fold_plan(splits: Splits, calibration_fraction: float, folds: int, seed: int) -> dict[str, np.ndarray]:
    """Each D_train sample's fold, each model's training order (positions in D_train), and the calibration samples
    (a ``calibration_fraction`` slice of D_shadow ∪ D_ref)."""
    if folds < 2 or folds > len(splits.train):
        raise MiunlearnError(f"approximator 'folds' needs 2..{len(splits.train)} folds, got {folds}")
    rng = np.random.default_rng([seed, 0xF01D])
    held_out = np.union1d(splits.shadow, splits.ref)
    n_cal = max(2, int(round(calibration_fraction * len(held_out))))
    if len(held_out) < n_cal:
        raise MiunlearnError(f"approximator 'folds' needs at least 2 calibration samples in D_shadow ∪ D_ref, "
                             f"which has {len(held_out)}")
    calibration = np.sort(rng.permutation(held_out)[:n_cal])
    fold = rng.permutation(len(splits.train)) % folds
    orders = [rng.permutation(np.flatnonzero(fold != k)) for k in range(folds)]
    size = min(len(o) for o in orders)  # equal sizes: the executor may train them together
    return {"fold": fold, "orders": np.stack([o[:size] for o in orders]), "calibration": calibration}


@APPROXIMATORS.register("folds")
class FoldOut(PerExampleOut):
    """``per-example``'s interface, with fold models: a sample of D_train is predicted by the model that left its
    fold out; any other sample (never trained on by any of them) by one model chosen by its hash."""

    Config = FoldsConfig
    series = ModelSeries(700, "fold", "fold model", "folds", "fold-models", "fold models")

    def __init__(self, config: ApproximatorConfig, num_classes: int, spec: Callable[[], nn.Module] | None = None,
                 count: int = 0, calibration_size: int = 0, input_shape: tuple[int, ...] = (),
                 train_size: int = 0) -> None:
        super().__init__(config, num_classes, spec, count, calibration_size, input_shape)
        self.register_buffer("train_hashes", torch.zeros(train_size, dtype=torch.long))
        self.register_buffer("train_folds", torch.zeros(train_size, dtype=torch.long))

    @classmethod
    def plan(cls, config: RunConfig, splits: Splits) -> tuple[dict[str, np.ndarray], np.ndarray]:
        plan = fold_plan(splits, config.approximator.calibration_fraction, config.approximator.num_shadows,
                         config.approximator_seed)
        return plan, splits.train

    @classmethod
    def from_plan(cls, config: ApproximatorConfig, spec: Callable[[], nn.Module], models: list[nn.Module],
                  data: TensorData, plan: dict[str, np.ndarray], calibration: TensorData, num_classes: int,
                  device: torch.device | str) -> FoldOut:
        return cls.from_folds(config, spec, models, data, plan["fold"], calibration, num_classes, device)

    @classmethod
    def fit_held_out(cls, config: ApproximatorConfig, factory: Callable[[], nn.Module], held_out: TensorData,
                     num_classes: int, train_size: int, recipe: TrainConfig, seed: int,
                     console: Console) -> FoldOut:
        raise MiunlearnError("approximator 'folds' trains on the model's own training set, which `miunlearn forget` "
                             "does not keep as one; use approximator.name=per-example there")

    @classmethod
    def from_folds(cls, config: ApproximatorConfig, spec: Callable[[], nn.Module], models: list[nn.Module],
                   train: TensorData, fold: np.ndarray, calibration: TensorData, num_classes: int,
                   device: torch.device | str = "cpu") -> FoldOut:
        """Fit from trained fold models (model k never saw the samples of ``train`` whose ``fold`` is k) and
        samples none of them nor the target saw (``calibration``)."""
        members = [train.subset(np.flatnonzero(np.asarray(fold) != k)[:1000]) for k in range(len(models))]
        approximator = cls.from_models(config, spec, models, calibration, members, num_classes, device)
        hashes = sample_hashes(train)
        order = np.argsort(hashes, kind="stable")
        approximator.train_hashes = torch.from_numpy(hashes[order]).to(device)
        approximator.train_folds = torch.from_numpy(np.asarray(fold, dtype=np.int64)[order]).to(device)
        approximator.calibration_out()  # part of the fit (and after the folds are known), not of every request
        return approximator

    @classmethod
    def rebuild(cls, config: ApproximatorConfig, num_classes: int, meta: dict,
                factory: Callable[[], nn.Module] | None = None) -> FoldOut:
        approximator = super().rebuild(config, num_classes, meta, factory)
        for key in ("train_hashes", "train_folds"):
            setattr(approximator, key, torch.zeros(meta["train_size"], dtype=torch.long))
        return approximator

    def metadata(self) -> dict:
        return super().metadata() | {"train_size": len(self.train_hashes)}

    def out_model_of(self, data: TensorData) -> torch.Tensor:
        """Per sample, the model that never saw it: its fold's for a sample of D_train, else one by its hash."""
        hashes = sample_hashes(data)
        known = self.train_hashes.cpu().numpy()
        at = np.searchsorted(known, hashes).clip(max=max(len(known) - 1, 0))
        found = known[at] == hashes if len(known) else np.zeros(len(hashes), bool)
        chosen = np.where(found, self.train_folds.cpu().numpy()[at] if len(known) else 0,
                          np.abs(hashes) % len(self.out_models))
        return torch.from_numpy(chosen.astype(np.int64))

    @torch.no_grad()
    def predict_out(self, data: TensorData) -> OutPredictions:
        """What the model that never saw each sample says of it."""
        logits = torch.stack([predict_logits(m, data) for m in self.out_models])  # (K, n, C), on the CPU
        chosen = logits[self.out_model_of(data), torch.arange(len(data.y))]
        y = data.y.cpu()
        accuracy = float((chosen.argmax(1) == y).float().mean())
        return OutPredictions(logit_confidence(chosen, y).to(data.y.device),
                              torch.log_softmax(chosen, 1).to(data.y.device), accuracy)
