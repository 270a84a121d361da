"""Benchmark: ReMI against retraining from scratch, timed in the same run on the same machine.

    .venv/bin/python benchmarks/remi_vs_retrain.py                 # every config in benchmarks/configs
    .venv/bin/python benchmarks/remi_vs_retrain.py fashion_mnist_cnn key=value ...

Writes benchmarks/results/<config>.json (metrics, timings, machine, command, date) and prints the
Markdown table that BENCHMARKS.md quotes. Speed is reported only as ratios measured within one run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from miunlearn import load_config, run_experiment
from miunlearn.io import write_json
from miunlearn.reporting import format_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CIFAR_PACK = ROOT.parent / "shared" / "datasets" / "cifar10"


def machine() -> dict[str, str]:
    """Where a result was measured. ``cpu_id`` and ``cpu_capability`` tell apart CPUs that share a model name: the
    same code and seeds train bit-identical models on one CPU but not always on another (BENCHMARKS.md, "The
    leaderboard's cache, rebuilt on another machine")."""
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []

    def field(name: str) -> str:
        return next((line.split(":", 1)[1].strip() for line in info if line.split(":", 1)[0].strip() == name), "")

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"cpu": field("model name") or platform.processor(),
            "cpu_id": " ".join(f"{k} {field(k)}" for k in ("cpu family", "model", "stepping") if field(k)),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": str(os.cpu_count()),
            "torch_threads": str(torch.get_num_threads()), "device": device, "torch": torch.__version__,
            "python": platform.python_version()}


def peak_memory() -> dict[str, float]:
    """This process's peak resident memory so far (MiB), and the peak CUDA memory allocated when on a GPU.

    Both are running maxima: a benchmark that runs several settings in one process states the largest."""
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def ensure_cifar(root: Path, pack: Path = CIFAR_PACK) -> None:
    """Unpack the shared CIFAR-10 JPEG pack (folder ``pack``) into ``root`` once (about 10 s)."""
    if (root / "train.npz").is_file():
        return
    unpack = pack / "unpack.py"
    if not unpack.is_file():
        sys.exit(f"CIFAR-10 arrays missing in {root} and no pack at {pack}; put train.npz/test.npz there")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(unpack), str(root)], check=True)


def run_one(name: str, overrides: list[str]) -> dict:
    config = load_config(HERE / "configs" / f"{name}.yaml", overrides)
    if config.data.name == "cifar10":
        ensure_cifar(ROOT / config.data.root)
    started = dt.datetime.now(dt.timezone.utc)
    wall = time.perf_counter()
    result = run_experiment(config)
    record = {
        "config": name, "overrides": overrides,
        "command": " ".join(["python", "benchmarks/remi_vs_retrain.py", name, *overrides]),
        "date": started.strftime("%Y-%m-%d"), "machine": machine(),
        "wall_seconds": time.perf_counter() - wall,
        **peak_memory(),
        "metrics": result.metrics, "timings_seconds": result.timings,
        "remi": {k: result.records["remi"][k] for k in ("config", "stop_reason")} if "remi" in result.records else {},
        "notes": result.notes,
    }
    write_json(HERE / "results" / f"{name}.json", record)
    return record


def main(argv: list[str]) -> None:
    os.chdir(ROOT)
    names = [a for a in argv if "=" not in a] or sorted(p.stem for p in (HERE / "configs").glob("*.yaml"))
    overrides = [a for a in argv if "=" in a]
    if len(names) > 1:  # one process per config, so each peak RSS is that config's own
        for name in names:
            subprocess.run([sys.executable, __file__, name, *overrides], check=True)
        return
    name = names[0]
    record = run_one(name, overrides)
    print(f"\n### {name}\n\n`{record['command']}` — {record['date']}, {record['machine']['cpu']} "
          f"({record['machine']['cores']} cores, torch {record['machine']['torch']}, device "
          f"{record['machine']['device']}), wall {record['wall_seconds']:.0f} s, peak RSS "
          f"{record['peak_rss_mib']:.0f} MiB\n")
    print(format_table(record["metrics"]))
    print("\n" + "\n".join(f"- {n}" for n in record["notes"]))
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
