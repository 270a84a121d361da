"""Shared fixtures: tiny, always-available data (sklearn digits and synthetic blobs), shared files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from miunlearn import load_config, run_experiment

# Tiny models gain nothing from a second thread, and OpenMP threads spinning against another process
# on a 2-core machine slow them down several hundred times (measured: 52 s instead of 0.13 s).
torch.set_num_threads(1)

SHARED = Path(os.environ.get("MIUNLEARN_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def shared(name: str) -> Path:
    """A folder of ../shared/datasets, or skip the test saying why."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared dataset folder {path} is absent (set MIUNLEARN_SHARED_DATASETS)")
    return path


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Shadow and reference models that runs cache go to a temporary folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIUNLEARN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def blobs_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic tabular data with 10% label noise: an MLP memorises it, so membership leaks strongly."""
    x, y = make_classification(n_samples=2500, n_features=30, n_informative=15, n_classes=5, n_clusters_per_class=2,
                               flip_y=0.1, class_sep=1.2, random_state=0)
    path = tmp_path_factory.mktemp("blobs") / "blobs.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return path


FAST = ["train.progress=false", "approximator.num_shadows=2"]  # the default (folds) approximator: two fold models


def blobs_overrides(path: Path) -> list[str]:
    return [f"data.root={path}", "data.name=npz", "model.width=128", "train.epochs=40", "train.weight_decay=0",
            "data.train_fraction=0.3", "data.ref_fraction=0.15", "data.shadow_fraction=0.3",
            "data.audit_fraction=0.25", *FAST]


@pytest.fixture(scope="session")
def blobs_run(blobs_npz: Path, tmp_path_factory: pytest.TempPathFactory):
    """One full experiment (target, approximator, ReMI, retrain, audit) on the synthetic blobs."""
    out = tmp_path_factory.mktemp("runs") / "blobs"
    # D_f has 60 samples here; a pass over it is ReMI's min_steps (10) steps, so 8 passes give this request
    # 80 steps of budget. ReMI pulls each forgotten sample to its OUT models' mean: from a single OUT model that
    # target carries the model's own noise, so its per-sample outputs (JS to retrain) would not get closer.
    return run_experiment(load_config(None, [*blobs_overrides(blobs_npz), "unlearn.params.remi.epochs=8",
                                             "approximator.num_shadows=4"]), out)
