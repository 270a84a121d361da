"""Executors: train a list of model jobs (shadow or reference models) in this process or as Ray tasks.

A job is one model: how to build it, which samples of a shared tensor pool it trains on, its recipe (with
its seed) and the artefact file its weights go to. A job whose artefact already exists is loaded, not
trained. Every job seeds its own initialisation and batch order, so where it runs does not change its
weights: the ``ray`` executor gives the ``local`` executor's models.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from miunlearn.artefacts import discard, record_digest, verified
from miunlearn.config import ExecutorConfig, TrainConfig
from miunlearn.data import DatasetInfo, TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.models import build_model, load_weights, save_weights
from miunlearn.registry import Registry
from miunlearn.training.concurrent import train_models_concurrently
from miunlearn.training.loop import place_model, train_model

RAY_HINT = "the ray executor needs Ray: pip install 'miunlearn[ray]'"


@dataclass(frozen=True)
class ModelSpec:
    """A picklable model factory: a Ray worker rebuilds the model from it without the driver's data."""

    name: str
    info: DatasetInfo
    width: int | None = None

    def __call__(self) -> nn.Module:
        return build_model(self.name, self.info, self.width)


@dataclass
class ModelJob:
    factory: Callable[[], nn.Module]
    """Builds the untrained model; sent to Ray workers, so it must pickle small (a :class:`ModelSpec`)."""
    indices: np.ndarray
    """Positions in the executor's data of this model's training samples, in training order."""
    recipe: TrainConfig
    """The training recipe; its seed also seeds the model's initialisation."""
    path: Path | None
    """The artefact: loaded instead of training when present and matching the sha256 recorded beside it
    (a damaged one is retrained), written (atomically, then its sha256) after training."""
    desc: str


@dataclass
class TrainedModels:
    models: list[nn.Module]
    """One per job, in job order, in eval mode."""
    trained: int
    loaded: int
    seconds: float


EXECUTORS: Registry[Callable[[ExecutorConfig], Executor]] = Registry("executor")


class Executor:
    """Loads the jobs that have artefacts and hands the rest, grouped for concurrent training, to :meth:`train`."""

    def __init__(self, config: ExecutorConfig) -> None:
        self.config = config

    def run(self, jobs: Sequence[ModelJob], data: TensorData, console: Console | None = None) -> TrainedModels:
        console = console or Console(stderr=True, quiet=True)
        start = time.perf_counter()
        models: list[nn.Module | None] = [None] * len(jobs)
        todo = []
        for i, job in enumerate(jobs):
            if job.path is not None and verified(job.path):
                models[i] = load_weights(job.factory(), job.path)
                continue
            if job.path is not None and job.path.is_file():
                console.log(f"{job.path} does not match its recorded sha256: retraining it")
                discard(job.path)
            todo.append(i)
        if len(todo) < len(jobs):
            console.log(f"{len(jobs) - len(todo)} of {len(jobs)} model(s) loaded from their artefacts")
        groups = [[todo[p] for p in group] for group in group_jobs([jobs[i] for i in todo], self.config.concurrent)]
        trained = self.train([[jobs[i] for i in group] for group in groups], data, console)
        for group, group_models in zip(groups, trained):
            for i, model in zip(group, group_models):
                models[i] = model
        for job, model in zip(jobs, models):  # loaded models as training leaves them: same device and memory
            place_model(model, job.recipe, data)  # format, so their outputs match to the bit whichever way they came
            model.eval()
        return TrainedModels(models, len(todo), len(jobs) - len(todo), time.perf_counter() - start)

    def train(self, groups: list[list[ModelJob]], data: TensorData, console: Console) -> list[list[nn.Module]]:
        raise NotImplementedError


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Train in this process, one group after another, on the recipe's device."""

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        super().__init__(config or ExecutorConfig())

    def train(self, groups: list[list[ModelJob]], data: TensorData, console: Console) -> list[list[nn.Module]]:
        out = []
        for group in groups:
            console.log(f"training {', '.join(job.desc for job in group)} on {len(group[0].indices)} samples each")
            out.append(train_jobs(group, data.subset))
        return out


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """One Ray task per group of jobs (per model with ``concurrent=1``), on fractional GPUs where asked.

    The pool tensors go into Ray's object store once and every task reads them from there. Each task
    trains, writes its artefacts and returns nothing; the driver then loads the artefacts. Artefact paths
    must therefore be visible to every worker: on a multi-machine cluster, ``executor.cache_dir`` (or the
    audit's ``references_dir``) must be shared storage, and miunlearn must be installed on every node.
    Ray assigns the GPUs, so keep ``train.device=auto``.
    """

    def train(self, groups: list[list[ModelJob]], data: TensorData, console: Console) -> list[list[nn.Module]]:
        if not groups:
            return []
        if any(job.path is None for group in groups for job in group):
            raise MiunlearnError("the ray executor returns models through artefact files; give every job a path")
        # Ray shows a task only the GPUs it was given, so only auto or the matching device type can work.
        usable = ("auto", "cuda") if self.config.gpus_per_task else ("auto", "cpu")
        device = groups[0][0].recipe.device
        if device not in usable:
            raise MiunlearnError(f"train.device={device} cannot work in Ray tasks with executor.gpus_per_task="
                                 f"{self.config.gpus_per_task:g}; use train.device={' or '.join(usable)}")
        ray = import_ray()
        if not ray.is_initialized():
            threads = str(max(1, int(self.config.cpus_per_task)))
            ray.init(address=self.config.address, include_dashboard=False,
                     runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}})
        x, y = ray.put(data.x.cpu().numpy()), ray.put(data.y.cpu().numpy())
        task = ray.remote(_train_in_worker).options(num_cpus=self.config.cpus_per_task,
                                                    num_gpus=self.config.gpus_per_task)
        remaining = [task.remote(group, x, y) for group in groups]
        console.log(f"submitted {len(remaining)} Ray task(s) for {sum(map(len, groups))} model(s)")
        try:
            while remaining:
                ready, remaining = ray.wait(remaining, num_returns=1)
                try:
                    ray.get(ready[0])
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, MiunlearnError):  # bad input: one line, not the worker's traceback
                        raise MiunlearnError(str(exc.cause)) from None
                    raise
                console.log(f"Ray task {len(groups) - len(remaining)}/{len(groups)} finished")
        finally:
            for ref in remaining:
                ray.cancel(ref)
        return [[load_weights(job.factory(), job.path) for job in group] for group in groups]


def _train_in_worker(jobs: list[ModelJob], x: np.ndarray, y: np.ndarray) -> None:
    """A Ray task: ``x``/``y`` are the object store's read-only arrays; indexing copies the samples out."""
    train_jobs(jobs, lambda idx: TensorData(torch.from_numpy(x[idx]), torch.from_numpy(y[idx])))


def train_jobs(jobs: list[ModelJob], subset: Callable[[np.ndarray], TensorData]) -> list[nn.Module]:
    """Build (seeded) and train a group of jobs, together when there are several; write their artefacts."""
    models = []
    for job in jobs:
        torch.manual_seed(job.recipe.seed)
        models.append(job.factory())
    datasets = [subset(job.indices) for job in jobs]
    if len(jobs) == 1:
        train_model(models[0], datasets[0], jobs[0].recipe, desc=jobs[0].desc)
    else:
        train_models_concurrently(models, datasets, [job.recipe for job in jobs], f"{jobs[0].desc} (+{len(jobs) - 1})")
    for job, model in zip(jobs, models):
        if job.path is not None:
            save_weights(model, job.path)
            record_digest(job.path)
    return models


def group_jobs(jobs: Sequence[ModelJob], concurrent: int) -> list[list[int]]:
    """Positions of the jobs trained together: at most ``concurrent``, all with the same training-set size."""
    by_size: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        by_size.setdefault(len(job.indices), []).append(i)
    return [same[s:s + concurrent] for same in by_size.values() for s in range(0, len(same), concurrent)]


def import_ray():
    try:
        import ray
    except ImportError:
        raise MiunlearnError(RAY_HINT) from None
    return ray


def validate_executor_config(config: ExecutorConfig) -> None:
    EXECUTORS.validate(config.name)
    if config.concurrent < 1:
        raise MiunlearnError(f"executor.concurrent must be at least 1, got {config.concurrent}")
    if config.cpus_per_task < 0 or config.gpus_per_task < 0:
        raise MiunlearnError("executor.cpus_per_task and executor.gpus_per_task must not be negative")
    if config.gpus_per_task > 1 and not float(config.gpus_per_task).is_integer():
        raise MiunlearnError(f"executor.gpus_per_task above 1 must be a whole number, got {config.gpus_per_task}")
    if config.name == "ray":
        import_ray()
    elif config.address is not None or config.gpus_per_task:
        raise MiunlearnError(f"executor.address and executor.gpus_per_task only apply to executor.name=ray, "
                             f"not {config.name!r}")


def build_executor(config: ExecutorConfig) -> Executor:
    validate_executor_config(config)
    return EXECUTORS.get(config.name)(config)
