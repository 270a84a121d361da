"""The user's data and deletion requests, read as they have them and speaking their row IDs.

A data source is read by the reader its form names (:data:`READERS`):

- ``npz``: arrays ``x``, ``y`` and optionally ``ids``;
- ``csv``: a header, a label column, optionally an ``ids`` column, every other column a feature;
- ``image-folder``: a folder in torchvision's ``ImageFolder`` layout (``root/class_name/image.png``), read by
  ``ImageFolder`` itself: class ``k`` is the ``k``-th class folder name in sorted order, rows come in its
  order, and a row's ID is its file path relative to ``root`` (``cat/0001.png``);
- ``torchvision``: ``torchvision:NAME:ROOT[:train|test]``, a dataset class of ``torchvision.datasets``
  built on files already under ``ROOT`` (never downloaded here); IDs are positions.

Arrays from files go to the model as stored, only cast to float32 (float64 and integer features accepted),
because the deployed model was trained on the user's own preprocessing; images arrive as torchvision's
``ToTensor`` gives them (``C x H x W`` floats in ``[0, 1]``), so a model that normalises must do it itself.
Labels may be any integer type. A row's ID is its ``ids`` entry (or image path), else its position. A
request is a file of IDs: one per line or comma-separated (``.txt``), a CSV with an ``ids`` column, a JSON
list, or an ``.npy``/``.npz`` array.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.registry import Registry

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
    classes: tuple[str, ...] | None = None
    """Class names by index, where the data names its classes (image folders, torchvision datasets)."""
    ids_are: str = ""
    """What the IDs are, for messages; empty: the ``ids`` column or row numbers."""

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
                                 + (self.ids_are or ("its 'ids' column" if self.has_own_ids
                                                     else f"row numbers 0..{len(self) - 1}")))
        return np.array([index[i] for i in ids.tolist()], dtype=np.int64)

    @property
    def has_own_ids(self) -> bool:
        return not (self.ids.dtype.kind in "iu" and np.array_equal(self.ids, np.arange(len(self))))


def check_classes(table: Table, classes: list[str] | tuple[str, ...], what: str) -> None:
    """Class names must match the training data's, index for index: ``ImageFolder`` numbers classes by their
    sorted folder names, so a missing or extra class folder would silently shift every label after it."""
    if table.classes is None or tuple(table.classes) == tuple(classes):
        return
    missing = sorted(set(classes) - set(table.classes))
    extra = sorted(set(table.classes) - set(classes))
    detail = "; ".join(part for part in (f"missing: {', '.join(missing)}" if missing else "",
                                         f"not in the training data: {', '.join(extra)}" if extra else "") if part)
    raise MiunlearnError(f"the {what} data ({table.source}) has classes {', '.join(table.classes)} but the "
                         f"training data has {', '.join(classes)} ({detail or 'in another order'}); class numbers "
                         "would not agree")


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


#: Readers of the user's data, by form: each takes the source (a path or spec) and the CSV label column.
READERS: Registry[Callable[[str, str | None], Table]] = Registry("data format")
TORCHVISION = "torchvision:"


def data_format(source: str | Path) -> str:
    """The form of a data source: ``torchvision`` for a ``torchvision:`` spec, ``image-folder`` for a folder,
    else the file's suffix."""
    text = str(source)
    if text.startswith(TORCHVISION):
        return "torchvision"
    path = Path(text).expanduser()
    return "image-folder" if path.is_dir() else path.suffix.lower().lstrip(".")


def can_read(source: str) -> bool:
    """Whether a saved source can be read again as it is (its file or folder is still there)."""
    return data_format(source) == "torchvision" or Path(source).expanduser().exists()


def load_table(source: str | Path, label_column: str | None = None) -> Table:
    """Read the user's data with the reader of its form (see the module docstring)."""
    text = str(source)
    kind = data_format(text)
    if not can_read(text):
        raise MiunlearnError(f"data file {text!r} does not exist")
    if kind not in READERS:
        raise MiunlearnError(f"{text}: {READERS.unknown_message(kind or '(no suffix)')} (a folder is an image "
                             f"folder; {TORCHVISION}NAME:ROOT[:train|test] a torchvision dataset)")
    return READERS.get(kind)(text, label_column)


@READERS.register("npz")
def _read_npz(source: str, label_column: str | None) -> Table:
    path = Path(source).expanduser()
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise MiunlearnError(f"{path} is not a readable .npz file ({exc})") from None
    if "x" not in arrays or "y" not in arrays:
        raise MiunlearnError(f"{path} must hold arrays 'x' and 'y' (and optionally 'ids'); found "
                             f"{', '.join(sorted(arrays)) or 'none'}")
    table = _checked(arrays["x"], arrays["y"], arrays.get("ids"), str(path))
    table.sha256 = sha256_file(path)
    return table


@READERS.register("csv")
def _read_csv_table(source: str, label_column: str | None) -> Table:
    path = Path(source).expanduser()
    table = _checked(*_read_csv(path, label_column), str(path))
    table.sha256 = sha256_file(path)
    return table


@READERS.register("image-folder")
def _read_image_folder(source: str, label_column: str | None) -> Table:
    """Every image of an ``ImageFolder`` tree, hashed over the relative paths and file bytes."""
    from torchvision.datasets import ImageFolder

    root = Path(source).expanduser()
    try:
        folder = ImageFolder(str(root))
    except (FileNotFoundError, OSError) as exc:
        raise MiunlearnError(f"{root} is not an image folder (root/class_name/image.png): "
                             f"{str(exc).splitlines()[0]}") from None
    digest = hashlib.sha256()
    images, ids = [], []
    for file, _ in folder.samples:
        relative = Path(file).relative_to(root).as_posix()
        try:
            digest.update(relative.encode() + b"\0" + Path(file).read_bytes())
            images.append(_pixels(folder.loader(file)))
        except OSError as exc:
            raise MiunlearnError(f"{root}: image {relative!r} cannot be read ({str(exc).splitlines()[0]})") from None
        if images[-1].shape != images[0].shape:
            raise MiunlearnError(f"{root}: images differ in size ({ids[0]!r} is {_size(images[0])}, {relative!r} is "
                                 f"{_size(images[-1])}); give them the size the model was trained on")
        ids.append(relative)
    table = _checked(np.stack(images), np.asarray(folder.targets), np.array(ids), str(root))
    table.sha256, table.classes = digest.hexdigest(), tuple(folder.classes)
    table.ids_are = f"image file paths relative to {root} (e.g. {ids[0]!r})"
    return table


@READERS.register("torchvision")
def _read_torchvision(source: str, label_column: str | None) -> Table:
    """A dataset class of ``torchvision.datasets`` on files already under its root (never downloaded)."""
    name, root, split = _torchvision_spec(source)
    import torchvision.datasets

    classes: Registry[Any] = Registry("torchvision dataset")
    for entry in torchvision.datasets.__all__:
        cls = getattr(torchvision.datasets, entry)
        if isinstance(cls, type) and issubclass(cls, torchvision.datasets.VisionDataset) and entry != "VisionDataset":
            classes.register(entry)(functools.partial(cls))  # a partial: the registry names classes it holds
    dataset_class = classes.get(name)
    spec = f"{TORCHVISION}{name}:{root}:{split}"
    parameters = inspect.signature(dataset_class).parameters
    chosen = {"train": split == "train"} if "train" in parameters else {"split": split}
    try:
        dataset = dataset_class(str(root), download=False, **chosen)
    except Exception as exc:  # noqa: BLE001  (torchvision says "not found" in several ways: one line for all)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MiunlearnError(
            f"{spec}: torchvision cannot read {name} under {root} ({reason}); put its files there in the layout "
            f"torchvision expects, or, with internet, fetch them once: python -c \"import torchvision; "
            f"torchvision.datasets.{name}('{root}', download=True, {_call(chosen)})\"") from None
    images, labels = [], []
    for index in range(len(dataset)):
        image, label = dataset[index]
        images.append(_pixels(image))
        labels.append(int(label))
    table = _checked(np.stack(images), np.asarray(labels), None, spec)
    digest = hashlib.sha256()
    for array in (table.x, table.y):
        digest.update(np.ascontiguousarray(array).tobytes())
    table.sha256 = digest.hexdigest()
    table.classes = tuple(map(str, dataset.classes)) if getattr(dataset, "classes", None) else None
    table.ids_are = f"positions 0..{len(table) - 1} in {name}'s {split} split"
    return table


def _torchvision_spec(source: str) -> tuple[str, Path, str]:
    """``torchvision:NAME:ROOT[:train|test]`` as (name, absolute root, split)."""
    name, _, rest = source[len(TORCHVISION):].partition(":")
    root, _, split = rest.rpartition(":")
    if split not in ("train", "test"):
        root, split = rest, "train"
    if not name or not root:
        raise MiunlearnError(f"{source!r}: a torchvision dataset is {TORCHVISION}NAME:ROOT[:train|test], e.g. "
                             f"{TORCHVISION}FashionMNIST:data/fmnist:test")
    return name, Path(root).expanduser().resolve(), split


def _call(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())


def _pixels(image: Any) -> np.ndarray:
    """An image as ``ToTensor`` gives it: ``C x H x W`` float32 in ``[0, 1]``."""
    from torchvision.transforms.functional import to_tensor

    return image.numpy() if isinstance(image, torch.Tensor) else to_tensor(image).numpy()


def _size(image: np.ndarray) -> str:
    return "x".join(map(str, image.shape[1:])) + f" with {image.shape[0]} channel(s)"


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
        values = [v for line in lines for v in _line_ids(line)]
    return np.array([int(v) for v in values]) if all(_is_int(v) for v in values) else np.array(values)


def _line_ids(line: str) -> list[str]:
    """Comma-separated IDs, whitespace-separated row numbers, or else the whole line (a file name may hold
    spaces)."""
    if "," in line:
        return [v.strip() for v in line.split(",") if v.strip()]
    tokens = line.split()
    return tokens if all(_is_int(t) for t in tokens) else [line]


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
