"""The user's data and deletion requests, read as they have them and speaking their row IDs.

A table is an ``.npz`` (arrays ``x``, ``y`` and optionally ``ids``) or a ``.csv`` with a header (a label
column, optionally an ``ids`` column, every other column a feature). ``x`` goes to the model as given,
only cast to float32 (float64 and integer features accepted), because the deployed model was trained on
the user's own preprocessing; labels may be any integer type. A row's ID is its ``ids`` entry, else its
position in the file. A request is a file of IDs: one per line or comma-separated (``.txt``), a CSV with
an ``ids`` column, a JSON list, or an ``.npy``/``.npz`` array.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError

LABEL_COLUMNS = ("label", "y", "target", "class")
ID_COLUMNS = ("ids", "id")


@dataclass
class Table:
    """Rows of the user's data: features, integer labels, the user's row IDs, where it came from."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    source: str
    sha256: str

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self, rows: np.ndarray | None = None) -> TensorData:
        x, y = (self.x, self.y) if rows is None else (self.x[rows], self.y[rows])
        return TensorData(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))

    def positions(self, ids: np.ndarray, what: str) -> np.ndarray:
        """Row positions of the user's ``ids``; an unknown ID is an error that names it."""
        index = {key: i for i, key in enumerate(self.ids.tolist())}
        missing = [i for i in ids.tolist() if i not in index]
        if missing:
            raise MiunlearnError(f"{what}: {len(missing)} ID(s) are not rows of the training data {self.source} "
                                 f"(first: {', '.join(map(repr, missing[:5]))}); IDs are "
                                 + ("its 'ids' column" if self.has_own_ids else f"row numbers 0..{len(self) - 1}"))
        return np.array([index[i] for i in ids.tolist()], dtype=np.int64)

    @property
    def has_own_ids(self) -> bool:
        return not (self.ids.dtype.kind in "iu" and np.array_equal(self.ids, np.arange(len(self))))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_from_arrays(x: np.ndarray, y: np.ndarray, ids: np.ndarray | None = None, source: str = "arrays") -> Table:
    """A :class:`Table` from in-memory arrays (the Python API); hashed over their bytes."""
    x, y = np.asarray(x), np.asarray(y)
    table = _checked(x, y, ids, source)
    digest = hashlib.sha256()
    for array in (table.x, table.y, table.ids.astype(str) if table.ids.dtype.kind not in "iu" else table.ids):
        digest.update(np.ascontiguousarray(array).tobytes())
    table.sha256 = digest.hexdigest()
    return table


def load_table(path: str | Path, label_column: str | None = None) -> Table:
    """Read an ``.npz`` or ``.csv`` table (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MiunlearnError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise MiunlearnError(f"{path} is not a readable .npz file ({exc})") from None
        if "x" not in arrays or "y" not in arrays:
            raise MiunlearnError(f"{path} must hold arrays 'x' and 'y' (and optionally 'ids'); found "
                                 f"{', '.join(sorted(arrays)) or 'none'}")
        x, y, ids = arrays["x"], arrays["y"], arrays.get("ids")
    elif suffix == ".csv":
        x, y, ids = _read_csv(path, label_column)
    else:
        raise MiunlearnError(f"{path}: unsupported data file type {suffix!r}; use .npz (x, y[, ids]) or .csv")
    table = _checked(x, y, ids, str(path))
    table.sha256 = sha256_file(path)
    return table


def _read_csv(path: Path, label_column: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise MiunlearnError(f"{path}: a CSV needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    lowered = [h.lower() for h in header]
    wanted = [label_column] if label_column else list(LABEL_COLUMNS)
    label = next((lowered.index(c.lower()) for c in wanted if c.lower() in lowered), None)
    if label is None:
        raise MiunlearnError(f"{path}: no label column ({' or '.join(wanted)}) in the header "
                             f"{', '.join(header[:8])}{'...' if len(header) > 8 else ''}; name it with --label-column")
    id_col = next((lowered.index(c) for c in ID_COLUMNS if c in lowered), None)
    body = rows[1:]
    bad = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise MiunlearnError(f"{path}: line {bad[0]} has a different number of fields than the header")
    features = [i for i in range(len(header)) if i not in (label, id_col)]
    try:
        x = np.array([[float(r[i]) for i in features] for r in body], dtype=np.float64)
    except ValueError:
        column = next(header[i] for i in features for r in body if not _is_number(r[i]))
        raise MiunlearnError(f"{path}: feature column {column!r} holds a value that is not a number") from None
    y = np.array([r[label].strip() for r in body])
    ids = None
    if id_col is not None:
        raw = [r[id_col].strip() for r in body]
        ids = np.array([int(v) for v in raw]) if all(_is_int(v) for v in raw) else np.array(raw)
    return x, y, ids


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _checked(x: np.ndarray, y: np.ndarray, ids: np.ndarray | None, source: str) -> Table:
    if len(x) != len(y):
        raise MiunlearnError(f"{source}: {len(x)} rows of x but {len(y)} labels")
    if len(y) == 0:
        raise MiunlearnError(f"{source} holds no rows")
    if x.dtype.kind not in "fiub":
        raise MiunlearnError(f"{source}: x must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise MiunlearnError(f"{source}: x holds NaN or infinite values")
    y = _labels(np.asarray(y), source)
    if ids is None:
        ids = np.arange(len(y))
    ids = np.asarray(ids)
    if ids.shape != (len(y),):
        raise MiunlearnError(f"{source}: 'ids' must be one ID per row ({len(y)}), got shape {ids.shape}")
    if ids.dtype.kind not in "iuU":
        ids = ids.astype(str)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise MiunlearnError(f"{source}: row IDs repeat ({', '.join(map(repr, unique[counts > 1][:5].tolist()))})")
    return Table(x, y, ids, source, "")


def _labels(y: np.ndarray, source: str) -> np.ndarray:
    if y.dtype.kind in "US":
        if not all(_is_int(v) for v in y.astype(str)):
            raise MiunlearnError(f"{source}: labels must be integer class indices 0..K-1 (got e.g. {y[0]!r})")
        y = y.astype(np.int64)
    if y.ndim != 1:
        raise MiunlearnError(f"{source}: labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.mod(y, 1) == 0):
            raise MiunlearnError(f"{source}: labels must be integer class indices, found non-integer values")
    elif y.dtype.kind not in "iub":
        raise MiunlearnError(f"{source}: labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise MiunlearnError(f"{source}: labels must be non-negative class indices, found {int(y.min())}")
    return y


def load_ids(path: str | Path) -> np.ndarray:
    """The IDs of a deletion request file (see the module docstring), checked for repeats."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MiunlearnError(f"request file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            ids = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if "ids" not in f.files:
                    raise MiunlearnError(f"{path} must hold an array 'ids'; found {', '.join(f.files)}")
                ids = f["ids"]
        elif suffix == ".json":
            data = json.loads(path.read_text())
            ids = np.asarray(data["ids"] if isinstance(data, dict) and "ids" in data else data)
        else:
            ids = _ids_from_text(path)
    except (OSError, ValueError) as exc:
        raise MiunlearnError(f"{path} is not a readable request file ({exc})".splitlines()[0]) from None
    return check_ids(ids, str(path))


def _ids_from_text(path: Path) -> np.ndarray:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    header = [f.strip().lower() for f in lines[0].split(",")] if lines else []
    if any(name in header for name in ID_COLUMNS):  # a CSV: take its ids column
        column = next(header.index(c) for c in ID_COLUMNS if c in header)
        values = [r[column].strip() for r in csv.reader(lines[1:]) if r]
    else:
        values = [v.strip() for line in lines for v in line.replace(",", " ").split()]
    return np.array([int(v) for v in values]) if all(_is_int(v) for v in values) else np.array(values)


def check_ids(ids: np.ndarray | list, source: str = "request") -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0:
        raise MiunlearnError(f"{source}: the request names no IDs (need a 1-D list of row IDs)")
    if ids.dtype.kind == "f" and np.all(np.mod(ids, 1) == 0):
        ids = ids.astype(np.int64)
    if ids.dtype.kind not in "iuU":
        ids = ids.astype(str)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = ", ".join(map(repr, unique[counts > 1][:5].tolist()))
        raise MiunlearnError(f"{source}: IDs repeat within the request ({repeated})")
    return ids


def ids_json(ids: np.ndarray) -> list:
    """IDs as JSON values: ints stay ints, anything else is a string."""
    return [int(i) for i in ids] if ids.dtype.kind in "iu" else [str(i) for i in ids]
