"""Every setting a method's tuning tried, under one or more variants, on requests the leaderboard never evaluates.

    OMP_NUM_THREADS=1 python benchmarks/trial_sweep.py location_mlp random10 --seeds 3,4,5,6,7 \
        --variant anchor=kl --variant anchor=logits

The leaderboard tunes a method on one calibration request and keeps the best of its trials; which trial wins is
partly luck (``tuning_noise.py``). This script evaluates *every* completed trial of the leaderboard's study (tuned
first if missing, as the leaderboard would) on dev seeds: targets, requests and retrains made as the leaderboard
makes its own, at seeds it never evaluates (it evaluates 0..2). Each trial runs once per ``--variant`` (``KEY=VALUE``
settings laid over the trial's, e.g. a design choice being weighed), so variants are compared setting by setting
instead of through one tuning draw each. Rows (trial, variant, seed) go to
``benchmarks/results/trial_sweep-<setting>-<scenario>-<method>.json`` (rewritten atomically after each; a rerun keeps
the rows of unchanged method code) and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import leaderboard as lb  # noqa: E402

from miunlearn.audit.metrics import average_gap  # noqa: E402
from miunlearn.config import parse_overrides  # noqa: E402
from miunlearn.errors import MiunlearnError  # noqa: E402
from miunlearn.tuning import completed_trials, tune  # noqa: E402
from miunlearn.unlearning import unlearn  # noqa: E402


def summary(rows: list[dict], variants: list[str]) -> str:
    trials = sorted({r["trial"] for r in rows})
    lines = ["| trial | objective | settings | " + " | ".join(f"{v}: avg gap, strong AUC" for v in variants) + " |",
             "|" + "---|" * (3 + len(variants))]
    means: dict[str, list[float]] = {v: [] for v in variants}
    for t in trials:
        mine = [r for r in rows if r["trial"] == t]
        cells = []
        for v in variants:
            done = [r for r in mine if r["variant"] == v]
            gap = float(np.mean([r["avg_gap"] for r in done])) if done else float("nan")
            means[v].append(gap)
            cells.append(f"{gap:.2f}, {np.mean([r['strong_auc'] for r in done]):.3f}" if done else "–")
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in mine[0]["params"].items())
        lines.append(f"| {t} | {mine[0]['objective']:.2f} | {params} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in rows})
    lines.append("")
    lines.append(f"Mean over {len(trials)} trials and seeds {', '.join(map(str, seeds))}: " + "; ".join(
        f"{v} {np.nanmean(means[v]):.2f}" for v in variants))
    lines[-1] += "; retraining's work / the method's, mean over trials: " + "; ".join(
        f"{v} {np.mean([r['work_ratio'] for r in rows if r['variant'] == v and 'work_ratio' in r]):.2f}x"
        for v in variants)
    for v in variants[1:]:
        better = sum(a < b for a, b in zip(means[v], means[variants[0]]))
        lines[-1] += f"; {v} closer than {variants[0]} on {better} of {len(trials)} trials"
    return "\n".join(lines)


@lb.one_line_errors
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    lb.add_study_arguments(parser)
    parser.add_argument("--method", default="remi")
    parser.add_argument("--seeds", required=True, help="comma list of dev seeds (not the leaderboard's 0..2)")
    parser.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                        help="settings laid over every trial's (repeatable; none: the trials as tuned)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    opts = lb.study_options(args)
    lb.SEARCH_SPACES.validate(args.method)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise MiunlearnError(f"--seeds takes a comma list of integers, got {args.seeds!r}") from None
    evaluated = [s for s in seeds if s < opts.seeds]
    if evaluated:
        raise MiunlearnError(f"seed(s) {evaluated} are ones the leaderboard evaluates (0..{opts.seeds - 1}); "
                             f"dev seeds start at {opts.seeds}")
    variants = args.variant or [""]
    overrides = {v: parse_overrides([item for item in v.split(",") if item]) for v in variants}
    path = args.out / f"trial_sweep-{lb.study_stem(args)}-{args.method}.json"
    ctx = lb.prepare_setting(args.setting, opts, console)
    version = lb.method_version(ctx, args.method)
    rows = [r for r in lb.Results._read(path, {"rows": []})["rows"] if r["version"] == version]
    tasks, folder, key = lb.calibration_tasks(ctx, args.scenario)
    journal, study_key = folder / "trials" / f"{args.method}.journal", lb.study_key(ctx, key, args.method)
    tune(args.method, tasks, opts.trials, journal, study_key)
    cells: dict[int, tuple] = {}
    for trial in completed_trials(args.method, journal, study_key):
        for variant in variants:
            for seed in seeds:
                if any(r["trial"] == trial.number and r["variant"] == variant and r["seed"] == seed for r in rows):
                    continue
                if seed not in cells:
                    request, target, models, audit = lb.prepare_cell(ctx, args.scenario, seed, opts.retrains)
                    audits = [audit(m) for m, _ in models]
                    cells[seed] = (request, target, audit, lb.mean_metrics(audits), lb.mean_work(models))
                request, target, audit, mean_retrain, retrain_work = cells[seed]
                params = trial.params | overrides[variant]
                result = unlearn(target, request.forget, request.retain, args.method, params,
                                 reference=ctx.reference, approximator=ctx.approximator, recipe=ctx.config.train,
                                 seed=seed)
                audited = audit(result.model)
                auc, tpr = lb.strongest(audited)
                rows.append({"trial": trial.number, "objective": trial.value, "params": trial.params,
                             "variant": variant, "seed": seed, "version": version,
                             "avg_gap": average_gap(audited.metrics, mean_retrain), "strong_auc": auc,
                             "strong_tpr": tpr, "seconds": result.record.seconds,
                             "work_ratio": retrain_work / lb.work_of(result.record)})
                lb.save_study(path, "trial_sweep.py", argv, rows=rows)
            console.log(f"trial {trial.number}, {variant or 'as tuned'}: done")
    print(summary([r for r in rows if r["seed"] in seeds and r["variant"] in variants], variants))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
