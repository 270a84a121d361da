"""Benchmark: every registered unlearning method against retraining, per dataset and forget scenario.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/baselines.py            # both datasets, both scenarios
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/baselines.py cifar10_cnn key=value ...

For each config in benchmarks/configs/baselines, two settings run through ``run_experiment``: random 10%
forgetting, then forgetting class 0. All methods of a setting share one target and one approximator; the
class setting reuses the random setting's target and approximator (same D_train; only D_f differs), so
every method's seconds and its speedup over retraining come from the same run on the same machine.
Writes benchmarks/results/baselines_<config>_<scenario>.json and prints the Markdown tables.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

from remi_vs_retrain import ROOT, ensure_cifar, machine, peak_memory

from miunlearn import load_config, run_experiment, runfolder
from miunlearn.io import write_json
from miunlearn.reporting import format_table
from miunlearn.unlearning import METHODS

HERE = Path(__file__).resolve().parent
SCENARIOS = {"random10": ["forget.mode=random", "forget.fraction=0.1"],
             "class0": ["forget.mode=class", "forget.classes=[0]", "forget.fraction=null"]}


def run_setting(name: str, scenario: str, overrides: list[str], work: Path, reuse: bool) -> dict:
    methods = "unlearn.methods=[" + ",".join(METHODS.names()) + "]"
    extra = [f"model.weights={work / runfolder.model_file('original')}",
             f"approximator.load={work / runfolder.APPROXIMATOR}"] if reuse else []
    all_overrides = [*SCENARIOS[scenario], methods, *overrides]
    config = load_config(HERE / "configs" / "baselines" / f"{name}.yaml", all_overrides + extra)
    if config.data.name == "cifar10":
        ensure_cifar(ROOT / config.data.root)
    started = dt.datetime.now(dt.timezone.utc)
    wall = time.perf_counter()
    result = run_experiment(config, None if reuse else work)
    record = {
        "config": name, "scenario": scenario, "overrides": all_overrides,
        "reused_target_and_approximator_from": "random10" if reuse else None,
        "command": " ".join(["OMP_NUM_THREADS=1 python benchmarks/baselines.py", name, *overrides]),
        "date": started.strftime("%Y-%m-%d"), "machine": machine(),
        "wall_seconds": time.perf_counter() - wall,
        **peak_memory(),  # running peak: the class setting's includes the random setting's
        "metrics": result.metrics, "timings_seconds": result.timings,
        "stop_reasons": {m: r["stop_reason"] for m, r in result.records.items() if "stop_reason" in r},
        "notes": result.notes,
    }
    write_json(HERE / "results" / f"baselines_{name}_{scenario}.json", record)
    return record


def main(argv: list[str]) -> None:
    names = [a for a in argv if "=" not in a] or sorted(p.stem for p in (HERE / "configs" / "baselines").glob("*.yaml"))
    overrides = [a for a in argv if "=" in a]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "random10"
            for scenario in SCENARIOS:
                record = run_setting(name, scenario, overrides, work, reuse=scenario != "random10")
                m = record["machine"]
                print(f"\n### {name}, {scenario}\n\n`{record['command']}` — {record['date']}, {m['cpu']} ({m['cores']} "
                      f"cores, {m['torch_threads']} torch thread(s), torch {m['torch']}, device {m['device']}), wall "
                      f"{record['wall_seconds']:.0f} s, peak RSS {record['peak_rss_mib']:.0f} MiB\n")
                print(format_table(record["metrics"]))
                sys.stdout.flush()


if __name__ == "__main__":
    os.chdir(ROOT)
    main(sys.argv[1:])
