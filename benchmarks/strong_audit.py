"""Benchmark: the strong audit (LiRA, RMIA with the auditor's reference models) of ReMI against retraining.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/strong_audit.py [config] [key=value ...] [audit.KEY=VALUE ...]

Runs the experiment of ``benchmarks/configs/<config>.yaml`` (default ``fashion_mnist_cnn``) into
``runs/bench-strong-audit-<config>``, audits it (``audit.*`` overrides go to the audit, e.g.
``audit.num_references=8``), writes the HTML report there and ``benchmarks/results/strong_audit-<config>.json``,
and prints the Markdown that BENCHMARKS.md quotes. Reference models are cached in ``.bench-data/cache``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

from remi_vs_retrain import machine, peak_memory

from miunlearn import load_config, run_experiment
from miunlearn.audit.strong import audit_config, run_strong_audit
from miunlearn.io import write_json
from miunlearn.reporting.html import audit_rows, verdicts, write_report
from miunlearn.unlearning.replay import RunReplay

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main(argv: list[str]) -> None:
    os.chdir(ROOT)
    names = [a for a in argv if "=" not in a]
    name = names[0] if names else "fashion_mnist_cnn"
    audit_overrides = [a.removeprefix("audit.") for a in argv if a.startswith("audit.")]
    run_overrides = [a for a in argv if "=" in a and not a.startswith("audit.")]
    audit = audit_config([f"cache_dir={ROOT / '.bench-data' / 'cache'}", *audit_overrides])
    out = ROOT / "runs" / f"bench-strong-audit-{name}"
    started = dt.datetime.now(dt.timezone.utc)
    wall = time.perf_counter()
    run = run_experiment(load_config(HERE / "configs" / f"{name}.yaml", run_overrides), out, overwrite=True)
    run_seconds = time.perf_counter() - wall
    report = run_strong_audit(out, audit, replay=RunReplay())
    html_path, _ = write_report(out)
    record = {
        "config": name, "command": " ".join(["OMP_NUM_THREADS=1 python benchmarks/strong_audit.py", *argv]),
        "date": started.strftime("%Y-%m-%d"), "machine": machine(), "wall_seconds": time.perf_counter() - wall,
        "run_seconds": run_seconds, "timings_seconds": run.timings, **peak_memory(),
        "accuracy": {m: {k: v[k] for k in ("retain_acc", "forget_acc", "test_acc")} for m, v in run.metrics.items()},
        "audit": {k: report[k] for k in ("references", "sizes", "comparison", "notes")}
        | {"attacks": {a: {m: {k: v for k, v in r.items() if k != "roc"} for m, r in by_model.items()}
                       for a, by_model in report["attacks"].items()}},
    }
    write_json(HERE / "results" / f"strong_audit-{name}.json", record)
    m = record["machine"]
    print(f"\n`{record['command']}` — {record['date']}, {m['cpu']} ({m['cores']} cores, torch {m['torch']}, "
          f"{m['torch_threads']} thread(s), device {m['device']}), wall {record['wall_seconds']:.0f} s "
          f"(of which the run {run_seconds:.0f} s, reference models {report['references']['seconds']:.0f} s), "
          f"peak RSS {record['peak_rss_mib']:.0f} MiB\n")
    print("| model | retain % | forget % | test % |\n|---|---|---|---|")
    for model, acc in record["accuracy"].items():
        print(f"| {model} | " + " | ".join(f"{100 * acc[k]:.1f}" for k in ("retain_acc", "forget_acc", "test_acc"))
              + " |")
    headers, rows = audit_rows(report)
    print("\n| " + " | ".join(headers) + " |\n|" + "|".join("---" for _ in headers) + "|")
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    print("\n" + "\n".join(f"- {line}" for line in verdicts(report) + report["notes"]))
    print(f"\nreport: {html_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
