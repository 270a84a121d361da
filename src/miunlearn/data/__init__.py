"""Datasets (a registry of loaders), role splits and forget-set selection."""

from __future__ import annotations

import numpy as np

from miunlearn.config import DataConfig, ForgetConfig
from miunlearn.data import cifar10, digits, fashion_mnist, location, npz  # noqa: F401  (register loaders)
from miunlearn.data.base import DATASETS, ROLES, Dataset, DatasetInfo, Splits, TensorData, check_dataset, make_splits
from miunlearn.data.forget import FORGET_SELECTORS, select_forget, validate_indices
from miunlearn.errors import MiunlearnError

__all__ = ["DATASETS", "FORGET_SELECTORS", "ROLES", "Dataset", "DatasetInfo", "Splits", "TensorData",
           "check_dataset", "load_dataset", "make_splits", "prepare_splits", "select_forget", "validate_indices"]


def load_dataset(config: DataConfig) -> Dataset:
    """Load a registered dataset, capped to ``config.subset`` pool / ``config.test_subset`` test samples."""
    dataset = DATASETS.get(config.name)(config)
    check_dataset(dataset)
    for attr, cap in (("pool", config.subset), ("test", config.test_subset)):
        if cap is None:
            continue
        if cap < 1:
            raise MiunlearnError(f"data.{'subset' if attr == 'pool' else 'test_subset'} must be positive, got {cap}")
        part = getattr(dataset, attr)
        if cap < len(part):
            keep = np.sort(np.random.default_rng(config.seed).choice(len(part), size=cap, replace=False))
            setattr(dataset, attr, part.subset(keep))
    return dataset


def prepare_splits(dataset: Dataset, data: DataConfig, forget: ForgetConfig) -> Splits:
    """Role split of the pool plus the forget set; a deterministic function of the two configs."""
    fractions = {role: getattr(data, f"{role}_fraction") for role in ROLES}
    splits = make_splits(len(dataset.pool), len(dataset.test), fractions, data.seed)
    train_labels = dataset.pool.y[splits.train].numpy()
    positions = select_forget(forget, train_labels, dataset.info.num_classes)
    splits.forget = splits.train[positions]
    return splits
