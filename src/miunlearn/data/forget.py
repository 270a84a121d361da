"""Forget-set selection: which of D_train's samples a deletion request names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from miunlearn.config import DEFAULT_FORGET_FRACTION, ForgetConfig
from miunlearn.errors import MiunlearnError
from miunlearn.registry import Registry

#: A selector maps (config, labels of D_train, class count) to positions in D_train.
FORGET_SELECTORS: Registry[Callable[[ForgetConfig, np.ndarray, int], np.ndarray]] = Registry("forget mode")


@FORGET_SELECTORS.register("random")
def random_samples(config: ForgetConfig, labels: np.ndarray, num_classes: int) -> np.ndarray:
    n = len(labels)
    if config.count is not None and config.fraction is not None:
        raise MiunlearnError("forget mode 'random' takes forget.fraction or forget.count, not both")
    if config.count is not None:
        count = config.count
    else:
        fraction = DEFAULT_FORGET_FRACTION if config.fraction is None else config.fraction
        if not 0 < fraction < 1:
            raise MiunlearnError(f"forget.fraction must be in (0, 1), got {fraction}")
        count = int(round(fraction * n))
    if count < 1:
        raise MiunlearnError(f"the forget set would be empty (forget.count/fraction gives {count} of {n} samples)")
    if count >= n:
        raise MiunlearnError(f"the forget set would be all {n} training samples: that is retraining from nothing")
    return np.sort(np.random.default_rng(config.seed).choice(n, size=count, replace=False))


@FORGET_SELECTORS.register("class")
def whole_classes(config: ForgetConfig, labels: np.ndarray, num_classes: int) -> np.ndarray:
    if not config.classes:
        raise MiunlearnError("forget mode 'class' needs forget.classes=[...] (class ids)")
    bad = [c for c in config.classes if not 0 <= c < num_classes]
    if bad:
        raise MiunlearnError(f"class id(s) {bad} do not exist; valid class ids are 0..{num_classes - 1}")
    if len(set(config.classes)) >= num_classes:
        raise MiunlearnError("cannot forget every class: nothing would remain to retain")
    positions = np.flatnonzero(np.isin(labels, config.classes))
    if positions.size == 0:
        raise MiunlearnError(f"D_train has no samples of class(es) {config.classes}")
    return positions


@FORGET_SELECTORS.register("indices")
def explicit_indices(config: ForgetConfig, labels: np.ndarray, num_classes: int) -> np.ndarray:
    return validate_indices(config.indices, len(labels))


def validate_indices(indices: list[int] | np.ndarray, n: int) -> np.ndarray:
    """Check a user's forget indices (positions in D_train) and return them sorted."""
    idx = np.asarray(indices)
    if idx.size == 0:
        raise MiunlearnError("the forget set is empty: give at least one index")
    if not np.issubdtype(idx.dtype, np.integer):
        raise MiunlearnError("forget indices must be integers")
    out_of_range = idx[(idx < 0) | (idx >= n)]
    if out_of_range.size:
        raise MiunlearnError(f"forget indices out of range 0..{n - 1}: {out_of_range[:5].tolist()}")
    unique, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise MiunlearnError(f"forget indices repeat: {unique[counts > 1][:5].tolist()}")
    if unique.size == n:
        raise MiunlearnError(f"the forget set would be all {n} training samples: that is retraining from nothing")
    return unique


#: The fields each mode reads; a field another mode reads must stay at its default.
FIELDS_READ = {"random": ("fraction", "count"), "class": ("classes",), "indices": ("indices",)}


def ignored_fields(config: ForgetConfig) -> list[str]:
    """Problems: forget fields set although ``config.mode`` ignores them (the saved config would mislead)."""
    read = FIELDS_READ.get(config.mode, ())
    unread = [f for fields in FIELDS_READ.values() for f in fields if f not in read]
    return [f"forget.{f}={getattr(config, f)!r} is ignored in forget mode {config.mode!r}; remove it"
            for f in unread if getattr(config, f) not in (None, [])]


def select_forget(config: ForgetConfig, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Positions in D_train (0..len(labels)-1) of the samples to forget."""
    return FORGET_SELECTORS.get(config.mode)(config, labels, num_classes)
