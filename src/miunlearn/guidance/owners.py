"""The approximator another model's owner would fit: what U-LiRA needs to run ReMI on a reference model.

U-LiRA (Hayes et al. 2024) runs the whole unlearning algorithm on every reference model. A ``folds``
approximator is part of ReMI's algorithm and its fold models train on the owner's training set, so each
reference model needs its own, fitted on *its* training set; handing it the target's would give the auditor
models trained on the target's D_train (an insider). Other approximators train on D_shadow ∪ D_ref only, so
any owner would fit the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from torch import nn

from miunlearn.config import TrainConfig
from miunlearn.data import TensorData
from miunlearn.guidance.approximators import PrivacyApproximator
from miunlearn.guidance.folds import FoldOut, sample_hashes
from miunlearn.guidance.per_example import out_model_jobs
from miunlearn.training.executors import LocalExecutor


def refit_for(approximator: PrivacyApproximator, train: TensorData) -> bool:
    """Whether the owner of a model trained on ``train`` would fit another approximator than this one: it read its
    owner's training set (``folds``), and that was not ``train`` (compared by content)."""
    return isinstance(approximator, FoldOut) and not np.array_equal(approximator.train_hashes.cpu().numpy(),
                                                                    np.sort(sample_hashes(train)))


def owner_approximator(approximator: PrivacyApproximator, train: TensorData, spec: Callable[[], nn.Module],
                       recipe: TrainConfig, seed: int, store: Path | None = None,
                       console: Console | None = None) -> PrivacyApproximator:
    """``approximator``'s kind, as the owner of a model trained on ``train`` would fit it: for ``folds``, the same
    number of folds drawn from ``train`` (by ``seed``, which also seeds the fold models), the target's recipe and
    the same calibration samples, which must be ones that model never saw (D_shadow ∪ D_ref lie outside every
    reference model's pool); fold models cached in ``store`` as ``fold-KK.safetensors``. Any other kind, or one
    already fitted on ``train`` (a copy of the target trained on the same set), as is."""
    if not refit_for(approximator, train):
        return approximator
    return refit_folds(approximator, train, spec, recipe, seed, store, console)


def refit_folds(approximator: FoldOut, train: TensorData, spec: Callable[[], nn.Module], recipe: TrainConfig,
                seed: int, store: Path | None = None, console: Console | None = None) -> FoldOut:
    """:func:`owner_approximator`'s refit, for a caller that has already asked :func:`refit_for`."""
    count = len(approximator.out_models)
    fold = np.random.default_rng([seed, 0xA11]).permutation(len(train)) % count
    orders = [np.flatnonzero(fold != k) for k in range(count)]
    jobs = out_model_jobs(spec, orders, recipe, 90_000 + 100 * seed, store, "fold", "owner's fold model")
    models = LocalExecutor().run(jobs, train, console).models
    return FoldOut.from_folds(approximator.config, spec, models, train, fold, approximator.calibration,
                              approximator.num_classes, approximator.calibration_x.device)
