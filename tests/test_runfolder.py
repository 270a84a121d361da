"""The run folder: only our own folders are replaced, killed runs' staging is cleaned, files get normal modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from miunlearn.errors import MiunlearnError
from miunlearn.io import RUN_MARKER, STAGING_MARKER, is_run_folder, remove_stale_staging, staged_run_dir
from miunlearn.models import save_weights
from miunlearn.runfolder import SCHEMA_VERSION, RunMetrics, read_metrics, write_metrics


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_completed_folder_is_marked_and_can_be_overwritten(tmp_path):
    final = tmp_path / "run"
    with staged_run_dir(final) as staging:
        (staging / "a").write_text("1")
    assert is_run_folder(final)
    with staged_run_dir(final, overwrite=True) as staging:
        (staging / "a").write_text("2")
    assert (final / "a").read_text() == "2" and is_run_folder(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_foreign_folder_is_never_replaced(tmp_path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("x")
    with pytest.raises(MiunlearnError, match="did not write"), staged_run_dir(tmp_path / "thesis", overwrite=True):
        pass
    assert (tmp_path / "thesis" / "thesis.tex").read_text() == "x"


def test_weight_files_get_the_usual_permissions(tmp_path):
    save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    """SIGKILL during the final write leaves the staging folder; the next run into that parent removes it,
    but never a live run's staging folder nor a look-alike without our owner file."""
    child = ("import os, sys\nfrom miunlearn.io import staged_run_dir\n"
             f"with staged_run_dir({str(tmp_path / 'run')!r}) as s:\n"
             "    (s / 'half').write_text('x'); os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", child], env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})
    (stale,) = tmp_path.glob(".run.*.partial")
    live = tmp_path / ".run.live.partial"
    live.mkdir()
    (live / STAGING_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    lookalike = tmp_path / ".run.mine.partial"
    lookalike.mkdir()
    with staged_run_dir(tmp_path / "run") as staging:
        (staging / "done").write_text("y")
    assert not stale.exists() and live.exists() and lookalike.exists()
    assert (tmp_path / "run" / "done").is_file() and not (tmp_path / "run" / STAGING_MARKER).exists()
    assert remove_stale_staging(tmp_path / "run") == []


def test_metrics_round_trip_with_their_schema_version(tmp_path):
    metrics = RunMetrics(dataset={"name": "x"}, sizes={"train": 3}, models={"original": {"test_acc": 0.5}},
                         timings_seconds={}, records={}, approximator={"name": "gaussian"}, notes=["n"])
    write_metrics(tmp_path, metrics)
    assert json.loads((tmp_path / "metrics.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert read_metrics(tmp_path) == metrics
    assert RUN_MARKER.startswith(".")
