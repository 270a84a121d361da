"""Artefact stores: folders of trained models (shadow, reference) cached under what they depend on.

A store is a folder named by a hash of its key (dataset and role split, architecture, recipe, seed,
count) under the cache root. It holds ``meta.json`` (the key), ``membership.npz`` (the pool indices the
models were trained from and which of them each model saw) and one weights file per model, each written
atomically as soon as it is ready, so an interrupted run resumes where it stopped and every later run of
the same set-up reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from miunlearn.config import RunConfig
from miunlearn.errors import MiunlearnError
from miunlearn.io import atomic_path, write_json

FORMAT_VERSION = 1


def model_key(config: RunConfig, num_classes: int, pool: str, seed: int, count: int) -> dict:
    """What a set of models trained on ``pool`` depends on; paths and switches that leave results alone (device,
    progress, memory format, compilation) excluded."""
    data = {k: v for k, v in asdict(config.data).items() if k not in ("root", "download")}
    recipe = {k: v for k, v in asdict(config.train).items()
              if k not in ("device", "progress", "channels_last", "compile")}
    return {"version": FORMAT_VERSION, "dataset": data, "num_classes": num_classes,
            "model": {"name": config.model.name, "width": config.model.width}, "recipe": recipe,
            "pool": pool, "seed": seed, "count": count}


def default_cache_root() -> Path:
    base = os.environ.get("MIUNLEARN_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "miunlearn"


def store_folder(kind: str, key: dict, cache_root: str | Path | None) -> Path:
    """``<cache root>/<kind>/<dataset>-<model>-<hash of key>``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_root).expanduser() if cache_root else default_cache_root()
    return root / kind / f"{key['dataset']['name']}-{key['model']['name']}-{digest}"


def open_store(folder: Path, key: dict, arrays: dict[str, np.ndarray], what: str, hint: str) -> None:
    """Create the store in ``folder``, or check that the one there was made for ``key`` and ``arrays``.

    ``arrays`` (``pool_indices``, membership) are recomputed by the caller from the key; equal saved
    arrays show that the dataset's files did not change under the same key.
    """
    meta_path, membership_path = folder / "meta.json", folder / "membership.npz"
    if meta_path.is_file():
        diff = _differences(json.loads(meta_path.read_text()).get("key", {}), key)
        if diff:
            raise MiunlearnError(f"{what} in {folder} were made for another set-up ({'; '.join(diff[:3])}); {hint}")
        with np.load(membership_path) as saved:
            if any(name not in saved or not np.array_equal(saved[name], value) for name, value in arrays.items()):
                raise MiunlearnError(f"{what} in {folder} were trained on another pool of samples "
                                     "(the dataset's files changed?); delete that folder to retrain them")
    elif folder.exists() and any(folder.iterdir()):
        raise MiunlearnError(f"{folder} is not a folder of {what} (no meta.json); choose an empty or new folder")
    else:
        with atomic_path(membership_path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        write_json(meta_path, {"key": key, "what": f"miunlearn {what}"})


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} there, {b!r} here")
    return out
