"""Any user arrays: an ``.npz`` with ``x`` and ``y`` (and optionally ``x_test``/``y_test``).

``x`` may be uint8 images (N,H,W) / (N,H,W,C), standardised per channel, or float features (N,F),
used as given. Without a test split, a fixed 20% is held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from miunlearn.config import DataConfig
from miunlearn.data.base import DATASETS, Dataset, DatasetInfo, TensorData, fixed_test_split, image_dataset
from miunlearn.errors import DataNotFoundError, MiunlearnError


@DATASETS.register("npz")
def load(config: DataConfig) -> Dataset:
    if not config.root:
        raise DataNotFoundError("dataset 'npz' needs data.root=PATH to an .npz file holding arrays 'x' and 'y'")
    path = Path(config.root).expanduser()
    if not path.is_file():
        raise DataNotFoundError(f"npz file {str(path)!r} does not exist")
    with np.load(path) as f:
        if "x" not in f or "y" not in f:
            raise MiunlearnError(f"{path} must hold arrays 'x' and 'y'; found {sorted(f.files)}")
        arrays = {k: f[k] for k in f.files}
    x, y = arrays["x"], arrays["y"]
    if len(x) != len(y) or y.ndim != 1:
        raise MiunlearnError(f"{path}: 'y' must be 1-D with one label per row of 'x' ({len(x)} rows, y {y.shape})")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise MiunlearnError(f"{path}: labels 'y' must be non-negative integers")
    if "x_test" in arrays and "y_test" in arrays:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
    else:
        pool_idx, test_idx = fixed_test_split(len(y))
        x, y, x_test, y_test = x[pool_idx], y[pool_idx], x[test_idx], y[test_idx]
    num_classes = int(max(y.max(), y_test.max())) + 1
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        return image_dataset("npz", x, y.astype(np.int64), x_test, y_test.astype(np.int64), num_classes)
    if x.ndim != 2:
        raise MiunlearnError(f"{path}: float 'x' must be (N, features), got shape {x.shape}")
    info = DatasetInfo("npz", (x.shape[1],), num_classes, is_image=False)
    return Dataset(info, TensorData(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)),
                   TensorData(torch.as_tensor(x_test, dtype=torch.float32), torch.as_tensor(y_test, dtype=torch.long)))
