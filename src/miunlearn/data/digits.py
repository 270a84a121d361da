"""scikit-learn's bundled 8x8 digits: the embedded default, no files needed."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from miunlearn.config import DataConfig
from miunlearn.data.base import DATASETS, Dataset, DatasetInfo, TensorData, fixed_test_split


@DATASETS.register("digits")
def load(config: DataConfig) -> Dataset:
    bunch = load_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)  # (N,1,8,8), pixels 0..16
    y = torch.from_numpy(bunch.target.astype(np.int64))
    pool_idx, test_idx = fixed_test_split(len(y))
    info = DatasetInfo("digits", (1, 8, 8), 10, is_image=True)
    return Dataset(info, TensorData(x[pool_idx], y[pool_idx]), TensorData(x[test_idx], y[test_idx]))
