"""The run folder: its layout, its typed ``metrics.json``, one writer and one reader.

``miunlearn run``/``demo`` write it (:func:`write_run_folder`); ``miunlearn audit``, ``report`` and the
benchmarks read it (:func:`read_metrics`, :func:`read_audit`). Nothing else should know the file names.
``metrics.json`` carries :data:`SCHEMA_VERSION`; a folder of another version is refused with one line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from miunlearn.errors import MiunlearnError
from miunlearn.io import read_json_object, read_npz, staged_run_dir, write_json

SCHEMA_VERSION = 1

CONFIG = "config.yaml"
SPLITS = "splits.npz"
METRICS = "metrics.json"
TABLE = "table.md"
APPROXIMATOR = "approximator.safetensors"
MODELS = "models"
PLOTS = "plots"
AUDIT = "audit.json"
AUDIT_SCORES = "audit_scores.npz"

RUN_HINT = "write a run folder with `miunlearn run --out DIR` or `miunlearn demo --out DIR`"


def model_file(name: str) -> str:
    """Path, inside a run folder, of the weights of model ``name`` (``original``, ``retrain``, a method)."""
    return f"{MODELS}/{name}.safetensors"


@dataclass
class RunMetrics:
    """Everything ``metrics.json`` holds."""

    dataset: dict[str, Any]
    """The dataset's :class:`~miunlearn.data.DatasetInfo` as a dict."""
    sizes: dict[str, int]
    """Samples per role: train, forget, ref, shadow, audit, retain, test."""
    models: dict[str, dict[str, float]]
    """Per model (``original``, then each method): the comparison table's metrics after the last request."""
    timings_seconds: dict[str, float]
    records: dict[str, dict[str, Any]]
    """Per model: the target's training log (``original``) and each method's unlearning record."""
    approximator: dict[str, Any]
    """The guiding approximator's name and the output statistics it reads."""
    notes: list[str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Sequential requests only: per request, its sizes and every model's metrics."""
    usefulness: dict[str, Any] = field(default_factory=dict)
    """Did each method do anything, did it over-forget, could the audit tell (:mod:`miunlearn.audit.usefulness`)."""
    schema_version: int = SCHEMA_VERSION


def write_metrics(folder: Path, metrics: RunMetrics) -> None:
    data = dataclasses.asdict(metrics)
    if not data["requests"]:
        del data["requests"]
    write_json(folder / METRICS, data)


def read_metrics(folder: str | Path) -> RunMetrics:
    """``metrics.json`` of a run folder, or a one-line error naming what is wrong."""
    path = Path(folder) / METRICS
    if not path.is_file():
        raise MiunlearnError(f"{folder} has no {METRICS}; {RUN_HINT}")
    data = read_json_object(path, "run metrics file")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MiunlearnError(f"{path} has schema version {version!r}; this miunlearn reads version {SCHEMA_VERSION} "
                             f"(rerun the experiment with this version)")
    names = {f.name for f in dataclasses.fields(RunMetrics)}
    required = {f.name for f in dataclasses.fields(RunMetrics)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise MiunlearnError(f"{path} lacks {', '.join(missing)}; {RUN_HINT}")
    if not isinstance(data["models"], dict) or not all(isinstance(m, dict) for m in data["models"].values()):
        raise MiunlearnError(f"{path}: 'models' must map each model to its metrics")
    return RunMetrics(**{k: v for k, v in data.items() if k in names})


def read_audit(folder: str | Path) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """The strong audit's report and per-sample scores, if ``miunlearn audit`` ran on this folder."""
    folder = Path(folder)
    if not (folder / AUDIT).is_file():
        return None, {}
    report = read_json_object(folder / AUDIT, "audit report")
    scores = read_npz(folder / AUDIT_SCORES, "audit scores file") if (folder / AUDIT_SCORES).is_file() else {}
    return report, scores


def check_run_folder(folder: str | Path, needed: tuple[str, ...], purpose: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise MiunlearnError(f"run folder {str(folder)!r} does not exist; {RUN_HINT}")
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise MiunlearnError(f"{folder} lacks {', '.join(missing)}, which {purpose} needs; {RUN_HINT}")
    return folder


def write_run_folder(out: str | Path, overwrite: bool, metrics: RunMetrics,
                     files: dict[str, Callable[[Path], None]]) -> None:
    """Write a complete run folder atomically: each ``files`` entry writes one path inside the staging folder,
    then ``metrics.json``; the folder appears at ``out`` only when all succeeded."""
    with staged_run_dir(out, overwrite) as staging:
        for name, write in files.items():
            write(staging / name)
        write_metrics(staging, metrics)
