"""Shadow models: the "shadows" of ReMI, trained as an attacker would on disjoint data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn.artefacts import model_key, open_store, store_folder
from miunlearn.config import RunConfig, TrainConfig
from miunlearn.data import TensorData
from miunlearn.training import predict_logits
from miunlearn.training.executors import Executor, LocalExecutor, ModelJob


@dataclass
class ShadowOutputs:
    """Logits of the shadow models on their own members (``member=1``) and non-members (``member=0``)."""

    logits: torch.Tensor
    labels: torch.Tensor
    member: torch.Tensor
    trained_now: int | None = None
    """How many shadow models were trained for these outputs (the rest came from the artefact store)."""

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]


def shadow_orders(size: int, num_shadows: int, seed: int) -> np.ndarray:
    """(K, size) permutations of D_shadow: shadow k trains on the first half of row k, in that order."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(size) for _ in range(num_shadows)])


def train_shadows(model_factory: Callable[[], nn.Module], shadow: TensorData, recipe: TrainConfig,
                  num_shadows: int, seed: int, executor: Executor | None = None, store: str | Path | None = None,
                  console: Console | None = None) -> ShadowOutputs:
    """Train ``num_shadows`` models on random halves of D_shadow and collect their outputs.

    Each model sees one half (its members); the other half is its non-members, so the attack learns
    the member/non-member contrast of this architecture and recipe without touching the target's data.
    ``executor`` (default: in this process) trains them; with a ``store`` folder (see :func:`shadow_store`)
    each model is written there as ``shadow-KK.safetensors`` and loaded instead of retrained next time.
    """
    orders = shadow_orders(len(shadow), num_shadows, seed)
    half = len(shadow) // 2
    jobs = [ModelJob(model_factory, orders[k, :half], replace(recipe, seed=seed * 1000 + k),
                     Path(store) / f"shadow-{k:02d}.safetensors" if store is not None else None,
                     f"shadow {k + 1}/{num_shadows}") for k in range(num_shadows)]
    result = (executor or LocalExecutor()).run(jobs, shadow, console)
    parts = []
    for model, order in zip(result.models, orders):
        for idx, flag in ((order[:half], 1), (order[half:], 0)):
            part = shadow.subset(idx)
            logits = predict_logits(model, part, precision=recipe.precision)
            parts.append((logits, part.y.cpu(), torch.full((len(idx),), flag)))
    logits, labels, member = (torch.cat(items) for items in zip(*parts))
    return ShadowOutputs(logits, labels, member.float(), result.trained)


def shadow_store(config: RunConfig, num_classes: int, shadow_indices: np.ndarray, shadow: TensorData) -> Path:
    """The artefact store of the shadow models of this set-up (created if new, checked if not).

    ``shadow`` is D_shadow itself (the pool at ``shadow_indices``): the store is keyed by its content."""
    count, seed = config.approximator.num_shadows, config.approximator_seed
    key = model_key(config, num_classes, "shadow", seed, count, shadow)
    folder = store_folder("shadow-models", key, config.executor.cache_dir)
    member = np.zeros((count, len(shadow_indices)), dtype=bool)
    for k, order in enumerate(shadow_orders(len(shadow_indices), count, seed)):
        member[k, order[: len(order) // 2]] = True
    open_store(folder, key, {"pool_indices": np.asarray(shadow_indices), "member": member},
               "shadow models", "delete that folder to retrain them")
    return folder
