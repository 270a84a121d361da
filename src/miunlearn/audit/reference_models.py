"""The auditor's reference models: the target's architecture and recipe on random halves of D_train ∪ D_audit.

They are trained by the auditor, never by (or shared with) an unlearner, so the per-example attacks that
use them (LiRA, RMIA) are independent of the guiding approximator and its shadow models. Every sample
of the pool is IN exactly half of the models when their number is even (Carlini et al.'s balanced
split), so each sample has as many models trained with it as without it.

They depend only on (the content of D_train ∪ D_audit, architecture, recipe, seed, count), not on the
deletion request, so they live in an artefact store under that key (:mod:`miunlearn.artefacts`) and are reused
by every audit of the same target set-up: ``membership.npz`` holds the pool indices and the K x N
membership matrix, one ``ref-KK.safetensors`` per model is written as soon as it is ready, so an
interrupted audit resumes where it stopped. The executor (``local`` or ``ray``) trains the missing ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from torch import nn

from miunlearn.artefacts import model_key, open_store, store_folder
from miunlearn.config import RunConfig
from miunlearn.data import Dataset, Splits, TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.training.executors import Executor, ModelJob, ModelSpec, build_executor


@dataclass
class ReferenceModels:
    pool_indices: np.ndarray
    """Sorted indices into the dataset's pool: D_train ∪ D_audit."""
    member: np.ndarray
    """(K, len(pool_indices)) bool: reference model k was trained on pool sample i."""
    models: list[nn.Module]
    folder: Path
    trained_now: int
    seconds: float

    def membership_of(self, indices: np.ndarray) -> np.ndarray:
        """(K, len(indices)) membership of the given pool indices, which must lie in the reference pool."""
        cols = np.searchsorted(self.pool_indices, indices)
        cols = np.clip(cols, 0, len(self.pool_indices) - 1)
        if not np.array_equal(self.pool_indices[cols], indices):
            raise MiunlearnError("some scored samples are outside the reference models' pool (D_train ∪ D_audit)")
        return self.member[:, cols]


def reference_pool(splits: Splits) -> np.ndarray:
    return np.sort(np.r_[splits.train, splits.audit])


def membership_matrix(count: int, size: int, seed: int) -> np.ndarray:
    """K x N membership: each sample IN ``count // 2`` models (balanced); with one model, a random half."""
    rng = np.random.default_rng(seed)
    if count == 1:
        member = np.zeros((1, size), dtype=bool)
        member[0, rng.permutation(size)[: size // 2]] = True
        return member
    return rng.random((count, size)).argsort(0) < count // 2


def reference_key(config: RunConfig, num_classes: int, count: int, seed: int, data: TensorData) -> dict:
    return model_key(config, num_classes, "train+audit", seed, count, data)


def prepare_reference_models(config: RunConfig, dataset: Dataset, splits: Splits, count: int, seed: int,
                             folder: str | Path | None = None, cache_root: str | Path | None = None,
                             console: Console | None = None, executor: Executor | None = None) -> ReferenceModels:
    """Load the cached reference models for this set-up, training (and caching) whichever are missing.

    ``executor`` (default: the one ``config.executor`` names) trains the missing ones; ``cache_root``
    defaults to ``config.executor.cache_dir``.
    """
    pool = reference_pool(splits)
    data = dataset.pool.subset(pool)
    key = reference_key(config, dataset.info.num_classes, count, seed, data)
    folder = Path(folder).expanduser() if folder else store_folder("reference-models", key,
                                                                    cache_root or config.executor.cache_dir)
    member = membership_matrix(count, len(pool), seed)
    open_store(folder, key, {"pool_indices": pool, "member": member},
               "reference models", "point audit references_dir elsewhere or delete that folder")
    spec = ModelSpec(config.model.name, dataset.info, config.model.width)
    jobs = [ModelJob(spec, np.flatnonzero(member[k]), replace(config.train, seed=10_000 + 100 * seed + k),
                     folder / f"ref-{k:02d}.safetensors", f"reference {k + 1}/{count}") for k in range(count)]
    result = (executor or build_executor(config.executor)).run(jobs, data, console)
    return ReferenceModels(pool, member, result.models, folder, result.trained, result.seconds)
