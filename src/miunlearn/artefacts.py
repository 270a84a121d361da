"""Artefact stores: folders of trained models (shadow, reference) cached under what they depend on.

A store is a folder named by a hash of its key: a hash of the *content* of the samples the models are
trained on, the role, the architecture, the recipe, the seed, the count and :data:`CODE_VERSION`. So two
data files of the same shape never share models, and a file fixed in place gets new ones. The folder
holds ``meta.json`` (the key), ``membership.npz`` (the pool indices and which of them each model saw) and
one weights file per model, each written atomically as soon as it is ready with its sha256 beside it
(``<file>.sha256``), so an interrupted run resumes where it stopped and a damaged file is retrained,
never loaded (see :mod:`miunlearn.training.executors`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from miunlearn.config import RunConfig
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.io import atomic_path, read_json_object, read_npz, write_json

CODE_VERSION = 2
"""Bumped whenever a change to training or to the store makes earlier stored models wrong for this code."""


def data_fingerprint(data: TensorData) -> str:
    """sha256 of the samples and labels, in order, with their shapes and dtypes."""
    digest = hashlib.sha256()
    for tensor in (data.x, data.y):
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{array.dtype}{tuple(array.shape)}".encode())
        digest.update(array.view(torch.uint8).numpy().tobytes() if array.numel() else b"")
    return digest.hexdigest()


def model_key(config: RunConfig, num_classes: int, pool: str, seed: int, count: int, data: TensorData) -> dict:
    """What a set of models trained on ``data`` (role ``pool``) depends on; paths and switches that leave
    results alone (device, progress, memory format, compilation) excluded."""
    dataset = {k: v for k, v in asdict(config.data).items() if k not in ("root", "download")}
    recipe = {k: v for k, v in asdict(config.train).items()
              if k not in ("device", "progress", "channels_last", "compile")}
    return {"version": CODE_VERSION, "dataset": dataset, "data_sha256": data_fingerprint(data),
            "num_classes": num_classes, "model": {"name": config.model.name, "width": config.model.width},
            "recipe": recipe, "pool": pool, "seed": seed, "count": count}


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
    arrays show the store holds what its key promises.
    """
    meta_path, membership_path = folder / "meta.json", folder / "membership.npz"
    if folder.exists() and not folder.is_dir():
        raise MiunlearnError(f"{folder} is a file, not a folder of {what}; {hint}")
    if meta_path.is_file():
        try:
            saved_key = read_json_object(meta_path, f"description of stored {what}").get("key", {})
            diff = _differences(saved_key if isinstance(saved_key, dict) else {}, key)
            if diff:
                raise MiunlearnError(f"{what} in {folder} were made for another set-up ({'; '.join(diff[:3])})")
            if not membership_path.is_file():
                raise MiunlearnError(f"{folder} lacks membership.npz")
            saved = read_npz(membership_path, f"membership file of stored {what}")
        except MiunlearnError as exc:
            raise MiunlearnError(f"{exc}; {hint}") from None
        if any(name not in saved or not np.array_equal(saved[name], value) for name, value in arrays.items()):
            raise MiunlearnError(f"{what} in {folder} were trained on another pool of samples; {hint}")
    elif folder.exists() and any(folder.iterdir()):
        raise MiunlearnError(f"{folder} is not a folder of {what} (no meta.json); choose an empty or new folder")
    else:
        try:
            with atomic_path(membership_path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            write_json(meta_path, {"key": key, "what": f"miunlearn {what}"})
        except OSError as exc:
            raise MiunlearnError(f"cannot create the store of {what} in {folder} ({exc.strerror or exc}); point "
                                 "the cache (executor.cache_dir, $MIUNLEARN_CACHE) at a writable folder") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_digest(path: Path) -> None:
    """Write ``path``'s sha256 beside it (after the file itself, so a present digest means a complete file)."""
    with atomic_path(digest_path(path)) as tmp:
        tmp.write_text(file_sha256(path) + "\n")


def verified(path: Path) -> bool:
    """Whether ``path`` exists and matches the sha256 recorded beside it."""
    try:
        return path.is_file() and digest_path(path).read_text().strip() == file_sha256(path)
    except OSError:
        return False


def discard(path: Path) -> None:
    """Remove a stored file that failed verification, and its digest."""
    for p in (path, digest_path(path)):
        if p.is_file():
            p.unlink()


def _differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} there, {b!r} here")
    return out
