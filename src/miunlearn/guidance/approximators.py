"""Privacy approximation functions ``A``: frozen, differentiable membership scorers that guide ReMI.

Each maps a model's logits and labels to a membership logit ``a`` (positive: "member"). They are
fitted once per target, on shadow-model outputs only, saved, and reused for every deletion request.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from sklearn.metrics import roc_curve
from torch import nn

from miunlearn.config import ApproximatorConfig, RunConfig, TrainConfig, from_dict
from miunlearn.data import Dataset, Splits, TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.guidance.shadows import ShadowOutputs, shadow_store, train_shadows
from miunlearn.registry import Registry
from miunlearn.statistics import cross_entropy, logit_confidence, output_features
from miunlearn.training.executors import ModelSpec, build_executor

APPROXIMATORS: Registry[type[PrivacyApproximator]] = Registry("approximator")


class PrivacyApproximator(nn.Module):
    """``a(x, y; θ)`` computed from the model's logits; its own parameters are frozen after fitting."""

    name: ClassVar[str]  # set by the registry from the name it is registered under
    #: Output statistics the scorer reads; an audit attack on the same statistic is flagged in reports.
    statistics: ClassVar[tuple[str, ...]]
    #: The fields of the ``approximator`` section this approximator reads, as its own validated dataclass
    #: (see :func:`approximator_problems`); ``name``, ``num_shadows`` and ``load`` belong to every approximator.
    Config: ClassVar[type]

    def __init__(self, config: ApproximatorConfig, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes

    @classmethod
    def open_store(cls, config: RunConfig, dataset: Dataset, splits: Splits) -> Path:
        """Open (create or check) the artefact store of the models this approximator is fitted on; called while
        a run is prepared, before any training. Default: the shadow models of D_shadow."""
        return shadow_store(config, dataset.info.num_classes, splits.shadow, dataset.pool.subset(splits.shadow))

    @classmethod
    def prepare(cls, config: RunConfig, dataset: Dataset, splits: Splits, store: Path, console: Console) -> tuple[
            PrivacyApproximator, int]:
        """Train (or load from ``store``) what this approximator is fitted on, and fit it, once per target;
        returns it and how many models were trained now. Default: the shadow models of D_shadow."""
        outputs = train_shadows(ModelSpec(config.model.name, dataset.info, config.model.width),
                                dataset.pool.subset(splits.shadow), config.train, config.approximator.num_shadows,
                                config.approximator_seed, build_executor(config.executor), store,
                                console)
        return fit_approximator(config.approximator, outputs), outputs.trained_now

    @classmethod
    def fit_held_out(cls, config: ApproximatorConfig, factory: Callable[[], nn.Module], held_out: TensorData,
                     num_classes: int, train_size: int, recipe: TrainConfig, seed: int,
                     console: Console) -> PrivacyApproximator:
        """Fit for a deployed model (the ``forget`` workflow) from held-out rows it never saw, with models built
        by ``factory`` and trained by ``recipe``; its training set has ``train_size`` rows. Default: shadow models
        on random halves of ``held_out``."""
        outputs = train_shadows(factory, held_out, recipe, config.num_shadows, seed, console=console)
        return fit_approximator(config, outputs)

    @classmethod
    def rebuild(cls, config: ApproximatorConfig, num_classes: int, meta: dict,
                factory: Callable[[], nn.Module] | None = None) -> PrivacyApproximator:
        """An unfitted instance shaped as the saved one (``meta``: :meth:`metadata` at save time; ``factory``:
        the architecture of any models it holds, where ``meta`` cannot name it)."""
        return cls(config, num_classes)

    def metadata(self) -> dict:
        """What :meth:`rebuild` needs besides the config, saved with the weights."""
        return {}

    @abstractmethod
    def fit(self, shadow: ShadowOutputs) -> PrivacyApproximator:
        """Fit to shadow members/non-members, then freeze."""

    @abstractmethod
    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Membership logit per sample; differentiable in ``logits``."""

    def freeze(self) -> PrivacyApproximator:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def member_probability(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.sigmoid(self(logits.float(), labels))

    def save(self, path: str | Path) -> None:
        from miunlearn.io import atomic_path

        meta = {"approximator": self.name, "num_classes": self.num_classes, "config": asdict(self.config),
                **self.metadata()}
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"miunlearn": json.dumps(meta)})


SHARED_FIELDS = ("name", "num_shadows", "load", "seed")


def _at_least_one(config: object) -> None:
    for f in fields(config):
        if getattr(config, f.name) < 1:
            raise MiunlearnError(f"approximator.{f.name} must be at least 1, got {getattr(config, f.name)}")


@dataclass
class ShadowNNConfig:
    top_k: int = ApproximatorConfig.top_k
    hidden: int = ApproximatorConfig.hidden
    attack_epochs: int = ApproximatorConfig.attack_epochs

    def validate(self) -> None:
        _at_least_one(self)


@dataclass
class GaussianConfig:
    per_class_variance: bool = ApproximatorConfig.per_class_variance

    def validate(self) -> None:
        """Nothing to range-check: a boolean."""


@dataclass
class LossThresholdConfig:
    def validate(self) -> None:
        """No settings of its own."""


def approximator_problems(config: ApproximatorConfig) -> list[str]:
    """Problems of the ``approximator`` section for the approximator it names: its own settings out of range, and
    settings it would ignore that differ from their defaults (the saved config would mislead)."""
    problems = ([f"approximator.seed must be a non-negative integer or null (the run's seed), got {config.seed}"]
                if config.seed is not None and config.seed < 0 else [])
    if config.name not in APPROXIMATORS:
        return problems
    own = APPROXIMATORS.get(config.name).Config
    read = {f.name for f in fields(own)}
    problems += [f"approximator.{f.name}={getattr(config, f.name)!r} is ignored by approximator {config.name!r}; "
                 "remove it" for f in fields(ApproximatorConfig)
                 if f.name not in read and f.name not in SHARED_FIELDS and getattr(config, f.name) != f.default]
    try:
        own(**{key: getattr(config, key) for key in read}).validate()
    except MiunlearnError as exc:
        problems.append(str(exc))
    return problems


def fit_approximator(config: ApproximatorConfig, shadow: ShadowOutputs) -> PrivacyApproximator:
    """Build the approximator named in ``config`` and fit it on shadow outputs."""
    cls = APPROXIMATORS.get(config.name)
    return cls(config, shadow.num_classes).fit(shadow).freeze()


def load_approximator(path: str | Path, factory: Callable[[], nn.Module] | None = None) -> PrivacyApproximator:
    """Reload an approximator written by :meth:`PrivacyApproximator.save` (``factory``: see
    :meth:`PrivacyApproximator.rebuild`)."""
    path = Path(path)
    if not path.is_file():
        raise MiunlearnError(f"approximator file {str(path)!r} does not exist (fit one with a run first)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["miunlearn"])
        state = load_file(str(path))
        name, num_classes, saved_config = meta["approximator"], int(meta["num_classes"]), meta["config"]
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"no {exc} entry" if isinstance(exc, KeyError) else exc
        raise MiunlearnError(f"{path} is not a miunlearn approximator file ({reason})") from None
    config = from_dict(ApproximatorConfig, saved_config, "approximator")
    approximator = APPROXIMATORS.get(name).rebuild(config, num_classes, meta, factory)
    expected = approximator.state_dict()
    wrong = sorted(set(expected) ^ set(state)) + sorted(k for k in set(expected) & set(state)
                                                        if expected[k].shape != state[k].shape)
    if wrong:
        raise MiunlearnError(f"{path} does not fit approximator {name!r} (tensors missing, extra or of another "
                             f"shape: {', '.join(wrong[:5])})")
    approximator.load_state_dict(state)
    if any(v.is_floating_point() and not torch.isfinite(v).all() for v in state.values()):
        raise MiunlearnError(f"{path} holds NaN or infinite values")
    return approximator.freeze()


@APPROXIMATORS.register("shadow-nn")
class ShadowMLP(PrivacyApproximator):
    """Shokri et al. (2017): an MLP on sorted top-k softmax, ``p_y``, cross-entropy and ``s``."""

    Config = ShadowNNConfig
    statistics = ("softmax", "p_y", "loss", "s")

    def __init__(self, config: ApproximatorConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        dim = min(config.top_k, num_classes) + 3
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(nn.Linear(dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden),
                                 nn.ReLU(), nn.Linear(config.hidden, 1))

    def fit(self, shadow: ShadowOutputs) -> ShadowMLP:
        feats = output_features(shadow.logits, shadow.labels, self.config.top_k)
        self.mean.copy_(feats.mean(0))
        self.std.copy_(feats.std(0).clamp_min(1e-6))
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3, weight_decay=1e-4)
        x, t = (feats - self.mean) / self.std, shadow.member
        for _ in range(self.config.attack_epochs):
            for idx in torch.randperm(len(t), generator=generator).split(256):
                loss = F.binary_cross_entropy_with_logits(self.net(x[idx]).squeeze(1), t[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return self

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        feats = output_features(logits, labels, self.config.top_k)
        return self.net((feats - self.mean) / self.std).squeeze(1)


@APPROXIMATORS.register("gaussian")
class GaussianLikelihoodRatio(PrivacyApproximator):
    """Offline-LiRA in spirit: ``log N(s; μ_in, σ_in²) − log N(s; μ_out, σ_out²)``, global or per class."""

    Config = GaussianConfig
    statistics = ("s",)

    def __init__(self, config: ApproximatorConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        groups = num_classes if config.per_class_variance else 1
        for key in ("mu_in", "sigma_in", "mu_out", "sigma_out"):
            self.register_buffer(key, torch.ones(groups))

    def fit(self, shadow: ShadowOutputs) -> GaussianLikelihoodRatio:
        s = logit_confidence(shadow.logits.float(), shadow.labels)
        groups = shadow.labels if self.config.per_class_variance else torch.zeros_like(shadow.labels)
        for g in range(len(self.mu_in)):
            for flag, mu, sigma in ((1, self.mu_in, self.sigma_in), (0, self.mu_out, self.sigma_out)):
                values = s[(groups == g) & (shadow.member == flag)]
                if len(values) < 2:  # a class missing from the shadow halves: fall back to the global fit
                    values = s[shadow.member == flag]
                mu[g] = values.mean()
                sigma[g] = values.std().clamp_min(1e-3)
        return self

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = logit_confidence(logits.float(), labels)
        g = labels if self.config.per_class_variance else torch.zeros_like(labels)
        return _log_normal(s, self.mu_in[g], self.sigma_in[g]) - _log_normal(s, self.mu_out[g], self.sigma_out[g])


def _log_normal(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)


@APPROXIMATORS.register("loss-threshold")
class LossThreshold(PrivacyApproximator):
    """Yeom et al. (2018): ``(τ − CE) / T``, τ the shadow threshold with the best balanced accuracy."""

    Config = LossThresholdConfig
    statistics = ("loss", "p_y", "s")

    def __init__(self, config: ApproximatorConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.register_buffer("tau", torch.zeros(()))
        self.register_buffer("temperature", torch.ones(()))

    def fit(self, shadow: ShadowOutputs) -> LossThreshold:
        loss = cross_entropy(shadow.logits, shadow.labels).numpy()
        fpr, tpr, thresholds = roc_curve(shadow.member.numpy(), -loss)
        best = int(np.argmax(tpr - fpr))
        self.tau.fill_(float(-thresholds[best]) if np.isfinite(thresholds[best]) else float(np.median(loss)))
        self.temperature.fill_(max(float(loss.std()), 1e-3))
        return self

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.tau - cross_entropy(logits, labels)) / self.temperature
