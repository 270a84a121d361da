"""The one-GPU benchmark: CIFAR-10, ResNet-18 on the full D_train, ReMI against retraining, then the baselines.

Run it through ``benchmarks/gpu_cifar10.sh``, whose header says how to get the data onto a device machine,
the time budget and the expected seconds per phase. Three phases:

A. ``run_experiment``: target, shadow models (trained ``executor.concurrent`` at a time) + approximator, ReMI,
   retraining, audit -> ``results.json``, ``table.md``, plots;
C. K shadow-size trainings one after another versus all K at once, for the ``cnn`` and ``resnet18``
   (``benchmarks/concurrent_models.py``'s measurement): the issue's "K models concurrently in less than
   K x 0.6 of one model's time" -> ``table_concurrent.md`` and ``results.json``;
B. ``run_experiment``: every other registered method, reusing A's target and approximator, with retraining
   again as the reference they are compared with -> ``table_baselines.md``; run only if the measured speed
   says it ends inside the budget.

``$OUT`` gets the results after each phase, so a run stopped at the wall-clock limit keeps phase A; the
full run folders (weights and all) go to ``$RUN_DIR``, since a device machine returns few, small files.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from concurrent_models import DEFAULTS as CONCURRENT_DEFAULTS
from concurrent_models import markdown as concurrent_markdown
from concurrent_models import run as measure_concurrent
from remi_vs_retrain import CIFAR_PACK, ensure_cifar, machine, peak_memory
from rich.console import Console
from rich.text import Text

from miunlearn import load_config, run_experiment, runfolder
from miunlearn.config import RunConfig
from miunlearn.io import atomic_path, atomic_write, write_json
from miunlearn.pipeline import RunResult
from miunlearn.reporting import format_table
from miunlearn.unlearning import METHODS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "configs" / "gpu" / "cifar10_resnet18.yaml"
TINY = ["model.name=cnn", "data.subset=2000", "data.test_subset=1000", "train.epochs=1", "train.batch_size=128",
        "train.lr=0.05", "approximator.attack_epochs=20", "unlearn.params.remi.epochs=2"]
#: Seconds per phase expected on one H100 at the full setting; gpu_cifar10.sh's header derives them.
EXPECTED_SECONDS = {"data": 25, "target_train": 50, "approximator_fit": 40, "remi": 30, "retrain": 45,
                    "load_audit_write": 40, "concurrent": 60, "baselines": 250}
#: Phase B's training in phase-A retraining times: retraining again, ~15 epochs over D_r of fine-tuning-like
#: baselines, Fisher's per-sample Jacobians, SSD's importances, Boundary Shrink's attacks.
BASELINES_IN_RETRAINS = 2.0
#: Phase C's measurement: one epoch over a full-setting shadow model's 7.5k samples (half of D_shadow; later
#: epochs cost the same), of CIFAR-shaped noise (timing does not depend on pixel values), batch and precision
#: taken from the config. TINY shrinks it so the CPU smoke test stays short.
CONCURRENT = {"ks": "1,2,4,8", "n": "7500", "epochs": "1", "data": "synthetic"}
TINY_CONCURRENT = {"ks": "1,2", "n": "16", "batch_size": "8"}
CONCURRENT_MODELS = ("cnn", "resnet18")


class Clock:
    """Seconds since the benchmark started, for the log's time column and the budget."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def find_pack() -> Path | None:
    """The CIFAR-10 JPEG pack folder (cifar10-jpeg.npz + unpack.py): $CIFAR10_PACK if set, else a carried
    copy in .bench-data/cifar10-pack, else shared/datasets/cifar10 inside or beside the checkout."""
    given = os.environ.get("CIFAR10_PACK")
    candidates = [Path(given)] if given else [ROOT / ".bench-data" / "cifar10-pack",
                                              ROOT / "shared" / "datasets" / "cifar10", CIFAR_PACK]
    return next((c for c in candidates if (c / "unpack.py").is_file()), None)


def ensure_data(config: RunConfig) -> None:
    root = ROOT / config.data.root
    if (root / "train.npz").is_file():
        return
    pack = find_pack()
    if pack is None:
        sys.exit(f"CIFAR-10 arrays missing in {root} and no JPEG pack found ($CIFAR10_PACK if set, else "
                 f".bench-data/cifar10-pack, shared/datasets/cifar10, {CIFAR_PACK}); see benchmarks/gpu_cifar10.sh")
    ensure_cifar(root, pack)


def reset_cuda_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def phase_seconds(result: RunResult, wall: float) -> dict[str, float]:
    """The run's own timings, plus what is left of its wall time: loading data, auditing, writing the folder."""
    seconds = dict(result.timings)
    seconds["load_audit_write"] = wall - sum(seconds.values())
    return seconds


def targets(metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Issue 5's targets for ReMI: >= 30x retraining's speed, avg gap <= 1.5 points, audit AUCs within 0.03."""
    remi, retrain = metrics.get("remi"), metrics.get("retrain")
    if not remi or not retrain:
        return {}
    auc_gap = max(abs(remi[k] - retrain[k]) for k in remi if k.endswith("_auc"))
    return {"speedup": remi["speedup"], "speedup_at_least_30": remi["speedup"] >= 30,
            "avg_gap": remi["avg_gap"], "avg_gap_at_most_1.5": remi["avg_gap"] <= 1.5,
            "max_audit_auc_gap": auc_gap, "audit_auc_within_0.03": auc_gap <= 0.03}


def copy_into(out: Path, pairs: list[tuple[Path, str]]) -> None:
    for source, name in pairs:
        if source.is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(source, tmp)


def baseline_names() -> list[str]:
    """$BASELINES: ``all`` (default: every registered method but remi and retrain), ``none``, or a comma list."""
    wanted = os.environ.get("BASELINES", "all").strip()
    if wanted == "none":
        return []
    if wanted == "all":
        return [name for name in METHODS.names() if name not in ("remi", "retrain")]
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    for name in names:
        METHODS.validate(name)
    return names


def concurrent_phase(config: RunConfig, tiny: bool, console: Console) -> dict[str, dict[str, Any]]:
    """Phase C: ``concurrent_models.py``'s record per architecture, on the config's device, batch and precision.

    A failure (CUDA memory, an op vmap cannot batch) is recorded as one line and the phase moves on: it must not
    cost the baselines their GPU run.
    """
    options = {**CONCURRENT_DEFAULTS, **CONCURRENT, "device": config.train.device,
               "batch_size": str(config.train.batch_size), "precision": config.train.precision,
               **(TINY_CONCURRENT if tiny else {})}
    records: dict[str, dict[str, Any]] = {}
    for model in CONCURRENT_MODELS:
        start = time.perf_counter()
        try:
            records[model] = measure_concurrent(options | {"model": model}) | {"seconds": time.perf_counter() - start}
        except RuntimeError as exc:
            records[model] = {"failed": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"}
            console.log(f"concurrent {model}: failed after {time.perf_counter() - start:.1f}s: "
                        f"{records[model]['failed']}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        ratios = ", ".join(f"K={row['K']} {row['ratio']:.2f}" for row in records[model]["rows"])
        console.log(f"concurrent {model}: concurrent / sequential {ratios} ({records[model]['seconds']:.1f}s)")
    return records


def concurrent_report(records: dict[str, dict[str, Any]], record: dict[str, Any]) -> str:
    """``table_concurrent.md``: the command, machine and setting, then one table per architecture."""
    options = next((r["options"] for r in records.values() if "options" in r), {})
    lines = [f"### K shadow-size trainings one after another vs all K at once (target: concurrent / sequential < 0.6)"
             f"\n\n`{record['command']}` (phase C) — {record['date']}, {record['machine']['device']}, torch "
             f"{record['machine']['torch']}; {options.get('n')} samples of CIFAR-shaped noise per model, "
             f"{options.get('epochs')} epoch, batch {options.get('batch_size')}, {options.get('precision')}"]
    for model, result in records.items():
        width = f" (width {result['options']['width']})" if model == "cnn" and "options" in result else ""
        body = concurrent_markdown(result) if "rows" in result else f"failed: {result['failed']}"
        lines.append(f"#### {model}{width}\n\n{body}")
    return "\n\n".join(lines) + "\n"


def concurrent_targets(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 5's concurrency target per architecture: concurrent / sequential below 0.6 for every K > 1."""
    ratios = {model: {str(row["K"]): row["ratio"] for row in r["rows"]} for model, r in records.items() if "rows" in r}
    return {"concurrent_ratio": ratios,
            "concurrent_below_0.6": {model: all(v < 0.6 for k, v in by_k.items() if k != "1")
                                     for model, by_k in ratios.items()}}


def main(argv: list[str]) -> None:
    os.chdir(ROOT)
    clock = Clock()
    console = Console(stderr=True, width=120, log_path=False, log_time_format=lambda _: Text(f"[{clock():6.1f}s]"))
    tiny = os.environ.get("TINY", "") not in ("", "0")
    out = Path(os.environ.get("OUT") or ROOT / "runs" / "gpu_cifar10-out")
    run_dir = Path(os.environ.get("RUN_DIR") or ROOT / "runs" / "gpu_cifar10")
    budget = float(os.environ.get("BUDGET_S", "560"))
    overrides = [*(TINY if tiny else []), *argv]
    started = dt.datetime.now(dt.timezone.utc)
    record: dict[str, Any] = {
        "command": ("TINY=1 " if tiny else "") + " ".join(["benchmarks/gpu_cifar10.sh", *argv]),
        "setting": "tiny" if tiny else "full", "config": str(CONFIG.relative_to(ROOT)), "overrides": overrides,
        "date": started.strftime("%Y-%m-%d"), "started_utc": started.strftime("%H:%M:%S"), "machine": machine(),
        "budget_seconds": budget, "expected_seconds": None if tiny else EXPECTED_SECONDS,
    }

    config = load_config(CONFIG, overrides)
    baselines = baseline_names()
    record["executor_concurrent"] = config.executor.concurrent
    console.log(f"{record['setting']} setting on {record['machine']['device']}: {config.model.name}, "
                f"{config.train.epochs} epoch(s), batch {config.train.batch_size}, {config.train.precision}, "
                f"shadows {config.executor.concurrent} at a time; baselines: {', '.join(baselines) or 'none'}")
    ensure_data(config)
    record["phases_seconds"] = {"data": clock()}
    console.log(f"data ready in {clock():.1f}s")

    def finish(name: str, result: RunResult, wall: float) -> dict[str, Any]:
        phases = phase_seconds(result, wall)
        for phase, seconds in phases.items():
            expected = EXPECTED_SECONDS.get(phase) if not tiny and name == "remi_retrain" else None
            console.log(f"  {name} / {phase}: {seconds:.1f}s" + (f" (expected ~{expected}s)" if expected else ""))
        record["phases_seconds"][name] = phases
        record["wall_seconds"] = clock()
        # Phase C resets the kernel's peak RSS to measure each training, so keep the largest seen.
        peak = peak_memory()
        record["peak_rss_mib"] = max(record.get("peak_rss_mib", 0.0), peak["peak_rss_mib"])
        record.setdefault("cuda_max_memory_allocated_mib", {})[name] = peak.get("cuda_max_allocated_mib")
        return {"metrics": result.metrics, "timings_seconds": result.timings, "notes": result.notes,
                "stop_reasons": {m: r["stop_reason"] for m, r in result.records.items() if "stop_reason" in r}}

    # Phase A: target, approximator, ReMI, retraining.
    reset_cuda_peak()
    wall = clock()
    result = run_experiment(config, run_dir / "remi_retrain", overwrite=True, console=console)
    record["remi_retrain"] = finish("remi_retrain", result, clock() - wall)
    record["targets"] = targets(result.metrics)
    write_json(out / "results.json", record)
    folder = run_dir / "remi_retrain"
    copy_into(out, [(folder / "table.md", "table.md"), (folder / "plots" / "audit_roc.png", "audit_roc.png"),
                    (folder / "plots" / "s_histograms.png", "s_histograms.png")])
    print(f"\n### CIFAR-10, {config.model.name}: ReMI vs retraining\n\n`{record['command']}`\n\n"
          + format_table(result.metrics), flush=True)

    # Phase C: K models one after another vs at once, unless it would leave phase A's results past the budget.
    expected = EXPECTED_SECONDS["concurrent"]
    if clock() + expected > budget:
        record["concurrent"] = {"skipped": f"at {clock():.0f}s, ~{expected}s more would pass the {budget:.0f}s budget"}
        console.log(f"concurrent phase skipped: {record['concurrent']['skipped']}")
    else:
        wall = clock()
        record["concurrent"] = concurrent_phase(config, tiny, console)
        record["phases_seconds"]["concurrent"] = clock() - wall
        console.log(f"concurrent phase: {clock() - wall:.1f}s" + ("" if tiny else f" (expected ~{expected}s)"))
        record["targets"] |= concurrent_targets(record["concurrent"])
        report = concurrent_report(record["concurrent"], record)
        with atomic_write(out / "table_concurrent.md") as fh:
            fh.write(report)
        print("\n" + report, flush=True)
    record["wall_seconds"] = clock()
    write_json(out / "results.json", record)

    # Phase B: the baselines, if A's retraining and audit times say they fit the budget. Auditing a model
    # costs about as much as A's non-training time per model (MIA-efficacy fits an SVC on the CPU).
    audit_per_model = record["phases_seconds"]["remi_retrain"]["load_audit_write"] / len(result.metrics)
    projected = BASELINES_IN_RETRAINS * result.timings["retrain"] + (len(baselines) + 2) * audit_per_model
    if not baselines:
        record["baselines"] = {"skipped": "BASELINES=none"}
    elif clock() + projected > budget:
        record["baselines"] = {"skipped": f"projected {projected:.0f}s would end at {clock() + projected:.0f}s, "
                                          f"past the {budget:.0f}s budget (BUDGET_S)"}
    else:
        console.log(f"baselines: projected {projected:.0f}s, ending near {clock() + projected:.0f}s "
                    f"of the {budget:.0f}s budget")
        reuse = [f"unlearn.methods=[{','.join(['retrain', *baselines])}]",
                 f"model.weights={folder / runfolder.model_file('original')}",
                 f"approximator.load={folder / runfolder.APPROXIMATOR}"]
        reset_cuda_peak()
        wall = clock()
        result = run_experiment(load_config(CONFIG, [*overrides, *reuse]), run_dir / "baselines", overwrite=True,
                                console=console)
        record["baselines"] = finish("baselines", result, clock() - wall) | {"projected_seconds": projected}
        expected = "" if tiny else f", expected ~{EXPECTED_SECONDS['baselines']}s"
        console.log(f"baselines phase: {clock() - wall:.1f}s (projected {projected:.0f}s{expected})")
        copy_into(out, [(run_dir / "baselines" / "table.md", "table_baselines.md")])
        print(f"\n### CIFAR-10, {config.model.name}: the baselines (same target and approximator)\n\n"
              + format_table(result.metrics), flush=True)
    if "skipped" in record["baselines"]:
        console.log(f"baselines skipped: {record['baselines']['skipped']}")
    record["wall_seconds"] = clock()
    write_json(out / "results.json", record)
    console.log(f"done in {clock():.1f}s; results in {out}, run folders in {run_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
