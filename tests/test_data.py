import subprocess
import sys

import numpy as np
import pytest

from conftest import shared
from miunlearn import MiunlearnError, load_dataset
from miunlearn.config import DataConfig, ForgetConfig
from miunlearn.data import make_splits, prepare_splits, select_forget, validate_indices
from miunlearn.errors import DataNotFoundError


def test_digits_needs_no_files():
    ds = load_dataset(DataConfig(name="digits"))
    assert ds.info.input_shape == (1, 8, 8) and ds.info.num_classes == 10
    assert len(ds.pool) + len(ds.test) == 1797
    assert float(ds.pool.x.max()) <= 1.0


def test_fashion_mnist_reads_gzipped_idx():
    ds = load_dataset(DataConfig(name="fashion-mnist", root=str(shared("fashion-mnist"))))
    assert (len(ds.pool), len(ds.test)) == (60000, 10000)
    assert ds.info.input_shape == (1, 28, 28)
    assert sorted(np.unique(ds.test.y.numpy())) == list(range(10))
    assert abs(float(ds.pool.x.mean())) < 1e-3  # standardised with the pool's statistics


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    folder = shared("cifar10")
    out = tmp_path_factory.mktemp("cifar")
    subprocess.run([sys.executable, str(folder / "unpack.py"), str(out)], check=True, capture_output=True)
    return out


def test_cifar10_from_npz_arrays(cifar_root):
    ds = load_dataset(DataConfig(name="cifar10", root=str(cifar_root), subset=1000, test_subset=500))
    assert (len(ds.pool), len(ds.test)) == (1000, 500)
    assert ds.info.input_shape == (3, 32, 32)


def test_location_from_tgz():
    ds = load_dataset(DataConfig(name="location", root=str(shared("location"))))
    assert len(ds.pool) + len(ds.test) == 5010
    assert ds.info.input_shape == (446,) and ds.info.num_classes == 30
    assert set(np.unique(ds.pool.x.numpy())) <= {0.0, 1.0}


def test_npz_user_arrays(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.random.rand(50, 4).astype(np.float32), y=np.arange(50) % 3)
    ds = load_dataset(DataConfig(name="npz", root=str(path)))
    assert ds.info.num_classes == 3 and ds.info.input_shape == (4,)
    assert len(ds.pool) == 40 and len(ds.test) == 10


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "location"])
def test_missing_files_say_where_and_how(tmp_path, name):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(DataConfig(name=name, root=str(tmp_path)))
    assert str(tmp_path) in str(err.value)
    assert "data.root" in str(err.value)


def test_splits_are_disjoint_and_deterministic():
    fractions = {"train": 0.4, "ref": 0.1, "shadow": 0.3, "audit": 0.2}
    a, b = make_splits(1000, 100, fractions, seed=3), make_splits(1000, 100, fractions, seed=3)
    c = make_splits(1000, 100, fractions, seed=4)
    roles = [a.train, a.ref, a.shadow, a.audit]
    together = np.concatenate(roles)
    assert len(together) == len(np.unique(together)) == 1000
    assert all(np.array_equal(x, y) for x, y in zip(roles, [b.train, b.ref, b.shadow, b.audit]))
    assert not np.array_equal(a.train, c.train)


def test_forget_is_inside_train_and_retain_is_the_rest(tmp_path):
    ds = load_dataset(DataConfig(name="digits"))
    splits = prepare_splits(ds, DataConfig(), ForgetConfig(fraction=0.1))
    assert np.isin(splits.forget, splits.train).all()
    assert len(splits.forget) == round(0.1 * len(splits.train))
    assert not np.isin(splits.retain, splits.forget).any()
    assert len(splits.retain) + len(splits.forget) == len(splits.train)
    splits.save(tmp_path / "s.npz")
    loaded = type(splits).load(tmp_path / "s.npz")
    assert np.array_equal(loaded.forget, splits.forget) and np.array_equal(loaded.audit, splits.audit)


def test_class_forgetting_takes_every_sample_of_the_class():
    labels = np.array([0, 1, 2, 1, 0, 1])
    assert select_forget(ForgetConfig(mode="class", classes=[1]), labels, 3).tolist() == [1, 3, 5]


@pytest.mark.parametrize("indices,message", [
    ([], "empty"), ([0, 99], "out of range"), ([-1], "out of range"), ([1, 1], "repeat"),
    (list(range(10)), "all 10 training samples"),
])
def test_bad_forget_indices(indices, message):
    with pytest.raises(MiunlearnError, match=message):
        validate_indices(indices, 10)


@pytest.mark.parametrize("config,message", [
    (ForgetConfig(mode="class", classes=[10]), "do not exist"),
    (ForgetConfig(mode="class", classes=list(range(10))), "every class"),
    (ForgetConfig(mode="random", fraction=1.5), "in \\(0, 1\\)"),
    (ForgetConfig(mode="random", count=0, fraction=None), "empty"),
    (ForgetConfig(mode="sideways"), "unknown forget mode"),
])
def test_bad_forget_requests(config, message):
    with pytest.raises(MiunlearnError, match=message):
        select_forget(config, np.arange(100) % 10, 10)


def test_fractions_must_fit():
    with pytest.raises(MiunlearnError, match="add up"):
        make_splits(100, 10, {"train": 0.6, "ref": 0.2, "shadow": 0.2, "audit": 0.2}, 0)
