"""Artefact stores are keyed by the data's content and verified before use: a poisoned cache cannot lie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from miunlearn import load_config, run_experiment
from miunlearn.artefacts import digest_path, verified

TIMING = ("seconds", "speedup")


def _data(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(np.int64) + (x[:, 1] > 0.8)
    np.savez(path, x=x, y=y)
    return path


def _run(data: Path, cache: Path):
    config = load_config(None, [f"data.root={data}", "data.name=npz", "model.width=16", "train.epochs=3",
                                "train.progress=false", "approximator.name=shadow-nn", "approximator.num_shadows=2",
                                "approximator.attack_epochs=5",
                                "unlearn.methods=[remi,retrain]", "unlearn.params.remi.epochs=2",
                                f"executor.cache_dir={cache}"])
    run = run_experiment(config)
    metrics = {m: {k: v for k, v in row.items() if k not in TIMING} for m, row in run.metrics.items()}
    return metrics, sorted((cache / "shadow-models").iterdir())


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    root = tmp_path_factory.mktemp("artefacts")
    data = _data(root / "a.npz", 0)
    metrics, stores = _run(data, root / "cache")
    return root, data, metrics, stores


def test_every_stored_model_has_a_verified_digest(first):
    _, _, _, stores = first
    (store,) = stores
    files = sorted(store.glob("shadow-*.safetensors"))
    assert len(files) == 2 and all(verified(f) and digest_path(f).is_file() for f in files)


@pytest.mark.parametrize("damage", ["zeroed", "swapped"])
def test_a_poisoned_store_gives_the_fresh_store_results(first, damage):
    root, data, fresh, (store,) = first
    target = store / "shadow-00.safetensors"
    if damage == "zeroed":  # same size, zero bytes
        target.write_bytes(bytes(target.stat().st_size))
    else:  # a valid weights file of another shadow model
        target.write_bytes((store / "shadow-01.safetensors").read_bytes())
    again, stores = _run(data, root / "cache")
    assert stores == [store] and verified(target)
    assert again == fresh


def test_same_shape_other_content_shares_no_artefacts(first, tmp_path):
    root, _, _, (store,) = first
    other = _data(tmp_path / "b.npz", 1)
    shared_cache, stores = _run(other, root / "cache")
    assert len(stores) == 2 and store in stores  # a second store: the content differs, the shape does not
    fresh, _ = _run(other, tmp_path / "fresh-cache")
    assert shared_cache == fresh
