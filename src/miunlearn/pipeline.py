"""An experiment end to end: data -> target -> approximator -> unlearning -> audit -> run folder."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn.audit import AUDIT_ATTACKS, EvaluationSets, ModelOutputs, compare_to_retrain, evaluate_outputs
from miunlearn.audit.usefulness import assess, flagged_sentences
from miunlearn.audit.usefulness import to_json as usefulness_json
from miunlearn.config import RunConfig, save_config
from miunlearn.data import DATASETS, FORGET_SELECTORS, Dataset, Splits, load_dataset, prepare_splits
from miunlearn.errors import MiunlearnError
from miunlearn.guidance import APPROXIMATORS, fit_approximator, load_approximator, train_shadows
from miunlearn.guidance.shadows import shadow_store
from miunlearn.io import atomic_write, staged_run_dir, write_json
from miunlearn.models import MODELS, build_model, load_weights, save_weights
from miunlearn.reporting import format_table, plot_roc, plot_s_histograms, print_table
from miunlearn.training import resolve_device, train_model
from miunlearn.training.executors import ModelSpec, build_executor, validate_executor_config
from miunlearn.training.loop import place_model, validate_train_config
from miunlearn.unlearning import METHODS, UnlearningMethod, build_method, unlearn


@dataclass
class RunResult:
    metrics: dict[str, dict[str, float]]
    """Per model (``original``, then each method): the scalar metrics of the comparison table."""
    records: dict[str, dict[str, Any]]
    """Per model: the training log of the target (``original``) and each method's unlearning record."""
    timings: dict[str, float]
    notes: list[str]
    out_dir: Path | None
    models: dict[str, nn.Module]
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Sequential requests (``forget.requests > 1``): per request, its sizes and every model's metrics."""
    usefulness: dict[str, Any] = field(default_factory=dict)
    """After the last request: did each method do anything, did it over-forget, could the audit tell
    (:mod:`miunlearn.audit.usefulness`; JSON form)."""


def validate(config: RunConfig) -> dict[str, UnlearningMethod]:
    """Check every name and hyper-parameter before any expensive work starts."""
    DATASETS.validate(config.data.name)
    MODELS.validate(config.model.name)
    APPROXIMATORS.validate(config.approximator.name)
    FORGET_SELECTORS.validate(config.forget.mode)
    for attack in config.audit.attacks:
        AUDIT_ATTACKS.validate(attack)
    validate_train_config(config.train)
    resolve_device(config.train.device)
    validate_executor_config(config.executor)
    if config.approximator.num_shadows < 1:
        raise MiunlearnError(f"approximator.num_shadows must be at least 1, got {config.approximator.num_shadows}")
    if not 0 < config.audit.low_fpr < 1:
        raise MiunlearnError(f"audit.low_fpr must be in (0, 1), got {config.audit.low_fpr}")
    if config.forget.requests < 1:
        raise MiunlearnError(f"forget.requests must be at least 1, got {config.forget.requests}")
    if not config.unlearn.methods:
        raise MiunlearnError("unlearn.methods is empty; valid: " + ", ".join(METHODS.names()))
    if len(set(config.unlearn.methods)) != len(config.unlearn.methods):
        raise MiunlearnError(f"unlearn.methods repeats a method: {config.unlearn.methods}")
    for name in config.unlearn.params:
        METHODS.validate(name)
    return {name: build_method(name, config.unlearn.params.get(name)) for name in config.unlearn.methods}


def run_experiment(config: RunConfig, out_dir: str | Path | None = None, overwrite: bool = False,
                   console: Console | None = None) -> RunResult:
    """Run one configured experiment; write a complete run folder to ``out_dir`` (atomically) if given."""
    console = console or Console(stderr=True, quiet=True)
    methods = validate(config)
    if out_dir is not None and Path(out_dir).exists() and not overwrite:
        raise MiunlearnError(f"run folder {str(out_dir)!r} already exists; choose another --out or pass --overwrite")
    dataset = load_dataset(config.data)
    splits = prepare_splits(dataset, config.data, config.forget)
    pool = dataset.pool
    train, forget, retain = pool.subset(splits.train), pool.subset(splits.forget), pool.subset(splits.retain)
    reference, shadow, audit = pool.subset(splits.ref), pool.subset(splits.shadow), pool.subset(splits.audit)
    console.log(f"{dataset.info.name}: |D_train|={len(train)} (|D_f|={len(forget)}, |D_r|={len(retain)}), "
                f"|D_ref|={len(reference)}, |D_shadow|={len(shadow)}, |D_audit|={len(audit)}, "
                f"|D_test|={len(dataset.test)}")

    def fresh_model() -> nn.Module:
        return build_model(config.model.name, dataset.info, config.model.width)

    timings: dict[str, float] = {}
    records: dict[str, dict[str, Any]] = {}
    torch.manual_seed(config.train.seed)
    target = fresh_model()
    if config.model.weights:
        load_weights(target, config.model.weights)
        place_model(target, config.train, train)  # as training would leave it: methods edit copies of it
        console.log(f"target: loaded {config.model.weights}")
    else:
        console.log(f"training target {config.model.name} for {config.train.epochs} epochs")
        start = time.perf_counter()
        records["original"] = {"history": train_model(target, train, config.train, desc="target")}
        timings["target_train"] = time.perf_counter() - start
    target.eval()

    shadows_loaded = 0
    if config.approximator.load:
        approximator = load_approximator(config.approximator.load)
        if approximator.num_classes != dataset.info.num_classes:
            raise MiunlearnError(f"approximator {config.approximator.load} was fitted for {approximator.num_classes} "
                                 f"classes; this dataset has {dataset.info.num_classes}")
        console.log(f"approximator: loaded {config.approximator.load}")
    else:
        console.log(f"fitting approximator {config.approximator.name} on "
                    f"{config.approximator.num_shadows} shadow model(s)")
        start = time.perf_counter()
        store = shadow_store(config, dataset.info.num_classes, splits.shadow)
        outputs = train_shadows(ModelSpec(config.model.name, dataset.info, config.model.width), shadow, config.train,
                                config.approximator.num_shadows, config.seed, build_executor(config.executor), store,
                                console)
        approximator = fit_approximator(config.approximator, outputs)
        timings["approximator_fit"] = time.perf_counter() - start
        shadows_loaded = config.approximator.num_shadows - outputs.trained_now

    models: dict[str, nn.Module] = {"original": target} | dict.fromkeys(methods, target)
    requests = split_requests(splits.forget, config.forget.requests, config.forget.seed)
    per_request: list[dict[str, Any]] = []
    forgotten = np.empty(0, dtype=np.int64)
    for number, request_idx in enumerate(requests, 1):
        # Each request is applied to the previous result; retrain starts afresh on what remains.
        forgotten = np.union1d(forgotten, request_idx)
        if len(requests) > 1:
            forget, retain = pool.subset(request_idx), pool.subset(np.setdiff1d(splits.train, forgotten))
            console.log(f"request {number}/{len(requests)}: |D_f|={len(forget)}, |D_r|={len(retain)}")
        seconds: dict[str, float] = {}
        for name, method in methods.items():
            console.log(f"unlearning with {name}")
            result = unlearn(models[name], forget, retain, name, method.config, reference=reference,
                             approximator=approximator, recipe=config.train, seed=config.seed)
            models[name] = result.model
            records[name] = asdict(result.record)
            seconds[name] = result.record.seconds
            timings[name] = timings.get(name, 0.0) + seconds[name]
        console.log("auditing")
        # After each request the audit covers everything forgotten so far.
        sets = EvaluationSets(retain, pool.subset(forgotten), dataset.test, audit)
        metrics, curves = audit_models(models, sets, config, seconds)
        judged = assess(target, {m: models[m] for m in methods}, retain, sets.forget, dataset.test, audit,
                        config.train.device, config.train.precision, seed=config.seed)
        if len(requests) > 1:
            per_request.append({"request": number, "forget_size": len(request_idx), "forgotten_total": len(forgotten),
                                "retain_size": len(retain), "metrics": metrics,
                                "stop_reasons": {m: records[m]["stop_reason"] for m in methods},
                                "usefulness": usefulness_json(judged)})
    if "target_train" in timings:
        metrics["original"]["seconds"] = timings["target_train"]
    notes = flagged_sentences(judged) + _notes(config, approximator, timings, shadows_loaded)
    run = RunResult(metrics, records, timings, notes, Path(out_dir) if out_dir else None, models, per_request,
                    usefulness_json(judged))
    if out_dir is not None:
        _write_run_folder(run, config, dataset, splits, approximator, curves, overwrite)
    return run


def split_requests(forget: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` disjoint random deletion requests covering ``forget`` (sorted indices each)."""
    if count > len(forget):
        raise MiunlearnError(f"forget.requests={count} but the forget set has only {len(forget)} sample(s)")
    if count == 1:
        return [forget]
    shuffled = np.random.default_rng(seed).permutation(forget)
    return [np.sort(part) for part in np.array_split(shuffled, count)]


def audit_models(models: dict[str, nn.Module], sets: EvaluationSets, config: RunConfig,
                 seconds: dict[str, float]) -> tuple[dict[str, dict[str, float]], dict[str, dict]]:
    """Every model's metrics on ``sets``, compared with the retrained model's; and the curves plots need."""
    outputs_by_model = {name: ModelOutputs.of(model, sets, config.train.device, config.train.precision)
                        for name, model in models.items()}
    results = {name: evaluate_outputs(out, sets, config.audit.attacks, config.audit.low_fpr)
               for name, out in outputs_by_model.items()}
    compare_to_retrain(results, outputs_by_model, seconds)
    metrics = {name: r["metrics"] for name, r in results.items()}
    for name, value in seconds.items():
        metrics[name]["seconds"] = value
    return metrics, {n: r["curves"] for n, r in results.items()}


def _notes(config: RunConfig, approximator: Any, timings: dict[str, float], shadows_loaded: int) -> list[str]:
    notes = []
    if "approximator_fit" in timings:
        loaded = f", {shadows_loaded} loaded from the artefact store" if shadows_loaded else ""
        notes.append(f"approximator '{approximator.name}' fitted once in {timings['approximator_fit']:.2f}s "
                     f"({config.approximator.num_shadows} shadow model(s){loaded}); reused by every later request, "
                     "so it is not in the per-request seconds")
    shared = [a for a in config.audit.attacks if AUDIT_ATTACKS.get(a).statistic in approximator.statistics]
    if shared:
        notes.append(f"audit attack(s) {', '.join(shared)} read a statistic the guiding approximator also reads "
                     f"({', '.join(approximator.statistics)}); they are fitted on independent data (D_r/D_audit), "
                     "but weigh the others (entropy, MIA-efficacy) more")
    notes.append("KL bound = sqrt(KL/2) between Gaussians fitted to s on D_f and D_audit: a bound on threshold "
                 "attacks on s under that Gaussian model, not a proof against every attacker")
    return notes


def _write_run_folder(run: RunResult, config: RunConfig, dataset: Dataset, splits: Splits, approximator: Any,
                      curves: dict[str, dict], overwrite: bool) -> None:
    with staged_run_dir(run.out_dir, overwrite) as staging:
        with atomic_write(staging / "config.yaml") as fh:
            fh.write(save_config(config))
        splits.save(staging / "splits.npz")
        for name, model in run.models.items():
            save_weights(model, staging / "models" / f"{name}.safetensors")
        approximator.save(staging / "approximator.safetensors")
        write_json(staging / "metrics.json", {
            "dataset": dataclasses.asdict(dataset.info),
            "sizes": {role: int(len(getattr(splits, role))) for role in ("train", "forget", "ref", "shadow", "audit")}
            | {"retain": int(len(splits.retain)), "test": splits.test_size},
            "models": run.metrics,
            "timings_seconds": run.timings,
            "records": run.records,
            "approximator": {"name": approximator.name, "statistics": list(approximator.statistics)},
            "notes": run.notes,
            "usefulness": run.usefulness,
        } | ({"requests": run.requests} if run.requests else {}))
        with atomic_write(staging / "table.md") as fh:
            fh.write("".join(f"{_request_title(r)}\n\n{format_table(r['metrics'])}\n\n" for r in run.requests)
                     + format_table(run.metrics) + "\n\n" + "\n".join(f"- {n}" for n in run.notes) + "\n")
        plot_roc(curves, staging / "plots" / "audit_roc.png")
        plot_s_histograms(curves, staging / "plots" / "s_histograms.png")


def show(run: RunResult, title: str, console: Console | None = None, wide: bool = False) -> None:
    """The comparison table(s) and notes, fitted to the terminal (``wide``: every column)."""
    console = console or Console()
    for request in run.requests[:-1]:
        print_table(request["metrics"], f"{title} — {_request_title(request)}", console, wide)
    print_table(run.metrics, f"{title} — {_request_title(run.requests[-1])}" if run.requests else title, console,
                wide)
    for note in run.notes:
        console.print(f"[dim]• {note}[/dim]")
    if run.out_dir is not None:
        console.print(f"run folder: {run.out_dir}")


def _request_title(request: dict[str, Any]) -> str:
    return (f"after request {request['request']} ({request['forget_size']} samples; "
            f"{request['forgotten_total']} forgotten in all, {request['retain_size']} retained)")
