"""The leaderboard: every method, tuned the same way, against independent retrains, on targets that leak.

    OMP_NUM_THREADS=1 python benchmarks/leaderboard.py                       # everything (resumable)
    OMP_NUM_THREADS=1 python benchmarks/leaderboard.py --quick               # minutes-long smoke version
    python benchmarks/leaderboard.py --settings location_mlp --methods remi,finetune --scenarios random10
    python benchmarks/leaderboard.py --report                                # tables + plot from the results

Protocol, per setting (dataset + architecture + recipe, one fixed role split):
- one approximator (ReMI's guidance; by default ``folds``: OUT models that each left a quarter of D_train out) and
  ``--references`` reference models for LiRA/RMIA, cached and shared by every method, scenario and seed of
  the setting (they depend on the split, not the request);
- per scenario (random 10%, one class, 1% of D_train) ``--calibration-requests`` *calibration requests* of the
  same kind and size, disjoint from each other and from every evaluated request, each with its own retrain: every
  method except retraining is tuned on them with ``--trials`` Optuna TPE trials (:mod:`miunlearn.tuning`; the
  objective, averaged over the calibration requests, is documented there),
  and the chosen settings are saved as ``<presets>/<setting>-<scenario>.yaml`` (``unlearn.preset=FILE``);
- per seed (target initialisation, request, method seed) the target, ``--retrains`` independent retrains
  (the gold standard and the noise floor) and every method with its tuned settings; metrics against the
  mean of the retrains; LiRA/RMIA (online/offline) AUC and TPR at 1% FPR; U-LiRA for ReMI and the three
  baselines closest to retraining (on the first ``--ulira-seeds`` seeds; random requests only; each reference
  model unlearns with the approximator its owner would fit); a verdict per method over every
  reference attack, AUC and TPR at 1% FPR alike, with a Holm correction for trying several; speedup = the seconds
  of one retrain timed in the same invocation / the method's (``--retime`` reruns rows timed otherwise).

Outputs (``--out``, default benchmarks/results): ``leaderboard.json`` (one row per setting, scenario,
method, seed, exactly :data:`ROW_KEYS`; rewritten atomically after every row, so a killed run resumes
where it stopped) and ``leaderboard_cells.json`` (per cell: the noise floor in full, the original's leak,
per-example |Δs|, verdicts, a digest of the models its rows were computed on). Trained models and tuning trials
are cached under ``--cache``; a cache rebuilt on another CPU holds other models, and a cell refuses to mix rows
made on two builds (:func:`check_same_models`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console
from scipy.stats import rankdata
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from remi_vs_retrain import machine  # noqa: E402

from miunlearn.artefacts import record_digest, verified  # noqa: E402
from miunlearn.audit import REFERENCE_ATTACKS, EvaluationSets, ModelOutputs, ReferenceInputs, evaluate_outputs  # noqa: E402
from miunlearn.audit.lira import lira_online  # noqa: E402
from miunlearn.audit.metrics import average_gap  # noqa: E402
from miunlearn.audit.reference_attacks import lira_statistic  # noqa: E402
from miunlearn.audit.reference_models import prepare_reference_models  # noqa: E402
from miunlearn.audit.verdict import holm as adjusted_pvalues  # noqa: E402
from miunlearn.config import RunConfig, load_config  # noqa: E402
from miunlearn.data import Dataset, TensorData, load_dataset, prepare_splits  # noqa: E402
from miunlearn.errors import MiunlearnError  # noqa: E402
from miunlearn.guidance import APPROXIMATORS  # noqa: E402
from miunlearn.guidance.owners import owner_approximator  # noqa: E402
from miunlearn.io import atomic_write, write_json  # noqa: E402
from miunlearn.models import build_model, load_weights, save_weights  # noqa: E402
from miunlearn.registry import Registry  # noqa: E402
from miunlearn.training import predict_logits, resolve_device, train_model  # noqa: E402
from miunlearn.training.executors import ModelSpec, build_executor  # noqa: E402
from miunlearn.tuning import CalibrationTask, calibration_metrics, class_sources, method_fingerprint, tune  # noqa: E402
from miunlearn.unlearning import METHODS, unlearn  # noqa: E402
from miunlearn.unlearning.search_space import SEARCH_SPACES  # noqa: E402
from miunlearn.unlearning.work import max_cost_problem, weighted_work  # noqa: E402

ROW_KEYS = ("setting", "scenario", "method", "seed", "forget_acc", "retain_acc", "test_acc", "mia_efficacy",
            "avg_gap", "floor_avg_gap", "strong_auc", "strong_tpr_1pct", "floor_strong_auc", "ulira_auc",
            "seconds", "retrain_seconds", "speedup", "work_ratio", "peak_mib", "params")
STRONG_ATTACKS = ("lira-online", "lira-offline", "rmia-online", "rmia-offline")
POPULATION_ATTACKS = ["loss", "mia-efficacy"]
LEAK_AUC = 0.65
HOLM_ALPHA = 0.05
BOOTSTRAP = 200
ULIRA_BASELINES = 3


@dataclass(frozen=True)
class Setting:
    """A target set-up: the dataset's folder under the datasets directory and the run-config overrides."""

    folder: str
    overrides: tuple[str, ...]
    quick: tuple[str, ...] = ()
    """Added by ``--quick``: a smaller pool and fewer epochs (it still leaks, less)."""


SETTINGS: Registry[Setting] = Registry("leaderboard setting")
_IMAGE_POOL = ("data.subset=5000", "data.test_subset=2000")  # 2k D_train, 500 D_ref, 1.5k D_shadow, 1k D_audit
_NO_AUGMENT = ("train.augment=false", "train.progress=false", "train.batch_size=64", "train.lr=0.05")
SETTINGS.register("location_mlp")(Setting(
    "location", ("data.name=location", "model.name=mlp", "train.epochs=50", *_NO_AUGMENT),
    ("train.epochs=15",)))
SETTINGS.register("fashion_mnist_cnn")(Setting(
    "fashion-mnist", ("data.name=fashion-mnist", "model.name=cnn", "train.epochs=30", *_IMAGE_POOL, *_NO_AUGMENT),
    ("data.subset=1500", "data.test_subset=500", "train.epochs=5")))
SETTINGS.register("cifar10_cnn")(Setting(
    "cifar10", ("data.name=cifar10", "model.name=cnn", "train.epochs=40", *_IMAGE_POOL, *_NO_AUGMENT),
    ("data.subset=1500", "data.test_subset=500", "train.epochs=5")))
SETTINGS.register("fashion_mnist_mlp")(Setting(
    "fashion-mnist", ("data.name=fashion-mnist", "model.name=mlp", "train.epochs=40", *_IMAGE_POOL, *_NO_AUGMENT),
    ("data.subset=1500", "data.test_subset=500", "train.epochs=5")))
SETTINGS.register("digits_mlp")(Setting(  # embedded data: what the tests and a first try run on
    "", ("data.name=digits", "model.name=mlp", "train.epochs=40", *_NO_AUGMENT), ("train.epochs=10",)))
# The GPU protocol (benchmarks/gpu_leaderboard.sh): the CIFAR-10 pool at full size, no augmentation.
_GPU = ("data.name=cifar10", "data.subset=25000", "data.test_subset=5000", "train.augment=false",
        "train.progress=false", "train.batch_size=256", "train.lr=0.1", "train.precision=bf16", "train.epochs=15")
SETTINGS.register("cifar10_resnet18")(Setting("cifar10", ("model.name=resnet18", *_GPU)))
SETTINGS.register("cifar10_vgg11_bn")(Setting("cifar10", ("model.name=vgg11_bn", *_GPU)))
DEFAULT_SETTINGS = ("location_mlp", "fashion_mnist_cnn", "cifar10_cnn", "fashion_mnist_mlp")


@dataclass(frozen=True)
class Scenario:
    """A kind of deletion request: random samples (``fraction`` of D_train) or one whole class."""

    fraction: float | None = None


SCENARIOS: Registry[Scenario] = Registry("leaderboard scenario")
SCENARIOS.register("random10")(Scenario(0.1))
SCENARIOS.register("class")(Scenario(None))
SCENARIOS.register("small1")(Scenario(0.01))


def request_positions(scenario: Scenario, labels: np.ndarray, num_classes: int, seed: int | None,
                      calibration_requests: int = 1, calibration: int = 0) -> np.ndarray:
    """Positions in D_train of a request; ``seed=None`` gives calibration request number ``calibration``.

    Random kinds: calibration request ``k`` is the ``k``-th slice of a fixed permutation of D_train and every
    evaluated request is drawn from what the ``calibration_requests`` slices leave, so none overlap. Class kind:
    calibration request ``k`` is class ``C - 1 - k``, the evaluated ones the classes ``seed mod (C - K)``. A
    calibration request does not depend on how many there are; the evaluated requests do (except with one)."""
    if not 0 <= calibration < calibration_requests:
        raise MiunlearnError(f"calibration request {calibration} of {calibration_requests} does not exist")
    if scenario.fraction is None:
        if calibration_requests >= num_classes:
            raise MiunlearnError(f"{calibration_requests} calibration classes leave none of the {num_classes} "
                                 "classes to evaluate")
        cls = num_classes - 1 - calibration if seed is None else seed % (num_classes - calibration_requests)
        return np.flatnonzero(labels == cls)
    n = len(labels)
    count = max(1, int(round(scenario.fraction * n)))
    if (calibration_requests + 1) * count > n:
        raise MiunlearnError(f"{calibration_requests} calibration requests of {count} samples leave too few of "
                             f"D_train's {n} to draw an evaluated request from")
    order = np.random.default_rng(0xCA11B).permutation(n)
    rest = order[calibration_requests * count:]
    if seed is None:
        return np.sort(order[calibration * count:(calibration + 1) * count])
    return np.sort(np.random.default_rng(seed).choice(rest, size=count, replace=False))


@dataclass
class Options:
    settings: list[str]
    scenarios: list[str]
    methods: list[str]
    out: Path
    cache: Path
    presets: Path
    data_dir: Path | None
    seeds: int = 3
    retrains: int = 2
    trials: int = 8
    references: int = 8
    ulira_seeds: int = 1
    calibration_requests: int = 1
    """Calibration requests per scenario, the tuning objective averaged over them."""
    max_cost: float | None = None
    """Stop every method (tuning trials, rows and U-LiRA's unlearning alike) at this fraction of a retrain's work:
    which method is closest on that budget (``unlearn``'s ``max_cost``). Retrains are never limited."""
    quick: bool = False
    executor: str = "local"
    benchmarks_md: Path | None = None
    merge: list[Path] = field(default_factory=list)
    readme: Path | None = None
    budget_s: float | None = None
    """Start no new tuning or cell after this many seconds (what is finished is kept; rerun to resume)."""
    overrides: list[str] = field(default_factory=list)
    retime: bool = False
    """Rerun every method row not timed in the same run as its retrain (its metrics must come out the same)."""
    run_id: str = field(default_factory=lambda: f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}")
    """Names this invocation in ``leaderboard_meta.json`` and in the cells whose timings it measured."""


# ---------------------------------------------------------------------------------------------- results


class Results:
    """``leaderboard.json`` (rows) and ``leaderboard_cells.json`` (per cell), rewritten atomically per change."""

    def __init__(self, out: Path) -> None:
        self.rows_path, self.cells_path = out / "leaderboard.json", out / "leaderboard_cells.json"
        self.rows: list[dict] = self._read(self.rows_path, [])
        self.cells: dict[str, dict] = self._read(self.cells_path, {})

    @staticmethod
    def _read(path: Path, empty: Any) -> Any:
        if not path.is_file():
            return empty
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            raise MiunlearnError(f"{path} is not valid JSON; move it away to start afresh") from None

    def row(self, setting: str, scenario: str, method: str, seed: int) -> dict | None:
        return next((r for r in self.rows if (r["setting"], r["scenario"], r["method"], r["seed"])
                     == (setting, scenario, method, seed)), None)

    def put(self, row: dict) -> None:
        assert tuple(row) == ROW_KEYS, f"row keys {tuple(row)} differ from {ROW_KEYS}"
        self.rows = [r for r in self.rows if (r["setting"], r["scenario"], r["method"], r["seed"]) !=
                     (row["setting"], row["scenario"], row["method"], row["seed"])] + [row]
        write_json(self.rows_path, self.rows)

    def put_cell(self, key: str, cell: dict) -> None:
        self.cells[key] = cell
        write_json(self.cells_path, self.cells)


def cell_key(setting: str, scenario: str, seed: int) -> str:
    return f"{setting}/{scenario}/{seed}"


# ---------------------------------------------------------------------------------------------- measuring


def _hwm_mib() -> float | None:
    status = Path("/proc/self/status")
    match = re.search(r"VmHWM:\s+(\d+)", status.read_text()) if status.is_file() else None
    return int(match.group(1)) / 1024 if match else None


@contextmanager
def peak_mib() -> Iterator[dict[str, float | None]]:
    """The peak memory what runs inside adds to what was in use when it started (MiB): CUDA's allocations on a
    GPU, else the process's resident memory, the kernel's high-water mark reset first (Linux); None where
    neither can be measured."""
    out: dict[str, float | None] = {"peak_mib": None}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        yield out
        out["peak_mib"] = (torch.cuda.max_memory_allocated() - before) / 2**20
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _hwm_mib()
    except OSError:
        before = None
    yield out
    after = _hwm_mib() if before is not None else None
    out["peak_mib"] = after - before if after is not None and before is not None else None


def work_of(record: Any) -> float:
    return weighted_work(record.samples_trained, record.samples_inferred)


def mean_work(retrains: list[tuple[nn.Module, dict]]) -> float:
    """The mean work of a cell's retrains, from the facts cached with each (what a method's work is divided by)."""
    return float(np.mean([weighted_work(f["samples_trained"], f["samples_inferred"]) for _, f in retrains]))


def auc_many(members: np.ndarray, non_members: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC (ties count half) of (B, n1) member and (B, n0) non-member scores."""
    n1, n0 = members.shape[1], non_members.shape[1]
    ranks = rankdata(np.concatenate([members, non_members], 1), axis=1)
    return (ranks[:, :n1].sum(1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def tpr_many(members: np.ndarray, non_members: np.ndarray, fpr: float = 0.01) -> np.ndarray:
    """Row-wise TPR at the threshold that lets at most ``fpr`` of the non-members through."""
    threshold = np.quantile(non_members, 1 - fpr, axis=1, method="higher")
    return (members > threshold[:, None]).mean(1)


def paired_pvalue(stat: Callable, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                  rng: np.random.Generator, resamples: int = BOOTSTRAP) -> float:
    """Two-sided paired-bootstrap p-value that ``stat`` (AUC or TPR) is equal for models a and b scored on the
    same members and non-members: both resampled with the same indices."""
    i = rng.integers(0, len(a[0]), (resamples, len(a[0])))
    j = rng.integers(0, len(a[1]), (resamples, len(a[1])))
    diff = stat(a[0][i], a[1][j]) - stat(b[0][i], b[1][j])
    return float(min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean()) + 1 / resamples))


def holm(pvalues: dict[str, float], alpha: float = HOLM_ALPHA) -> dict[str, bool]:
    """Which hypotheses Holm's step-down correction rejects at family-wise level ``alpha`` (the audit's
    adjusted p-values, :func:`miunlearn.audit.verdict.holm`, at most ``alpha``)."""
    names = list(pvalues)
    return {name: adjusted <= alpha for name, adjusted in zip(names, adjusted_pvalues([pvalues[n] for n in names]))}


def verdict(scores: dict[str, tuple[np.ndarray, np.ndarray]], retrained: dict[str, tuple[np.ndarray, np.ndarray]],
            seed: int) -> dict:
    """Is the model told apart from the retrain by any attack, on AUC or TPR at 1% FPR (Holm over all)?"""
    rng = np.random.default_rng(seed)
    pvalues = {f"{attack}/{name}": paired_pvalue(stat, scores[attack], retrained[attack], rng)
               for attack in scores for name, stat in (("auc", auc_many), ("tpr_1pct", tpr_many))}
    rejected = holm(pvalues)
    return {"distinguishable": any(rejected.values()), "rejected": sorted(k for k, v in rejected.items() if v),
            "pvalues": pvalues, "alpha": HOLM_ALPHA, "correction": "holm"}


# ---------------------------------------------------------------------------------------------- set-up


@dataclass
class SettingContext:
    name: str
    config: RunConfig
    dataset: Dataset
    train: np.ndarray
    audit: np.ndarray
    reference: TensorData
    approximator: Any
    refs: Any
    population: TensorData
    ref_population_logits: torch.Tensor
    folder: Path
    device: torch.device
    own_approximators: list | None = None
    """Per reference model, the approximator its owner would fit (:func:`reference_approximators`), once built."""
    calibration_requests: int = 1
    max_cost: float | None = None


def setting_config(name: str, opts: Options) -> RunConfig:
    setting = SETTINGS.get(name)
    root = [f"data.root={opts.data_dir / setting.folder}"] if setting.folder and opts.data_dir else []
    if setting.folder == "cifar10":  # arrays unpacked from the JPEG pack into the cache
        root = [f"data.root={opts.cache / 'cifar10'}"]
    overrides = [*setting.overrides, *(setting.quick if opts.quick else ()), *root,
                 f"executor.cache_dir={opts.cache}", f"executor.name={opts.executor}", "seed=0", *opts.overrides]
    return load_config(None, overrides)


def load_setting_data(name: str, config: RunConfig, opts: Options) -> Dataset:
    """The setting's dataset, or a one-line error saying where its files come from. CIFAR-10 is unpacked from
    the project's JPEG pack ($CIFAR10_PACK, else <data dir>/cifar10) into its root on first use."""
    folder = SETTINGS.get(name).folder
    root = Path(config.data.root) if config.data.root else None
    if folder == "cifar10" and root is not None and not (root / "train.npz").is_file():
        pack = Path(os.environ["CIFAR10_PACK"]) if os.environ.get("CIFAR10_PACK") else (
            opts.data_dir / "cifar10" if opts.data_dir else None)
        if pack is None or not (pack / "unpack.py").is_file():
            raise MiunlearnError(f"setting {name} needs CIFAR-10 arrays in {root} or the JPEG pack (cifar10-jpeg.npz + "
                                 f"unpack.py) in {pack}; copy shared/datasets/cifar10 there, or pass --data-dir")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(pack / "unpack.py"), str(root)], check=True, capture_output=True)
    try:
        return load_dataset(config.data)
    except MiunlearnError as exc:
        raise MiunlearnError(f"setting {name}: {exc} (the project's copies are in shared/datasets/{folder}; "
                             "pass --data-dir=FOLDER holding them)") from None


def config_digest(config: RunConfig, opts: Options) -> str:
    """Names the setting's folder of targets, retrains and tuning journals: what they depend on. The approximator
    is not in it (only the methods that read it depend on it: :func:`method_version`)."""
    key = {"data": dataclasses.asdict(config.data) | {"root": None}, "model": dataclasses.asdict(config.model),
           "train": {k: v for k, v in dataclasses.asdict(config.train).items() if k not in ("device", "progress")},
           "retrains": opts.retrains, "references": opts.references}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def uses_approximator(method: str) -> bool:
    return method in METHODS and "approximator" in METHODS.get(method).requires


def approximator_version(config: RunConfig) -> str:
    """The approximator's settings and the source of its class (and the classes it extends)."""
    key = [dataclasses.asdict(config.approximator), class_sources(APPROXIMATORS.get(config.approximator.name))]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def method_version(ctx: SettingContext, method: str) -> str | None:
    """What a method's rows depend on besides the setting: its own source, and the approximator if it reads one."""
    if method not in METHODS:
        return None
    fingerprint = method_fingerprint(method)
    return f"{fingerprint}+{approximator_version(ctx.config)}" if uses_approximator(method) else fingerprint


def prepare_setting(name: str, opts: Options, console: Console) -> SettingContext:
    config = setting_config(name, opts)
    dataset = load_setting_data(name, config, opts)
    splits = prepare_splits(dataset, config.data, dataclasses.replace(config.forget, mode="indices", indices=[0]))
    pool = dataset.pool
    console.log(f"{name}: |D_train|={len(splits.train)}, |D_audit|={len(splits.audit)}; approximator and "
                f"{opts.references} reference models (cached)")
    kind = APPROXIMATORS.get(config.approximator.name)
    approximator, _ = kind.prepare(config, dataset, splits, kind.open_store(config, dataset, splits), console)
    refs = prepare_reference_models(config, dataset, splits, opts.references, 0, cache_root=opts.cache,
                                    console=console, executor=build_executor(config.executor))
    device = resolve_device(config.train.device)
    population = dataset.test
    ref_pop = torch.stack([predict_logits(m.to(device), population, device) for m in refs.models])
    folder = opts.cache / "leaderboard" / f"{name}-{config_digest(config, opts)}"
    return SettingContext(name, config, dataset, splits.train, splits.audit, pool.subset(splits.ref), approximator,
                          refs, population, ref_pop, folder, device, calibration_requests=opts.calibration_requests,
                          max_cost=opts.max_cost)


def fresh_model(ctx: SettingContext) -> nn.Module:
    return build_model(ctx.config.model.name, ctx.dataset.info, ctx.config.model.width)


def save_model(model: nn.Module, path: Path) -> None:
    """Save weights with their sha256 beside them, which a later run checks before it reuses them."""
    save_weights(model, path)
    record_digest(path)


def cached_model(ctx: SettingContext, path: Path, make: Callable[[], tuple[nn.Module, dict]]) -> tuple[nn.Module, dict]:
    """A model and its facts (seconds, counted work) from ``path`` if an earlier run saved them and the weights
    still match the sha256 recorded beside them, else made now (a damaged, truncated or swapped file is remade)."""
    meta = path.with_suffix(".json")
    if verified(path) and meta.is_file():
        return load_weights(fresh_model(ctx), path).eval(), json.loads(meta.read_text())
    model, facts = make()
    save_model(model, path)
    write_json(meta, facts)
    # what a later run loads: a model left in training's memory format (channels-last) gives logits that differ in
    # the last bits, enough to move a sample across the MIA-efficacy classifier's boundary in the first run only
    return load_weights(fresh_model(ctx), path).eval(), facts


def target_model(ctx: SettingContext, seed: int) -> nn.Module:
    def make() -> tuple[nn.Module, dict]:
        torch.manual_seed(seed)
        model = fresh_model(ctx)
        start = time.perf_counter()
        train_model(model, ctx.dataset.pool.subset(ctx.train), dataclasses.replace(ctx.config.train, seed=seed),
                    desc=f"target {seed}")
        return model, {"seconds": time.perf_counter() - start}

    return cached_model(ctx, ctx.folder / f"target-{seed}.safetensors", make)[0]


@dataclass
class Request:
    positions: np.ndarray
    """Positions in D_train."""
    forget: TensorData
    retain: TensorData
    forget_idx: np.ndarray
    """Indices in the pool."""


def make_request(ctx: SettingContext, scenario: str, seed: int | None, calibration: int = 0) -> Request:
    labels = ctx.dataset.pool.y[torch.as_tensor(ctx.train)].numpy()
    positions = request_positions(SCENARIOS.get(scenario), labels, ctx.dataset.info.num_classes, seed,
                                  ctx.calibration_requests, calibration)
    forget_idx = ctx.train[positions]
    retain_idx = np.setdiff1d(ctx.train, forget_idx)
    pool = ctx.dataset.pool
    return Request(positions, pool.subset(forget_idx), pool.subset(retain_idx), forget_idx)


def retrain_seed(seed: int, r: int, retrains: int) -> int:
    """The seed of a cell's ``r``-th retrain (distinct over cells and retrains)."""
    return retrains * seed + r


def retrained(ctx: SettingContext, model: nn.Module, request: Request, path: Path, seed: int) -> tuple[nn.Module, dict]:
    """An independent retrain (``independent_seed(seed)`` initialisation and batch order), cached."""
    def make() -> tuple[nn.Module, dict]:
        result = unlearn(model, request.forget, request.retain, "retrain", recipe=ctx.config.train, seed=seed)
        r = result.record
        return result.model, {"seconds": r.seconds, "samples_trained": r.samples_trained,
                              "samples_inferred": r.samples_inferred}

    return cached_model(ctx, path, make)


def timed_retrain(ctx: SettingContext, target: nn.Module, request: Request, seed: int,
                  cached: nn.Module) -> dict:
    """Retrain now, for its time alone: a speedup divides it by a method's seconds measured in the same process.
    The cached retrains' seconds come from whichever run made them, under whatever else ran then. ``reproduces``:
    whether this retrain came out bit-identical to ``cached`` (the same seed), i.e. the rows are reproducible."""
    result = unlearn(target, request.forget, request.retain, "retrain", recipe=ctx.config.train, seed=seed)
    cached_state = cached.state_dict()
    reproduces = all(torch.equal(value.cpu(), cached_state[name].cpu())
                     for name, value in result.model.state_dict().items())
    return {"seconds": result.record.seconds, "reproduces": reproduces}


# ---------------------------------------------------------------------------------------------- tuning


def tuning_sets(ctx: SettingContext, request: Request) -> EvaluationSets:
    """Calibration D_f/D_r, D_test, and as the objective's non-members half of D_test (never D_audit)."""
    test = ctx.dataset.test
    half = np.random.default_rng(7).permutation(len(test))[: len(test) // 2]
    return EvaluationSets(request.retain, request.forget, test, test.subset(np.sort(half)))


def calibration_tasks(ctx: SettingContext, scenario: str, count: int | None = None) -> tuple[
        list[CalibrationTask], Path, dict]:
    """What every trial of this scenario sees (the first ``count`` calibration requests, by default the setting's
    number, each with its retrain's metrics), the folder of its tuning journals, and the key their studies are
    named by (add :func:`study_key`'s method part). Request ``k`` is unlearned with seed ``k``; the key of one
    request is the one it always had, so the journals of one-request tuning stay valid."""
    count = ctx.calibration_requests if count is None else count
    target = target_model(ctx, 0)
    folder = ctx.folder / scenario / "calibration"
    tasks, forgotten = [], []
    for k in range(count):
        request = make_request(ctx, scenario, None, calibration=k)
        path = (folder if k == 0 else ctx.folder / scenario / f"calibration-{k}") / "retrain.safetensors"
        retrain_model, _ = retrained(ctx, target, request, path, seed=k)
        sets = tuning_sets(ctx, request)
        tasks.append(CalibrationTask(target, sets, calibration_metrics(retrain_model, sets, ctx.config.train),
                                     ctx.reference, ctx.approximator, ctx.config.train, seed=k, max_cost=ctx.max_cost))
        forgotten.append(request.forget_idx.tolist())
    return tasks, folder, {"setting": ctx.folder.name, "scenario": scenario,
                           "calibration": forgotten[0] if count == 1 else forgotten}


def study_key(ctx: SettingContext, key: dict, method: str) -> dict:
    """A method's tuning study key: the scenario's, and the approximator's version if the method reads one."""
    return key | ({"approximator": approximator_version(ctx.config)} if uses_approximator(method) else {})


def tune_scenario(ctx: SettingContext, scenario: str, methods: list[str], opts: Options,
                  console: Console) -> dict[str, dict]:
    """Tune every method on this scenario's calibration requests; write and return the preset."""
    tasks, folder, key = calibration_tasks(ctx, scenario)
    preset_path = opts.presets / f"{ctx.name}-{scenario}.yaml"
    params: dict[str, dict] = {}
    tuned: dict[str, dict] = {}
    for method in [m for m in methods if m in SEARCH_SPACES]:
        start = time.perf_counter()
        result = tune(method, tasks, opts.trials, folder / "trials" / f"{method}.journal", study_key(ctx, key, method),
                      seed=0, executor=opts.executor)
        console.log(f"{ctx.name}/{scenario}: tuned {method} ({result.trials_run_now} new trial(s), "
                    f"{time.perf_counter() - start:.0f} s): distance {result.value:.2f} with {result.params}")
        params[method] = result.params
        tuned[method] = {"distance": result.value, "trials": result.trials}
        if not math.isfinite(result.value):  # every trial broke the model: evaluate the method's defaults
            params[method] = {}
            tuned[method]["fallback"] = "defaults: every trial left non-finite weights"
    write_preset(preset_path, ctx.name, scenario, params, tuned, opts)
    return params


def write_preset(path: Path, setting: str, scenario: str, params: dict[str, dict], tuned: dict[str, dict],
                 opts: Options) -> None:
    """``unlearn.params`` for every tuned method (merged with what the file already holds), as a run config
    fragment that ``unlearn.preset=FILE`` reads."""
    old = yaml.safe_load(path.read_text()) if path.is_file() else {}
    merged_params = (old.get("unlearn", {}).get("params", {}) if old else {}) | params
    merged_tuning = (old.get("tuning", {}).get("methods", {}) if old else {}) | tuned
    data = {"unlearn": {"params": merged_params},
            "tuning": {"setting": setting, "scenario": scenario, "trials": opts.trials, "sampler": "optuna TPE",
                       "calibration_requests": opts.calibration_requests,
                       **({"max_cost": opts.max_cost} if opts.max_cost is not None else {}),
                       "objective": "avg_gap + 100 * |loss AUC - retrain's|, the mean over the calibration "
                                    "requests (miunlearn.tuning)", "methods": merged_tuning,
                       "command": "python benchmarks/leaderboard.py" + (" --quick" if opts.quick else "")
                       + (f" --max-cost {opts.max_cost:g}" if opts.max_cost is not None else "")}}
    _write_preset_data(path, data)


def _write_preset_data(path: Path, data: dict) -> None:
    """A preset file, headed by how to use it from where it now lies."""
    with atomic_write(path) as fh:
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        fh.write(f"# Tuned settings for {data['tuning']['setting']}, {data['tuning']['scenario']}: use with "
                 f"unlearn.preset={shown} (only unlearn.params is read).\n")
        yaml.safe_dump(data, fh, sort_keys=False)


def _read_preset(path: Path) -> dict:
    """A preset file as :func:`write_preset` wrote it, or one line saying why it is not one."""
    try:
        data = yaml.safe_load(path.read_text())
        if isinstance(data["unlearn"]["params"], dict) and isinstance(data["tuning"]["methods"], dict):
            return data
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        pass
    raise MiunlearnError(f"{path} is not a leaderboard preset (unlearn.params and tuning.methods); "
                         "remove it or rerun the run that wrote it")


def merged_presets(presets: Path, others: list[Path]) -> tuple[dict[Path, dict], list[str]]:
    """The preset files of ``others`` folded into those in ``presets`` (the files a merge writes), and the clashes
    (a method tuned to other params, or a study's record that differs) that forbid it."""
    merged: dict[Path, dict] = {}
    clashes = []
    for other in others:
        for source in sorted(other.glob("*.yaml")):
            path = presets / source.name
            theirs = _read_preset(source)
            ours = merged.get(path) or (_read_preset(path) if path.is_file() else None)
            if ours is None:
                merged[path] = theirs
                continue
            params, tuning = ours["unlearn"]["params"], ours["tuning"]
            clashes += [f"{source.name}: {m}" for m, p in theirs["unlearn"]["params"].items() if params.get(m, p) != p]
            clashes += [f"{source.name}: tuning.{k}" for k, v in theirs["tuning"].items()
                        if k != "methods" and tuning.get(k, v) != v]
            merged[path] = {"unlearn": {"params": params | theirs["unlearn"]["params"]},
                            "tuning": tuning | {"methods": tuning["methods"] | theirs["tuning"]["methods"]}}
    return merged, clashes


# ---------------------------------------------------------------------------------------------- one cell


@dataclass
class Audited:
    metrics: dict[str, float]
    strong: dict[str, dict[str, float]]
    scores: dict[str, tuple[np.ndarray, np.ndarray]]
    s_forget: np.ndarray
    s_audit: np.ndarray


def audit_model(ctx: SettingContext, model: nn.Module, sets: EvaluationSets, scored: TensorData, n_f: int,
                member: np.ndarray, ref_logits: torch.Tensor) -> Audited:
    model = model.to(ctx.device).eval()
    outputs = ModelOutputs.of(model, sets, ctx.config.train.device)
    metrics = evaluate_outputs(outputs, sets, POPULATION_ATTACKS)["metrics"]
    logits = predict_logits(model, scored, ctx.device)
    inputs = ReferenceInputs(logits, scored.y, ref_logits, member, predict_logits(model, ctx.population, ctx.device),
                             ctx.population.y, ctx.ref_population_logits)
    scores, strong = {}, {}
    for attack in STRONG_ATTACKS:
        s = REFERENCE_ATTACKS.get(attack)().scores(inputs)
        scores[attack] = (s[:n_f], s[n_f:])
        strong[attack] = {"auc": float(auc_many(s[None, :n_f], s[None, n_f:])[0]),
                          "tpr_1pct": float(tpr_many(s[None, :n_f], s[None, n_f:])[0])}
    s = lira_statistic(logits, scored.y)
    return Audited(metrics, strong, scores, s[:n_f], s[n_f:])


METRIC_KEYS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
"""The metrics the average gap compares."""


def mean_metrics(audits: list[Audited]) -> dict[str, float]:
    """The mean of each of :data:`METRIC_KEYS` over ``audits`` (the retrains a method's average gap is taken to)."""
    return {k: float(np.mean([a.metrics[k] for a in audits])) for k in METRIC_KEYS}


def row_metrics(a: Audited) -> dict[str, float]:
    """:data:`METRIC_KEYS` as the rows hold them: fractions (the audit gives MIA-efficacy in percent)."""
    return {k: a.metrics[k] / (100 if k == "mia_efficacy" else 1) for k in METRIC_KEYS}


def strongest(a: Audited) -> tuple[float, float]:
    """The highest AUC and the highest TPR at 1% FPR over the reference attacks (each maximised separately)."""
    return max(v["auc"] for v in a.strong.values()), max(v["tpr_1pct"] for v in a.strong.values())


def floor_of(retrains: list[Audited]) -> dict:
    """The noise floor: how far independent retrains are from each other (each against the mean of the others
    for the gap; every pair for the |Δ|-metrics, the audit AUC and the per-example |Δs|)."""
    gaps = [average_gap(r.metrics, mean_metrics([o for o in retrains if o is not r])) for r in retrains]
    pairs = list(itertools.combinations(retrains, 2))
    return {
        "avg_gap": float(np.mean(gaps)),
        "abs_delta": {k: float(np.mean([abs(a.metrics[k] - b.metrics[k]) for a, b in pairs])) for k in METRIC_KEYS},
        "strong_auc": float(np.mean([abs(strongest(a)[0] - strongest(b)[0]) for a, b in pairs])),
        "strong_auc_per_attack": {at: float(np.mean([abs(a.strong[at]["auc"] - b.strong[at]["auc"]) for a, b in pairs]))
                                  for at in STRONG_ATTACKS},
        "delta_s_forget": float(np.mean([np.abs(a.s_forget - b.s_forget).mean() for a, b in pairs])),
        "delta_s_audit": float(np.mean([np.abs(a.s_audit - b.s_audit).mean() for a, b in pairs])),
    }


def reference_approximators(ctx: SettingContext, console: Console | None = None) -> list:
    """For each reference model, the approximator ReMI would fit were it that model's owner
    (:func:`miunlearn.guidance.owners.owner_approximator`; fold models cached in the setting's folder)."""
    if ctx.own_approximators is None:
        spec = ModelSpec(ctx.config.model.name, ctx.dataset.info, ctx.config.model.width)
        ctx.own_approximators = [
            owner_approximator(ctx.approximator, ctx.dataset.pool.subset(ctx.refs.pool_indices[ctx.refs.member[k]]),
                               spec, ctx.config.train, k, ctx.folder / "ulira-own" / f"ref-{k}", console)
            for k in range(len(ctx.refs.models))]
    return ctx.own_approximators


def ulira_auc(ctx: SettingContext, method: str, params: dict, model: nn.Module, retrain: nn.Module,
              request: Request, seed: int, approximators: list | None = None) -> float:
    """U-LiRA (Hayes et al. 2024): LiRA on D_f whose IN models are reference models that were trained on a
    sample and then unlearned it with ``method``; members = the method's model, non-members = a retrain.
    Reference model k unlearns with ``approximators[k]`` (default: :func:`reference_approximators`, what its
    owner would fit); ``[ctx.approximator] * K`` gives an auditor who holds the target's own."""
    approximators = approximators or (reference_approximators(ctx) if uses_approximator(method)
                                      else [None] * len(ctx.refs.models))
    refs, forget = ctx.refs, request.forget
    member_f = refs.membership_of(request.forget_idx)
    stat = lira_statistic(torch.stack([predict_logits(m.to(ctx.device), forget, ctx.device) for m in refs.models]),
                          forget.y)
    for k, ref_model in enumerate(refs.models):
        trained_on = refs.pool_indices[refs.member[k]]
        asked = np.intersect1d(trained_on, request.forget_idx)
        if len(asked) == 0:
            continue
        pool = ctx.dataset.pool
        unlearned = unlearn(ref_model, pool.subset(asked), pool.subset(np.setdiff1d(trained_on, request.forget_idx)),
                            method, params, reference=ctx.reference,
                            approximator=approximators[k],
                            recipe=ctx.config.train, seed=seed + k, max_cost=ctx.max_cost).model
        stat[k][member_f[k]] = lira_statistic(predict_logits(unlearned, forget, ctx.device), forget.y)[member_f[k]]
    positives = lira_online(lira_statistic(predict_logits(model, forget, ctx.device), forget.y), stat, member_f)
    negatives = lira_online(lira_statistic(predict_logits(retrain, forget, ctx.device), forget.y), stat, member_f)
    return float(auc_many(positives[None], negatives[None])[0])


def cell_folder(ctx: SettingContext, scenario: str, seed: int) -> Path:
    """Where a cell's retrains and method models are cached: the evaluated requests depend on the number of
    calibration requests (they are drawn from what those leave), so each number has its own cells."""
    suffix = "" if ctx.calibration_requests == 1 else f"-calibration{ctx.calibration_requests}"
    return ctx.folder / f"{scenario}{suffix}" / f"seed-{seed}"


def prepare_cell(ctx: SettingContext, scenario: str, seed: int, retrains: int) -> tuple[
        Request, nn.Module, list[tuple[nn.Module, dict]], Callable[[nn.Module], Audited]]:
    """One cell's request, target and independent retrains (model, facts), all cached, and its auditor: metrics
    and reference attacks on D_f against D_audit."""
    request = make_request(ctx, scenario, seed)
    target = target_model(ctx, seed)
    folder = cell_folder(ctx, scenario, seed)
    check_request(folder, request)
    models = [retrained(ctx, target, request, folder / f"retrain-{r}.safetensors", seed=retrain_seed(seed, r, retrains))
              for r in range(retrains)]
    pool = ctx.dataset.pool
    sets = EvaluationSets(request.retain, request.forget, ctx.dataset.test, pool.subset(ctx.audit))
    scored_idx = np.r_[request.forget_idx, ctx.audit]
    scored = pool.subset(scored_idx)
    member = ctx.refs.membership_of(scored_idx)
    ref_logits = torch.stack([predict_logits(m.to(ctx.device), scored, ctx.device) for m in ctx.refs.models])

    def audit(model: nn.Module) -> Audited:
        return audit_model(ctx, model, sets, scored, len(request.forget_idx), member, ref_logits)

    return request, target, models, audit


def check_request(folder: Path, request: Request) -> None:
    """Refuse a cell folder whose cached models were made for another request (recorded by the first run there)."""
    path = folder / "request.json"
    digest = hashlib.sha256(np.asarray(request.forget_idx, dtype=np.int64).tobytes()).hexdigest()
    if path.is_file():
        if json.loads(path.read_text()).get("forget_sha256") != digest:
            raise MiunlearnError(f"{folder} holds models of another request than this run's; move it away to "
                                 "retrain them")
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_json(path, {"forget_sha256": digest, "forget": len(request.forget_idx)})


def models_digest(models: list[nn.Module]) -> str:
    """A hash of the weights and buffers of ``models``, whatever their memory format or device."""
    h = hashlib.sha256()
    for model in models:
        for name, value in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def check_same_models(key: str, cell: dict, digest: str, retrain_audits: list[Audited], kept: list[str]) -> None:
    """A cell's rows compare methods on one target, its retrains and the reference models. The same code and seeds
    build other models on another CPU (BENCHMARKS.md, "The leaderboard's cache, rebuilt on another machine"), so
    a cache rebuilt there must not add rows to a cell whose other rows (``kept``) stay. Cells stored before the
    digest are checked by their retrains' reference-attack AUCs: one build gives the same values in every run, while
    two builds that agree on every retrain's metrics still differ there by about 1e-4 (their reference models)."""
    if not kept or "retrain_strong" not in cell:
        return
    if "models" in cell:
        same = cell["models"] == digest
    else:
        same = all(abs(a.strong[attack]["auc"] - old[attack]["auc"]) <= 1e-9
                   for a, old in zip(retrain_audits, cell["retrain_strong"]) for attack in old)
    if not same:
        raise MiunlearnError(
            f"{key}: the cache's target, retrains or reference models are not the ones the cell's stored rows "
            f"({', '.join(kept)}) were computed against (built on another machine or by other training code); rows "
            "made now would be compared with rows made on other models. Rerun every method into a new --out, or "
            "use the --cache those rows were made with")


def run_cell(ctx: SettingContext, scenario: str, seed: int, methods: list[str], params: dict[str, dict],
             opts: Options, results: Results, console: Console) -> None:
    """Target, retrains and every method on one (setting, scenario, seed); each row stored as it finishes."""
    key = cell_key(ctx.name, scenario, seed)
    # Not for class requests: every reference model keeps seeing the class through D_audit, so none is the model
    # that never saw it which the retrain is (U-LiRA's AUC came out below 0.5 there).
    wanted_ulira = seed < opts.ulira_seeds and SCENARIOS.get(scenario).fraction is not None
    stale = {m for m in methods if results.cells.get(key, {}).get("methods", {}).get(m, {}).get("fingerprint")
             not in (None, method_version(ctx, m))}  # the method's code (or approximator) changed since its row
    stale |= {m for m in methods if (row := results.row(ctx.name, scenario, m, seed)) is not None
              and row["params"] != params.get(m, {})}  # or its tuned settings did (more trials, say)
    if stale:
        results.cells[key]["ulira_done"] = False
    # rows whose seconds and retrain seconds were not both measured in one run: rerun for their timing
    untimed = {m for m in methods if opts.retime and m not in stale and results.row(ctx.name, scenario, m, seed)
               and "timed_in" not in results.cells.get(key, {}).get("methods", {}).get(m, {})}
    pending = [m for m in ["original", *methods]
               if results.row(ctx.name, scenario, m, seed) is None or m in stale | untimed]
    if not pending and (not wanted_ulira or results.cells.get(key, {}).get("ulira_done")):
        return
    console.log(f"{key}: target, {opts.retrains} retrains, {len(pending)} row(s) to compute")
    request, target, retrains, audit = prepare_cell(ctx, scenario, seed, opts.retrains)
    folder = cell_folder(ctx, scenario, seed)
    n_f = len(request.forget_idx)
    retrain_audits = [audit(m) for m, _ in retrains]
    digest = models_digest([target, *(m for m, _ in retrains), *ctx.refs.models])
    kept = [r["method"] for r in results.rows if (r["setting"], r["scenario"], r["seed"]) == (ctx.name, scenario, seed)
            and r["method"] not in pending]
    check_same_models(key, results.cells.get(key, {}), digest, retrain_audits, kept)
    floor = floor_of(retrain_audits)
    mean_retrain = mean_metrics(retrain_audits)
    timing = (timed_retrain(ctx, target, request, retrain_seed(seed, 0, opts.retrains), retrains[0][0])
              | {"run": opts.run_id}
              if set(pending) - {"original"} else None)
    if timing is not None and not timing["reproduces"]:
        console.log(f"[yellow]{key}: the retrain timed now differs from the cached one of the same seed: rows "
                    "computed in other runs may not be reproducible[/yellow]")
    retrain_seconds = timing["seconds"] if timing is not None else None
    retrain_work = mean_work(retrains)
    cell = results.cells.get(key, {})
    cell.update({"models": digest, "floor": floor, "forget_size": n_f,
                 "retain_size": len(request.retain), "audit_size": len(ctx.audit),
                 "retrain_strong": [a.strong for a in retrain_audits],
                 "floor_verdict": verdict(retrain_audits[1].scores, retrain_audits[0].scores, seed)
                 if len(retrain_audits) > 1 else None})
    cell.pop("retrain_seconds", None)  # cells written before timings were paired: a cached retrain's seconds
    if timing is not None:
        cell["timing"] = timing  # the latest run's; each method's row keeps the retrain seconds of its own run
    cell.setdefault("methods", {})

    def store(method: str, a: Audited, seconds: float | None, work: float | None, peak: float | None,
              method_params: dict, ulira: float | None = None) -> None:
        auc, tpr = strongest(a)
        results.put({
            "setting": ctx.name, "scenario": scenario, "method": method, "seed": seed,
            **row_metrics(a),
            "avg_gap": average_gap(a.metrics, mean_retrain), "floor_avg_gap": floor["avg_gap"],
            "strong_auc": auc, "strong_tpr_1pct": tpr, "floor_strong_auc": floor["strong_auc"], "ulira_auc": ulira,
            "seconds": seconds, "retrain_seconds": retrain_seconds,
            "speedup": retrain_seconds / seconds if seconds else None,
            "work_ratio": retrain_work / work if work else None, "peak_mib": peak, "params": method_params})
        cell["methods"][method] = {
            "fingerprint": method_version(ctx, method), **({"timed_in": opts.run_id} if seconds else {}),
            "strong": a.strong, "verdict": verdict(a.scores, retrain_audits[0].scores, seed),
            "delta_s_forget": float(np.mean([np.abs(a.s_forget - r.s_forget).mean() for r in retrain_audits])),
            "delta_s_audit": float(np.mean([np.abs(a.s_audit - r.s_audit).mean() for r in retrain_audits]))}

    def store_broken(method: str, seconds: float, work: float, peak: float | None, method_params: dict) -> None:
        """A model with non-finite weights cannot be audited: its row keeps time and work, metrics null."""
        row = dict.fromkeys(ROW_KEYS) | {
            "setting": ctx.name, "scenario": scenario, "method": method, "seed": seed,
            "floor_avg_gap": floor["avg_gap"], "floor_strong_auc": floor["strong_auc"], "seconds": seconds,
            "retrain_seconds": retrain_seconds, "speedup": retrain_seconds / seconds if seconds else None,
            "work_ratio": retrain_work / work if work else None, "peak_mib": peak, "params": method_params}
        results.put(row)
        cell["methods"][method] = {"fingerprint": method_version(ctx, method), "timed_in": opts.run_id,
                                   "broken": "non-finite weights"}

    if "original" in pending:
        original = audit(target)
        cell["original_strongest_auc"] = strongest(original)[0]
        cell["leaks"] = strongest(original)[0] >= LEAK_AUC
        store("original", original, None, None, None, {})
    method_models: dict[str, nn.Module] = {}
    for method in methods:
        path = folder / f"{method}{'' if ctx.max_cost is None else f'-max-cost{ctx.max_cost:g}'}.safetensors"
        if results.row(ctx.name, scenario, method, seed) is not None and method not in stale | untimed:
            if verified(path):
                method_models[method] = load_weights(fresh_model(ctx), path).eval()
                continue
            if not wanted_ulira or cell.get("ulira_done"):
                continue
            console.log(f"{key}: {method}'s saved model is missing or fails its sha256, and U-LiRA needs it: "
                        "recomputed")
        method_params = params.get(method, {})
        console.log(f"{key}: {method}")
        with peak_mib() as peak:
            result = unlearn(target, request.forget, request.retain, method, method_params or None,
                             reference=ctx.reference, approximator=ctx.approximator, recipe=ctx.config.train,
                             seed=seed, max_cost=ctx.max_cost)
        save_model(result.model, path)
        if not all(torch.isfinite(p).all() for p in result.model.parameters()):
            store_broken(method, result.record.seconds, work_of(result.record), peak["peak_mib"], method_params)
            continue
        method_models[method] = result.model
        audited = audit(result.model)
        ulira = None
        if method in untimed:  # rerun for its timing only: the model must be the one its row describes
            old = results.row(ctx.name, scenario, method, seed)
            if (all(old[k] == v for k, v in row_metrics(audited).items())
                    and (old["strong_auc"], old["strong_tpr_1pct"]) == strongest(audited)):
                ulira = old["ulira_auc"]
            else:
                console.log(f"[yellow]{key}: {method}'s metrics moved on a rerun with the same code and settings: "
                            "row replaced, U-LiRA recomputed[/yellow]")
                cell["ulira_done"] = False
        store(method, audited, result.record.seconds, work_of(result.record), peak["peak_mib"], method_params, ulira)
        results.put_cell(key, cell)
    results.put_cell(key, cell)
    if wanted_ulira:
        run_ulira(ctx, scenario, seed, methods, params, method_models, retrains[0][0], request, results, console)


def ulira_methods(rows: list[dict]) -> list[str]:
    """ReMI and the three baselines closest to retraining (lowest average gap) in this cell."""
    baselines = sorted((r for r in rows if r["method"] not in ("original", "retrain", "remi")
                        and r["avg_gap"] is not None), key=lambda r: r["avg_gap"])
    return [r["method"] for r in rows if r["method"] == "remi"] + [r["method"] for r in baselines[:ULIRA_BASELINES]]


def run_ulira(ctx: SettingContext, scenario: str, seed: int, methods: list[str], params: dict[str, dict],
              models: dict[str, nn.Module], retrain: nn.Module, request: Request, results: Results,
              console: Console) -> None:
    key = cell_key(ctx.name, scenario, seed)
    rows = [results.row(ctx.name, scenario, m, seed) for m in methods]
    chosen = ulira_methods([r for r in rows if r is not None])
    for row in rows:  # a method no longer among the chosen (after a rerun of another) keeps no stale U-LiRA AUC
        if row is not None and row["method"] not in chosen and row["ulira_auc"] is not None:
            results.put(dict(row) | {"ulira_auc": None})
    for method in chosen:
        row = results.row(ctx.name, scenario, method, seed)
        if row["ulira_auc"] is not None or method not in models:
            continue
        console.log(f"{key}: U-LiRA of {method} on {len(ctx.refs.models)} reference models")
        row = dict(row) | {"ulira_auc": ulira_auc(ctx, method, params.get(method) or None, models[method], retrain,
                                                  request, seed)}
        results.put(row)
    cell = results.cells[key]
    cell["ulira_done"] = True
    results.put_cell(key, cell)


# ---------------------------------------------------------------------------------------------- driver


def methods_to_run(opts: Options) -> list[str]:
    return [m for m in opts.methods if m != "retrain"]


def run(opts: Options, console: Console) -> Results:
    """The whole protocol for the selected settings, scenarios and methods; resumes from ``opts.out``."""
    started = time.perf_counter()
    results = Results(opts.out)
    check_protocol(opts)
    methods = methods_to_run(opts)
    for name in opts.settings:  # every dataset is checked before any training
        load_setting_data(name, setting_config(name, opts), opts)
    def out_of_budget() -> bool:
        over = opts.budget_s is not None and time.perf_counter() - started > opts.budget_s
        if over:
            console.log(f"budget of {opts.budget_s:.0f} s reached: stopping; rerun the same command to resume")
        return over

    interrupted = True
    try:
        for name in opts.settings:
            if out_of_budget():
                break
            ctx = prepare_setting(name, opts, console)
            for scenario in opts.scenarios:
                if out_of_budget():
                    break
                params = tune_scenario(ctx, scenario, methods, opts, console)
                for seed in range(opts.seeds):
                    if out_of_budget():
                        break
                    run_cell(ctx, scenario, seed, methods, params, opts, results, console)
        interrupted = False
    finally:  # an interrupted invocation's time counts too: its finished rows are kept and resumed from
        record_invocation(opts, time.perf_counter() - started, interrupted)
    return results


def record_invocation(opts: Options, seconds: float, interrupted: bool) -> None:
    meta_path = opts.out / "leaderboard_meta.json"
    old = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    this = {"command": command_line("leaderboard.py", sys.argv[1:]),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"),
            "wall_seconds": seconds, "settings": list(opts.settings), "run": opts.run_id} | (
                {"interrupted": True} if interrupted else {})
    meta = {"machine": machine(), "runs": invocation_records(old) + [this],
            "protocol": protocol(opts)}
    write_json(meta_path, meta)


def check_protocol(opts: Options) -> None:
    """Refuse to add rows to an ``--out`` whose rows were tuned on another number of calibration requests (they were
    evaluated on other requests) or under another work limit: a stored row would count as done, and the presets
    they rest on would be overwritten."""
    meta_path = opts.out / "leaderboard_meta.json"
    if not meta_path.is_file():
        return
    theirs = json.loads(meta_path.read_text()).get("protocol", {})
    if theirs.get("calibration_requests", 1) != opts.calibration_requests:
        raise MiunlearnError(f"{opts.out} holds rows tuned on {theirs.get('calibration_requests', 1)} calibration "
                             f"request(s), this run asks for {opts.calibration_requests}; give it another --out and "
                             "--presets")
    if theirs.get("max_cost") != opts.max_cost:
        raise MiunlearnError(f"{opts.out} holds rows made with max_cost {theirs.get('max_cost')}, this run asks for "
                             f"{opts.max_cost}; give it another --out and --presets")


def protocol(opts: Options) -> dict:
    """The counts a run's rows depend on, and the work limit if any; one calibration request, the only number before
    there could be several, is left out, so runs from before compare equal."""
    counts = {k: getattr(opts, k) for k in ("seeds", "retrains", "trials", "references", "ulira_seeds", "quick")}
    return counts | ({"calibration_requests": opts.calibration_requests} if opts.calibration_requests != 1 else {}) | (
        {"max_cost": opts.max_cost} if opts.max_cost is not None else {})


def invocation_records(meta: dict) -> list[dict]:
    """One record per invocation (command, date, wall seconds); older files kept one command and a summed wall."""
    if "runs" in meta:
        return meta["runs"]
    if "command" in meta:
        return [{"command": meta["command"], "date": meta.get("date"), "wall_seconds": meta.get("wall_seconds", 0.0),
                 "invocations": meta.get("invocations", 1)}]
    return []


def merge(out: Path, others: list[Path], presets: Path) -> None:
    """Fold the rows, cells and invocation records of other ``--out`` folders (e.g. of processes that ran other
    settings in parallel, one per core) into ``out``, and the presets they hold (``<other>/presets``) into
    ``presets``. A row, cell or tuned method both hold with different content, or another protocol, is an error
    and nothing is written."""
    results = Results(out)
    meta_path = out / "leaderboard_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    for other in others:
        if not (other / "leaderboard.json").is_file():
            raise MiunlearnError(f"{other} holds no leaderboard.json to merge")
        theirs = Results(other)
        their_meta = json.loads((other / "leaderboard_meta.json").read_text())
        if meta.get("protocol", their_meta["protocol"]) != their_meta["protocol"]:
            raise MiunlearnError(f"{other} ran another protocol ({their_meta['protocol']}) than {out} "
                                 f"({meta['protocol']}); merge only runs of the same protocol")
        clashes = [f"{r['setting']}/{r['scenario']}/{r['method']}/{r['seed']}" for r in theirs.rows
                   if results.row(r["setting"], r["scenario"], r["method"], r["seed"]) not in (None, r)]
        clashes += [key for key, cell in theirs.cells.items() if results.cells.get(key, cell) != cell]
        if clashes:
            raise MiunlearnError(f"{out} and {other} disagree on {len(clashes)} row(s)/cell(s), e.g. {clashes[0]}; "
                                 "rerun one of them instead of merging")
        results.rows += [r for r in theirs.rows if results.row(r["setting"], r["scenario"], r["method"],
                                                                r["seed"]) is None]
        results.cells |= theirs.cells
        meta = {"machine": meta.get("machine", their_meta["machine"]), "protocol": their_meta["protocol"],
                "runs": invocation_records(meta) + invocation_records(their_meta)}
    preset_files, clashes = merged_presets(presets, [other / "presets" for other in others
                                                     if (other / "presets").resolve() != presets.resolve()])
    if clashes:
        raise MiunlearnError(f"the presets of {out} and {', '.join(map(str, others))} disagree on {len(clashes)} "
                             f"method(s), e.g. {clashes[0]}; rerun one of them instead of merging")
    for path, data in preset_files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_preset_data(path, data)
    write_json(results.rows_path, results.rows)
    write_json(results.cells_path, results.cells)
    write_json(meta_path, meta)


# ---------------------------------------------------------------------------------------------- report


def _mean_std(values: list[float | None], scale: float = 1.0, digits: int = 1) -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "–"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals):.{digits}f}" if len(vals) > 1 else f"{vals[0]:.{digits}f}"


def markdown(rows: list[dict], cells: dict[str, dict]) -> str:
    """Per setting and scenario: a mean ± std table over seeds, the noise floor as its first row."""
    out = []
    for setting, scenario in sorted({(r["setting"], r["scenario"]) for r in rows}):
        group = [r for r in rows if (r["setting"], r["scenario"]) == (setting, scenario)]
        seeds = sorted({r["seed"] for r in group})
        cell_list = [cells.get(cell_key(setting, scenario, s), {}) for s in seeds]
        leak = [c.get("original_strongest_auc") for c in cell_list]
        out.append(f"#### {setting}, {scenario} ({len(seeds)} seed(s); original's strongest reference attack AUC "
                   f"{_mean_std(leak, digits=3)})\n")
        out.append("| method | forget % | retain % | test % | MIA-eff. % | avg gap | strong AUC | TPR@1% | U-LiRA AUC "
                   "| told apart (Holm) | speedup | work ratio | peak MiB |")
        out.append("|" + "---|" * 13)
        floors = [c.get("floor", {}) for c in cell_list]
        out.append("| *floor (retrain vs retrain)* | " + " | ".join(
            _mean_std([f.get("abs_delta", {}).get(k) for f in floors], s) for k, s in
            (("forget_acc", 100), ("retain_acc", 100), ("test_acc", 100), ("mia_efficacy", 1)))
            + f" | {_mean_std([f.get('avg_gap') for f in floors], digits=2)} | ±"
            + f"{_mean_std([f.get('strong_auc') for f in floors], digits=3)} | | | "
            + f"{sum(bool((c.get('floor_verdict') or {}).get('distinguishable')) for c in cell_list)}/{len(seeds)} "
            + "| 1 | 1 | |")
        order = sorted({r["method"] for r in group},
                       key=lambda m: _finite_or_inf(_method_mean(group, m, lambda r: r["avg_gap"])))
        for method in order:
            mr = [r for r in group if r["method"] == method]
            told = [cells.get(cell_key(setting, scenario, r["seed"]), {}).get("methods", {}).get(method, {})
                    .get("verdict", {}).get("distinguishable") for r in mr]
            out.append(f"| {method} | " + " | ".join([
                _mean_std([r["forget_acc"] for r in mr], 100), _mean_std([r["retain_acc"] for r in mr], 100),
                _mean_std([r["test_acc"] for r in mr], 100), _mean_std([r["mia_efficacy"] for r in mr], 100),
                _mean_std([r["avg_gap"] for r in mr], digits=2), _mean_std([r["strong_auc"] for r in mr], digits=3),
                _mean_std([r["strong_tpr_1pct"] for r in mr], digits=3),
                _mean_std([r["ulira_auc"] for r in mr], digits=3),
                f"{sum(bool(t) for t in told)}/{len(told)}",
                _mean_std([r["speedup"] for r in mr]), _mean_std([r["work_ratio"] for r in mr]),
                _mean_std([r["peak_mib"] for r in mr], digits=1)]) + " |")
        out.append("")
    return "\n".join(out)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (higher speedup, lower gap)."""
    return [i for i, (s, g) in enumerate(points)
            if not any((s2 >= s and g2 <= g) and (s2 > s or g2 < g) for j, (s2, g2) in enumerate(points) if j != i)]


def plot(rows: list[dict], path: Path) -> None:
    """Average gap against speedup (mean over seeds, one panel per setting and scenario), Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["setting"], r["scenario"]) for r in rows})
    if not groups:
        return
    cols = min(3, len(groups))
    fig, axes = plt.subplots((len(groups) + cols - 1) // cols, cols, figsize=(5 * cols, 4 * ((len(groups) + cols - 1)
                                                                                             // cols)), squeeze=False)
    for ax, (setting, scenario) in zip(axes.flat, groups):
        group = [r for r in rows if (r["setting"], r["scenario"]) == (setting, scenario) and r["speedup"]
                 and r["avg_gap"] is not None]
        names = sorted({r["method"] for r in group})
        pts = [(float(np.mean([r["speedup"] for r in group if r["method"] == m])),
                float(np.mean([r["avg_gap"] for r in group if r["method"] == m]))) for m in names]
        front = pareto_front(pts)
        for i, (name, (s, g)) in enumerate(zip(names, pts)):
            ax.scatter(s, g, color="C3" if i in front else "C0", marker="*" if name == "remi" else "o")
            ax.annotate(name, (s, g), fontsize=7)
        if front:
            fp = sorted(pts[i] for i in front)
            ax.plot([p[0] for p in fp], [p[1] for p in fp], "C3--", lw=1, label="Pareto front")
        floor = np.mean([r["floor_avg_gap"] for r in group]) if group else 0
        ax.axhline(floor, color="grey", lw=1, ls=":", label="floor (retrain vs retrain)")
        ax.set_xscale("log")
        ax.set(title=f"{setting}, {scenario}", xlabel="speedup vs retraining (×)", ylabel="avg gap to retrains")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _method_mean(group: list[dict], method: str, value: Callable[[dict], float | None]) -> float:
    vals = [v for v in (value(r) for r in group if r["method"] == method) if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def audit_distance(row: dict, cells: dict[str, dict]) -> float | None:
    """|strongest reference-attack AUC - the retrains' mean of theirs| in the row's cell."""
    strong = cells.get(cell_key(row["setting"], row["scenario"], row["seed"]), {}).get("retrain_strong")
    if not strong or row["strong_auc"] is None:
        return None
    return abs(row["strong_auc"] - float(np.mean([max(v["auc"] for v in r.values()) for r in strong])))


def summary(rows: list[dict], cells: dict[str, dict]) -> str:
    """Who wins where, in plain words, per setting and scenario: on closeness (avg gap), on the audit (strongest
    reference-attack AUC nearest the retrains'), on speed, and where ReMI stands on each."""
    lines = []
    for setting, scenario in sorted({(r["setting"], r["scenario"]) for r in rows}):
        group = [r for r in rows if (r["setting"], r["scenario"]) == (setting, scenario) and r["method"] != "original"]
        if not group:
            continue
        names = sorted({r["method"] for r in group})
        values: dict[str, Callable[[dict], float | None]] = {
            "closeness": lambda r: r["avg_gap"], "audit": lambda r: audit_distance(r, cells),
            "speed": lambda r: -r["speedup"]}
        ranks = {label: sorted(names, key=lambda m, f=f: _finite_or_inf(_method_mean(group, m, f)))
                 for label, f in values.items()}
        gap, speed = values["closeness"], (lambda r: r["speedup"])
        floor = float(np.mean([r["floor_avg_gap"] for r in group]))
        best, fastest = ranks["closeness"][0], ranks["speed"][0]
        text = (f"**{setting}, {scenario}**: closest to retraining {best} (avg gap "
                f"{_method_mean(group, best, gap):.2f}, floor {floor:.2f}); audit nearest the retrains' "
                f"{ranks['audit'][0]}; fastest {fastest} ({_method_mean(group, fastest, speed):.1f}x)")
        if "remi" in names:
            text += ("; ReMI ranks " + ", ".join(f"{ranks[k].index('remi') + 1}/{len(names)} on {k}" for k in ranks)
                     + f" (avg gap {_method_mean(group, 'remi', gap):.2f}, {_method_mean(group, 'remi', speed):.1f}x)")
        lines.append(text + ".")
    return "\n".join(f"- {line}" for line in lines)


def readme_table(rows: list[dict], cells: dict[str, dict]) -> str:
    """The README's summary: per setting and scenario, the original's leak, the floor, ReMI against the closest
    baseline, ReMI's speed and how often the Holm-corrected audit and U-LiRA tell it from a retrain."""
    out = ["| setting | request | original's leak (AUC) | floor (avg gap) | ReMI avg gap | ReMI's rank | closest "
           "baseline (avg gap) | ReMI speedup | ReMI told apart (Holm) | ReMI U-LiRA AUC |", "|" + "---|" * 10]
    for setting, scenario in sorted({(r["setting"], r["scenario"]) for r in rows}):
        group = [r for r in rows if (r["setting"], r["scenario"]) == (setting, scenario) and r["method"] != "original"]
        names = sorted({r["method"] for r in group}, key=lambda m: _finite_or_inf(_method_mean(group, m,
                                                                                             lambda r: r["avg_gap"])))
        if "remi" not in names:
            continue
        seeds = sorted({r["seed"] for r in group})
        cell_list = [cells.get(cell_key(setting, scenario, s), {}) for s in seeds]
        remi = [r for r in group if r["method"] == "remi"]
        best = next(m for m in names if m != "remi")
        told = [c.get("methods", {}).get("remi", {}).get("verdict", {}).get("distinguishable") for c in cell_list]
        out.append(" | ".join([
            f"| {setting}", scenario, _mean_std([c.get("original_strongest_auc") for c in cell_list], digits=3),
            _mean_std([r["floor_avg_gap"] for r in remi], digits=2), _mean_std([r["avg_gap"] for r in remi], digits=2),
            f"{names.index('remi') + 1} of {len(names)}",
            f"{best} ({_method_mean(group, best, lambda r: r['avg_gap']):.2f})",
            f"{_mean_std([r['speedup'] for r in remi])}x", f"{sum(bool(t) for t in told)}/{len(told)}",
            _mean_std([r["ulira_auc"] for r in remi], digits=3)]) + " |")
    return "\n".join(out)


def replace_between(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``path`` (atomically)."""
    doc = path.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in doc or end not in doc:
        raise MiunlearnError(f"{path} has no {begin} ... {end} markers to put the {name} between")
    doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + "\n" + doc[doc.index(end):]
    with atomic_write(path) as fh:
        fh.write(doc)


def section(out: Path, image: str) -> str:
    """The BENCHMARKS.md leaderboard section: command, machine, date, wall time, tables, plot, summary."""
    results = Results(out)
    meta_path = out / "leaderboard_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    m = meta.get("machine", {})
    where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    runs = "; ".join(f"`{r['command']}` ({r.get('date') or '?'}, wall {r['wall_seconds'] / 60:.0f} min"
                     + (f" over {r['invocations']} invocations" if r.get("invocations", 1) > 1 else "")
                     + (", interrupted" if r.get("interrupted") else "") + ")"
                     for r in invocation_records(meta)) or "`python benchmarks/leaderboard.py`"
    head = (f"{runs} — {m.get('cpu', '?')} ({m.get('cores', '?')} cores, torch {m.get('torch', '?')}, device "
            f"{m.get('device', '?')}); protocol {json.dumps(meta.get('protocol', {}))}. "
            f"Rows: `{where}/leaderboard.json`.\n")
    return "\n".join([head, summary(results.rows, results.cells), "", f"![avg gap vs speedup]({image})", "",
                      markdown(results.rows, results.cells)])


def report(out: Path, benchmarks_md: Path | None = None, readme: Path | None = None) -> str:
    """Write leaderboard.md and leaderboard.png into ``out``; with ``benchmarks_md``, also replace the text
    between its ``<!-- leaderboard:begin -->`` and ``<!-- leaderboard:end -->`` markers with the section; with
    ``readme``, the text between its ``leaderboard-summary`` markers with :func:`readme_table`."""
    results = Results(out)
    plot(results.rows, out / "leaderboard.png")
    image = os.path.relpath(out / "leaderboard.png", (benchmarks_md or out / "x").parent)
    text = section(out, image)
    with atomic_write(out / "leaderboard.md") as fh:
        fh.write(text)
    for path, name in ((benchmarks_md, "leaderboard"), (readme, "leaderboard-summary")):  # both checked first
        if path is not None and not all(f"<!-- {name}:{edge} -->" in path.read_text() for edge in ("begin", "end")):
            raise MiunlearnError(f"{path} has no <!-- {name}:begin --> ... <!-- {name}:end --> markers to put the "
                                 f"{name} between")
    if benchmarks_md is not None:
        replace_between(benchmarks_md, "leaderboard", text)
    if readme is not None:
        replace_between(readme, "leaderboard-summary", readme_table(results.rows, results.cells))
    return text


# ---------------------------------------------------------------------------------------------- CLI


def _names(raw: str | None, registry: Registry, default: tuple[str, ...] | list[str]) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()] if raw else list(default)
    for name in names:
        registry.validate(name)
    return names


def default_data_dir() -> Path | None:
    given = os.environ.get("MIUNLEARN_SHARED_DATASETS")
    candidates = [Path(given)] if given else [ROOT.parent / "shared" / "datasets", ROOT.parents[1] / "shared" /
                                              "datasets", ROOT / ".bench-data" / "datasets"]
    return next((c for c in candidates if c.is_dir()), None)


def parse_args(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", help=f"comma list (default: {','.join(DEFAULT_SETTINGS)})")
    parser.add_argument("--scenarios", help="comma list (default: all)")
    parser.add_argument("--methods", help="comma list (default: every registered method)")
    parser.add_argument("--quick", action="store_true", help="smoke version: small pools, few epochs/trials/seeds")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--retrains", type=int)
    parser.add_argument("--trials", type=int)
    parser.add_argument("--references", type=int)
    parser.add_argument("--ulira-seeds", type=int)
    parser.add_argument("--calibration-requests", type=int,
                        help="calibration requests per scenario, tuning on their mean (default 1)")
    parser.add_argument("--max-cost", type=float, metavar="FRACTION",
                        help="stop every method at this fraction of a retrain's work, in tuning and evaluation alike "
                             "(0.05: 20x cheaper than retraining); default --out results/max-cost-FRACTION")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="ray: tuning trials as Ray Tune trials, reference/shadow models as Ray tasks")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--presets", type=Path)
    parser.add_argument("--data-dir", type=Path, help="folder holding location/, fashion-mnist/, cifar10/")
    parser.add_argument("--budget-s", type=float, help="start no new tuning or cell after this many seconds")
    parser.add_argument("--retime", action="store_true",
                        help="rerun every method row whose seconds and retrain seconds were not measured in one run")
    parser.add_argument("--report", action="store_true", help="only write leaderboard.md/.png from the results")
    parser.add_argument("--benchmarks-md", type=Path, help="with --report: also update this file's leaderboard section")
    parser.add_argument("--readme", type=Path, help="with --report: also update this file's leaderboard summary")
    parser.add_argument("--merge", type=Path, action="append", default=[], metavar="DIR",
                        help="fold another --out folder's rows into --out and its presets into --presets "
                             "(then report), e.g. of a parallel process")
    parser.add_argument("overrides", nargs="*", help="run-config overrides for every setting (key=value)")
    args = parser.parse_args(argv)
    quick = {"seeds": 2, "retrains": 2, "trials": 2, "references": 4, "ulira_seeds": 1, "calibration_requests": 1}
    full = {"seeds": 3, "retrains": 2, "trials": 8, "references": 8, "ulira_seeds": 1, "calibration_requests": 1}
    base = quick if args.quick else full
    counts = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    if counts["retrains"] < 2 or counts["seeds"] < 1 or counts["trials"] < 1 or counts["references"] < 2 \
            or counts["calibration_requests"] < 1:
        raise MiunlearnError("need --retrains >= 2 (the noise floor), --seeds >= 1, --trials >= 1, --references >= 2, "
                             "--calibration-requests >= 1")
    problem = max_cost_problem(args.max_cost, "--max-cost")
    if problem:
        raise MiunlearnError(problem)
    limited = "" if args.max_cost is None else f"max-cost-{args.max_cost:g}"
    out = args.out or (ROOT / "runs" / f"leaderboard-quick{'-' * bool(limited)}{limited}" if args.quick
                       else HERE / "results" / limited)
    opts = Options(
        settings=_names(args.settings, SETTINGS, ("location_mlp",) if args.quick else DEFAULT_SETTINGS),
        scenarios=_names(args.scenarios, SCENARIOS, SCENARIOS.names()),
        methods=_names(args.methods, METHODS, METHODS.names()),
        out=out, cache=args.cache or ROOT / ".bench-data" / ("leaderboard-quick" if args.quick else "leaderboard"),
        presets=args.presets or (out / "presets" if args.quick or limited else HERE / "presets"),
        data_dir=args.data_dir or default_data_dir(), quick=args.quick, executor=args.executor,
        overrides=args.overrides, budget_s=args.budget_s, retime=args.retime, max_cost=args.max_cost, **counts)
    opts.benchmarks_md = args.benchmarks_md
    opts.merge = args.merge
    opts.readme = args.readme
    return opts


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a script that studies one setting and scenario of the leaderboard from its cache."""
    parser.add_argument("setting")
    parser.add_argument("scenario")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="the leaderboard's --quick targets, cache and presets")
    parser.add_argument("--cache", type=Path, help="the leaderboard's --cache (default: its own)")
    parser.add_argument("--calibration-requests", type=int, default=1,
                        help="the leaderboard's --calibration-requests (its cells and tuning depend on it)")


def one_line_errors(main: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """A study script's ``main``: a :class:`MiunlearnError` is printed as one line and the exit status is 2."""
    @functools.wraps(main)
    def run(argv: list[str]) -> int:
        try:
            return main(argv)
        except MiunlearnError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return run


def save_study(path: Path, script: str, argv: list[str], **content: Any) -> None:
    """A study script's results file, rewritten atomically: ``content`` (its rows...), the command that made it and
    the machine."""
    write_json(path, {**content, "command": command_line(script, argv), "machine": machine()})


def command_line(script: str, args: list[str]) -> str:
    """How a benchmark script was run, with the ``OMP_NUM_THREADS`` it ran under: the thread count sets the order of
    floating-point sums, so a rerun under another one takes another path (BENCHMARKS.md, "Where ReMI stops")."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return " ".join([*([f"OMP_NUM_THREADS={threads}"] if threads else []), "python", f"benchmarks/{script}", *args])


def study_rows(path: Path, version: dict, script: str, argv: list[str], seeds: int, console: Console, label: str,
               compute: Callable[[int], dict], done: Callable[[dict], bool] = lambda row: True) -> list[dict]:
    """A study script's rows for seeds ``0..seeds-1``, sorted: those stored at ``path`` under the same ``version``
    (and ``done``) are kept, the others computed and stored one seed at a time, so an interrupted study resumes."""
    stored = Results._read(path, {})
    rows = stored.get("rows", []) if stored.get("version") == version else []
    path.parent.mkdir(parents=True, exist_ok=True)
    for seed in range(seeds):
        if any(r["seed"] == seed and done(r) for r in rows):
            continue
        rows = [r for r in rows if r["seed"] != seed]
        console.log(f"{label}: seed {seed}")
        rows.append(compute(seed))
        save_study(path, script, argv, version=version, rows=rows)
    return sorted(rows, key=lambda r: r["seed"])[:seeds]


def study_options(args: argparse.Namespace, overrides: list[str] | None = None) -> Options:
    """The leaderboard's options for such a script (its setting and scenario validated first)."""
    SETTINGS.validate(args.setting)
    SCENARIOS.validate(args.scenario)
    presets = getattr(args, "presets", None)
    return parse_args(["--settings", args.setting, *(["--quick"] if args.quick else []), *(overrides or []),
                       *(["--cache", str(args.cache)] if args.cache else []),
                       *(["--presets", str(presets)] if presets else []),
                       *(["--trials", str(args.trials)] if getattr(args, "trials", None) else []),
                       "--calibration-requests", str(args.calibration_requests)])


def study_stem(args: argparse.Namespace) -> str:
    """``<setting>-<scenario>``, naming a study script's results file, and the number of calibration requests when it
    is not one: the cells, hence the rows, depend on it."""
    count = args.calibration_requests
    return f"{args.setting}-{args.scenario}" + ("" if count == 1 else f"-calibration{count}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    console = Console(stderr=True)
    # `kill` (SIGTERM), and SIGINT where a background job inherited it ignored, stop the run like Ctrl-C: the
    # finished rows are kept and the invocation's time is recorded.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        opts = parse_args(argv)
        if opts.merge:
            merge(opts.out, opts.merge, opts.presets)
        if "--report" in argv or opts.merge:
            print(report(opts.out, opts.benchmarks_md, opts.readme))
            return 0
        opts.out.mkdir(parents=True, exist_ok=True)
        opts.presets.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        run(opts, console)
        print(report(opts.out))
        console.log(f"wall {time.perf_counter() - started:.0f} s")
    except MiunlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; every finished row is stored, rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
