"""The auditor's reference models: the target's architecture and recipe on random halves of D_train ∪ D_audit.

They are trained by the auditor, never by (or shared with) an unlearner, so the per-example attacks that
use them (LiRA, RMIA) are independent of the guiding approximator and its shadow models. Every sample
of the pool is IN exactly half of the models when their number is even (Carlini et al.'s balanced
split), so each sample has as many models trained with it as without it.

They depend only on (dataset and role split, architecture, recipe, seed, count), not on the deletion
request, so they are cached under that key and reused by every audit of the same target set-up: a folder
with ``meta.json`` (the key), ``membership.npz`` (pool indices and the K x N membership matrix) and one
``ref-KK.safetensors`` per model, each file written atomically as soon as it is ready, so an interrupted
audit resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn.config import RunConfig
from miunlearn.data import Dataset, Splits
from miunlearn.errors import MiunlearnError
from miunlearn.io import atomic_path, write_json
from miunlearn.models import build_model, load_weights, save_weights
from miunlearn.training import train_model

FORMAT_VERSION = 1


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


def reference_key(config: RunConfig, num_classes: int, count: int, seed: int) -> dict:
    """What the reference models depend on; paths and switches that leave results alone (device, progress,
    memory format, compilation) excluded."""
    data = {k: v for k, v in asdict(config.data).items() if k not in ("root", "download")}
    recipe = {k: v for k, v in asdict(config.train).items()
              if k not in ("device", "progress", "channels_last", "compile")}
    return {"version": FORMAT_VERSION, "dataset": data, "num_classes": num_classes,
            "model": {"name": config.model.name, "width": config.model.width}, "recipe": recipe,
            "pool": "train+audit", "seed": seed, "count": count}


def default_cache_root() -> Path:
    base = os.environ.get("MIUNLEARN_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "miunlearn"


def reference_folder(key: dict, cache_root: str | Path | None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_root).expanduser() if cache_root else default_cache_root()
    return root / "reference-models" / f"{key['dataset']['name']}-{key['model']['name']}-{digest}"


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} there, {b!r} here")
    return out


def prepare_reference_models(config: RunConfig, dataset: Dataset, splits: Splits, count: int, seed: int,
                             folder: str | Path | None = None, cache_root: str | Path | None = None,
                             console: Console | None = None) -> ReferenceModels:
    """Load the cached reference models for this set-up, training (and caching) whichever are missing."""
    console = console or Console(stderr=True, quiet=True)
    key = reference_key(config, dataset.info.num_classes, count, seed)
    folder = Path(folder).expanduser() if folder else reference_folder(key, cache_root)
    pool = reference_pool(splits)
    meta_path, membership_path = folder / "meta.json", folder / "membership.npz"
    if meta_path.is_file():
        saved = json.loads(meta_path.read_text()).get("key", {})
        diff = _differences(saved, key)
        if diff:
            raise MiunlearnError(f"reference models in {folder} were made for another set-up ({'; '.join(diff[:3])}); "
                                 "point audit references_dir elsewhere or delete that folder")
        with np.load(membership_path) as f:
            member, saved_pool = f["member"], f["pool_indices"]
        if not np.array_equal(saved_pool, pool):
            raise MiunlearnError(f"reference models in {folder} were trained on another pool of samples "
                                 "(the dataset's files changed?); delete that folder to retrain them")
    elif folder.exists() and any(folder.iterdir()):
        raise MiunlearnError(f"{folder} is not a reference-model folder (no meta.json); choose an empty or new folder")
    else:
        member = membership_matrix(count, len(pool), seed)
        with atomic_path(membership_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, pool_indices=pool, member=member)
        write_json(meta_path, {"key": key, "what": "miunlearn audit reference models: the target's architecture "
                                                  "and recipe on random halves of D_train ∪ D_audit"})

    def fresh() -> nn.Module:
        return build_model(config.model.name, dataset.info, config.model.width)

    models, trained, start = [], 0, time.perf_counter()
    for k in range(count):
        path = folder / f"ref-{k:02d}.safetensors"
        model = fresh()
        if path.is_file():
            load_weights(model, path)
        else:
            model_seed = 10_000 + 100 * seed + k
            console.log(f"training reference model {k + 1}/{count} on {int(member[k].sum())} samples")
            torch.manual_seed(model_seed)
            train_model(model, dataset.pool.subset(pool[member[k]]), replace(config.train, seed=model_seed),
                        desc=f"reference {k + 1}/{count}")
            save_weights(model, path)
            trained += 1
        model.eval()
        models.append(model)
    return ReferenceModels(pool, member, models, folder, trained, time.perf_counter() - start)
