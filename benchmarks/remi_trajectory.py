"""Where ReMI's passes go: the model at every check of one run, audited against the leaderboard's retrains.

    OMP_NUM_THREADS=1 python benchmarks/remi_trajectory.py cifar10_cnn random10 --seeds 3
    OMP_NUM_THREADS=1 python benchmarks/remi_trajectory.py cifar10_cnn random10 --seeds 3 --warmup 20
    OMP_NUM_THREADS=1 python benchmarks/remi_trajectory.py cifar10_cnn random10 --seeds 3 --cosine
    OMP_NUM_THREADS=1 python benchmarks/remi_trajectory.py cifar10_cnn random10 --seeds 3 --set targets=random

For each seed (the leaderboard's target, request and two independent retrains, from its cache) ReMI runs once at the
setting's tuned preset; a copy of the model is kept at every check of its stopping rule and each copy gets the
leaderboard's audit (``--every``: only some of them): the four metrics, the average gap to the retrains' mean, the
strongest reference attack's AUC and TPR at 1% FPR, and ``fit`` (the likelihood term on all of D_f the stopping rule
reads). So one run shows how close ReMI is after any number of passes, which a budget-limited run cannot show, and
whether the tuned budget stops at a good point or at a random one.

ReMI itself has a constant step size. ``--warmup N`` (a linear warm-up over the first N steps) and ``--cosine`` (a
cosine decay to zero over the budget) change that for this study only: they register an optimizer,
``adam-scheduled``, that ReMI then uses (AdamW, as ReMI's default). ``--set key=value`` changes ReMI settings on top
of the preset. Rows go to ``benchmarks/results/remi_trajectory-<setting>-<scenario>[-options].json`` (rewritten
atomically after each seed; a rerun skips the seeds it holds unless ReMI's code, this script, the preset or the
options changed) and a markdown table (means over the seeds, per check) to stdout.
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import leaderboard as lb  # noqa: E402
from remi_diagnose import add_remi_study_arguments, preset_params, study_version  # noqa: E402

from miunlearn.audit.metrics import average_gap  # noqa: E402
from miunlearn.config import parse_overrides  # noqa: E402
from miunlearn.errors import MiunlearnError  # noqa: E402
from miunlearn.training import OPTIMIZERS  # noqa: E402
from miunlearn.unlearning import unlearn  # noqa: E402
from miunlearn.unlearning.remi import OBJECTIVES, ClassObjective, RemiConfig  # noqa: E402

SCHEDULE = {"warmup": 0, "total": 0}
"""The study optimizer's schedule, in steps (``total``: the cosine's length; 0: no decay). Set per request."""


@OPTIMIZERS.register("adam-scheduled")
def _adam_scheduled(params, config) -> torch.optim.Optimizer:
    """AdamW whose learning rate follows :data:`SCHEDULE`, advanced by every ``step``."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup, total = SCHEDULE["warmup"], SCHEDULE["total"]

    def factor(step: int) -> float:
        scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return scale * (0.5 * (1 + math.cos(math.pi * min(step, total) / total)) if total else 1.0)

    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
        group["lr"] = group["initial_lr"] * factor(0)
    step, done = optimizer.step, [0]

    def scheduled_step(*args, **kwargs):
        out = step(*args, **kwargs)
        done[0] += 1
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor(done[0])
        return out

    optimizer.step = scheduled_step
    return optimizer


@contextmanager
def snapshots(store: list[dict]) -> Iterator[None]:
    """Keep a copy of the model's weights at every stopping-rule check (every objective's ``status``)."""
    classes = {OBJECTIVES.get(name) for name in OBJECTIVES.names()} | {ClassObjective}
    originals = {cls: cls.__dict__["status"] for cls in classes}

    def keeping(status):
        def wrapped(self, model):
            out = status(self, model)
            store.append(copy.deepcopy(model.state_dict()))
            return out
        return wrapped

    for cls, status in originals.items():
        cls.status = keeping(status)
    try:
        yield
    finally:
        for cls, status in originals.items():
            cls.status = status


def trajectory_seed(ctx: lb.SettingContext, scenario: str, seed: int, retrains: int, params: dict,
                    warmup: int, cosine: bool, every: float) -> dict:
    request, target, models, audit = lb.prepare_cell(ctx, scenario, seed, retrains)
    retrain_audits = [audit(m) for m, _ in models]
    mean_retrain = lb.mean_metrics(retrain_audits)
    config = RemiConfig(**{k: v for k, v in params.items() if k in RemiConfig.__dataclass_fields__})
    steps_per_epoch = max(-(-len(request.forget_idx) // config.forget_batch), config.min_steps)
    SCHEDULE.update(warmup=warmup, total=config.epochs * steps_per_epoch if cosine else 0)
    weights: list[dict] = []
    with snapshots(weights):
        result = unlearn(target, request.forget, request.retain, "remi", params, reference=ctx.reference,
                         approximator=ctx.approximator, recipe=ctx.config.train, seed=seed)
    history = result.record.history
    # a calibrated objective also checks once while it is set up, before the history starts
    weights = weights[len(weights) - len(history):]
    model = copy.deepcopy(target)
    checks = []
    for i, (entry, state) in enumerate(zip(history, weights)):
        if every and i not in (0, len(history) - 1) and not math.isclose(entry["epoch"] / every,
                                                                         round(entry["epoch"] / every)):
            continue
        model.load_state_dict(state)
        audited = audit(model)
        checks.append({"epoch": entry["epoch"], "fit": entry.get("fit"),
                       "avg_gap": average_gap(audited.metrics, mean_retrain), **lb.row_metrics(audited),
                       "strong": lb.strongest(audited)})
    return {"seed": seed, "floor_avg_gap": lb.floor_of(retrain_audits)["avg_gap"],
            "retrains": {k: float(np.mean([lb.row_metrics(a)[k] for a in retrain_audits])) for k in lb.METRIC_KEYS},
            "retrain_strong": [lb.strongest(a) for a in retrain_audits],
            "stop_reason": result.record.stop_reason, "checks": checks}


def summary(rows: list[dict]) -> str:
    """Per check epoch present in every seed: the means over seeds."""
    epochs = sorted(set.intersection(*({c["epoch"] for c in r["checks"]} for r in rows)))
    retrains = {k: np.mean([r["retrains"][k] for r in rows]) for k in lb.METRIC_KEYS}
    lines = [f"Retrains (mean of {len(rows)} seeds): forget {retrains['forget_acc']:.1%}, retain "
             f"{retrains['retain_acc']:.1%}, test {retrains['test_acc']:.1%}, MIA-efficacy "
             f"{retrains['mia_efficacy']:.1%}; floor avg gap "
             f"{np.mean([r['floor_avg_gap'] for r in rows]):.2f}; strongest attack "
             f"{np.mean([s[0] for r in rows for s in r['retrain_strong']]):.3f} / "
             f"{np.mean([s[1] for r in rows for s in r['retrain_strong']]):.3f}.", "",
             "| passes | avg gap (per seed) | forget % | retain % | test % | MIA-eff. % | strong AUC / TPR | fit |",
             "|" + "---|" * 8]
    for epoch in epochs:
        at = [next(c for c in r["checks"] if c["epoch"] == epoch) for r in rows]
        gaps = " / ".join(f"{c['avg_gap']:.2f}" for c in at)
        lines.append(f"| {epoch:g} | {np.mean([c['avg_gap'] for c in at]):.2f} ({gaps}) | "
                     + " | ".join(f"{100 * np.mean([c[k] for c in at]):.1f}"
                                  for k in lb.METRIC_KEYS)
                     + f" | {np.mean([c['strong'][0] for c in at]):.3f} / {np.mean([c['strong'][1] for c in at]):.3f}"
                     + f" | {np.mean([c['fit'] for c in at if c['fit'] is not None] or [np.nan]):.3f} |")
    return "\n".join(lines)


def file_suffix(changes: dict) -> str:
    """``-key=value`` per ``--set``, a list's items joined by ``+`` (``frozen=0.+1.``), and nothing a shell would
    have to quote: the file names in BENCHMARKS.md can be typed as they are."""
    def text(value) -> str:
        return "+".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return "".join(re.sub(r"[^\w.+=-]", "", f"-{k}={text(v)}") for k, v in changes.items())


@lb.one_line_errors
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_remi_study_arguments(parser, seeds=3)
    parser.add_argument("--warmup", type=int, default=0, help="linear warm-up over this many steps")
    parser.add_argument("--cosine", action="store_true", help="cosine decay of the step size over the budget")
    parser.add_argument("--every", type=float, default=0,
                        help="audit only the checks at multiples of this many passes (and the first and last); "
                             "default: every check")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.warmup < 0 or args.every < 0:
        raise MiunlearnError("--seeds must be at least 1, --warmup and --every not negative")
    console = Console(stderr=True)
    opts = lb.study_options(args)
    changes = parse_overrides(args.set)
    params = preset_params(opts.presets, args.setting, args.scenario) | changes
    if args.warmup > 0 or args.cosine:
        if "optimizer" in changes:
            raise MiunlearnError("--warmup and --cosine schedule AdamW; they cannot be combined with --set optimizer")
        params["optimizer"] = "adam-scheduled"
    suffix = file_suffix(changes) + (f"-warmup={args.warmup}" if args.warmup else "")
    suffix += ("-cosine" if args.cosine else "") + (f"-every={args.every:g}" if args.every else "")
    path = args.out / f"remi_trajectory-{lb.study_stem(args)}{suffix}.json"
    # the study's own code (its schedule, where it snapshots) is part of what its rows depend on
    version = study_version(opts, args.setting, params, Path(__file__)) | ({"every": args.every} if args.every else {})
    ctx = lb.prepare_setting(args.setting, opts, console)
    rows = lb.study_rows(path, version, "remi_trajectory.py", argv, args.seeds, console,
                         f"{args.setting}/{args.scenario}",
                         lambda seed: trajectory_seed(ctx, args.scenario, seed, opts.retrains, params, args.warmup,
                                                      args.cosine, args.every))
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
