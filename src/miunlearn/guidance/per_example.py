"""The per-example approximator: OUT models that predict, per sample, what a retrained model would output.

A model trained on data disjoint from D_train is an OUT model for *every* sample of D_train, so K of them,
trained once per target at the target's training-set size and recipe on D_shadow ∪ D_ref, give each
forgotten sample its own OUT mean ``μ_out(x)`` of ``s`` and a pooled spread ``σ_out`` (spec: "Beyond the
paper: per-example targets"). A slice of that pool is held out from every OUT model: calibration samples,
never seen by the target nor by the OUT models, whose z-scores ``(s − μ_out)/σ_out`` show how a non-member
looks under the current model. The models live in the artefact store and inside the saved approximator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn.artefacts import model_key, open_store, store_folder
from miunlearn.config import ApproximatorConfig, RunConfig, TrainConfig
from miunlearn.data import Dataset, DatasetInfo, Splits, TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.guidance.approximators import APPROXIMATORS, PrivacyApproximator, _log_normal
from miunlearn.guidance.shadows import ShadowOutputs
from miunlearn.statistics import logit_confidence
from miunlearn.training import predict_logits, resolve_device
from miunlearn.training.executors import LocalExecutor, ModelJob, ModelSpec, build_executor


@dataclass
class PerExampleConfig:
    calibration_fraction: float = ApproximatorConfig.calibration_fraction

    def validate(self) -> None:
        if not 0 < self.calibration_fraction < 1:
            raise MiunlearnError("approximator.calibration_fraction must be in (0, 1), got "
                                 f"{self.calibration_fraction}")


def out_model_plan(splits: Splits, calibration_fraction: float, count: int, seed: int) -> dict[str, np.ndarray]:
    """Which samples the OUT models train on: pool = D_shadow ∪ D_ref minus the calibration slice; model k
    trains on the first ``min(|D_train|, |pool|)`` samples of its own permutation of the pool."""
    return held_out_plan(np.union1d(splits.shadow, splits.ref), len(splits.train), calibration_fraction, count, seed)


def held_out_plan(candidates: np.ndarray, train_size: int, calibration_fraction: float, count: int,
                  seed: int) -> dict[str, np.ndarray]:
    """Divide ``candidates`` (samples the target never saw) into calibration samples and the OUT models' pool;
    model k trains on the first ``min(train_size, |pool|)`` samples of its own permutation of the pool."""
    if not 0 < calibration_fraction < 1:
        raise MiunlearnError(f"approximator.calibration_fraction must be in (0, 1), got {calibration_fraction}")
    rng = np.random.default_rng([seed, 0x0E7])
    shuffled = rng.permutation(candidates)
    n_cal = max(2, int(round(calibration_fraction * len(candidates))))
    calibration, pool = np.sort(shuffled[:n_cal]), np.sort(shuffled[n_cal:])
    if len(pool) < 2:
        raise MiunlearnError(f"the per-example approximator needs more held-out samples: {len(candidates)} leave "
                             f"{len(pool)} for its OUT models after {n_cal} calibration samples")
    size = min(train_size, len(pool))
    orders = np.stack([rng.permutation(len(pool))[:size] for _ in range(count)])
    return {"pool_indices": pool, "calibration": calibration, "orders": orders}


def out_model_jobs(spec: Callable[[], nn.Module], orders: np.ndarray, recipe: TrainConfig, first_seed: int,
                   store: Path | None, stem: str, label: str) -> list[ModelJob]:
    """One training job per row of ``orders`` (positions in the data they train on), with the target's recipe and
    seeds ``first_seed + k``; each model cached as ``store/<stem>-KK.safetensors`` when there is a store."""
    return [ModelJob(spec, order, replace(recipe, seed=first_seed + k),
                     store / f"{stem}-{k:02d}.safetensors" if store else None, f"{label} {k + 1}/{len(orders)}")
            for k, order in enumerate(orders)]


@dataclass(frozen=True)
class ModelSeries:
    """How :meth:`PerExampleOut.prepare` seeds and names the models it trains: seeds ``seed · 1000 + seed_offset
    + k``; files ``<stem>-KK.safetensors`` in a store under ``folder``, keyed by ``key_kind``; ``label`` and
    ``what`` in progress and error messages."""

    seed_offset: int
    stem: str
    label: str
    key_kind: str
    folder: str
    what: str


@dataclass
class OutPredictions:
    """The OUT models on some samples: per-sample mean ``s`` (``μ_out``), log of their mean predicted distribution,
    and their mean accuracy (how often a model that never saw the samples classifies them right)."""

    mu: torch.Tensor
    log_probs: torch.Tensor
    accuracy: float


@APPROXIMATORS.register("per-example")
class PerExampleOut(PrivacyApproximator):
    """``μ_out(x)`` from K OUT models, a pooled ``σ_out``, and held-out calibration samples.

    As a membership logit (``forward``, for ReMI's population objective and reports) it is a global Gaussian
    likelihood ratio on ``s``: IN fitted on the OUT models' own training samples, OUT on the calibration samples.
    """

    statistics = ("s",)
    Config = PerExampleConfig
    series = ModelSeries(500, "out", "OUT model", "out", "out-models", "OUT models")

    def __init__(self, config: ApproximatorConfig, num_classes: int, spec: Callable[[], nn.Module] | None = None,
                 count: int = 0, calibration_size: int = 0, input_shape: tuple[int, ...] = ()) -> None:
        super().__init__(config, num_classes)
        self.spec = spec
        self.out_models = nn.ModuleList([spec() for _ in range(count)] if spec is not None else [])
        self.register_buffer("calibration_x", torch.zeros(calibration_size, *input_shape))
        self.register_buffer("calibration_y", torch.zeros(calibration_size, dtype=torch.long))
        for key in ("sigma_out", "mu_in", "sigma_in", "mu_non_member", "sigma_non_member"):
            self.register_buffer(key, torch.ones(()))
        self._calibration_out: OutPredictions | None = None

    @classmethod
    def plan(cls, config: RunConfig, splits: Splits) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The OUT models' plan (what their store records: ``orders``, positions in the samples they train on, and
        the ``calibration`` samples) and the pool indices of the samples they train on."""
        approximator = config.approximator
        plan = out_model_plan(splits, approximator.calibration_fraction, approximator.num_shadows,
                              config.approximator_seed)
        return plan, plan["pool_indices"]

    @classmethod
    def store_location(cls, config: RunConfig, dataset: Dataset, splits: Splits) -> tuple[Path, dict, dict]:
        """Where the models' artefact store is, its key (the content of the samples they train on and of the
        calibration samples) and the plan it records."""
        plan, train_on = cls.plan(config, splits)
        data = dataset.pool.subset(np.r_[train_on, plan["calibration"]])
        key = model_key(config, dataset.info.num_classes, cls.series.key_kind,
                        config.approximator_seed, config.approximator.num_shadows, data)
        key["calibration_fraction"] = config.approximator.calibration_fraction
        return store_folder(cls.series.folder, key, config.executor.cache_dir), key, plan

    @classmethod
    def open_store(cls, config: RunConfig, dataset: Dataset, splits: Splits) -> Path:
        folder, key, plan = cls.store_location(config, dataset, splits)
        open_store(folder, key, plan, cls.series.what, "delete that folder to retrain them")
        return folder

    @classmethod
    def prepare(cls, config: RunConfig, dataset: Dataset, splits: Splits, store: Path, console: Console) -> tuple[
            PerExampleOut, int]:
        plan, train_on = cls.plan(config, splits)
        spec = ModelSpec(config.model.name, dataset.info, config.model.width)
        data = dataset.pool.subset(train_on)
        first_seed = config.approximator_seed * 1000 + cls.series.seed_offset
        jobs = out_model_jobs(spec, plan["orders"], config.train, first_seed, store, cls.series.stem, cls.series.label)
        result = build_executor(config.executor).run(jobs, data, console)
        return (cls.from_plan(config.approximator, spec, result.models, data, plan,
                              dataset.pool.subset(plan["calibration"]), dataset.info.num_classes,
                              resolve_device(config.train.device)),
                result.trained)

    @classmethod
    def from_plan(cls, config: ApproximatorConfig, spec: Callable[[], nn.Module], models: list[nn.Module],
                  data: TensorData, plan: dict[str, np.ndarray], calibration: TensorData, num_classes: int,
                  device: torch.device | str) -> PerExampleOut:
        """Fit from the models :meth:`prepare` trained on ``data`` by ``plan``."""
        members = [data.subset(order[:1000]) for order in plan["orders"]]
        approximator = cls.from_models(config, spec, models, calibration, members, num_classes, device)
        approximator.calibration_out()  # part of the fit, not of every request
        return approximator

    @classmethod
    def fit_held_out(cls, config: ApproximatorConfig, factory: Callable[[], nn.Module], held_out: TensorData,
                     num_classes: int, train_size: int, recipe: TrainConfig, seed: int,
                     console: Console) -> PerExampleOut:
        """OUT models at the deployed model's training-set size on part of ``held_out``; the rest calibrates."""
        count = config.num_shadows
        plan = held_out_plan(np.arange(len(held_out)), train_size, config.calibration_fraction, count, seed)
        pool = held_out.subset(plan["pool_indices"])
        jobs = out_model_jobs(factory, plan["orders"], recipe, seed * 1000 + cls.series.seed_offset, None,
                              cls.series.stem, cls.series.label)
        models = LocalExecutor().run(jobs, pool, console).models
        return cls.from_plan(config, factory, models, pool, plan, held_out.subset(plan["calibration"]), num_classes,
                             resolve_device(recipe.device))

    @classmethod
    def from_models(cls, config: ApproximatorConfig, spec: Callable[[], nn.Module], models: list[nn.Module],
                    calibration: TensorData, members: list[TensorData], num_classes: int,
                    device: torch.device | str = "cpu") -> PerExampleOut:
        """Fit from trained OUT models (``spec`` builds their architecture), samples none of them nor the target
        saw (``calibration``), and some of each model's own training samples (``members``, for ``forward``).
        The approximator lives on ``device`` (the recipe's): its OUT models' forward passes are most of its cost."""
        approximator = cls(config, num_classes, spec, len(models), len(calibration), tuple(calibration.x.shape[1:]))
        for mine, trained in zip(approximator.out_models, models):
            mine.load_state_dict(trained.state_dict())
        approximator.to(device)
        approximator.calibration_x.copy_(calibration.x)
        approximator.calibration_y.copy_(calibration.y)
        approximator.fit_statistics(members)
        return approximator.freeze()

    @classmethod
    def rebuild(cls, config: ApproximatorConfig, num_classes: int, meta: dict,
                factory: Callable[[], nn.Module] | None = None) -> PerExampleOut:
        model, shape = meta["model"], meta.get("input_shape")
        if model is not None:
            info = DatasetInfo(**{**model["info"], "input_shape": tuple(model["info"]["input_shape"])})
            factory, shape = ModelSpec(model["name"], info, model["width"]), shape or info.input_shape
        elif factory is None:
            raise MiunlearnError("this per-example approximator holds OUT models of a model outside miunlearn's "
                                 "registry; reload it through the state folder it belongs to")
        return cls(config, num_classes, factory, meta["count"], meta["calibration_size"], tuple(shape))

    def metadata(self) -> dict:
        """The OUT models' architecture when it is a registered model (else the loader supplies it)."""
        model = ({"name": self.spec.name, "info": asdict(self.spec.info), "width": self.spec.width}
                 if isinstance(self.spec, ModelSpec) else None)
        return {"model": model, "count": len(self.out_models), "calibration_size": len(self.calibration_y),
                "input_shape": list(self.calibration_x.shape[1:])}

    def fit(self, shadow: ShadowOutputs) -> PerExampleOut:
        raise MiunlearnError("the per-example approximator is fitted from its own OUT models (prepare), "
                             "not from shadow outputs")

    @property
    def calibration(self) -> TensorData:
        return TensorData(self.calibration_x, self.calibration_y)

    def fit_statistics(self, members: list[TensorData]) -> None:
        """Pooled ``σ_out`` and the global IN/OUT Gaussians, from the OUT models' outputs.

        ``σ_out`` is the spread of one model's ``s`` around the mean of the *other* OUT models (leave one out):
        the spread a retrained model's ``s`` shows around ``μ_out``. With one model there is no such spread;
        then it is the spread of ``s`` over the calibration samples (wider: a cautious z-score)."""
        s = self._scores(self.calibration)  # (K, n_cal)
        if len(s) > 1:
            loo = (s.sum(0, keepdim=True) - s) / (len(s) - 1)
            spread = (s - loo).std() * (1 - 1 / len(s)) ** 0.5  # remove the leave-one-out mean's own noise
        else:
            spread = s.std()
        self.sigma_out.fill_(float(spread.clamp_min(1e-3)))
        member_s = torch.cat([logit_confidence(predict_logits(m, d), d.y) for m, d in zip(self.out_models, members)])
        for mu, sigma, values in ((self.mu_in, self.sigma_in, member_s),
                                  (self.mu_non_member, self.sigma_non_member, s)):
            mu.fill_(float(values.mean()))
            sigma.fill_(float(values.std().clamp_min(1e-3)))

    @torch.no_grad()
    def _scores(self, data: TensorData) -> torch.Tensor:
        """``s`` of every OUT model on ``data``: (K, n), on the CPU."""
        return torch.stack([logit_confidence(predict_logits(m, data), data.y.cpu()) for m in self.out_models])

    def calibration_out(self) -> OutPredictions:
        """:meth:`predict_out` on the calibration samples, worked out once: they are fixed, and every request would
        otherwise repeat K passes over them. Tensors on the device it was first asked on."""
        if self._calibration_out is None:
            self._calibration_out = self.predict_out(self.calibration)
        return self._calibration_out

    def out_statistics(self, data: TensorData) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample ``μ_out`` of ``s`` on ``data`` (on ``data``'s device) and the pooled ``σ_out``."""
        return self.predict_out(data).mu, self.sigma_out.to(data.y.device)

    @torch.no_grad()
    def predict_out(self, data: TensorData) -> OutPredictions:
        """What the OUT models, which never saw ``data``, say of it (one forward pass of each, on ``data``'s device)."""
        logits = torch.stack([predict_logits(m, data) for m in self.out_models])  # (K, n, C), on the CPU
        y = data.y.cpu()
        mu = torch.stack([logit_confidence(lg, y) for lg in logits]).mean(0)
        log_probs = torch.softmax(logits, 2).mean(0).clamp_min(1e-12).log()
        accuracy = float((logits.argmax(2) == y).float().mean())
        return OutPredictions(mu.to(data.y.device), log_probs.to(data.y.device), accuracy)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        s = logit_confidence(logits.float(), labels)
        return _log_normal(s, self.mu_in, self.sigma_in) - _log_normal(s, self.mu_non_member, self.sigma_non_member)
