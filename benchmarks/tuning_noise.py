"""How much a leaderboard figure owes to the tuning's luck: each method tuned again with other TPE seeds.

    OMP_NUM_THREADS=1 python benchmarks/tuning_noise.py location_mlp random10 --methods remi,bad-teacher
    OMP_NUM_THREADS=1 python benchmarks/tuning_noise.py location_mlp random10 --methods remi approximator.seed=1
    OMP_NUM_THREADS=1 python benchmarks/tuning_noise.py location_mlp random10 --methods remi \
        --calibration-requests 3 --tune-on 1,3 --seeds 6

The leaderboard tunes every method once (``--trials`` TPE trials, sampler seed 0, on one calibration request) and
evaluates that preset on its seeds. Here each method is tuned with ``--tuning-seeds`` sampler seeds (seed 0 reads
the leaderboard's own study, so its preset is the leaderboard's) on the same calibration request, and every preset
is evaluated on the leaderboard's targets, requests and retrains (``--seeds``): the spread across tuning seeds is
what one tuning run can cost or win a method. Rows go to ``benchmarks/results/tuning_noise-<setting>-<scenario>.json``
(one per method and tuning seed, rewritten atomically as each finishes; a rerun keeps the rows whose method code
is unchanged) and a markdown summary to stdout. Run-config overrides (``key=value``) apply to the setting and name
the file (``...-<key>=<value>.json``): ``approximator.seed=N`` gives ReMI another draw of its approximator.

``--tune-on 1,3`` tunes each method and seed on the first calibration request alone and on the mean over the first
three, and evaluates both presets on the same requests: those of ``--calibration-requests`` (at least the largest
number tuned on, so no evaluated request overlaps a calibration one). The summary gives each seed's noise floor (the
two retrains' avg gap to each other) beside it.
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
from miunlearn.errors import MiunlearnError  # noqa: E402
from miunlearn.tuning import tune  # noqa: E402
from miunlearn.unlearning import unlearn  # noqa: E402


def evaluate(ctx: lb.SettingContext, scenario: str, cells: dict, method: str, params: dict, seeds: int,
             retrains: int) -> list[float]:
    """The preset's avg gap to the mean of the retrains on each evaluated seed (as the leaderboard's rows); ``cells``
    keeps each seed's request, target, auditor, retrain metrics and noise floor for the next preset."""
    gaps = []
    for seed in range(seeds):
        if seed not in cells:
            request, target, models, audit = lb.prepare_cell(ctx, scenario, seed, retrains)
            audits = [audit(m) for m, _ in models]
            cells[seed] = (request, target, audit, lb.mean_metrics(audits),
                           average_gap(audits[0].metrics, audits[1].metrics))
        request, target, audit, mean_retrain, _ = cells[seed]
        model = unlearn(target, request.forget, request.retain, method, params or None, reference=ctx.reference,
                        approximator=ctx.approximator, recipe=ctx.config.train, seed=seed).model
        gaps.append(average_gap(audit(model).metrics, mean_retrain))
    return gaps


def summary(rows: list[dict], floors: list[float]) -> str:
    lines = ["| method | tuned on | tuning seed | calibration distance | avg gap on the evaluated seeds | mean |",
             "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["method"], r["tuned_on"], r["tuning_seed"])):
        lines.append(f"| {r['method']} | {r['tuned_on']} | {r['tuning_seed']} | {r['distance']:.2f} | "
                     f"{', '.join(f'{g:.2f}' for g in r['avg_gaps'])} | {np.mean(r['avg_gaps']):.2f} |")
    lines.append("")
    if floors:
        lines.append(f"noise floor per evaluated seed: {', '.join(f'{f:.2f}' for f in floors)} "
                     f"(mean {np.mean(floors):.2f})")
    for method, tuned_on in sorted({(r["method"], r["tuned_on"]) for r in rows}):
        means = [np.mean(r["avg_gaps"]) for r in rows if (r["method"], r["tuned_on"]) == (method, tuned_on)]
        lines.append(f"{method}, tuned on {tuned_on} calibration request(s): mean avg gap over {len(means)} tuning "
                     f"seeds {np.mean(means):.2f} (range {min(means):.2f}–{max(means):.2f}, "
                     f"sd {np.std(means, ddof=1) if len(means) > 1 else 0.0:.2f})")
    return "\n".join(lines)


@lb.one_line_errors
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    lb.add_study_arguments(parser)
    parser.add_argument("--methods", required=True, help="comma list")
    parser.add_argument("--tuning-seeds", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3, help="evaluated seeds (the leaderboard's first ones)")
    parser.add_argument("--trials", type=int, help="tuning trials (default: the leaderboard's)")
    parser.add_argument("--tune-on", help="comma list of how many calibration requests to tune on "
                                          "(default: --calibration-requests)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="run-config overrides, e.g. approximator.seed=1 (another draw of ReMI's approximator)")
    args = parser.parse_intermixed_args(argv)
    console = Console(stderr=True)
    opts = lb.study_options(args, args.overrides)
    methods = args.methods.split(",")
    for method in methods:
        lb.SEARCH_SPACES.validate(method)
    if args.tuning_seeds < 1 or args.seeds < 1:
        raise MiunlearnError("--tuning-seeds and --seeds must be at least 1")
    try:
        tune_on = [int(c) for c in args.tune_on.split(",")] if args.tune_on else [opts.calibration_requests]
    except ValueError:
        raise MiunlearnError(f"--tune-on takes a comma list of integers, got {args.tune_on!r}") from None
    if not all(1 <= c <= opts.calibration_requests for c in tune_on):
        raise MiunlearnError(f"--tune-on {args.tune_on} must lie in 1..{opts.calibration_requests} (the "
                             "--calibration-requests the evaluated requests leave out)")
    trials = f"-trials{args.trials}" if args.trials else ""
    path = args.out / f"tuning_noise-{lb.study_stem(args)}{trials}{''.join(f'-{o}' for o in args.overrides)}.json"
    stored = lb.Results._read(path, {"rows": []})
    ctx = lb.prepare_setting(args.setting, opts, console)
    versions = {m: lb.method_version(ctx, m) for m in methods}
    rows = [{"tuned_on": 1} | r for r in stored["rows"]  # rows from before --tune-on were tuned on one request
            if r["method"] not in versions or r["version"] == versions[r["method"]]]
    cells: dict = {}
    floors = {int(s): f for s, f in stored.get("floors", {}).items()}
    for count in tune_on:
        tasks, folder, key = lb.calibration_tasks(ctx, args.scenario, count)
        for method in methods:
            for t in range(args.tuning_seeds):
                if any((r["method"], r["tuning_seed"], r["tuned_on"]) == (method, t, count) for r in rows):
                    continue
                journal = folder / "trials" / (f"{method}.journal" if t == 0 else f"{method}-tpe{t}.journal")
                result = tune(method, tasks, opts.trials, journal, lb.study_key(ctx, key, method), seed=t)
                same = next((r["avg_gaps"] for r in rows if r["method"] == method and r["params"] == result.params
                             and len(r["avg_gaps"]) == args.seeds), None)  # a preset another tuning also picked
                gaps = same or evaluate(ctx, args.scenario, cells, method, result.params, args.seeds, opts.retrains)
                console.log(f"{method}, tuned on {count}, tuning seed {t}: distance {result.value:.2f}, "
                            f"avg gaps {np.round(gaps, 2)}")
                rows.append({"method": method, "tuned_on": count, "tuning_seed": t, "version": versions[method],
                             "trials": opts.trials, "params": result.params, "distance": result.value,
                             "avg_gaps": gaps})
                floors |= {s: cell[4] for s, cell in cells.items()}
                lb.save_study(path, "tuning_noise.py", argv, rows=rows, floors=floors)
    print(summary([r for r in rows if r["method"] in versions and r["tuned_on"] in tune_on],
                  [floors[s] for s in range(args.seeds) if s in floors]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
