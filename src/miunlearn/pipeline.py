"""An experiment end to end: data -> target -> approximator -> unlearning -> audit -> run folder."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn import runfolder
from miunlearn.audit import AUDIT_ATTACKS, EvaluationSets, ModelOutputs, compare_to_retrain, evaluate_outputs
from miunlearn.audit.metrics import Metric
from miunlearn.audit.usefulness import assess, flagged_sentences
from miunlearn.audit.usefulness import to_json as usefulness_json
from miunlearn.config import RunConfig, number_problems, resolve_forget, save_config
from miunlearn.data import DATASETS, FORGET_SELECTORS, Dataset, Splits, TensorData, load_dataset, prepare_splits
from miunlearn.data.forget import ignored_fields
from miunlearn.errors import MiunlearnError
from miunlearn.guidance import APPROXIMATORS, load_approximator
from miunlearn.guidance.approximators import PrivacyApproximator, approximator_problems
from miunlearn.io import atomic_write, check_output_folder
from miunlearn.models import MODELS, build_model, load_weights, save_weights
from miunlearn.reporting import format_table, plot_roc, plot_s_histograms, print_table
from miunlearn.training import resolve_device, train_model
from miunlearn.training.executors import validate_executor_config
from miunlearn.training.loop import place_model, validate_train_config
from miunlearn.unlearning import METHODS, UnlearningMethod, build_method, unlearn
from miunlearn.unlearning.work import max_cost_problem


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
    curves: dict[str, dict] = field(default_factory=dict, repr=False)
    """Per model: the population attacks' ROC curves and score histograms the plots draw."""
    approximator: Any = field(default=None, repr=False)
    """The approximator that guided ReMI."""
    usefulness: dict[str, Any] = field(default_factory=dict)
    """After the last request: did each method do anything, did it over-forget, could the audit tell
    (:mod:`miunlearn.audit.usefulness`; JSON form)."""


def validate(config: RunConfig) -> dict[str, UnlearningMethod]:
    """Check every name and hyper-parameter of ``config``; raise one error listing every problem found.

    Returns the built methods. Fills in the default random forget fraction (so the saved config says it)."""
    resolve_forget(config)
    problems: list[str] = []
    methods = _config_problems(config, problems)
    _raise_all(problems)
    return methods


def _config_problems(config: RunConfig, problems: list[str]) -> dict[str, UnlearningMethod]:
    checks = [lambda: DATASETS.validate(config.data.name), lambda: MODELS.validate(config.model.name),
              lambda: APPROXIMATORS.validate(config.approximator.name),
              lambda: FORGET_SELECTORS.validate(config.forget.mode),
              lambda: validate_train_config(config.train), lambda: resolve_device(config.train.device),
              lambda: validate_executor_config(config.executor)]
    checks += [lambda a=attack: AUDIT_ATTACKS.validate(a) for attack in config.audit.attacks]
    checks += [lambda n=name: METHODS.validate(n) for name in config.unlearn.params]
    for check in checks:
        _collect(problems, check)
    problems += number_problems(config)
    problems += ignored_fields(config.forget)
    approximator = config.approximator
    if approximator.num_shadows < 1:
        problems.append(f"approximator.num_shadows must be at least 1, got {approximator.num_shadows}")
    problems += approximator_problems(approximator)
    if config.model.width is not None and config.model.width < 1:
        problems.append(f"model.width must be at least 1 (or unset for the model's default), got {config.model.width}")
    if math.isfinite(config.audit.low_fpr) and not 0 < config.audit.low_fpr < 1:
        problems.append(f"audit.low_fpr must be in (0, 1), got {config.audit.low_fpr}")
    max_cost = config.unlearn.max_cost
    if not (isinstance(max_cost, float) and not math.isfinite(max_cost)):  # number_problems names those
        problems += [p for p in [max_cost_problem(max_cost, "unlearn.max_cost")] if p]
    if config.forget.requests < 1:
        problems.append(f"forget.requests must be at least 1, got {config.forget.requests}")
    if not config.unlearn.methods:
        problems.append("unlearn.methods is empty; valid: " + ", ".join(METHODS.names()))
    if len(set(config.unlearn.methods)) != len(config.unlearn.methods):
        problems.append(f"unlearn.methods repeats a method: {config.unlearn.methods}")
    methods = {}
    for name in dict.fromkeys(config.unlearn.methods):
        method = _collect(problems, lambda n=name: build_method(n, config.unlearn.params.get(n)))
        if method is not None:
            methods[name] = method
            problems += number_problems(method.config, f"unlearn.params.{name}")
            if config.approximator.name in APPROXIMATORS and not config.approximator.load:
                problems += [p for p in [method.approximator_problem(APPROXIMATORS.get(config.approximator.name))] if p]
    return methods


def _collect(problems: list[str], check: Any) -> Any:
    try:
        return check()
    except MiunlearnError as exc:
        problems.append(str(exc))
        return None


def _raise_all(problems: list[str]) -> None:
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        raise MiunlearnError(unique[0])
    if unique:
        raise MiunlearnError(f"{len(unique)} problems: " + "; ".join(unique))


@dataclass
class Experiment:
    """Everything a run needs, loaded and checked before any training (see :func:`prepare`)."""

    config: RunConfig
    methods: dict[str, UnlearningMethod]
    dataset: Dataset
    splits: Splits
    requests: list[np.ndarray]
    """Disjoint deletion requests (indices into the pool) covering D_f, applied in order."""
    target: nn.Module
    """The untrained target, or the loaded one (``model.weights``)."""
    approximator: PrivacyApproximator | None
    """The loaded approximator (``approximator.load``), else None: fitted by :func:`fit_guidance`."""
    shadow_store: Path | None
    """The artefact store of the approximator's shadow or OUT models (opened and checked), when it is to be fitted."""
    out_dir: Path | None
    overwrite: bool

    def part(self, indices: np.ndarray) -> TensorData:
        return self.dataset.pool.subset(indices)


def prepare(config: RunConfig, out_dir: str | Path | None = None, overwrite: bool = False) -> Experiment:
    """Validate the config and the output folder, then the data and what the run reuses; raise one error
    listing every problem found (the config's first, then the data's). Nothing is trained; the only write
    is the shadow models' artefact store folder (in the cache), once everything else has passed."""
    problems: list[str] = []
    resolve_forget(config)
    methods = _config_problems(config, problems)
    if out_dir is not None:
        _collect(problems, lambda: check_output_folder(out_dir, overwrite))
    _raise_all(problems)  # the data checks below need a sound config (seeds, fractions, names)
    dataset = _collect(problems, lambda: load_dataset(config.data))
    splits = requests = target = approximator = None
    if dataset is not None:
        splits = _collect(problems, lambda: prepare_splits(dataset, config.data, config.forget))
        if splits is not None and config.forget.requests >= 1:
            requests = _collect(problems, lambda: split_requests(splits.forget, config.forget.requests,
                                                                  config.forget.seed))
        if requests and config.approximator.name in APPROXIMATORS and not config.approximator.load:
            smallest = min(len(r) for r in requests)
            approximator_type = APPROXIMATORS.get(config.approximator.name)
            problems += [p for m in methods.values() if (p := m.request_problem(smallest, approximator_type))]
        if config.model.name in MODELS and (config.model.width is None or config.model.width >= 1):
            target = _collect(problems, lambda: _target(config, dataset))
            if target is not None:
                problems += [p for m in methods.values() if (p := m.model_problem(target))]
        if config.approximator.load:
            approximator = _collect(problems, lambda: _load_approximator(config.approximator.load, dataset))
    _raise_all(problems)
    store = None
    if approximator is None:
        store = APPROXIMATORS.get(config.approximator.name).open_store(config, dataset, splits)
    return Experiment(config, methods, dataset, splits, requests, target, approximator, store,
                      Path(out_dir) if out_dir is not None else None, overwrite)


def _target(config: RunConfig, dataset: Dataset) -> nn.Module:
    torch.manual_seed(config.train.seed)
    target = build_model(config.model.name, dataset.info, config.model.width)
    if config.model.weights:
        load_weights(target, config.model.weights)
    return target


def _load_approximator(path: str, dataset: Dataset) -> PrivacyApproximator:
    approximator = load_approximator(path)
    if approximator.num_classes != dataset.info.num_classes:
        raise MiunlearnError(f"approximator {path} was fitted for {approximator.num_classes} "
                             f"classes; this dataset has {dataset.info.num_classes}")
    return approximator


def run_experiment(config: RunConfig, out_dir: str | Path | None = None, overwrite: bool = False,
                   console: Console | None = None) -> RunResult:
    """Run one configured experiment; write a complete run folder to ``out_dir`` (atomically) if given.

    The steps, each public: :func:`prepare` (every check, before any training), :func:`train_target`,
    :func:`fit_guidance`, :func:`run_requests`, :func:`write_run`."""
    console = console or Console(stderr=True, quiet=True)
    experiment = prepare(config, out_dir, overwrite)
    sizes = experiment.splits
    console.log(f"{experiment.dataset.info.name}: |D_train|={len(sizes.train)} (|D_f|={len(sizes.forget)}, "
                f"|D_r|={len(sizes.retain)}), |D_ref|={len(sizes.ref)}, |D_shadow|={len(sizes.shadow)}, "
                f"|D_audit|={len(sizes.audit)}, |D_test|={len(experiment.dataset.test)}")
    target = train_target(experiment, console)
    guidance = fit_guidance(experiment, console)
    run = run_requests(experiment, target, guidance, console)
    run.notes = flagged_sentences(run.usefulness) + _notes(config, guidance.approximator, run.timings,
                                                           guidance.shadows_loaded)
    if out_dir is not None:
        write_run(run, experiment)
    return run


@dataclass
class Target:
    model: nn.Module
    """In eval mode, placed as training leaves it."""
    history: list[dict[str, Any]] | None = None
    """The training log; None when loaded (``model.weights``)."""
    seconds: float | None = None


def train_target(experiment: Experiment, console: Console) -> Target:
    """The loaded target placed as training would leave it, or a freshly trained one."""
    config, model = experiment.config, experiment.target
    train = experiment.part(experiment.splits.train)
    if config.model.weights:
        place_model(model, config.train, train)  # as training would leave it: methods edit copies of it
        console.log(f"target: loaded {config.model.weights}")
        return Target(model.eval())
    console.log(f"training target {config.model.name} for {config.train.epochs} epochs")
    start = time.perf_counter()
    history = train_model(model, train, config.train, desc="target")
    return Target(model.eval(), history, time.perf_counter() - start)


@dataclass
class Guidance:
    approximator: PrivacyApproximator
    seconds: float | None
    """Fitting time (shadow models included); None when loaded."""
    shadows_loaded: int = 0
    """Shadow models taken from the artefact store instead of trained."""


def fit_guidance(experiment: Experiment, console: Console) -> Guidance:
    """The approximator that guides ReMI: the loaded one, or one fitted on (stored or new) shadow models."""
    config, dataset = experiment.config, experiment.dataset
    if experiment.approximator is not None:
        console.log(f"approximator: loaded {config.approximator.load}")
        return Guidance(experiment.approximator, None)
    console.log(f"fitting approximator {config.approximator.name} ({config.approximator.num_shadows} shadow or "
                "OUT model(s))")
    start = time.perf_counter()
    approximator, trained_now = APPROXIMATORS.get(config.approximator.name).prepare(
        config, dataset, experiment.splits, experiment.shadow_store, console)
    return Guidance(approximator, time.perf_counter() - start, config.approximator.num_shadows - trained_now)


def run_requests(experiment: Experiment, target: Target, guidance: Guidance, console: Console) -> RunResult:
    """Apply each deletion request with every method (each to its own previous result) and audit after each."""
    config, methods, splits = experiment.config, experiment.methods, experiment.splits
    records: dict[str, dict[str, Any]] = {} if target.history is None else {"original": {"history": target.history}}
    timings: dict[str, float] = {} if target.seconds is None else {"target_train": target.seconds}
    if guidance.seconds is not None:
        timings["approximator_fit"] = guidance.seconds
    reference = experiment.part(splits.ref)
    audit = experiment.part(splits.audit)
    models: dict[str, nn.Module] = {"original": target.model} | dict.fromkeys(methods, target.model)
    requests = experiment.requests
    per_request: list[dict[str, Any]] = []
    forgotten = np.empty(0, dtype=np.int64)
    forget, retain = experiment.part(splits.forget), experiment.part(splits.retain)
    for number, request_idx in enumerate(requests, 1):
        # Each request is applied to the previous result; retrain starts afresh on what remains.
        forgotten = np.union1d(forgotten, request_idx)
        if len(requests) > 1:
            forget, retain = experiment.part(request_idx), experiment.part(np.setdiff1d(splits.train, forgotten))
            console.log(f"request {number}/{len(requests)}: |D_f|={len(forget)}, |D_r|={len(retain)}")
        seconds: dict[str, float] = {}
        for name, method in methods.items():
            console.log(f"unlearning with {name}")
            result = unlearn(models[name], forget, retain, name, method.config, reference=reference,
                             approximator=guidance.approximator, recipe=config.train, seed=config.seed,
                             max_cost=None if name == "retrain" else config.unlearn.max_cost)
            models[name] = result.model
            records[name] = asdict(result.record)
            seconds[name] = result.record.seconds
            timings[name] = timings.get(name, 0.0) + seconds[name]
        console.log("auditing")
        # After each request the audit covers everything forgotten so far.
        sets = EvaluationSets(retain, experiment.part(forgotten), experiment.dataset.test, audit)
        metrics, curves = audit_models(models, sets, config, seconds)
        judged = usefulness_json(assess(target.model, {m: models[m] for m in methods}, retain, sets.forget, audit,
                                        config.train.device, config.train.precision, seed=config.seed))
        if len(requests) > 1:
            per_request.append({"request": number, "forget_size": len(request_idx), "forgotten_total": len(forgotten),
                                "retain_size": len(retain), "metrics": metrics,
                                "stop_reasons": {m: records[m]["stop_reason"] for m in methods},
                                "usefulness": judged})
    if target.seconds is not None:
        metrics["original"][Metric.SECONDS] = target.seconds
    return RunResult(metrics, records, timings, [], experiment.out_dir, models, per_request, curves,
                     guidance.approximator, judged)


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
        metrics[name][Metric.SECONDS] = value
    return metrics, {n: r["curves"] for n, r in results.items()}


def _notes(config: RunConfig, approximator: Any, timings: dict[str, float], shadows_loaded: int) -> list[str]:
    notes = []
    if config.model.weights:
        notes.append(f"the target was loaded from {config.model.weights}: these numbers mean something only if it "
                     "was trained on exactly this run's D_train split; for a model trained elsewhere on your own "
                     "data, use `miunlearn forget`, which never re-splits your training set")
    if "approximator_fit" in timings:
        loaded = f", {shadows_loaded} loaded from the artefact store" if shadows_loaded else ""
        notes.append(f"approximator '{approximator.name}' fitted once in {timings['approximator_fit']:.2f}s "
                     f"({config.approximator.num_shadows} model(s) trained for it{loaded}); reused by every later "
                     "request, so it is not in the per-request seconds")
    shared = [a for a in config.audit.attacks if AUDIT_ATTACKS.get(a).statistic in approximator.statistics]
    if shared:
        notes.append(f"audit attack(s) {', '.join(shared)} read a statistic the guiding approximator also reads "
                     f"({', '.join(approximator.statistics)}); they are fitted on independent data (D_r/D_audit), "
                     "but weigh the others (entropy, MIA-efficacy) more")
    notes.append("KL bound = sqrt(KL/2) between Gaussians fitted to s on D_f and D_audit: a bound on threshold "
                 "attacks on s under that Gaussian model, not a proof against every attacker")
    return notes


def write_run(run: RunResult, experiment: Experiment) -> None:
    """Write the run folder (:mod:`miunlearn.runfolder`) atomically to ``run.out_dir``."""
    config, dataset, splits, approximator = experiment.config, experiment.dataset, experiment.splits, run.approximator
    metrics = runfolder.RunMetrics(
        dataset=dataclasses.asdict(dataset.info),
        sizes={role: int(len(getattr(splits, role))) for role in ("train", "forget", "ref", "shadow", "audit")}
        | {"retain": int(len(splits.retain)), "test": splits.test_size},
        models=run.metrics, timings_seconds=run.timings, records=run.records,
        approximator={"name": approximator.name, "statistics": list(approximator.statistics)},
        notes=run.notes, requests=run.requests, usefulness=run.usefulness)
    table = ("".join(f"{_request_title(r)}\n\n{format_table(r['metrics'])}\n\n" for r in run.requests)
             + format_table(run.metrics) + "\n\n" + "\n".join(f"- {n}" for n in run.notes) + "\n")

    def text(content: str):
        def write(path: Path) -> None:
            with atomic_write(path) as fh:
                fh.write(content)
        return write

    files = {runfolder.CONFIG: text(save_config(config)), runfolder.SPLITS: splits.save,
             runfolder.APPROXIMATOR: approximator.save, runfolder.TABLE: text(table),
             f"{runfolder.PLOTS}/audit_roc.png": lambda path: plot_roc(run.curves, path),
             f"{runfolder.PLOTS}/s_histograms.png": lambda path: plot_s_histograms(run.curves, path)}
    files |= {runfolder.model_file(name): (lambda path, m=model: save_weights(m, path))
              for name, model in run.models.items()}
    runfolder.write_run_folder(run.out_dir, experiment.overwrite, metrics, files)


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
