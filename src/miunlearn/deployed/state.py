"""The unlearning state folder of one deployed model, and its append-only ledger of applied requests.

::

    STATE/
      deployment.json           what the deployed model is: model spec, data hashes, settings, OUT statistics
      held_out_split.npz        which held-out rows are reference, shadow and audit rows (fixed once)
      original.safetensors      the deployed weights as given
      approximator.safetensors  the privacy approximator (and its OUT models), fitted once on shadow rows
      current.safetensors       the weights after the last applied request
      ledger.jsonl              one JSON line per applied request
      requests/0001/            weights.safetensors, certificate.json, certificate.html

The ledger is the truth, and replacing it (one ``os.replace``) is a request's commit point. Everything a
request writes is built in a hidden sibling of STATE first; a request interrupted at any moment before the
commit leaves STATE as it was (its request folder, if it got that far, is not in the ledger and is removed
by the next request). ``current.safetensors`` is replaced just after the commit and checked against the
ledger's last hash on every open, so a crash between the two is repaired from ``requests/NNNN``. A lock
file keeps two requests from running on one state folder at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from miunlearn.deployed.inputs import sha256_file
from miunlearn.errors import MiunlearnError
from miunlearn.io import atomic_write

FORMAT = "miunlearn-state/1"
DEPLOYMENT, LEDGER, CURRENT, ORIGINAL = "deployment.json", "ledger.jsonl", "current.safetensors", "original.safetensors"
APPROXIMATOR, SPLIT, LOCK = "approximator.safetensors", "held_out_split.npz", ".lock"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class StateFolder:
    """An open state folder, locked for this process while in use (see :meth:`open`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / DEPLOYMENT).is_file()

    @classmethod
    @contextlib.contextmanager
    def create(cls, path: str | Path) -> Iterator[Path]:
        """Yield a staging folder to fill; it becomes the state folder ``path`` only if the block succeeds."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise MiunlearnError(f"{path} exists and is not a miunlearn state folder (no {DEPLOYMENT}); "
                                 "choose a new or empty folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=path.parent))
        try:
            (staging / LOCK).touch()
            (staging / "requests").mkdir()
            (staging / LEDGER).touch()
            yield staging
            for file in staging.iterdir():  # as readable as any file the user writes (mkdtemp made it 0700)
                if file.is_file():
                    os.chmod(file, 0o666 & ~_umask())
            os.chmod(staging, 0o777 & ~_umask())
            if path.exists():
                path.rmdir()
            os.replace(staging, path)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | Path) -> Iterator[StateFolder]:
        path = Path(path)
        if not cls.exists(path):
            raise MiunlearnError(f"{path} is not a miunlearn state folder (no {DEPLOYMENT}); the first request "
                                 "creates it and needs --model, --weights, --train and held-out data")
        with open(path / LOCK, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MiunlearnError(f"another request is being applied to {path}; wait for it to finish") from None
            state = cls(path)
            deployment = state.deployment
            if deployment.get("format") != FORMAT:
                raise MiunlearnError(f"{path}/{DEPLOYMENT} has format {deployment.get('format')!r}; this miunlearn "
                                     f"reads {FORMAT}")
            state._recover()
            yield state

    @property
    def deployment(self) -> dict[str, Any]:
        return json.loads((self.path / DEPLOYMENT).read_text())

    def ledger(self) -> list[dict[str, Any]]:
        text = (self.path / LEDGER).read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def forgotten(self) -> dict[Any, int]:
        """Every ID forgotten so far -> the request that forgot it."""
        return {i: entry["request"] for entry in self.ledger() for i in entry["ids"]}

    def request_folder(self, number: int) -> Path:
        return self.path / "requests" / f"{number:04d}"

    def _recover(self) -> None:
        """Undo what an interrupted request left: request folders the ledger does not list, staging folders
        beside the state, and a ``current.safetensors`` that is not the ledger's last output."""
        listed = {Path(e["folder"]).name for e in self.ledger()}
        for folder in (self.path / "requests").iterdir():
            if folder.name not in listed:
                shutil.rmtree(folder, ignore_errors=True)
        for stale in [*self.path.parent.glob(f".{self.path.name}.request-*"),
                      *self.path.parent.glob(f".{self.path.name}.creating-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        entries = self.ledger()
        expected = entries[-1]["output_weights_sha256"] if entries else self.deployment["original_weights_sha256"]
        if sha256_file(self.path / CURRENT) != expected:
            source = self.path / entries[-1]["folder"] / "weights.safetensors" if entries else self.path / ORIGINAL
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".current.", delete=False) as tmp:
                shutil.copyfile(source, tmp.name)
            os.chmod(tmp.name, 0o666 & ~_umask())
            os.replace(tmp.name, self.path / CURRENT)

    @contextlib.contextmanager
    def stage_request(self) -> Iterator[Path]:
        """A hidden folder beside the state for one request's files, removed whatever happens."""
        staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.request-", dir=self.path.parent))
        os.chmod(staging, 0o777 & ~_umask())
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def commit(self, staging: Path, entry: dict[str, Any]) -> None:
        """Apply a staged request: ``staging/request/`` (with ``weights.safetensors``) becomes
        ``requests/NNNN``, the ledger gains ``entry`` (the commit point), then ``current`` follows."""
        folder = self.request_folder(entry["request"])
        with atomic_write(staging / LEDGER) as fh:
            fh.write((self.path / LEDGER).read_text() + json.dumps(entry, sort_keys=True) + "\n")
        shutil.copyfile(staging / "request" / "weights.safetensors", staging / CURRENT)
        for file in (staging / "request").iterdir():
            os.chmod(file, 0o666 & ~_umask())
        os.replace(staging / "request", folder)
        os.replace(staging / LEDGER, self.path / LEDGER)
        os.replace(staging / CURRENT, self.path / CURRENT)
