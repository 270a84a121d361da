"""Location (Foursquare check-ins, Bangkok): Shokri et al.'s tabular membership-inference benchmark.

One CSV row per record: a quoted class label 1..30, then 446 binary features. Read from the
``bangkok`` file or from the ``dataset_location.tgz`` archive that holds it.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from miunlearn.config import DataConfig
from miunlearn.data.base import DATASETS, Dataset, DatasetInfo, TensorData, dataset_root, fixed_test_split
from miunlearn.errors import DataNotFoundError, MiunlearnError

NUM_FEATURES = 446
NUM_CLASSES = 30


def _read_text(root: Path) -> str:
    if root.is_file():
        candidates = [root]
    else:
        candidates = [root / "bangkok", root / "bangkok.csv", root / "dataset_location.tgz"]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            if path.name.endswith((".tgz", ".tar.gz")):
                with tarfile.open(path) as archive:
                    members = [m for m in archive.getmembers()
                               if m.isfile() and Path(m.name).name.startswith("bangkok")]
                    if not members:
                        raise MiunlearnError(f"{path} holds no 'bangkok' CSV file")
                    return archive.extractfile(members[0]).read().decode()
            return path.read_text(encoding="utf-8")
        except (OSError, EOFError, tarfile.TarError, UnicodeDecodeError, zlib.error) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MiunlearnError(f"{path} cannot be read as the Location CSV ({reason})") from None
    raise DataNotFoundError(
        f"Location data not found (looked for {', '.join(str(c) for c in candidates)}). "
        "Pass data.root=FOLDER holding dataset_location.tgz or its 'bangkok' CSV (the Shokri et al. 2017 "
        "release, github.com/privacytrustlab/datasets)")


@DATASETS.register("location")
def load(config: DataConfig) -> Dataset:
    root = dataset_root(config)
    text = _read_text(root).replace('"', "")
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise MiunlearnError(f"the Location CSV in {root} has a bad row ({str(exc).splitlines()[0]})") from None
    if table.ndim != 2 or table.shape[1] != NUM_FEATURES + 1:
        raise MiunlearnError(f"Location CSV must have {NUM_FEATURES + 1} columns, found {table.shape}")
    y = table[:, 0].astype(np.int64) - 1
    if y.min() < 0 or y.max() >= NUM_CLASSES:
        raise MiunlearnError(f"Location labels must be 1..{NUM_CLASSES}, found {y.min() + 1}..{y.max() + 1}")
    x = torch.from_numpy(table[:, 1:].copy())
    y_t = torch.from_numpy(y)
    pool_idx, test_idx = fixed_test_split(len(y))
    info = DatasetInfo("location", (NUM_FEATURES,), NUM_CLASSES, is_image=False)
    return Dataset(info, TensorData(x[pool_idx], y_t[pool_idx]), TensorData(x[test_idx], y_t[test_idx]))
