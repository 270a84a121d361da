"""In-memory datasets and the deterministic split of a training pool into the spec's roles.

Every dataset we support fits in memory, so a dataset is a pair of tensors; batching is indexing.
This keeps loading out of the training loop's way and lets a run move all data to the GPU at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from miunlearn.config import DataConfig
from miunlearn.errors import MiunlearnError
from miunlearn.registry import Registry

ROLES = ("train", "ref", "shadow", "audit")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    is_image: bool


@dataclass
class TensorData:
    """Samples ``x`` (float32, normalised) and integer labels ``y``, both in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise MiunlearnError(f"{len(self.x)} samples but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: np.ndarray | torch.Tensor) -> TensorData:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return TensorData(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    """A training pool (split into roles by :func:`make_splits`) and a held-out test set."""

    info: DatasetInfo
    pool: TensorData
    test: TensorData


def _to_unit_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N,H,W) or (N,H,W,C) -> float32 (N,C,H,W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def image_dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  num_classes: int) -> Dataset:
    """Build an image :class:`Dataset`, standardising both splits per channel with the pool's statistics."""
    pool_x, test_x = _to_unit_nchw(x_train), _to_unit_nchw(x_test)
    mean = pool_x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
    std = pool_x.std(dim=(0, 2, 3)).view(1, -1, 1, 1)
    info = DatasetInfo(name, tuple(pool_x.shape[1:]), num_classes, is_image=True)
    return Dataset(info, TensorData((pool_x - mean) / std, torch.as_tensor(y_train, dtype=torch.long)),
                   TensorData((test_x - mean) / std, torch.as_tensor(y_test, dtype=torch.long)))


def fixed_test_split(n: int, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A test split for datasets that ship none; fixed (seed 0) so test accuracy is comparable across runs."""
    order = np.random.default_rng(0).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@dataclass
class Splits:
    """Indices into the training pool for each role, plus the forget set (a subset of ``train``)."""

    train: np.ndarray
    ref: np.ndarray
    shadow: np.ndarray
    audit: np.ndarray
    forget: np.ndarray
    test_size: int

    @property
    def retain(self) -> np.ndarray:
        return np.setdiff1d(self.train, self.forget, assume_unique=True)

    def save(self, path: str | Path) -> None:
        from miunlearn.io import atomic_write

        with atomic_write(path, "wb") as fh:
            np.savez(fh, train=self.train, ref=self.ref, shadow=self.shadow, audit=self.audit,
                     forget=self.forget, retain=self.retain, test_size=np.array(self.test_size))

    @classmethod
    def load(cls, path: str | Path) -> Splits:
        from miunlearn.io import read_npz

        f = read_npz(path, "split file")
        missing = [k for k in ("train", "ref", "shadow", "audit", "forget", "test_size") if k not in f]
        if missing:
            raise MiunlearnError(f"{path} is not a readable split file (lacks {', '.join(missing)})")
        roles = [f[k] for k in ("train", "ref", "shadow", "audit", "forget")]
        if any(r.ndim != 1 or not np.issubdtype(r.dtype, np.integer) or (r < 0).any() for r in roles) \
                or f["test_size"].shape != ():
            raise MiunlearnError(f"{path} is not a readable split file (indices must be 1-D non-negative integers)")
        return cls(*roles, int(f["test_size"]))


def make_splits(pool_size: int, test_size: int, fractions: dict[str, float], seed: int) -> Splits:
    """Partition ``range(pool_size)`` into disjoint role sets, a deterministic function of the seed."""
    for role, frac in fractions.items():
        if not 0 < frac <= 1:
            raise MiunlearnError(f"data.{role}_fraction must be in (0, 1], got {frac}")
    total = sum(fractions.values())
    if total > 1 + 1e-9:
        raise MiunlearnError(f"data.*_fraction values add up to {total:.3g}; they must add up to at most 1")
    order = np.random.default_rng(seed).permutation(pool_size)
    sizes = {role: int(np.floor(frac * pool_size)) for role, frac in fractions.items()}
    for role, size in sizes.items():
        if size < 2:
            raise MiunlearnError(f"the {role} role gets {size} samples of a pool of {pool_size}; "
                                 f"raise data.{role}_fraction or data.subset")
    chunks, start = {}, 0
    for role in ROLES:
        chunks[role] = np.sort(order[start:start + sizes[role]])
        start += sizes[role]
    return Splits(**chunks, forget=np.empty(0, dtype=np.int64), test_size=test_size)


DATASETS: Registry[Callable[[DataConfig], Dataset]] = Registry("dataset")


def check_dataset(dataset: Dataset) -> None:
    """Refuse data no model should be trained or scored on: empty parts, non-finite features, labels outside
    ``0..num_classes-1`` (in the pool *and* the test set), samples of another shape; every problem listed."""
    info, problems = dataset.info, []
    for role, part in (("training pool", dataset.pool), ("test set", dataset.test)):
        if len(part) == 0:
            problems.append(f"the {role} is empty")
            continue
        if tuple(part.x.shape[1:]) != tuple(info.input_shape):
            problems.append(f"the {role}'s samples have shape {tuple(part.x.shape[1:])}, not {info.input_shape}")
        if part.x.is_floating_point():
            bad = int((~torch.isfinite(part.x.reshape(len(part), -1))).any(1).sum())
            if bad:
                problems.append(f"{bad} sample(s) of the {role} hold NaN or infinite features")
        if part.y.is_floating_point() or part.y.dtype == torch.bool:
            problems.append(f"the {role}'s labels are not integers")
            continue
        out = part.y[(part.y < 0) | (part.y >= info.num_classes)]
        if len(out):
            problems.append(f"the {role} has label(s) outside 0..{info.num_classes - 1}: "
                            f"{sorted(set(out.tolist()))[:5]}")
    if problems:
        raise MiunlearnError(f"dataset {info.name!r}: " + "; ".join(problems))


@contextlib.contextmanager
def downloading(root: Path, what: str) -> Iterator[None]:
    """Turn a failed download into one line and remove the folders it created that are still empty."""
    existing = _existing_folders(root)
    try:
        yield
    except MiunlearnError:
        raise
    except Exception as exc:  # urllib, torchvision and OS errors all mean the same: no data
        _remove_new_empty_folders(root, existing)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MiunlearnError(f"could not download {what} into {root} ({reason}); without a network, put the "
                             "files there yourself") from None


def _existing_folders(root: Path) -> set[Path]:
    folders = {p for p in [root, *root.parents] if p.is_dir()}
    if root.is_dir():
        folders |= {Path(d) for d, _, _ in os.walk(root)}
    return folders


def _remove_new_empty_folders(root: Path, existing: set[Path]) -> None:
    candidates = [Path(d) for d, _, _ in os.walk(root, topdown=False)] if root.is_dir() else []
    candidates += list(root.parents)
    for folder in candidates:
        if folder not in existing and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def default_root(name: str) -> Path:
    """Where a dataset's files are looked for when ``data.root`` is not given."""
    base = os.environ.get("MIUNLEARN_DATA")
    return Path(base) / name if base else Path.home() / ".cache" / "miunlearn" / name


def dataset_root(config: DataConfig) -> Path:
    return Path(config.root).expanduser() if config.root else default_root(config.name)
