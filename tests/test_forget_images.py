"""`miunlearn forget` on data kept as images: an ImageFolder tree, or a torchvision dataset on local files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import miunlearn
from conftest import shared
from miunlearn.cli import app
from miunlearn.data import DatasetInfo
from miunlearn.deployed.inputs import load_ids, load_table
from miunlearn.errors import MiunlearnError
from miunlearn.models import build_model

FAST = ["train.epochs=15", "train.progress=false"]
CLASSES = ("frog", "cat", "dog")  # made in this order; ImageFolder numbers them sorted: cat 0, dog 1, frog 2


def make_folder(root: Path, per_class: int, seed: int) -> Path:
    """3 classes of 8x8 grey PNGs: a class-specific pattern plus noise; file names hold a space."""
    rng = np.random.default_rng(seed)
    patterns = {name: np.random.default_rng(100 + i).integers(0, 255, (8, 8)) for i, name in enumerate(CLASSES)}
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(patterns[name] + rng.normal(0, 40, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"img {i:02d}.png")
    return root


def train_mlp(x: np.ndarray, y: np.ndarray, shape: tuple[int, ...], classes: int) -> torch.nn.Module:
    """The user's own loop: a registered mlp over the flattened pixels, as ToTensor gives them."""
    torch.manual_seed(0)
    model = build_model("mlp", DatasetInfo("user", shape, classes, True), 16)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    features, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    make_folder(root / "train", 20, seed=1)
    make_folder(root / "held", 20, seed=2)
    table = load_table(root / "train")
    torch.save(train_mlp(table.x, table.y, (3, 8, 8), 3).state_dict(), root / "model.pt")
    (root / "first.txt").write_text("cat/img 00.png\ndog/img 05.png\n")
    (root / "second.txt").write_text("frog/img 19.png\n")
    (root / "again.txt").write_text("cat/img 01.png\ndog/img 05.png\n")
    return root


def test_an_image_folder_reads_as_imagefolder_numbers_it(images):
    table = load_table(images / "train")
    assert table.classes == ("cat", "dog", "frog")
    assert table.x.shape == (60, 3, 8, 8) and table.x.dtype == np.float32 and 0 <= table.x.min() <= table.x.max() <= 1
    labels = dict(zip(table.ids.tolist(), table.y.tolist()))
    assert labels["cat/img 00.png"] == 0 and labels["dog/img 07.png"] == 1 and labels["frog/img 19.png"] == 2
    assert table.ids[:2].tolist() == ["cat/img 00.png", "cat/img 01.png"]
    assert load_ids(images / "first.txt").tolist() == ["cat/img 00.png", "dog/img 05.png"]  # spaces kept
    with pytest.raises(MiunlearnError, match="image file paths relative to"):
        table.positions(np.array(["cat/img 99.png"]), "request")


def test_cli_forgets_images_named_by_their_relative_paths(images, monkeypatch):
    monkeypatch.chdir(images)
    runner = CliRunner()
    first = runner.invoke(app, ["forget", "state", "-r", "first.txt", "--model", "mlp", "--model-arg", "width=16",
                                "--weights", "model.pt", "--train", "train", "--held-out", "held", "--json", *FAST])
    assert first.exit_code == 0, first.output
    certificate = json.loads(first.stdout)["certificate_data"]
    assert certificate["forgotten_ids"] == ["cat/img 00.png", "dog/img 05.png"]
    deployment = json.loads((images / "state" / "deployment.json").read_text())
    assert deployment["classes"] == ["cat", "dog", "frog"]
    assert deployment["train"]["source"] == str((images / "train").resolve())
    with np.load(images / "state" / "held_out_split.npz") as split:  # held-out roles speak the user's IDs too
        audit_ids = split["audit_ids"].tolist()
    assert len(audit_ids) == deployment["held_out"]["audit"]["rows"] and all(
        (images / "held" / i).is_file() for i in audit_ids)

    # a later request reads the folders again from the state folder
    second = runner.invoke(app, ["forget", "state", "-r", "second.txt", "--json", "unlearn.remi.epochs=3"])
    assert second.exit_code == 0, second.output
    ledger = [json.loads(line) for line in (images / "state" / "ledger.jsonl").read_text().splitlines()]
    assert [e["ids"] for e in ledger] == [["cat/img 00.png", "dog/img 05.png"], ["frog/img 19.png"]]
    again = runner.invoke(app, ["forget", "state", "-r", "again.txt"])
    assert again.exit_code == 2 and "ID 'dog/img 05.png' by request 1" in " ".join(again.output.split())

    # a held-out folder given again must number classes as the state folder recorded
    make_folder(images / "renamed", 20, seed=2)
    (images / "renamed" / "frog").rename(images / "renamed" / "toad")
    (images / "third.txt").write_text("cat/img 02.png\n")
    before = sorted(p.stat().st_mtime_ns for p in (images / "state").rglob("*"))
    other = runner.invoke(app, ["forget", "state", "-r", "third.txt", "--held-out", "renamed"])
    assert other.exit_code == 2 and "not in the training data: toad" in " ".join(other.output.split())
    assert sorted(p.stat().st_mtime_ns for p in (images / "state").rglob("*")) == before


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_a_torchvision_dataset_on_local_files(tmp_path):
    """FashionMNIST as torchvision reads it (raw IDX files under ROOT/FashionMNIST/raw), never downloaded:
    train split for training, test split as held-out, IDs are positions."""
    raw = tmp_path / "fm" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 255, (3, 8, 8))
    for prefix, n in (("train", 60), ("t10k", 60)):
        y = np.arange(n) % 3
        write_idx(raw / f"{prefix}-images-idx3-ubyte", np.clip(patterns[y] + rng.normal(0, 30, (n, 8, 8)), 0, 255))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    train = load_table(f"torchvision:FashionMNIST:{tmp_path / 'fm'}")
    held = load_table(f"torchvision:FashionMNIST:{tmp_path / 'fm'}:test")
    assert train.x.shape == (60, 1, 8, 8) and train.y[:4].tolist() == [0, 1, 2, 0]
    assert train.classes[0] == "T-shirt/top" and train.sha256 != held.sha256
    model = train_mlp(train.x, train.y, (1, 8, 8), 10)
    result = miunlearn.forget(tmp_path / "state", [4, 7], model=model,
                              train=f"torchvision:FashionMNIST:{tmp_path / 'fm'}:train",
                              held_out=f"torchvision:FashionMNIST:{tmp_path / 'fm'}:test", settings=FAST)
    assert result.certificate["forgotten_ids"] == [4, 7]
    later = miunlearn.forget(tmp_path / "state", [9, 10], model=model, settings=["unlearn.remi.epochs=2"])
    assert later.request == 2
    assert later.certificate["provenance"]["train_data"]["source"].endswith("/fm:train")


def test_the_real_fashion_mnist_test_split_through_torchvision(tmp_path):
    """The released IDX files, un-gzipped where torchvision looks for them, read as torchvision reads them."""
    with pytest.raises(MiunlearnError, match=r"FashionMNIST\('.*', download=True, train=True\)"):
        load_table(f"torchvision:FashionMNIST:{tmp_path}")  # not there yet: the error says how to fetch them
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(gzip.decompress((shared("fashion-mnist") / f"{name}.gz").read_bytes()))
    table = load_table(f"torchvision:FashionMNIST:{tmp_path}:test")
    assert table.x.shape == (10_000, 1, 28, 28) and np.bincount(table.y).tolist() == [1000] * 10
    assert table.y[:5].tolist() == [9, 2, 1, 1, 6] and table.classes[9] == "Ankle boot"
    assert table.ids[-1] == 9999  # IDs are positions in the split
