"""Run configuration: typed dataclasses, with YAML files and ``key=value`` overrides on top.

The dataclasses are the source of truth: a YAML file or a ``section.key=value`` override may only set
fields that exist (a typo is an error that suggests the closest field), and values are converted to
the field's type. Per-method hyper-parameters live in ``unlearn.<method>`` and are validated against
that method's own config dataclass when the method is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from miunlearn.errors import MiunlearnError


@dataclass
class DataConfig:
    """Which dataset, where its files are, and how its training pool is split into roles."""

    name: str = "digits"
    root: str | None = None
    """Folder holding the dataset's files (``npz``: the ``.npz`` file itself)."""
    download: bool = False
    """Let torchvision download missing files (needs a network)."""
    subset: int | None = None
    """Use at most this many samples of the training pool (before the role split), for fast runs."""
    test_subset: int | None = None
    """Use at most this many test samples."""
    label_noise: float = 0.0
    """Share of the training pool whose labels are replaced by another class, drawn at random (test labels are
    kept): a target then memorises those samples, so membership leaks, as in the demo."""
    train_fraction: float = 0.4
    ref_fraction: float = 0.1
    shadow_fraction: float = 0.3
    audit_fraction: float = 0.2
    seed: int = 0


DEFAULT_FORGET_FRACTION = 0.1


@dataclass
class ForgetConfig:
    """Which training samples the deletion request names."""

    mode: str = "random"
    """``random`` (``fraction`` or ``count`` of D_train), ``class`` (all samples of ``classes``) or
    ``indices`` (positions in D_train). Fields another mode would read must stay unset."""
    fraction: float | None = None
    """``random`` only; with neither ``fraction`` nor ``count`` given, :data:`DEFAULT_FORGET_FRACTION`."""
    count: int | None = None
    classes: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    requests: int = 1
    """Sequential deletion: split the selected samples into this many disjoint random requests, each
    applied to the previous request's result and audited against retraining on what remains."""
    seed: int = 0


@dataclass
class ModelConfig:
    name: str = "mlp"
    width: int | None = None
    """Width multiplier/hidden size; ``None`` takes the model's default."""
    weights: str | None = None
    """A ``.safetensors`` file with the target's weights: skip training the target."""


@dataclass
class TrainConfig:
    """The training recipe, shared by the target, the shadow models and retraining."""

    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    augment: bool = False
    """Random crop (pad 4) + horizontal flip, for images only."""
    device: str = "auto"
    precision: str = "fp32"
    """``fp32``, or ``bf16``/``fp16`` autocast (CUDA only; ignored on CPU)."""
    seed: int = 0
    progress: bool = True
    channels_last: bool = True
    """Store image models and batches channels-last (NHWC): what tensor-core convolutions want, and faster
    for the ``cnn`` on CPU too (measured in BENCHMARKS.md). Same results up to numerics; ignored for tabular
    data and MLPs."""
    compile: bool = False
    """``torch.compile`` the model for training: faster steps after a compile of tens of seconds per model."""


@dataclass
class ApproximatorConfig:
    """The privacy approximation function ``A`` that guides ReMI (spec: "Privacy approximation")."""

    name: str = "folds"
    num_shadows: int = 4
    """Shadow models (``folds``: the folds of D_train, one model trained without each; ``per-example``: OUT models
    at the target's training-set size on D_shadow ∪ D_ref)."""
    calibration_fraction: float = 0.1
    """``folds`` and ``per-example``: share of D_shadow ∪ D_ref taken as calibration samples (never seen by the
    target nor the OUT models), against which ReMI's stopping rule compares D_f."""
    top_k: int = 3
    hidden: int = 64
    attack_epochs: int = 300
    per_class_variance: bool = False
    load: str | None = None
    """A saved approximator (``approximator.safetensors`` of an earlier run) to reuse."""
    seed: int | None = None
    """Seed of the approximator's own draw (its calibration samples, its models' training sets and
    initialisations); default: the run's ``seed``. Another value fits another approximator for the same target:
    how much a result owes to that draw (BENCHMARKS.md, "How much of ReMI's figure is the approximator's draw")."""

    def seed_or(self, run_seed: int) -> int:
        """The seed of the approximator's draw in a run seeded ``run_seed``."""
        return run_seed if self.seed is None else self.seed


@dataclass
class UnlearnConfig:
    methods: list[str] = field(default_factory=lambda: ["remi", "retrain"])
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method hyper-parameters, e.g. ``unlearn.params.remi.alpha=2``."""
    preset: str | None = None
    """A YAML file of tuned hyper-parameters (``benchmarks/presets/*.yaml``): its ``unlearn.params`` fill in
    every method's settings that ``params`` does not set itself. Resolved on loading (then None)."""
    max_cost: float | None = None
    """Stop every method but ``retrain`` (the yardstick) at this fraction of a retrain's work and keep its model as
    it stands (0.05: twenty times cheaper than retraining): how close each gets on a fixed compute budget."""


@dataclass
class AuditConfig:
    attacks: list[str] = field(default_factory=lambda: ["loss", "entropy", "m-entropy", "mia-efficacy"])
    low_fpr: float = 0.01


@dataclass
class ExecutorConfig:
    """Where the shadow and reference models are trained: in this process (``local``) or as Ray tasks (``ray``)."""

    name: str = "local"
    concurrent: int = 1
    """Train up to this many models with equal training-set sizes together on one device (one Ray task per group)."""
    address: str | None = None
    """``ray`` only: the cluster to join (``ray.init(address=...)``, e.g. ``auto``); None starts a local Ray."""
    gpus_per_task: float = 0.0
    """``ray`` only: GPUs per task; fractions share one GPU between tasks (0.25: four models per GPU)."""
    cpus_per_task: float = 1.0
    """``ray`` only: CPUs per task, also each worker's thread count."""
    cache_dir: str | None = None
    """Root of the artefact store of shadow and reference models (default: $MIUNLEARN_CACHE or
    ~/.cache/miunlearn). Ray workers write into it: on a multi-machine cluster it must be shared storage."""


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    forget: ForgetConfig = field(default_factory=ForgetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    approximator: ApproximatorConfig = field(default_factory=ApproximatorConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    seed: int = 0
    """Master seed: sets every section's seed that was not given explicitly."""

    @property
    def approximator_seed(self) -> int:
        """The seed of the approximator's draw: ``approximator.seed``, else the run's."""
        return self.approximator.seed_or(self.seed)


def to_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys and converting types."""
    data = data or {}
    if not isinstance(data, dict):
        raise MiunlearnError(f"config section {where or 'top level'!r} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    declared = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in declared:
            raise MiunlearnError(_unknown_key_message(dotted, key, sorted(declared)))
        factory = declared[key].default_factory
        if is_dataclass(hints[key]) and isinstance(value, dict) and factory is not MISSING:
            value = asdict(factory()) | value  # a section's keys change its own default, not the class's
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


def _unknown_key_message(dotted: str, key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f"; did you mean {dotted.rsplit('.', 1)[0] + '.' if '.' in dotted else ''}{close[0]}?" if close else ""
    return f"unknown config key {dotted!r}{hint} (valid here: {', '.join(valid)})"


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except MiunlearnError as exc:
                errors.append(str(exc))
        raise MiunlearnError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise MiunlearnError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise MiunlearnError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise MiunlearnError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MiunlearnError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MiunlearnError(f"{where} must be a string, got {value!r}")
        return str(value)
    return value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=0.1", "unlearn.methods=[remi,retrain]"]`` into a nested dict.

    Values are parsed as YAML, so numbers, booleans, ``null`` and ``[a,b]`` lists work as expected.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MiunlearnError(f"override {item!r} is not of the form section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise MiunlearnError(f"override {item!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (optional), apply ``key=value`` overrides, validate, resolve seeds."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(path, "config file")
        if not isinstance(data, dict):
            raise MiunlearnError(f"config file {str(path)!r} must hold a mapping of sections (data:, train:, ...), "
                                 f"not a {type(data).__name__}")
    data = merge(data, parse_overrides(overrides or []))
    config = resolve_forget(resolve_seeds(from_dict(RunConfig, data), data))
    if config.unlearn.preset:
        # Resolved: the preset's values now stand in params, so a saved config needs no preset file.
        config.unlearn.params = merge(preset_params(config.unlearn.preset), config.unlearn.params)
        config.unlearn.preset = None
    return config


def read_yaml(path: str | Path, what: str, missing_hint: str = "") -> Any:
    """A YAML file's content (``{}`` when empty); one-line errors for a missing, non-UTF-8 or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise MiunlearnError(f"{what} {str(path)!r} does not exist{missing_hint}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise MiunlearnError(f"{what} {str(path)!r} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise MiunlearnError(f"{what} {str(path)!r} is not valid YAML: {exc}".splitlines()[0]) from None


def preset_params(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``unlearn.params`` of a preset file (tuned settings written by ``benchmarks/leaderboard.py``)."""
    data = read_yaml(Path(path).expanduser(), "unlearn.preset file", " (presets: benchmarks/presets/*.yaml)")
    params = (data.get("unlearn") or {}).get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise MiunlearnError(f"unlearn.preset file {str(path)!r} has no unlearn.params mapping of method -> settings")
    return params


def resolve_seeds(config: RunConfig, given: dict[str, Any]) -> RunConfig:
    """Give every section the master seed unless that section set its own."""
    for section in ("data", "forget", "train"):
        if "seed" not in (given.get(section) or {}):
            setattr(config, section, dataclasses.replace(getattr(config, section), seed=config.seed))
    return config


def resolve_forget(config: RunConfig) -> RunConfig:
    """A random forget set with neither size given takes :data:`DEFAULT_FORGET_FRACTION` (saved as such)."""
    forget = config.forget
    if forget.mode == "random" and forget.fraction is None and forget.count is None:
        config.forget = dataclasses.replace(forget, fraction=DEFAULT_FORGET_FRACTION)
    return config


def number_problems(config: Any, where: str = "") -> list[str]:
    """Every non-finite number and every negative seed in a (nested) config dataclass or dict."""
    items = ({f.name: getattr(config, f.name) for f in fields(config)} if is_dataclass(config) else dict(config))
    problems = []
    for key, value in items.items():
        dotted = f"{where}.{key}" if where else str(key)
        if is_dataclass(value) or isinstance(value, dict):
            problems += number_problems(value, dotted)
        elif isinstance(value, (list, tuple)):
            problems += [f"{dotted}[{i}] must be finite, got {v}" for i, v in enumerate(value)
                         if isinstance(v, float) and not math.isfinite(v)]
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{dotted} must be finite, got {value}")
        elif key == "seed" and isinstance(value, int) and not isinstance(value, bool) and value < 0:
            problems.append(f"{dotted} must not be negative, got {value}")
    return problems


def save_config(config: RunConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
