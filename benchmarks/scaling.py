"""Benchmark: how the cost of unlearning grows with the forget set and with the training set (ReMI, retrain).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scaling.py                    # full CIFAR-10 run (~24 min, 1 core)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scaling.py cifar10_cnn train.epochs=3 data.test_subset=1000 \\
        approximator.num_shadows=1 --train-sizes 500,1000 --sweep-at 1000 --forget 0.01,0.1,class  # smoke, ~1.5 min

For each training-set size N (``--train-sizes``; the pool is scaled so every role keeps its share of the
config's split) the target and the approximator are trained once and reused by every forget setting at
that size. At ``--sweep-at`` every setting of ``--forget`` runs (random fractions of D_train, ``class`` =
all of class 0); at the other sizes only ``--every-size``. ReMI and retrain unlearn the same target in the
same process, so each speedup is a ratio of two times taken minutes apart on one machine.

Work is counted by the unlearning records (samples through the model with autograd on, ``trained``, and
off, ``inferred``) and set against the floor of each method:

- retrain: the recipe's epochs × |D_r| trained samples, whatever the forget set;
- ReMI: one forward/backward pass over D_f, each forget batch with the retain and reference batches its
  step uses: |D_f| + ceil(|D_f| / forget_batch) × (retain_batch + ref_batch) trained samples.

``work`` weighs an inferred sample as a third of a trained one (a forward pass against a forward plus a
backward pass twice its cost). Writes benchmarks/results/scaling.json (command, machine, date, one entry
per point) and scaling.png, and prints the Markdown table that BENCHMARKS.md quotes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from remi_vs_retrain import ROOT, ensure_cifar, machine, peak_memory  # noqa: E402

from miunlearn import load_config, run_experiment, runfolder  # noqa: E402
from miunlearn.config import RunConfig, TrainConfig  # noqa: E402
from miunlearn.io import atomic_path, write_json  # noqa: E402
from miunlearn.unlearning.work import INFERENCE_COST, weighted_work  # noqa: E402

HERE = Path(__file__).resolve().parent
METHODS = ("remi", "retrain")


def retrain_floor(config: dict[str, Any], forget_size: int, retain_size: int, recipe: TrainConfig) -> int:
    return recipe.epochs * retain_size


def remi_floor(config: dict[str, Any], forget_size: int, retain_size: int, recipe: TrainConfig) -> int:
    steps = -(-forget_size // config["forget_batch"])
    return forget_size + steps * (config["retain_batch"] + config["ref_batch"])


FLOORS: dict[str, Callable[[dict[str, Any], int, int, TrainConfig], int]] = {"remi": remi_floor,
                                                                            "retrain": retrain_floor}


def forget_overrides(setting: str) -> list[str]:
    """``class``: every sample of class 0; a number: that fraction of D_train, drawn at random."""
    if setting == "class":
        return ["forget.mode=class", "forget.classes=[0]", "forget.fraction=null"]  # the config's is for random
    return ["forget.mode=random", f"forget.fraction={float(setting)}"]


def pool_for(train_size: int, config: RunConfig) -> int:
    """The smallest pool whose D_train share (``floor(train_fraction × pool)``, as the split takes it) is N."""
    pool = math.ceil(train_size / config.data.train_fraction)
    return pool + (math.floor(config.data.train_fraction * pool) < train_size)


def method_point(name: str, metrics: dict[str, dict[str, float]], record: dict[str, Any], forget_size: int,
                 retain_size: int, recipe: TrainConfig) -> dict[str, Any]:
    m, retrained = metrics[name], metrics["retrain"]
    floor = FLOORS[name](record["config"], forget_size, retain_size, recipe)
    work = weighted_work(record["samples_trained"], record["samples_inferred"])
    return {
        "seconds": m["seconds"], "speedup": m["speedup"],
        "samples_trained": record["samples_trained"], "samples_inferred": record["samples_inferred"],
        "work": work, "floor": floor, "trained_over_floor": record["samples_trained"] / floor,
        "work_over_floor": work / floor, "avg_gap": m["avg_gap"], "loss_auc": m["loss_auc"],
        "loss_auc_minus_retrain": m["loss_auc"] - retrained["loss_auc"], "test_acc": m["test_acc"],
        "forget_acc": m["forget_acc"], "stop_reason": record["stop_reason"],
    }


def run_train_size(args: argparse.Namespace, train_size: int, work_dir: Path) -> list[dict[str, Any]]:
    """Every forget setting at one training-set size, on one target and one approximator."""
    settings = list(dict.fromkeys(args.every_size + (args.forget if train_size == args.sweep_at else [])))
    base = load_config(args.config_path, args.overrides)
    common = [*args.overrides, f"data.subset={pool_for(train_size, base)}", f"unlearn.methods=[{','.join(METHODS)}]"]
    first = work_dir / f"n{train_size}-{settings[0]}"
    points = []
    for i, setting in enumerate(settings):
        reuse = [f"model.weights={first / runfolder.model_file('original')}",
                 f"approximator.load={first / runfolder.APPROXIMATOR}"] if i else []
        config = load_config(args.config_path, [*common, *forget_overrides(setting), *reuse])
        if config.data.name == "cifar10":
            ensure_cifar(ROOT / config.data.root)
        out = work_dir / f"n{train_size}-{setting}"
        wall = time.perf_counter()
        result = run_experiment(config, out)
        sizes = runfolder.read_metrics(out).sizes
        if sizes["train"] != train_size:
            sys.exit(f"asked for |D_train|={train_size} but the pool gives {sizes['train']}: "
                     f"{config.data.name} is too small for this size")
        point = {"train_size": train_size, "forget": setting, "forget_size": sizes["forget"],
                 "retain_size": sizes["retain"], "reused_target": bool(i),
                 "wall_seconds": time.perf_counter() - wall, **peak_memory(),
                 "methods": {name: method_point(name, result.metrics, result.records[name], sizes["forget"],
                                                sizes["retain"], config.train) for name in METHODS}}
        points.append(point)
        print(f"[scaling] N={train_size} forget={setting}: |D_f|={sizes['forget']}, "
              f"speedup {point['methods']['remi']['speedup']:.1f}x, wall {point['wall_seconds']:.0f} s",
              file=sys.stderr, flush=True)
    return points


def plot(points: list[dict[str, Any]], sweep_at: int, path: Path) -> None:
    """Seconds (top) and work with each method's floor dashed (bottom), against |D_f| at ``sweep_at`` (left,
    the whole-class request starred) and against |D_train| at the every-size setting (right); log axes."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex="col")
    sweep = sorted((p for p in points if p["train_size"] == sweep_at and p["forget"] != "class"),
                   key=lambda p: p["forget_size"])
    whole_class = [p for p in points if p["train_size"] == sweep_at and p["forget"] == "class"]
    every = sorted((p for p in points if p["forget"] == points[0]["forget"]), key=lambda p: p["train_size"])
    panels = ((0, sweep, "forget_size", f"|D_f| (random; star: one class), |D_train|={sweep_at}"),
              (1, every, "train_size", f"|D_train| (forget: {points[0]['forget']})"))
    for column, series, x_key, x_label in panels:
        for name, colour in zip(METHODS, ("tab:blue", "tab:orange")):
            xs = [p[x_key] for p in series]
            axes[0, column].plot(xs, [p["methods"][name]["seconds"] for p in series], "o-", color=colour, label=name)
            axes[1, column].plot(xs, [p["methods"][name]["work"] for p in series], "o-", color=colour, label=name)
            axes[1, column].plot(xs, [p["methods"][name]["floor"] for p in series], "--", color=colour,
                                 label=f"{name} floor")
            if column == 0:
                for p in whole_class:
                    axes[0, 0].plot(p["forget_size"], p["methods"][name]["seconds"], "*", ms=12, color=colour)
                    axes[1, 0].plot(p["forget_size"], p["methods"][name]["work"], "*", ms=12, color=colour)
        axes[0, column].set(xscale="log", yscale="log", ylabel="unlearning seconds")
        axes[1, column].set(xscale="log", yscale="log", xlabel=x_label, ylabel="work (trained-sample equivalents)")
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def table(points: list[dict[str, Any]]) -> str:
    rows = ["| D_train | forget | D_f | ReMI s | retrain s | speedup | ReMI work / floor | retrain work / floor "
            "| ReMI avg gap | loss AUC ReMI − retrain | peak RSS MiB |", "|" + "---|" * 11]
    for p in points:
        remi, retrain = p["methods"]["remi"], p["methods"]["retrain"]
        rows.append(f"| {p['train_size']} | {p['forget']} | {p['forget_size']} | {remi['seconds']:.2f} | "
                    f"{retrain['seconds']:.2f} | {remi['speedup']:.1f}x | {remi['work_over_floor']:.2f} | "
                    f"{retrain['work_over_floor']:.2f} | {remi['avg_gap']:.2f} | "
                    f"{remi['loss_auc_minus_retrain']:+.3f} | {p['peak_rss_mib']:.0f} |")
    return "\n".join(rows)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def _settings(text: str) -> list[str]:
    return text.split(",")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("args", nargs="*", help="a config name in benchmarks/configs (default cifar10_cnn), then "
                                                "key=value overrides for every run")
    parser.add_argument("--train-sizes", type=_ints, default=[2500, 5000, 10000, 20000])
    parser.add_argument("--sweep-at", type=int, default=5000, help="the training-set size of the forget sweep")
    parser.add_argument("--forget", type=_settings, default=["0.001", "0.01", "0.1", "class"])
    parser.add_argument("--every-size", type=_settings, default=["0.1"], help="forget settings at every size")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for scaling.json/.png")
    args = parser.parse_intermixed_args(argv)
    if args.sweep_at not in args.train_sizes:
        parser.error(f"--sweep-at {args.sweep_at} is not one of --train-sizes {args.train_sizes}")
    names = [a for a in args.args if "=" not in a]
    args.config = names[0] if names else "cifar10_cnn"
    args.overrides = [a for a in args.args if "=" in a]
    args.config_path = HERE / "configs" / f"{args.config}.yaml"
    return args


def main(argv: list[str]) -> dict[str, Any]:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    wall = time.perf_counter()
    record = {
        "command": " ".join(["OMP_NUM_THREADS=1 python benchmarks/scaling.py", *argv]),
        "date": started.strftime("%Y-%m-%d"), "machine": machine(), "wall_seconds": None, "complete": False,
        "config": args.config, "overrides": args.overrides, "sweep_at": args.sweep_at,
        "floors": {"retrain": "epochs x |D_r| trained samples",
                   "remi": "|D_f| + ceil(|D_f| / forget_batch) x (retain_batch + ref_batch) trained samples"},
        "inference_cost": INFERENCE_COST,
        "peak_rss_note": "running peak of the one benchmark process up to and including each point",
        "points": [],
    }
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        for train_size in sorted(args.train_sizes):
            record["points"] += run_train_size(args, train_size, Path(tmp))
            write_json(args.out / "scaling.json", record)  # an interrupted long run keeps what it measured
    record |= {"wall_seconds": time.perf_counter() - wall, "complete": True}
    points = record["points"]
    write_json(args.out / "scaling.json", record)
    plot(points, args.sweep_at, args.out / "scaling.png")
    m = record["machine"]
    print(f"`{record['command']}` — {record['date']}, {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch "
          f"thread(s), torch {m['torch']}, device {m['device']}), wall {record['wall_seconds']:.0f} s\n")
    print(table(points))
    return record


if __name__ == "__main__":
    os.chdir(ROOT)
    main(sys.argv[1:])
