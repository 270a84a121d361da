"""Atomic file and folder writes, safe readers, and run folders that only ever replace their own kind.

An interrupted run never leaves a half-written result behind; a killed one leaves a hidden staging folder
that the next run into the same parent removes. Readers turn any unreadable file into a one-line
:class:`MiunlearnError` that names the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from miunlearn.errors import MiunlearnError

RUN_MARKER = ".miunlearn-run"
"""Written into every folder :func:`staged_run_dir` completes: ``--overwrite`` replaces only folders holding it."""
STAGING_MARKER = ".miunlearn-staging"
"""Written into a staging folder when it is made: the process that owns it (pid, host)."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # after the block: writers such as safetensors recreate the file with 0600, mkstemp's mode
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh


def write_json(path: str | Path, data: Any) -> None:
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, default=_jsonable)
        fh.write("\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def read_json(path: str | Path, what: str) -> Any:
    """The JSON in ``path``, or a one-line error naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MiunlearnError(f"{path} is not a readable {what} ({_first_line(exc)})") from None


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise MiunlearnError(f"{path} is not a readable {what} (a JSON object was expected)")
    return data


def read_npz(path: str | Path, what: str, numeric: bool = True) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles), or a one-line error naming the file.

    ``numeric``: refuse string, object and other non-numeric arrays.
    """
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single array (.npy), not an .npz archive of named arrays")
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, AttributeError) as exc:
        raise MiunlearnError(f"{path} is not a readable {what} ({_first_line(exc)})") from None
    if numeric:
        bad = [k for k, v in arrays.items() if not (np.issubdtype(v.dtype, np.number) or v.dtype == np.bool_)]
        if bad:
            raise MiunlearnError(f"{path}: array(s) {', '.join(bad)} of the {what} are not numeric "
                                 f"({', '.join(str(arrays[k].dtype) for k in bad)})")
    return arrays


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder this tool completed (it holds the run marker), not a link."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / RUN_MARKER).is_file()


def check_output_folder(final: str | Path, overwrite: bool) -> Path:
    """Refuse, before any work, an output folder that could not be written or must not be replaced.

    Nothing is created: the checks read the file system only.
    """
    final = Path(final).expanduser()
    absolute = Path(os.path.abspath(final))
    here = Path.cwd().resolve()
    if not absolute.name or absolute.resolve() == here or absolute.resolve() in here.parents:
        raise MiunlearnError(f"--out {str(final)!r} is the current folder or one above it; name a new folder")
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise MiunlearnError(f"--out {str(final)!r} is a file or a link, not a run folder; it is never replaced")
    if final.exists():
        if not overwrite:
            raise MiunlearnError(f"run folder {str(final)!r} already exists; choose another --out or pass --overwrite")
        if not is_run_folder(final):
            raise MiunlearnError(f"--out {str(final)!r} is a folder miunlearn did not write (no {RUN_MARKER}); "
                                 "--overwrite only replaces run folders, so choose another --out")
    ancestor = absolute.parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MiunlearnError(f"cannot write --out {str(final)!r}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK) or not ancestor.stat().st_mode & 0o222:
        raise MiunlearnError(f"cannot write --out {str(final)!r}: folder {ancestor} is read-only")
    return final


@contextlib.contextmanager
def staged_run_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a run folder in a hidden sibling and move it into place only when complete.

    An existing folder is refused unless ``overwrite`` and it is a run folder this tool wrote; then it is
    replaced only after the new run has finished, so an interrupted run leaves the earlier result untouched.
    Staging folders of killed runs into the same parent are removed first.
    """
    final = check_output_folder(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(staging, 0o777 & ~_umask())
    _write_owner(staging)
    try:
        yield staging
        (staging / STAGING_MARKER).unlink()
        write_json(staging / RUN_MARKER, {"written_by": "miunlearn"})
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            _write_owner(retired)
            os.replace(final, retired / final.name)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _write_owner(folder: Path) -> None:
    (folder / STAGING_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))


def remove_stale_staging(final: Path) -> list[Path]:
    """Remove the hidden staging/retired folders of ``final`` whose owning process is gone.

    Only folders named as :func:`staged_run_dir` names them *and* holding its owner file are touched, and
    only when that owner ran on this host and no longer exists: a live run's staging folder is left alone.
    """
    removed = []
    # a retired folder may hold the only copy of the earlier run if a kill hit between the two renames
    patterns = [f".{final.name}.*.partial"] + ([f".{final.name}.*.old"] if final.exists() else [])
    for pattern in patterns:
        for folder in final.parent.glob(pattern):
            owner = folder / STAGING_MARKER
            if folder.is_symlink() or not folder.is_dir() or not owner.is_file():
                continue
            try:
                info = json.loads(owner.read_text())
                pid, host = int(info["pid"]), str(info["host"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if host == socket.gethostname() and not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
