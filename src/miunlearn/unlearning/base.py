"""One interface for every unlearning method, and the public :func:`unlearn` entry point."""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from miunlearn.config import TrainConfig, from_dict
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.guidance.approximators import PrivacyApproximator
from miunlearn.registry import Registry
from miunlearn.unlearning.work import WorkLimitReached, count_work, max_cost_problem, retrain_work


@dataclass
class UnlearningRequest:
    """Everything a method may use. Methods declare which parts they need in ``requires``."""

    forget: TensorData
    retain: TensorData | None = None
    reference: TensorData | None = None
    """D_ref: non-members the owner holds (what "never seen" looks like)."""
    approximator: PrivacyApproximator | None = None
    recipe: TrainConfig = field(default_factory=TrainConfig)
    """The target's training recipe (retraining uses it; its ``device`` and ``progress`` apply to all)."""
    seed: int = 0


@dataclass
class UnlearningRecord:
    """What happened: the method, its resolved hyper-parameters, time, work, per-epoch log, why it stopped."""

    method: str
    config: dict[str, Any]
    seconds: float
    history: list[dict[str, float]]
    stop_reason: str
    samples_trained: int = 0
    """Samples the model (and copies it made) processed with autograd on, counted by :func:`count_work`."""
    samples_inferred: int = 0
    """... and with autograd off."""


@dataclass
class UnlearningResult:
    model: nn.Module
    record: UnlearningRecord


class UnlearningMethod(ABC):
    """A method: a hyper-parameter dataclass ``Config`` and a :meth:`run` that edits a model copy."""

    name: ClassVar[str]  # set by the registry from the name it is registered under
    Config: ClassVar[type]
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.Config()
        elif isinstance(config, dict):
            config = from_dict(self.Config, config, f"unlearn.params.{self.name}")
        elif not (is_dataclass(config) and isinstance(config, self.Config)):
            raise MiunlearnError(f"{self.name} takes a {self.Config.__name__} or a dict, got {type(config).__name__}")
        self.config = config
        self.validate()

    def validate(self) -> None:  # noqa: B027  (optional hook; most methods have ranges to check)
        """Raise :class:`MiunlearnError` for out-of-range hyper-parameters."""

    def approximator_problem(self, approximator: type[PrivacyApproximator]) -> str | None:
        """Why this method cannot be guided by ``approximator`` (a registered class), if it cannot."""
        return None

    def request_problem(self, forget_size: int, approximator: type[PrivacyApproximator]) -> str | None:
        """Why this method cannot serve a request of ``forget_size`` samples under ``approximator``, if it cannot."""
        return None

    def model_problem(self, model: nn.Module) -> str | None:
        """Why this method's settings do not fit ``model`` (e.g. parameter names it refers to), if they do not:
        checked on the untrained model, before anything is trained."""
        return None

    @abstractmethod
    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        """Unlearn in place on ``model`` (already a copy), appending each epoch's (or check's) log row to
        ``history`` as it is made, so a run a work limit stops keeps the rows it logged; return the stop reason."""


METHODS: Registry[type[UnlearningMethod]] = Registry("unlearning method")


def build_method(name: str, config: Any = None) -> UnlearningMethod:
    return METHODS.get(name)(config)


def _as_model_input(data: TensorData | None) -> TensorData | None:
    """Data as models take it: float64 features (scikit-learn's default) to float32, any integer labels to int64."""
    if data is None:
        return None
    x, y = torch.as_tensor(data.x), torch.as_tensor(data.y)
    if x.dtype == torch.float64:
        x = x.float()
    if y.dtype != torch.long and not y.is_floating_point():
        y = y.long()
    return data if x is data.x and y is data.y else TensorData(x, y)


def _cost_basis(retain: TensorData | None, max_cost: float) -> int:
    """|D_r|, which ``max_cost`` needs to price a retrain (checked before anything runs)."""
    problem = max_cost_problem(max_cost)
    if problem:
        raise MiunlearnError(problem)
    if retain is None or len(retain) == 0:
        raise MiunlearnError("max_cost is a fraction of retraining's work on D_r; pass retain=...")
    return len(retain)


def unlearn(model: nn.Module, forget: TensorData, retain: TensorData | None = None, method: str = "remi",
            config: Any = None, *, reference: TensorData | None = None,
            approximator: PrivacyApproximator | None = None, recipe: TrainConfig | None = None,
            seed: int = 0, max_cost: float | None = None) -> UnlearningResult:
    """Remove ``forget``'s influence from ``model`` with a registered method; ``model`` is not modified.

    Returns the new model and an :class:`UnlearningRecord`. ``config`` is the method's config dataclass
    or a dict of its fields. The time in the record covers the method's own work only; so do its sample
    counts (``samples_trained``/``samples_inferred``), which need no cooperation from the method.

    ``max_cost`` caps that work at a fraction of a retrain's (``recipe.epochs`` passes over ``retain``): the
    method is stopped before the forward pass that would exceed it and its model returned as it stands, so
    any method can be asked how close it gets on a fixed compute budget (``0.05``: twenty times cheaper
    than retraining). The record then says so and holds the rows logged before the stop.
    """
    algorithm = build_method(method, config)
    forget, retain, reference = (_as_model_input(part) for part in (forget, retain, reference))
    request = UnlearningRequest(forget, retain, reference, approximator, recipe or TrainConfig(), seed)
    if len(forget) == 0:
        raise MiunlearnError("the forget set is empty")
    missing = [part for part in algorithm.requires if getattr(request, part) is None or
               (isinstance(getattr(request, part), TensorData) and len(getattr(request, part)) == 0)]
    if missing:
        raise MiunlearnError(f"method {method!r} needs {', '.join(missing)}; pass "
                             + ", ".join(f"{part}=..." for part in missing))
    problem = algorithm.model_problem(model)
    if problem:
        raise MiunlearnError(problem)
    limit = None if max_cost is None else max_cost * retrain_work(request.recipe.epochs, _cost_basis(retain, max_cost))
    new_model = copy.deepcopy(model)
    torch.manual_seed(seed)
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    with count_work(new_model, limit) as work:
        try:
            stop_reason = algorithm.run(new_model, request, history)
        except WorkLimitReached:
            stop_reason = (f"work limit reached ({max_cost:g} of a retrain's work, {limit:.0f} "
                           "trained-sample equivalents): stopped before the pass that would exceed it")
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    new_model.eval()
    record = UnlearningRecord(method, asdict(algorithm.config), seconds, history, stop_reason,
                              work.samples_trained, work.samples_inferred)
    return UnlearningResult(new_model, record)
