"""Where ReMI's distance to retraining comes from, per seed, on a leaderboard setting.

    OMP_NUM_THREADS=1 python benchmarks/remi_diagnose.py location_mlp random10 --seeds 8
    OMP_NUM_THREADS=1 python benchmarks/remi_diagnose.py location_mlp random10 --seeds 8 --set targets=random
    OMP_NUM_THREADS=1 python benchmarks/remi_diagnose.py location_mlp random10 --seeds 3 --ulira --ulira-own
    OMP_NUM_THREADS=1 python benchmarks/remi_diagnose.py location_mlp random10 --seeds 3 \
        --config approximator.name=per-example --config approximator.num_shadows=2

For each seed (the leaderboard's target, request and independent retrains, cached in its folder) it puts side by
side: the two retrains' forget accuracy (their spread is the noise floor), the forget accuracy of each OUT model of
ReMI's approximator on the forgotten samples it never saw (``folds``: its own fold's; ``per-example``: all of D_f,
and their averaged prediction's), ReMI at the setting's tuned preset
(``benchmarks/presets/<setting>-<scenario>.yaml``): its metrics, average gap, the accuracy it keeps on D_r, and why
it stopped, and a third independent retrain scored the way ReMI is (what a method exactly as good as retraining
scores; with six seeds or more the summary tests ReMI against it seed by seed); with ``--ulira-own``, also the
leaderboard's U-LiRA AUC of ReMI against the first retrain (ReMI re-run on each reference model, with the ``folds``
approximator that model's owner would fit), and with ``--ulira`` the same by an auditor who holds the target's own
approximator (trained on its D_train). Seeds beyond the leaderboard's three are targets the tuning never saw either.

``--set key=value`` changes ReMI settings on top of the preset; ``--config key=value`` the setting's run config
(e.g. the approximator; the targets and retrains stay those of the leaderboard's cache). Rows go to
``benchmarks/results/remi_diagnose-<setting>-<scenario>[-key=value...].json`` (rewritten atomically after each seed;
a rerun skips the seeds it holds unless ReMI's code or preset changed) and a markdown summary to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import leaderboard as lb  # noqa: E402

from miunlearn.audit.metrics import accuracy, average_gap  # noqa: E402
from miunlearn.config import parse_overrides  # noqa: E402
from miunlearn.errors import MiunlearnError  # noqa: E402
from miunlearn.statistics import logit_confidence  # noqa: E402
from miunlearn.training import predict_logits  # noqa: E402
from miunlearn.tuning import method_fingerprint  # noqa: E402
from miunlearn.unlearning import unlearn  # noqa: E402


def preset_params(presets: Path, setting: str, scenario: str) -> dict:
    path = presets / f"{setting}-{scenario}.yaml"
    if not path.is_file():
        raise MiunlearnError(f"no tuned preset {path}: run `python benchmarks/leaderboard.py --settings {setting} "
                             f"--scenarios {scenario}` (same --quick/--presets) first")
    return yaml.safe_load(path.read_text())["unlearn"]["params"].get("remi", {})


def study_version(opts: lb.Options, setting: str, params: dict, script: Path | None = None) -> dict:
    """What a ReMI study's stored rows depend on: ReMI's code, the setting's approximator, the params, and (``script``)
    the study's own source where it shapes the rows (a rerun recomputes rows stored under another version)."""
    own = {"script": hashlib.sha256(script.read_bytes()).hexdigest()[:16]} if script else {}
    return {"remi": method_fingerprint("remi"), **own,
            "approximator": lb.approximator_version(lb.setting_config(setting, opts)), "params": params}


def add_remi_study_arguments(parser: argparse.ArgumentParser, seeds: int) -> None:
    """A ReMI study's arguments: the leaderboard cell's, how many seeds, and ReMI settings on top of the preset."""
    lb.add_study_arguments(parser)
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a ReMI setting on top of the preset (repeatable)")
    parser.add_argument("--presets", type=Path, help="the leaderboard's --presets (default: its own)")


THIRD_RETRAIN_SEEDS = 10_000
"""A cell's third retrain is seeded ``THIRD_RETRAIN_SEEDS + seed``: apart from every cell's own retrains."""


def diagnose_seed(ctx: lb.SettingContext, scenario: str, seed: int, retrains: int, params: dict, ulira: bool,
                  own: bool) -> dict:
    request, target, models, audit = lb.prepare_cell(ctx, scenario, seed, retrains)
    retrain_audits = [audit(m) for m, _ in models]
    mean_retrain = lb.mean_metrics(retrain_audits)
    # One more independent retrain, scored as a method's row is (against the mean of the cell's retrains): what
    # a method that is exactly as good as retraining scores under the leaderboard's measurement.
    third, _ = lb.retrained(ctx, target, request, lb.cell_folder(ctx, scenario, seed) / "retrain-third.safetensors",
                            seed=THIRD_RETRAIN_SEEDS + seed)
    third_audit = audit(third)
    out_models = list(getattr(ctx.approximator, "out_models", []))
    out_probs = [torch.softmax(predict_logits(m, request.forget), 1) for m in out_models]
    # ``folds``: model k never saw only the samples of fold k; elsewhere every OUT model never saw any of D_f
    owner = ctx.approximator.out_model_of(request.forget) if hasattr(ctx.approximator, "out_model_of") else None
    unseen = [owner == k if owner is not None else torch.ones(len(request.forget.y), dtype=torch.bool)
              for k in range(len(out_models))]
    retrain_s = [logit_confidence(predict_logits(m, request.forget), request.forget.y.cpu()) for m, _ in models]
    start = time.perf_counter()
    result = unlearn(target, request.forget, request.retain, "remi", params or None, reference=ctx.reference,
                     approximator=ctx.approximator, recipe=ctx.config.train, seed=seed)
    seconds = time.perf_counter() - start
    retrain = lb.timed_retrain(ctx, target, request, lb.retrain_seed(seed, 0, retrains), models[0][0])
    remi = audit(result.model)
    return {
        "seed": seed,
        "retrain_forget_acc": [a.metrics["forget_acc"] for a in retrain_audits],
        "floor_avg_gap": lb.floor_of(retrain_audits)["avg_gap"],
        "out_forget_acc": [accuracy(p[mask], request.forget.y[mask]) for p, mask in zip(out_probs, unseen)],
        "out_ensemble_forget_acc": (accuracy(torch.stack(out_probs).mean(0), request.forget.y)
                                    if out_probs and owner is None else None),
        "original_retain_acc": accuracy(predict_logits(target, request.retain), request.retain.y.cpu()),
        # how near the approximator's OUT prediction of s is to a retrain's, per forgotten sample, and one retrain's
        # to another's (what no prediction can beat)
        "out_error": float(np.mean([(ctx.approximator.predict_out(request.forget).mu.cpu() - s).abs().mean()
                                    for s in retrain_s])),
        "retrain_error": float(np.mean([(a - b).abs().mean() for a, b in itertools.combinations(retrain_s, 2)])),
        "remi": lb.row_metrics(remi),
        "remi_avg_gap": average_gap(remi.metrics, mean_retrain),
        "third_retrain": lb.row_metrics(third_audit),
        "third_retrain_avg_gap": average_gap(third_audit.metrics, mean_retrain),
        "third_retrain_strong": lb.strongest(third_audit),
        # how the model scores samples nobody trained on: mean and spread of s on D_test (a retrain keeps the
        # original's; a model that lowers its confidence everywhere narrows it)
        "test_s": {"remi": test_s(result.model, ctx.dataset.test),
                   "retrains": [test_s(m, ctx.dataset.test) for m, _ in models]},
        "retrain_mia_efficacy": [a.metrics["mia_efficacy"] / 100 for a in retrain_audits],
        "remi_strong": lb.strongest(remi),
        "retrain_strong": [lb.strongest(a) for a in retrain_audits],
        "remi_epochs": result.record.history[-1]["epoch"] if result.record.history else 0.0,
        "remi_stop_reason": result.record.stop_reason,
        # the stopping rule's inputs at the last check (why it did or did not stop)
        "remi_last_check": {k: v for k, v in (result.record.history[-1] if result.record.history else {}).items()
                            if k in ("fit", "shift_p", "ad_p", "tail_p", "acc_p", "forget_acc", "expected_acc")},
        "speedup": retrain["seconds"] / seconds,  # both timed in this process
        "ulira_auc": (lb.ulira_auc(ctx, "remi", params or None, result.model, models[0][0], request, seed,
                                   [ctx.approximator] * len(ctx.refs.models)) if ulira else None),
        "ulira_own_auc": (lb.ulira_auc(ctx, "remi", params or None, result.model, models[0][0], request, seed)
                          if own else None),
    }


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def third_retrain_comparison(rows: list[dict]) -> str:
    """ReMI against a third independent retrain, both scored against the cell's two retrains, seed by seed: whether
    ReMI's average gap is told apart from a retrain's under the leaderboard's own measurement (paired Wilcoxon)."""
    remi = np.array([r["remi_avg_gap"] for r in rows])
    third = np.array([r["third_retrain_avg_gap"] for r in rows])
    diff = remi - third
    test = (f"Wilcoxon signed-rank p = {stats.wilcoxon(diff).pvalue:.3f}" if len(rows) >= 6 and diff.any()
            else "too few seeds for a test")
    return (f"A third independent retrain scored like ReMI: avg gap {third.mean():.2f} ± {third.std():.2f}, strongest "
            f"reference attack AUC / TPR at 1% FPR {strong(rows, 'third_retrain_strong', 0):.3f} / "
            f"{strong(rows, 'third_retrain_strong', 1):.3f}; ReMI minus it, seed by seed: {diff.mean():+.2f} "
            f"(ReMI closer on {int((diff < 0).sum())} of {len(rows)} seeds; {test}).")


def test_s(model: torch.nn.Module, data) -> list[float]:
    """Mean and standard deviation of ``s`` on ``data``."""
    s = logit_confidence(predict_logits(model, data), data.y.cpu())
    return [float(s.mean()), float(s.std())]


def strong(rows: list[dict], key: str, which: int) -> float:
    """Mean over seeds (and retrains) of the strongest reference attack's AUC (0) or TPR at 1% FPR (1)."""
    return float(np.mean([np.asarray(r[key])[..., which].mean() for r in rows]))


def summary(rows: list[dict]) -> str:
    lines = ["| seed | retrains' forget % | OUT models' forget % (ensemble) | ReMI forget % | ReMI retain % | "
             "ReMI avg gap | third retrain's avg gap | floor | ReMI epochs | speedup |", "|" + "---|" * 10]
    for r in rows:
        out = ", ".join(f"{a * 100:.1f}" for a in r["out_forget_acc"])
        ensemble = f" ({r['out_ensemble_forget_acc'] * 100:.1f})" if r["out_ensemble_forget_acc"] is not None else ""
        retrains = ", ".join(f"{a * 100:.1f}" for a in r["retrain_forget_acc"])
        lines.append(f"| {r['seed']} | {retrains} | {out}{ensemble} "
                     f"| {r['remi']['forget_acc'] * 100:.1f} | {r['remi']['retain_acc'] * 100:.1f} | "
                     f"{r['remi_avg_gap']:.2f} | {_number(r.get('third_retrain_avg_gap'))} | "
                     f"{r['floor_avg_gap']:.2f} | {r['remi_epochs']:.1f} | "
                     f"{r['speedup']:.1f}x |")
    mean_retrain = [np.mean(r["retrain_forget_acc"]) for r in rows]
    floor = np.mean([abs(r["retrain_forget_acc"][0] - r["retrain_forget_acc"][1]) for r in rows]) * 100
    out_dist = np.mean([abs(a - m) for r, m in zip(rows, mean_retrain) for a in r["out_forget_acc"]]) * 100
    bias = np.mean([a - m for r, m in zip(rows, mean_retrain) for a in r["out_forget_acc"]]) * 100
    remi_bias = np.mean([r["remi"]["forget_acc"] - m for r, m in zip(rows, mean_retrain)]) * 100
    gaps, floors = [r["remi_avg_gap"] for r in rows], [r["floor_avg_gap"] for r in rows]
    damaged = sum(r["remi"]["retain_acc"] < r["original_retain_acc"] - 0.02 for r in rows)
    lines += ["", f"Forget accuracy, {len(rows)} seeds: retrain vs retrain |Δ| {floor:.1f} points; an OUT model vs the "
              f"retrains' mean |Δ| {out_dist:.1f} (signed {bias:+.1f}); ReMI vs the retrains' mean {remi_bias:+.1f}. "
              f"ReMI lost more than 2 points of D_r accuracy on {damaged} of {len(rows)} targets. "
              f"ReMI avg gap {np.mean(gaps):.2f} ± {np.std(gaps):.2f} (floor {np.mean(floors):.2f}). "
              f"MIA-efficacy: ReMI {np.mean([r['remi']['mia_efficacy'] for r in rows]) * 100:.1f}%, retrains "
              f"{np.mean([r['retrain_mia_efficacy'] for r in rows]) * 100:.1f}%. Strongest reference attack, AUC / "
              f"TPR at 1% FPR: ReMI {strong(rows, 'remi_strong', 0):.3f} / {strong(rows, 'remi_strong', 1):.3f}, "
              f"retrains {strong(rows, 'retrain_strong', 0):.3f} / {strong(rows, 'retrain_strong', 1):.3f}."]
    lines[-1] += (f" The approximator's OUT prediction of s vs a retrain's on D_f: mean |Δ| "
                  f"{np.mean([r['out_error'] for r in rows]):.2f} (one retrain vs another: "
                  f"{np.mean([r['retrain_error'] for r in rows]):.2f}).")
    thirds = [r for r in rows if r.get("third_retrain_avg_gap") is not None]
    if thirds:
        lines[-1] += " " + third_retrain_comparison(thirds)
    spreads = [r["test_s"] for r in rows if "test_s" in r]
    if spreads:
        lines[-1] += (f" s on D_test, mean ± spread: ReMI {np.mean([t['remi'][0] for t in spreads]):.2f} ± "
                      f"{np.mean([t['remi'][1] for t in spreads]):.2f}, retrains "
                      f"{np.mean([r[0] for t in spreads for r in t['retrains']]):.2f} ± "
                      f"{np.mean([r[1] for t in spreads for r in t['retrains']]):.2f}.")
    ulira = [r["ulira_auc"] for r in rows if r.get("ulira_auc") is not None]
    if ulira:
        lines[-1] += (f" U-LiRA AUC by an auditor holding the target's approximator: {np.mean(ulira):.3f} on "
                      f"{len(ulira)} seed(s).")
    own = [r["ulira_own_auc"] for r in rows if r.get("ulira_own_auc") is not None]
    if own:
        lines[-1] += (f" U-LiRA AUC (the leaderboard's: each reference model its own approximator; 0.5: "
                      f"indistinguishable): {np.mean(own):.3f} on {len(own)} seed(s).")
    return "\n".join(lines)


@lb.one_line_errors
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_remi_study_arguments(parser, seeds=8)
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="a run-config override of the setting (repeatable), e.g. approximator.name=per-example")
    parser.add_argument("--ulira", action="store_true",
                        help="also U-LiRA by an auditor who holds the target's approximator (one more ReMI run per "
                             "reference model)")
    parser.add_argument("--ulira-own", action="store_true",
                        help="also the leaderboard's U-LiRA: each reference model unlearns with the approximator its "
                             "owner would fit (num_shadows fold models per reference model, cached)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    opts = lb.study_options(args, args.config)
    if args.seeds < 1:
        raise MiunlearnError(f"--seeds must be at least 1, got {args.seeds}")
    changes = parse_overrides(args.set)
    params = preset_params(opts.presets, args.setting, args.scenario) | changes
    suffix = "".join(f"-{k}={v}" for k, v in [*changes.items(), *(c.split("=", 1) for c in args.config)])
    path = args.out / f"remi_diagnose-{lb.study_stem(args)}{suffix}.json"
    version = study_version(opts, args.setting, params)
    ctx = lb.prepare_setting(args.setting, opts, console)
    rows = lb.study_rows(
        path, version, "remi_diagnose.py", argv, args.seeds, console, f"{args.setting}/{args.scenario}",
        lambda seed: diagnose_seed(ctx, args.scenario, seed, opts.retrains, params, args.ulira, args.ulira_own),
        done=lambda r: ("third_retrain_avg_gap" in r and (r.get("ulira_auc") is not None or not args.ulira)
                        and (r.get("ulira_own_auc") is not None or not args.ulira_own)))
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
