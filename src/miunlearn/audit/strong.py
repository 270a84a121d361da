"""The strong audit of a finished run folder: per-example attacks with the auditor's own reference models.

``miunlearn audit RUN_DIR`` scores D_f (members of the original target) against D_audit (never seen by
any model but the reference ones) with LiRA and RMIA for every model in the run, optionally runs the
U-LiRA-style per-example test (Hayes et al. 2024) and the NeurIPS 2023 challenge score, gives each method a
verdict against retraining from every attack's AUC and TPR at the lowest FPR (:mod:`miunlearn.audit.verdict`),
and writes
``audit.json`` and ``audit_scores.npz`` into the run folder (atomically; ``audit.json`` last).

Independence: this package imports nothing from :mod:`miunlearn.guidance` or :mod:`miunlearn.unlearning`
(a test walks the imports). U-LiRA and the challenge re-run the run's methods on the reference models or on
copies of the target; the caller hands in a :class:`MethodReplay` that does so
(:class:`miunlearn.unlearning.replay.RunReplay` re-runs them exactly as the run did).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn import runfolder
from miunlearn.audit.attack_metrics import attack_metrics, paired_auc_difference
from miunlearn.audit.challenge import challenge_score
from miunlearn.audit.lira import lira_online
from miunlearn.audit.metrics import Metric, accuracy
from miunlearn.audit.reference_attacks import REFERENCE_ATTACKS, ReferenceAttack, ReferenceInputs, lira_statistic
from miunlearn.audit.reference_models import ReferenceModels, membership_matrix, prepare_reference_models
from miunlearn.audit.verdict import verdicts
from miunlearn.config import ExecutorConfig, RunConfig, from_dict, load_config, number_problems, parse_overrides
from miunlearn.data import Dataset, Splits, TensorData, load_dataset
from miunlearn.errors import MiunlearnError
from miunlearn.io import atomic_path, write_json
from miunlearn.models import build_model, load_weights
from miunlearn.training import predict_logits, resolve_device, train_model
from miunlearn.training.executors import build_executor, validate_executor_config

RUN_HINT = runfolder.RUN_HINT


@dataclass
class StrongAuditConfig:
    """Settings of ``miunlearn audit`` (``key=value`` on the command line)."""

    attacks: list[str] = field(default_factory=lambda: ["lira-online", "lira-offline", "rmia-online", "rmia-offline"])
    num_references: int = 4
    """Reference models (the target's architecture and recipe on random halves of D_train ∪ D_audit);
    4 is a CPU budget, 16-64 are usual on a GPU. Even numbers give each sample as many IN as OUT models."""
    # The attacks' own settings (LiRAConfig, RMIAConfig), by the names of their fields; a test keeps them in step.
    variance: str = "global"
    """LiRA's Gaussians: ``global`` (one spread for all samples; right for few models) or ``per-example``."""
    rmia_offline_a: float = 0.3
    rmia_gamma: float = 1.0
    population: int = 5000
    """RMIA's population ``z``: at most this many samples of D_test (no model was trained on them)."""
    fprs: list[float] = field(default_factory=lambda: [0.01, 0.001])
    bootstrap: int = 200
    """Bootstrap resamples for the 95% intervals (0: none)."""
    seed: int = 0
    references_dir: str | None = None
    """Use exactly this folder for the reference models (default: a cache folder named by their key)."""
    cache_dir: str | None = None
    """Root of the cache (default: the executor's ``cache_dir``, else $MIUNLEARN_CACHE or ~/.cache/miunlearn)."""
    executor: ExecutorConfig | None = None
    """How missing reference models are trained, e.g. ``executor.name=ray executor.address=auto``
    (default: the run's ``executor`` section)."""
    ulira: bool = False
    """U-LiRA-style test: also unlearn each reference model's own copy of the request with each method
    (K extra unlearning runs per method) and test unlearned vs retrained on D_f, per example."""
    challenge_copies: int = 0
    """NeurIPS 2023 challenge score from this many unlearned and retrained copies (0: off; costs that many
    trainings from scratch plus as many unlearning runs per method; the challenge used 512)."""
    challenge_delta: float = 0.01
    challenge_bucket: float = 0.5

    def validate(self) -> None:
        problems = number_problems(self)
        if problems:
            raise MiunlearnError("; ".join(problems))
        if not self.attacks:
            raise MiunlearnError("audit attacks is empty; valid: " + ", ".join(REFERENCE_ATTACKS.names()))
        for name in self.attacks:
            REFERENCE_ATTACKS.validate(name)
        if self.num_references < 1:
            raise MiunlearnError(f"num_references must be at least 1, got {self.num_references}")
        for name in REFERENCE_ATTACKS.names():  # every attack's settings, as U-LiRA reads LiRA's too
            self.build_attack(name)
        if self.population < 1 or self.bootstrap < 0:
            raise MiunlearnError("population must be at least 1 and bootstrap at least 0")
        if not all(0 < f < 1 for f in self.fprs):
            raise MiunlearnError(f"fprs must lie in (0, 1), got {self.fprs}")
        if self.challenge_copies == 1 or self.challenge_copies < 0:
            raise MiunlearnError(f"challenge_copies must be 0 (off) or at least 2, got {self.challenge_copies}")
        if not 0 <= self.challenge_delta < 1 or self.challenge_bucket <= 0:
            raise MiunlearnError("challenge_delta must be in [0, 1) and challenge_bucket positive")
        if self.ulira and self.num_references < 2:
            raise MiunlearnError("ulira needs at least 2 reference models (some with and some without each sample)")
        if self.executor is not None:
            validate_executor_config(self.executor)

    def build_attack(self, name: str) -> ReferenceAttack:
        """The attack, its own config (:attr:`ReferenceAttack.Config`) filled from the keys of the same names."""
        cls = REFERENCE_ATTACKS.get(name)
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls.Config)})


def audit_config(overrides: list[str] | None = None) -> StrongAuditConfig:
    config = from_dict(StrongAuditConfig, parse_overrides(overrides or []), "audit")
    config.validate()
    return config


@dataclass
class RunFolder:
    path: Path
    config: RunConfig
    dataset: Dataset
    splits: Splits
    models: dict[str, nn.Module]
    metrics: runfolder.RunMetrics

    def part(self, role: str) -> TensorData:
        return self.dataset.pool.subset(getattr(self.splits, role))


class MethodReplay(Protocol):
    """Re-runs one of a run's unlearning methods for U-LiRA and the challenge, as the run ran it."""

    def check(self, run: RunFolder, name: str) -> None:
        """Raise a MiunlearnError if ``name`` cannot be re-run from ``run`` (called before any training)."""

    def __call__(self, run: RunFolder, name: str, model: nn.Module, forget: TensorData, retain: TensorData,
                 seed: int) -> nn.Module:
        """The unlearned copy of ``model`` (``model`` itself is left untouched)."""


def load_run(path: str | Path) -> RunFolder:
    """Open a run folder written by ``miunlearn run``/``demo``, naming whatever is missing or unreadable."""
    path = runfolder.check_run_folder(path, (runfolder.CONFIG, runfolder.SPLITS, runfolder.METRICS,
                                             runfolder.model_file("original")), "the audit")
    metrics = runfolder.read_metrics(path)
    config = load_config(path / runfolder.CONFIG)
    problems = number_problems(config)
    if problems:
        raise MiunlearnError(f"{path / runfolder.CONFIG}: " + "; ".join(problems))
    dataset = load_dataset(config.data)
    splits = Splits.load(path / runfolder.SPLITS)
    top = max(int(np.max(getattr(splits, r), initial=-1)) for r in ("train", "audit", "ref", "shadow"))
    if top >= len(dataset.pool) or splits.test_size != len(dataset.test):
        raise MiunlearnError(f"{path}/{runfolder.SPLITS} does not fit dataset {config.data.name!r} as loaded now "
                             f"({len(dataset.pool)} pool samples); were its files or data.root changed?")
    models = {}
    files = sorted((path / runfolder.MODELS).glob("*.safetensors"),
                   key=lambda p: (p.stem != "original", p.stem == "retrain", p.stem))
    for file in files:
        model = build_model(config.model.name, dataset.info, config.model.width)
        models[file.stem] = load_weights(model, file).eval()
    return RunFolder(path, config, dataset, splits, models, metrics)


def _logits(model: nn.Module, data: TensorData, device: torch.device) -> torch.Tensor:
    return predict_logits(model.to(device), data, device)


def run_strong_audit(run_dir: str | Path, config: StrongAuditConfig | None = None,
                     console: Console | None = None, replay: MethodReplay | None = None) -> dict:
    """Audit every model of a run folder with the reference-model attacks; write audit.json/audit_scores.npz.

    ``replay`` re-runs the run's methods; it is needed only for ``ulira`` and ``challenge_copies``."""
    config = config or StrongAuditConfig()
    config.validate()
    console = console or Console(stderr=True, quiet=True)
    run = load_run(run_dir)
    rc = run.config
    device = resolve_device(rc.train.device)
    forget, audit = run.splits.forget, run.splits.audit
    scored_idx = np.r_[forget, audit]
    n_f = len(forget)

    # Refuse too few reference models before training any.
    preview = membership_matrix(config.num_references, len(np.r_[run.splits.train, run.splits.audit]), config.seed)
    for name in config.attacks:
        config.build_attack(name).check(preview)
    _check_extras(run, config, replay)

    executor = config.executor or rc.executor
    refs = prepare_reference_models(rc, run.dataset, run.splits, config.num_references, config.seed,
                                    config.references_dir, config.cache_dir or executor.cache_dir, console,
                                    build_executor(executor))
    member = refs.membership_of(scored_idx)
    scored = run.dataset.pool.subset(scored_idx)
    test = run.dataset.test
    pop_idx = np.sort(np.random.default_rng(config.seed).permutation(len(test))[: config.population])
    population = test.subset(pop_idx)
    ref_logits = torch.stack([_logits(m, scored, device) for m in refs.models])
    ref_pop_logits = torch.stack([_logits(m, population, device) for m in refs.models])

    console.log(f"scoring {len(run.models)} model(s) with {', '.join(config.attacks)}")
    results: dict[str, dict[str, dict]] = {name: {} for name in config.attacks}
    scores: dict[str, np.ndarray] = {}
    fprs = tuple(config.fprs)
    for model_name, model in run.models.items():
        inputs = ReferenceInputs(_logits(model, scored, device), scored.y, ref_logits, member,
                                 _logits(model, population, device), population.y, ref_pop_logits)
        for name in config.attacks:
            s = config.build_attack(name).scores(inputs)
            scores[f"{name}/{model_name}/forget"], scores[f"{name}/{model_name}/audit"] = s[:n_f], s[n_f:]
            results[name][model_name] = attack_metrics(s[:n_f], s[n_f:], fprs, config.bootstrap, config.seed)

    report = {
        "config": asdict(config),
        "references": {"count": config.num_references, "folder": str(refs.folder), "trained_now": refs.trained_now,
                       "seconds": refs.seconds, "pool_size": len(refs.pool_indices),
                       "samples_per_model": int(refs.member.sum(1).mean())},
        "sizes": {"forget": n_f, "audit": len(audit), "population": len(population)},
        "attacks": results,
        "comparison": _compare_to_retrain(scores, config.attacks, list(run.models), config),
        "notes": _notes(config, results, n_f, len(audit)),
    }
    if config.ulira:
        report["ulira"] = _ulira(run, refs, config, scored, member[:, :n_f], device, console, scores, replay)
    if config.challenge_copies:
        report["challenge"] = _challenge(run, config, device, console, replay)
    report["verdicts"] = verdicts(scores, config.attacks, list(run.models), config.fprs[0], config.bootstrap,
                                  config.seed)
    with atomic_path(run.path / runfolder.AUDIT_SCORES) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **scores)
    write_json(run.path / runfolder.AUDIT, report)
    return report


def _check_extras(run: RunFolder, config: StrongAuditConfig, replay: MethodReplay | None) -> None:
    """U-LiRA and the challenge re-run the run's methods: check they can before any training."""
    if not (config.ulira or config.challenge_copies):
        return
    if replay is None:
        raise MiunlearnError("ulira and challenge_copies re-run the run's methods: pass replay= "
                             "(miunlearn.unlearning.replay.RunReplay()), as `miunlearn audit` does")
    if config.ulira:
        if "retrain" not in run.models:
            raise MiunlearnError(f"ulira compares with the retrained model, but {run.path} has no "
                                 "models/retrain.safetensors; rerun the experiment with retrain in unlearn.methods")
        labels = run.dataset.pool.y.cpu().numpy()
        removed = np.setdiff1d(labels[run.splits.forget], labels[run.splits.retain])
        if len(removed):
            raise MiunlearnError(
                f"ulira is not defined for a request that removes whole classes ({', '.join(map(str, removed))}): "
                "the reference models train on half of D_train ∪ D_audit, so they keep seeing those classes and "
                "none is a model that never saw them, as the retrain is; audit without ulira=true")
    for name in [m for m in run.models if m not in ("original", "retrain")]:
        replay.check(run, name)


def _compare_to_retrain(scores: dict[str, np.ndarray], attacks: list[str], models: list[str],
                        config: StrongAuditConfig) -> dict:
    """Per attack and model: AUC minus the retrained model's, with a paired bootstrap 95% interval."""
    if "retrain" not in models:
        return {}
    return {attack: {model: paired_auc_difference(
        scores[f"{attack}/{model}/forget"], scores[f"{attack}/{model}/audit"],
        scores[f"{attack}/retrain/forget"], scores[f"{attack}/retrain/audit"], config.bootstrap, config.seed)
        for model in models if model != "retrain"} for attack in attacks}


def strongest_attack(results: dict[str, dict[str, dict]]) -> str:
    """The attack with the highest AUC against the original model (the one most able to see membership)."""
    return max(results, key=lambda a: results[a].get("original", {}).get("auc", 0.0))


def _notes(config: StrongAuditConfig, results: dict, n_f: int, n_audit: int) -> list[str]:
    notes = [f"members = D_f ({n_f}, trained on by the original model only), non-members = D_audit ({n_audit}, "
             "never seen by any audited model); reference models never come from the unlearner",
             f"{config.num_references} reference model(s); LiRA variance: {config.variance}"]
    notes += sorted({n for by_model in results.values() for r in by_model.values() for n in r["notes"]})
    return notes


def _ulira(run: RunFolder, refs: ReferenceModels, config: StrongAuditConfig, scored: TensorData,
           member_f: np.ndarray, device: torch.device, console: Console, scores: dict, replay: MethodReplay) -> dict:
    """Per-example test of unlearned vs retrained on D_f: LiRA whose IN models are reference models that
    were trained on the sample and then unlearned it with the same method, and whose OUT models never saw it."""
    n_f = member_f.shape[1]
    forget_data = TensorData(scored.x[:n_f], scored.y[:n_f])
    out_stat = lira_statistic(torch.stack([_logits(m, forget_data, device) for m in refs.models]), forget_data.y)
    retrain_stat = lira_statistic(_logits(run.models["retrain"], forget_data, device), forget_data.y)
    forget_pool = run.splits.forget
    results = {}
    for name in [m for m in run.models if m not in ("original", "retrain")]:
        console.log(f"U-LiRA: unlearning {name} on {refs.member.shape[0]} reference models")
        stat, start = out_stat.copy(), time.perf_counter()
        for k, model in enumerate(refs.models):
            trained_on = refs.pool_indices[refs.member[k]]
            request = np.intersect1d(trained_on, forget_pool)
            if len(request) == 0:
                continue
            retain = np.setdiff1d(trained_on, forget_pool)
            unlearned_model = replay(run, name, model, run.dataset.pool.subset(request),
                                     run.dataset.pool.subset(retain), seed=run.config.seed + k)
            unlearned = lira_statistic(_logits(unlearned_model, forget_data, device), forget_data.y)
            stat[k][member_f[k]] = unlearned[member_f[k]]
        method_stat = lira_statistic(_logits(run.models[name], forget_data, device), forget_data.y)
        positives = lira_online(method_stat, stat, member_f, config.variance)
        negatives = lira_online(retrain_stat, stat, member_f, config.variance)
        scores[f"ulira/{name}/forget"], scores[f"ulira/{name}/retrain"] = positives, negatives
        results[name] = attack_metrics(positives, negatives, tuple(config.fprs), config.bootstrap, config.seed)
        results[name]["seconds"] = time.perf_counter() - start
    return results


def _challenge(run: RunFolder, config: StrongAuditConfig, device: torch.device, console: Console,
               replay: MethodReplay) -> dict:
    rc = run.config
    forget, retain, test = run.part("forget"), run.part("retain"), run.dataset.test

    def stats(model: nn.Module) -> tuple[np.ndarray, dict[str, float]]:
        f_logits = _logits(model, forget, device)
        utility = {Metric.RETAIN_ACC: accuracy(_logits(model, retain, device), retain.y),
                   Metric.TEST_ACC: accuracy(_logits(model, test, device), test.y)}
        return lira_statistic(f_logits, forget.y), utility

    def summarise(items: list[tuple[np.ndarray, dict]]) -> tuple[np.ndarray, dict[str, float]]:
        return np.stack([s for s, _ in items]), {k: float(np.mean([u[k] for _, u in items])) for k in items[0][1]}

    console.log(f"challenge: retraining {config.challenge_copies} copies")
    start = time.perf_counter()
    retrained = []
    for i in range(config.challenge_copies):
        copy_seed = 20_000 + 100 * config.seed + i
        torch.manual_seed(copy_seed)
        model = build_model(rc.model.name, run.dataset.info, rc.model.width)
        train_model(model, retain, dataclasses.replace(rc.train, seed=copy_seed), desc=f"retrain copy {i + 1}")
        retrained.append(stats(model))
    ret_stat, ret_util = summarise(retrained)
    out = {"retrain_seconds": time.perf_counter() - start}
    for name in [m for m in run.models if m not in ("original", "retrain")]:
        console.log(f"challenge: {config.challenge_copies} unlearning runs of {name}")
        copies = [stats(replay(run, name, run.models["original"], forget, retain, seed=rc.seed + 1 + i))
                  for i in range(config.challenge_copies)]
        unl_stat, unl_util = summarise(copies)
        out[name] = challenge_score(unl_stat, ret_stat, unl_util, ret_util, config.challenge_delta,
                                    config.challenge_bucket)
    return out
