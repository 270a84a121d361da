"""Benchmark: what ReMI's settings trade between speed and closeness to retraining, on one target.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/remi_tradeoff.py [config] [key=value ...]

One process: the pipeline's steps (``prepare``, ``train_target``, ``fit_guidance``, ``run_requests``) train the
target and the approximator and run ReMI (defaults) and retraining, timed minutes apart; then every setting of
``SETTINGS`` unlearns the same target, and is audited against that same retrained model. Speedup = that
retraining's seconds / the setting's seconds. Writes benchmarks/results/remi_tradeoff-<config>.json (command,
machine, date, peak memory) and prints the table BENCHMARKS.md quotes.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from typing import Any

from remi_vs_retrain import HERE, ROOT, ensure_cifar, machine, peak_memory
from rich.console import Console

from miunlearn import load_config
from miunlearn.audit import EvaluationSets
from miunlearn.io import write_json
from miunlearn.pipeline import audit_models, fit_guidance, prepare, run_requests, train_target
from miunlearn.unlearning import unlearn

CNN_FIRST_TWO_BLOCKS = ["0.", "1.", "4.", "5."]
SETTINGS: dict[str, dict[str, Any]] = {
    "defaults (32/128/128, lr 3e-4)": {},
    "frozen blocks 1-2": {"frozen": CNN_FIRST_TWO_BLOCKS},
    "frozen blocks 1-2, lr 6e-4, 2 checks/pass": {"frozen": CNN_FIRST_TWO_BLOCKS, "lr": 6e-4, "checks_per_epoch": 2},
    "retain/ref batches 64": {"retain_batch": 64, "ref_batch": 64},
    "frozen blocks 1-2, retain/ref batches 64": {"frozen": CNN_FIRST_TWO_BLOCKS, "retain_batch": 64, "ref_batch": 64},
    "forget/retain/ref 64/32/32, lr 1e-3": {"forget_batch": 64, "retain_batch": 32, "ref_batch": 32, "lr": 1e-3},
}
COLUMNS = ("retain_acc", "forget_acc", "test_acc", "loss_auc", "mia_efficacy", "avg_gap")


def main(argv: list[str]) -> None:
    name = next((a for a in argv if "=" not in a), "cifar10_cnn")
    overrides = [a for a in argv if "=" in a]
    config = load_config(HERE / "configs" / f"{name}.yaml", [*overrides, "unlearn.methods=[remi,retrain]"])
    if config.data.name == "cifar10":
        ensure_cifar(ROOT / config.data.root)
    started, wall = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    quiet = Console(stderr=True, quiet=True)
    experiment = prepare(config)
    target = train_target(experiment, quiet)
    guidance = fit_guidance(experiment, quiet)
    run = run_requests(experiment, target, guidance, quiet)
    forget, retain, reference, audit = (experiment.part(getattr(experiment.splits, k))
                                        for k in ("forget", "retain", "ref", "audit"))
    sets = EvaluationSets(retain, forget, experiment.dataset.test, audit)
    approximator = guidance.approximator
    models = run.models  # the target and the retrained model of that run, as they left it
    retrain_seconds = run.metrics["retrain"]["seconds"]
    rows = []
    for label, params in SETTINGS.items():
        if params:
            result = unlearn(models["original"], forget, retain, "remi", params, reference=reference,
                             approximator=approximator, recipe=config.train, seed=config.seed)
            record = result.record
            metrics, _ = audit_models({"remi": result.model, "retrain": models["retrain"]}, sets, config,
                                      {"remi": record.seconds, "retrain": retrain_seconds})
            row, passes = metrics["remi"], record.history[-1]["epoch"]
            counts, stop = (record.samples_trained, record.samples_inferred), record.stop_reason
        else:  # the defaults ran inside run_experiment, with the retraining they are compared with
            row, rec = run.metrics["remi"], run.records["remi"]
            passes, counts, stop = rec["history"][-1]["epoch"], (rec["samples_trained"], rec["samples_inferred"]), \
                rec["stop_reason"]
        rows.append({"setting": label, "params": params, "passes": passes, "samples_trained": counts[0],
                     "samples_inferred": counts[1], "stop_reason": stop, "seconds": row["seconds"],
                     "speedup": retrain_seconds / row["seconds"],
                     "loss_auc_minus_retrain": row["loss_auc"] - run.metrics["retrain"]["loss_auc"],
                     **{k: row[k] for k in COLUMNS}})
        print(f"[tradeoff] {label}: {rows[-1]['speedup']:.1f}x, gap {row['avg_gap']:.2f}", file=sys.stderr, flush=True)
    record = {"config": name, "overrides": overrides,
              "command": " ".join(["OMP_NUM_THREADS=1 python benchmarks/remi_tradeoff.py", name, *overrides]),
              "date": started.strftime("%Y-%m-%d"), "machine": machine(), "wall_seconds": time.perf_counter() - wall,
              **peak_memory(), "retrain": run.metrics["retrain"], "original": run.metrics["original"], "rows": rows}
    write_json(HERE / "results" / f"remi_tradeoff-{name}.json", record)
    m = record["machine"]
    print(f"`{record['command']}` — {record['date']}, {m['cpu']} ({m['cores']} cores, torch {m['torch']}, device "
          f"{m['device']}), wall {record['wall_seconds']:.0f} s, peak RSS {record['peak_rss_mib']:.0f} MiB; "
          f"retraining {retrain_seconds:.1f} s, original's avg gap {run.metrics['original']['avg_gap']:.2f}\n")
    print("| ReMI setting | passes | trained / inferred samples | seconds | speedup | retain % | forget % | test % "
          "| MIA-eff % | AUC loss − retrain | avg gap |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['passes']:.3g} | {r['samples_trained']} / {r['samples_inferred']} | "
              f"{r['seconds']:.1f} | {r['speedup']:.1f}x | {100 * r['retain_acc']:.1f} | {100 * r['forget_acc']:.1f} | "
              f"{100 * r['test_acc']:.1f} | {r['mia_efficacy']:.1f} | {r['loss_auc_minus_retrain']:+.3f} | "
              f"{r['avg_gap']:.2f} |")


if __name__ == "__main__":
    os.chdir(ROOT)
    main(sys.argv[1:])
