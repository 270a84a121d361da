"""Is ReMI's yardstick where a retrain puts D_f? The per-example stopping rule's z-scores, under every model of a cell.

    OMP_NUM_THREADS=1 python benchmarks/remi_yardstick.py fashion_mnist_mlp random10 --seeds 3

ReMI's per-example objective scores each sample by ``z = (s − μ_out(x)) / σ`` (its approximator's OUT prediction)
and stops once D_f's z-scores are no more member-like than those of held-out calibration samples under the same
model (one-sided tests) and have converged on their targets (``tolerance``). That yardstick is right only if a
retrained model leaves D_f where the calibration samples lie. For each seed (the leaderboard's target, request and
retrains, from its cache) this runs ReMI at the setting's tuned preset, keeps the objective it built, and scores the
original, each retrain and ReMI's model with it: the mean and median z on D_f and on the calibration samples, the
one-sided Mann–Whitney p-value the rule reads (D_f above the calibration samples), a one-sided t-test p-value that
D_f lies above its targets on average, and the leaderboard's strongest reference attack. Rows go to
``benchmarks/results/remi_yardstick-<setting>-<scenario>[-key=value...].json`` (rewritten atomically after each
seed; a rerun skips the seeds it holds unless ReMI's code, this script or the preset changed) and a markdown table
to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import leaderboard as lb  # noqa: E402
from remi_diagnose import add_remi_study_arguments, preset_params, study_version  # noqa: E402

from miunlearn.config import parse_overrides  # noqa: E402
from miunlearn.errors import MiunlearnError  # noqa: E402
from miunlearn.unlearning import unlearn  # noqa: E402
from miunlearn.unlearning.remi import PerExampleObjective  # noqa: E402


def yardstick(objective: PerExampleObjective, model) -> dict[str, float]:
    """Where ``model`` puts D_f and the calibration samples on ``objective``'s z-scale."""
    (z_f, z_cal), _ = objective.scores(model)
    z_f, z_cal = z_f.double().cpu().numpy(), z_cal.double().cpu().numpy()
    residual = z_f - objective.targets.double().cpu().numpy()
    return {"forget_mean": float(z_f.mean()), "forget_median": float(np.median(z_f)),
            "calibration_mean": float(z_cal.mean()), "calibration_median": float(np.median(z_cal)),
            "calibration_sd": float(z_cal.std(ddof=1)),
            "above_calibration_p": float(stats.mannwhitneyu(z_f, z_cal, alternative="greater").pvalue),
            "above_targets_p": float(stats.ttest_1samp(residual, 0.0, alternative="greater").pvalue)}


def yardstick_seed(ctx: lb.SettingContext, scenario: str, seed: int, retrains: int, params: dict) -> dict:
    request, target, models, audit = lb.prepare_cell(ctx, scenario, seed, retrains)
    built: list[PerExampleObjective] = []
    original_init = PerExampleObjective.__init__

    def keeping(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        built.append(self)

    PerExampleObjective.__init__ = keeping
    try:
        result = unlearn(target, request.forget, request.retain, "remi", params, reference=ctx.reference,
                         approximator=ctx.approximator, recipe=ctx.config.train, seed=seed)
    finally:
        PerExampleObjective.__init__ = original_init
    if not built:
        raise MiunlearnError(f"ReMI did not use its per-example objective on {ctx.name}/{scenario} (a class request, "
                             "or objective=population): there is no z-score yardstick to measure")
    objective = built[-1]
    named = {"original": target, **{f"retrain-{r}": m for r, (m, _) in enumerate(models)}, "remi": result.model}
    return {"seed": seed, "passes": result.record.history[-1]["epoch"], "stop_reason": result.record.stop_reason,
            "models": {name: {**yardstick(objective, m), "strong": lb.strongest(audit(m))}
                       for name, m in named.items()}}


def summary(rows: list[dict]) -> str:
    lines = ["| seed | model | z on D_f, mean / median | z on calibration, mean / median | D_f above calibration, "
             "p | D_f above targets, p | strong AUC / TPR |", "|" + "---|" * 7]
    for row in rows:
        for name, m in row["models"].items():
            label = f"{name} (stopped at {row['passes']:g} passes)" if name == "remi" else name
            lines.append(f"| {row['seed']} | {label} | {m['forget_mean']:+.3f} / {m['forget_median']:+.3f} | "
                         f"{m['calibration_mean']:+.3f} / {m['calibration_median']:+.3f} | "
                         f"{m['above_calibration_p']:.3g} | {m['above_targets_p']:.3g} | "
                         f"{m['strong'][0]:.3f} / {m['strong'][1]:.3f} |")
    return "\n".join(lines)


@lb.one_line_errors
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_remi_study_arguments(parser, seeds=3)
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise MiunlearnError("--seeds must be at least 1")
    console = Console(stderr=True)
    opts = lb.study_options(args)
    changes = parse_overrides(args.set)
    params = preset_params(opts.presets, args.setting, args.scenario) | changes
    suffix = "".join(f"-{k}={v}" for k, v in changes.items())
    path = args.out / f"remi_yardstick-{lb.study_stem(args)}{suffix}.json"
    version = study_version(opts, args.setting, params, Path(__file__))
    ctx = lb.prepare_setting(args.setting, opts, console)
    rows = lb.study_rows(path, version, "remi_yardstick.py", argv, args.seeds, console,
                         f"{args.setting}/{args.scenario}",
                         lambda seed: yardstick_seed(ctx, args.scenario, seed, opts.retrains, params))
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
