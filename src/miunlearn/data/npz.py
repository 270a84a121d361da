"""Any user arrays: an ``.npz`` with ``x`` and ``y`` (and optionally ``x_test``/``y_test``).

``x`` may be uint8 images (N,H,W) / (N,H,W,C), standardised per channel, or float features (N,F),
used as given. Without a test split, a fixed 20% is held out. The class count comes from the training
labels ``y``; test labels must lie within it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from miunlearn.config import DataConfig
from miunlearn.data.base import DATASETS, Dataset, DatasetInfo, TensorData, fixed_test_split, image_dataset
from miunlearn.errors import DataNotFoundError, MiunlearnError
from miunlearn.io import read_npz


def _check(path: Path, arrays: dict[str, np.ndarray]) -> None:
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or len(x) != len(y):
        raise MiunlearnError(f"{path}: 'y' must be 1-D with one label per row of 'x' ({len(x)} rows, y {y.shape})")
    if len(y) == 0:
        raise MiunlearnError(f"{path}: 'x' and 'y' have no rows")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise MiunlearnError(f"{path}: give both 'x_test' and 'y_test' or neither")
    for xk, yk in (("x", "y"), ("x_test", "y_test")):
        if yk not in arrays:
            continue
        if not np.issubdtype(arrays[yk].dtype, np.integer):
            raise MiunlearnError(f"{path}: labels {yk!r} must be integers, got {arrays[yk].dtype}")
        if xk == "x_test" and (arrays[xk].shape[1:] != x.shape[1:] or arrays[xk].dtype != x.dtype
                               or arrays[yk].ndim != 1 or len(arrays[xk]) != len(arrays[yk])):
            raise MiunlearnError(f"{path}: 'x_test' {arrays[xk].dtype} {arrays[xk].shape} and 'y_test' "
                                 f"{arrays[yk].shape} must match 'x' {x.dtype} (N, {', '.join(map(str, x.shape[1:]))})"
                                 " with one label per row")
        if (arrays[yk] < 0).any():
            raise MiunlearnError(f"{path}: labels {yk!r} must be non-negative")


@DATASETS.register("npz")
def load(config: DataConfig) -> Dataset:
    if not config.root:
        raise DataNotFoundError("dataset 'npz' needs data.root=PATH to an .npz file holding arrays 'x' and 'y'")
    path = Path(config.root).expanduser()
    if not path.is_file():
        raise DataNotFoundError(f"npz file {str(path)!r} does not exist")
    arrays = read_npz(path, "npz dataset")
    if "x" not in arrays or "y" not in arrays:
        raise MiunlearnError(f"{path} must hold arrays 'x' and 'y'; found {sorted(arrays)}")
    _check(path, arrays)
    x, y = arrays["x"], arrays["y"]
    num_classes = int(y.max()) + 1
    if "x_test" in arrays:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
    else:
        pool_idx, test_idx = fixed_test_split(len(y))
        x, y, x_test, y_test = x[pool_idx], y[pool_idx], x[test_idx], y[test_idx]
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        return image_dataset("npz", x, y.astype(np.int64), x_test, y_test.astype(np.int64), num_classes)
    if x.ndim != 2:
        raise MiunlearnError(f"{path}: float 'x' must be (N, features), got shape {x.shape}")
    info = DatasetInfo("npz", (x.shape[1],), num_classes, is_image=False)
    return Dataset(info, TensorData(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)),
                   TensorData(torch.as_tensor(x_test, dtype=torch.float32), torch.as_tensor(y_test, dtype=torch.long)))
