"""Benchmark: ReMI against retraining on one target over several deletion requests (forget seeds).

    python benchmarks/remi_seeds.py cifar10_cnn 0,1,2 [key=value ...]

The first request trains the target (and the approximator's models, cached in the artefact store); the
others load that target's weights, so each request's ReMI and retraining are timed in the same process on
the same machine. Writes benchmarks/results/remi_seeds-<config>.json (per request: metrics, timings, stop
reason; command, machine, date) and prints the worst request's speedup and gap.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from remi_vs_retrain import HERE, ROOT, ensure_cifar, machine, peak_memory

from miunlearn import load_config, run_experiment
from miunlearn.io import write_json


def main(argv: list[str]) -> None:
    name, seeds, overrides = argv[0], [int(s) for s in argv[1].split(",")], argv[2:]
    started = dt.datetime.now(dt.timezone.utc)
    runs, weights = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            extra = [f"forget.seed={seed}"] + ([f"model.weights={weights}"] if weights else [])
            config = load_config(HERE / "configs" / f"{name}.yaml", overrides + extra)
            if config.data.name == "cifar10":
                ensure_cifar(ROOT / config.data.root)
            wall = time.perf_counter()
            out = Path(tmp) / f"run-{seed}"
            result = run_experiment(config, out)
            weights = weights or out / "models" / "original.safetensors"
            remi = result.metrics["remi"]
            runs.append({"forget_seed": seed, "wall_seconds": time.perf_counter() - wall, "metrics": result.metrics,
                         "timings_seconds": result.timings, "stop_reason": result.records["remi"]["stop_reason"]})
            print(f"[{name}] forget.seed={seed}: speedup {remi['speedup']:.1f}x, avg gap {remi['avg_gap']:.2f} "
                  f"(original {result.metrics['original']['avg_gap']:.2f}); {runs[-1]['stop_reason']}", flush=True)
    worst = min(runs, key=lambda r: r["metrics"]["remi"]["speedup"])
    record = {"config": name, "overrides": overrides, "forget_seeds": seeds,
              "command": " ".join(["python", "benchmarks/remi_seeds.py", *argv]),
              "date": started.strftime("%Y-%m-%d"), "machine": machine(), **peak_memory(), "runs": runs,
              "worst_speedup": worst["metrics"]["remi"]["speedup"],
              "worst_gap": max(r["metrics"]["remi"]["avg_gap"] for r in runs)}
    write_json(HERE / "results" / f"remi_seeds-{name}.json", record)
    print(f"worst speedup {record['worst_speedup']:.1f}x, worst avg gap {record['worst_gap']:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
