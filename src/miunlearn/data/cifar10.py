"""CIFAR-10 from torchvision's ``cifar-10-batches-py`` folder or from ``train.npz``/``test.npz`` arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miunlearn.config import DataConfig
from miunlearn.data.base import DATASETS, Dataset, dataset_root, downloading, image_dataset
from miunlearn.errors import DataNotFoundError, MiunlearnError
from miunlearn.io import read_npz


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    f = read_npz(path, "CIFAR-10 array file")
    if "x" not in f or "y" not in f:
        raise MiunlearnError(f"{path} must hold arrays 'x' (N,32,32,3 uint8) and 'y'; found {sorted(f)}")
    x, y = f["x"], f["y"]
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise MiunlearnError(f"{path}: 'y' must hold one integer label per image, got {y.dtype} {y.shape}")
    y = y.astype(np.int64)
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
        raise MiunlearnError(f"{path}: 'x' must be uint8 of shape (N,32,32,3), got {x.dtype} {x.shape}")
    return x, y


@DATASETS.register("cifar10")
def load(config: DataConfig) -> Dataset:
    root = dataset_root(config)
    if (root / "train.npz").is_file() and (root / "test.npz").is_file():
        x_train, y_train = _read_npz(root / "train.npz")
        x_test, y_test = _read_npz(root / "test.npz")
    elif (root / "cifar-10-batches-py").is_dir() or config.download:
        from torchvision.datasets import CIFAR10

        with downloading(root, "CIFAR-10"):
            train = CIFAR10(str(root), train=True, download=config.download)
            test = CIFAR10(str(root), train=False, download=config.download)
        x_train, y_train = train.data, np.asarray(train.targets, dtype=np.int64)
        x_test, y_test = test.data, np.asarray(test.targets, dtype=np.int64)
    else:
        raise DataNotFoundError(
            f"CIFAR-10 not found in {root} (looked for train.npz + test.npz and cifar-10-batches-py/). "
            "Pass data.root=FOLDER holding either, or data.download=true to fetch it")
    return image_dataset("cifar10", x_train, y_train, x_test, y_test, num_classes=10)
