"""Benchmark: K models of one architecture trained one after another versus all K at once (stacked state + vmap).

    .venv/bin/python benchmarks/concurrent_models.py                          # CPU, CIFAR-10 subset
    .venv/bin/python benchmarks/concurrent_models.py device=cuda data=synthetic n=5000 epochs=3

Options (key=value): model (cnn, resnet18: any registered image model), device (cpu, cuda, auto), data (cifar10:
the shared pack, unpacked into .bench-data; synthetic: CIFAR-shaped noise, for machines without the pack; timing
does not depend on pixel values), ks (comma list), n (samples per model), epochs, batch_size, width (of the ``cnn``;
resnet18 has none), precision (fp32, bf16, fp16: autocast on CUDA only), name (of the results file).

On CPU, glibc hands tensors above its mmap threshold (at most 32 MiB) straight back to the kernel, so K stacked
models' larger activations are page-faulted in afresh every step; ``MALLOC_MMAP_THRESHOLD_`` (recorded with the
results) changes that, so compare runs only with the same setting.

Each model trains on its own random subset with its own seed, as shadow models do. The sequential time for K is
the sum of the first K of Kmax sequential trainings measured in this process, so both columns come from one run;
the ratio concurrent / sequential is the issue's target (< 0.6 on a GPU). Peak memory is reset before each
measurement (Linux ``clear_refs``; CUDA peak-allocation stats). Writes benchmarks/results/concurrent_models.json
and prints the Markdown table that BENCHMARKS.md quotes.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from remi_vs_retrain import ROOT, ensure_cifar, machine

from miunlearn.config import DataConfig, TrainConfig
from miunlearn.data import DatasetInfo, TensorData, load_dataset
from miunlearn.io import write_json
from miunlearn.models import build_model
from miunlearn.training import resolve_device, train_model, train_models_concurrently

HERE = Path(__file__).resolve().parent
DEFAULTS = {"model": "cnn", "device": "cpu", "data": "cifar10", "ks": "1,2,4,8", "n": "1000", "epochs": "2",
            "batch_size": "128", "width": "32", "precision": "fp32", "name": "concurrent_models"}
CIFAR_INFO = DatasetInfo("cifar10", (3, 32, 32), 10, is_image=True)


def per_model_data(kind: str, k_max: int, n: int) -> list[TensorData]:
    """``k_max`` random subsets of ``n`` samples, one per model, like shadow models' data."""
    if kind == "synthetic":
        gen = torch.Generator().manual_seed(0)
        return [TensorData(torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen))
                for _ in range(k_max)]
    root = ROOT / ".bench-data" / "cifar10"
    ensure_cifar(root)
    pool = load_dataset(DataConfig(name="cifar10", root=str(root), test_subset=1)).pool
    rng = np.random.default_rng(0)
    return [pool.subset(rng.choice(len(pool), size=n, replace=False)) for _ in range(k_max)]


def proc_status_mib(field: str) -> float | None:
    status = Path("/proc/self/status")
    lines = [line for line in status.read_text().splitlines() if line.startswith(field)] if status.exists() else []
    return int(lines[0].split()[1]) / 1024 if lines else None


def timed(device: torch.device, work: Callable[[], object]) -> tuple[float, dict[str, float]]:
    """Seconds of ``work`` and its peak memory: process peak RSS, and what it added to the RSS it started from."""
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")  # Linux: resets the peak RSS (VmHWM) to the current RSS
    start_rss = proc_status_mib("VmRSS") or 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = proc_status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"peak_rss_mib": peak, "added_rss_mib": peak - start_rss}
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return seconds, out


def max_weight_gap(models: list[torch.nn.Module], references: list[torch.nn.Module]) -> float:
    """Largest absolute parameter difference between concurrent and sequential results (float numerics only)."""
    return max(float((a.float() - b.float()).abs().max())
               for m, r in zip(models, references) for a, b in zip(m.state_dict().values(), r.state_dict().values()))


def run(options: dict[str, str]) -> dict:
    device = resolve_device(options["device"])
    ks = [int(k) for k in options["ks"].split(",")]
    k_max, n, width = max(ks), int(options["n"]), int(options["width"])
    recipe = TrainConfig(epochs=int(options["epochs"]), batch_size=int(options["batch_size"]), lr=0.05,
                         augment=True, device=str(device), precision=options["precision"], progress=False)
    recipes = [dataclasses.replace(recipe, seed=k) for k in range(k_max)]
    datasets = per_model_data(options["data"], k_max, n)
    torch.manual_seed(0)
    inits = [build_model(options["model"], CIFAR_INFO, width) for _ in range(k_max)]

    # Warm-up on a few batches of both paths, so one-off costs (allocator, kernels, lazy init) are not timed.
    warm = dataclasses.replace(recipe, epochs=1)
    small = [TensorData(d.x[:2 * recipe.batch_size], d.y[:2 * recipe.batch_size]) for d in datasets[:2]]
    train_model(copy.deepcopy(inits[0]), small[0], warm)
    train_models_concurrently(copy.deepcopy(inits[:2]), small, [warm, warm])

    sequential, sequential_peak = [], {}
    trained = copy.deepcopy(inits)
    for model, data, job in zip(trained, datasets, recipes):
        seconds, peak = timed(device, functools.partial(train_model, model, data, job))
        sequential.append(seconds)
        sequential_peak = {key: max(value, sequential_peak.get(key, 0.0)) for key, value in peak.items()}
    rows = []
    for k in ks:
        models = copy.deepcopy(inits[:k])
        seconds, peak = timed(device, functools.partial(train_models_concurrently, models, datasets[:k], recipes[:k]))
        sequential_k = sum(sequential[:k])
        rows.append({"K": k, "sequential_s": sequential_k, "concurrent_s": seconds,
                     "ratio": seconds / sequential_k, "max_weight_gap": max_weight_gap(models, trained[:k]),
                     **{f"concurrent_{key}": value for key, value in peak.items()}})
    return {"options": options, "single_model_s": sequential, "sequential_peak": sequential_peak, "rows": rows,
            "float_noise_gap": float_noise_gap(inits[0], trained[0], datasets[0], recipes[0])}


def float_noise_gap(init: torch.nn.Module, trained: torch.nn.Module, data: TensorData, recipe: TrainConfig) -> float:
    """The weight gap one float32 rounding step at initialisation grows into over the same training.

    SGD amplifies rounding differences step by step, so this, not zero, is the yardstick for the concurrent
    models' gap to their sequential twins (whose kernels round differently).
    """
    nudged = copy.deepcopy(init)
    with torch.no_grad():
        for param in nudged.parameters():
            param.mul_(1 + 1e-7)
    train_model(nudged, data, recipe)
    return max_weight_gap([nudged], [trained])


def markdown(record: dict) -> str:
    cuda = "concurrent_cuda_max_allocated_mib" in record["rows"][0]
    head = ("| K | K sequential (s) | concurrent (s) | concurrent / sequential | peak RSS (MiB) "
            "| added by training (MiB) |")
    rule = "| --- | --- | --- | --- | --- | --- |"
    if cuda:
        head, rule = head + " peak CUDA alloc (MiB) |", rule + " --- |"
    lines = [head, rule]
    for row in record["rows"]:
        line = (f"| {row['K']} | {row['sequential_s']:.1f} | {row['concurrent_s']:.1f} | {row['ratio']:.2f} | "
                f"{row['concurrent_peak_rss_mib']:.0f} | {row['concurrent_added_rss_mib']:.0f} |")
        lines.append(line + (f" {row['concurrent_cuda_max_allocated_mib']:.0f} |" if cuda else ""))
    seq = record["sequential_peak"]
    gap = max(r["max_weight_gap"] for r in record["rows"])
    lines.append(f"\nOne model at a time: peak RSS {seq['peak_rss_mib']:.0f} MiB ({seq['added_rss_mib']:.0f} added by "
                 f"training)" + (f", peak CUDA alloc {seq['cuda_max_allocated_mib']:.0f} MiB" if cuda else "")
                 + f". Largest weight difference, concurrent vs sequential: {gap:.1e}; the same training started from "
                 f"weights nudged by one float32 rounding step differs by {record['float_noise_gap']:.1e}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    os.chdir(ROOT)
    unknown = [a for a in argv if "=" not in a or a.split("=", 1)[0] not in DEFAULTS]
    if unknown:
        sys.exit(f"unknown arguments {unknown}; valid: {', '.join(f'{k}=' for k in DEFAULTS)}")
    options = {**DEFAULTS, **dict(a.split("=", 1) for a in argv)}
    started = dt.datetime.now(dt.timezone.utc)
    record = {"command": " ".join(["python", "benchmarks/concurrent_models.py", *argv]),
              "date": started.strftime("%Y-%m-%d"), "machine": machine(),
              "env": {k: v for k, v in os.environ.items() if k == "OMP_NUM_THREADS" or k.startswith("MALLOC_")},
              **run(options)}
    write_json(HERE / "results" / f"{options['name']}.json", record)
    env = " ".join(f"{k}={v}" for k, v in record["env"].items())
    print(f"\n### Concurrent training of K `{options['model']}` models\n\n`{env} {record['command']}` — "
          f"{record['date']}, "
          f"{record['machine']['cpu']} ({record['machine']['cores']} cores, {record['machine']['torch_threads']} "
          f"torch threads, torch {record['machine']['torch']}, device {record['machine']['device']}); "
          f"{options['n']} samples per model, {options['epochs']} epochs, batch {options['batch_size']}, "
          f"width {options['width']}, data {options['data']}\n")
    print(markdown(record))


if __name__ == "__main__":
    main(sys.argv[1:])
