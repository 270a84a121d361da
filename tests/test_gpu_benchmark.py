"""The prepared GPU benchmark runs end to end in its TINY setting on the CPU and leaves what a device returns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def fake_cifar(folder: Path, train: int, test: int) -> Path:
    """CIFAR-10-shaped arrays (uint8 32x32x3, 10 classes) whose classes differ in brightness."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, n in (("train", train), ("test", test)):
        y = np.arange(n) % 10
        x = np.clip(rng.normal(60 + 15 * y[:, None, None, None], 40, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        np.savez(folder / f"{name}.npz", x=x, y=y.astype(np.int64))
    return folder


@pytest.mark.slow
def test_tiny_setting_runs_end_to_end_and_writes_what_a_device_returns(tmp_path: Path) -> None:
    out, runs = tmp_path / "out", tmp_path / "runs"
    data = fake_cifar(tmp_path / "cifar10", 600, 200)
    env = os.environ | {"TINY": "1", "OUT": str(out), "RUN_DIR": str(runs), "PYTHON": sys.executable,
                        "BASELINES": "finetune", "OMP_NUM_THREADS": "1", "MIUNLEARN_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([str(ROOT / "benchmarks" / "gpu_cifar10.sh"), f"data.root={data}", "data.subset=600",
                           "data.test_subset=200", "approximator.attack_epochs=5"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # At most 8 flat files, as a device machine returns them; the weights stay in the run folders.
    files = sorted(p.name for p in out.iterdir())
    assert files == ["audit_roc.png", "log.txt", "results.json", "s_histograms.png", "table.md",
                     "table_baselines.md", "table_concurrent.md"]
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    assert (runs / "remi_retrain" / "models" / "retrain.safetensors").is_file()

    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith("TINY=1 benchmarks/gpu_cifar10.sh")
    assert results["machine"]["device"] == "cpu" and results["date"] and results["peak_rss_mib"] > 0
    assert results["cuda_max_memory_allocated_mib"] == {"remi_retrain": None, "baselines": None}
    assert set(results["phases_seconds"]["remi_retrain"]) == {"target_train", "approximator_fit", "remi", "retrain",
                                                              "load_audit_write"}
    assert set(results["baselines"]["metrics"]) == {"original", "retrain", "finetune"}
    assert {"speedup", "avg_gap", "max_audit_auc_gap"} <= set(results["targets"])
    assert "| remi |" in (out / "table.md").read_text()
    log = (out / "log.txt").read_text()
    assert "remi_retrain / retrain:" in log
    assert results["executor_concurrent"] == 2 and "training shadow 1/2, shadow 2/2 on" in log  # the shadows as a pair

    # Phase C: K models one after another vs at once, for both architectures, in the results and a table.
    for model in ("cnn", "resnet18"):
        rows = results["concurrent"][model]["rows"]
        assert [row["K"] for row in rows] == [1, 2] and all(row["ratio"] > 0 for row in rows)
        assert results["targets"]["concurrent_ratio"][model].keys() == {"1", "2"}
        assert f"#### {model}" in (out / "table_concurrent.md").read_text()
    assert results["phases_seconds"]["concurrent"] > 0


def test_missing_data_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setenv("CIFAR10_PACK", str(tmp_path))  # set, so the only place looked in: no pack there
    from gpu_cifar10 import ensure_data

    from miunlearn import load_config

    with pytest.raises(SystemExit, match="CIFAR-10 arrays missing in .* no JPEG pack found"):
        ensure_data(load_config(None, ["data.name=cifar10", f"data.root={tmp_path / 'nothing'}"]))
