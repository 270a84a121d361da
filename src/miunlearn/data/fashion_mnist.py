"""Fashion-MNIST from its four IDX files (gzipped or not), as torchvision lays them out."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from miunlearn.config import DataConfig
from miunlearn.data.base import DATASETS, Dataset, dataset_root, downloading, image_dataset
from miunlearn.errors import DataNotFoundError, MiunlearnError

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST family's format): magic, dims, then big-endian uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, truncated, trailing bytes
        reason = str(exc) or type(exc).__name__
        raise MiunlearnError(f"{path} cannot be read ({reason}); download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or len(raw) < 4 + 4 * raw[3]:
        raise MiunlearnError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).copy()
    if data.size != int(np.prod(dims)):
        state = "truncated" if data.size < int(np.prod(dims)) else "longer than its header says"
        raise MiunlearnError(f"{path} is {state}: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def _candidates(root: Path) -> list[Path]:
    return [root, root / "raw", root / "FashionMNIST" / "raw"]


def _find(root: Path, stem: str) -> Path | None:
    for folder in _candidates(root):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


@DATASETS.register("fashion-mnist")
def load(config: DataConfig) -> Dataset:
    root = dataset_root(config)
    if config.download and _find(root, FILES["train_x"]) is None:
        from torchvision.datasets import FashionMNIST

        with downloading(root, "Fashion-MNIST"):
            FashionMNIST(str(root), train=True, download=True)
            FashionMNIST(str(root), train=False, download=True)
    paths = {key: _find(root, stem) for key, stem in FILES.items()}
    missing = [FILES[key] for key, path in paths.items() if path is None]
    if missing:
        looked = ", ".join(str(p) for p in _candidates(root))
        raise DataNotFoundError(
            f"Fashion-MNIST files not found ({', '.join(missing)}[.gz]); looked in {looked}. "
            "Pass data.root=FOLDER holding the four IDX files, or data.download=true to fetch them")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for key, ndim in (("train_x", 3), ("test_x", 3), ("train_y", 1), ("test_y", 1)):
        if arrays[key].ndim != ndim:
            raise MiunlearnError(f"{paths[key]} holds a {arrays[key].ndim}-D array; {ndim}-D was expected")
    for split in ("train", "test"):
        if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
            raise MiunlearnError(f"{paths[split + '_x']} and {paths[split + '_y']} hold different sample counts")
    return image_dataset("fashion-mnist", arrays["train_x"], arrays["train_y"].astype(np.int64),
                         arrays["test_x"], arrays["test_y"].astype(np.int64), num_classes=10)
