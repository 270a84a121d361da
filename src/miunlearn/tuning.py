"""Tuning an unlearning method's hyper-parameters on calibration requests, with Optuna's TPE.

A method is tuned on one or more *calibration* deletion requests: forget sets of the same kind and size as the
one that will be evaluated, drawn from the same D_train but disjoint from it, each with its own retrained model.
The evaluated request, its retrains and D_audit are never seen here: the caller builds a
:class:`CalibrationTask` per calibration request from its indices only (the leaderboard's tests check them).

Objective (lower is better; both terms in points), the distance to the calibration retrain, averaged over the
calibration requests (one request's distance is noisy enough that the pick can be luck)::

    avg_gap(method, retrain) + 100 * |AUC_loss(method) - AUC_loss(retrain)|

``avg_gap`` is SalUn's mean |Δ| of forget, retain, test accuracy and MIA-efficacy; ``AUC_loss`` is the
loss attack's AUC on the calibration D_f against non-members drawn from D_test (so D_audit stays unseen).
Neither is one of the leaderboard's reference-model attacks, which judge the result.

Trials are stored in an Optuna journal file per study; the study's name hashes what the trials depend on,
the method's source file included, so a rerun after changing one method recomputes that method only and
an interrupted tuning resumes with the trials it has. With ``executor="ray"`` the trials run as Ray
Tune trials (Ray's Optuna searcher, same TPE sampler), then are copied into the same journal.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from miunlearn.audit import EvaluationSets, ModelOutputs, evaluate_outputs
from miunlearn.audit.metrics import average_gap
from miunlearn.config import TrainConfig
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.guidance.approximators import PrivacyApproximator
from miunlearn.unlearning import METHODS, unlearn
from miunlearn.unlearning.search_space import SEARCH_SPACES

OBJECTIVE_ATTACKS = ["loss", "mia-efficacy"]
#: Bumped when the objective's definition changes, so cached trials of the old one are not reused.
OBJECTIVE_VERSION = 1
EXECUTORS = ("local", "ray")
STARTUP_TRIALS = 10
"""Optuna's default: TPE models the objective only from the 11th trial on. A budget of at most this many trials is
a seeded random search, and since the seed is fixed, the same candidates for every request a search space is tuned
on (the leaderboard's 8 trials: every setting and scenario tries the same 8 settings of a method)."""


@dataclass
class CalibrationTask:
    """Everything a trial may see: the original model, the calibration request, its retrain's metrics."""

    model: nn.Module
    sets: EvaluationSets
    """Calibration D_f and D_r, D_test, and non-members (``audit``) drawn from D_test, never D_audit."""
    retrained: dict[str, float]
    """The calibration retrain's metrics on ``sets`` (see :func:`calibration_metrics`)."""
    reference: TensorData | None = None
    approximator: PrivacyApproximator | None = None
    recipe: TrainConfig | None = None
    seed: int = 0
    max_cost: float | None = None
    """Each trial's work limit, a fraction of a retrain's (:func:`miunlearn.unlearn`'s ``max_cost``): tuning for
    the closest result on that budget. Part of the study's name."""


@dataclass
class TuningResult:
    method: str
    params: dict[str, Any]
    value: float
    trials: int
    trials_run_now: int


def calibration_metrics(model: nn.Module, sets: EvaluationSets, recipe: TrainConfig | None = None) -> dict[str, float]:
    """The metrics the objective compares (accuracies, MIA-efficacy, loss-attack AUC)."""
    recipe = recipe or TrainConfig()
    outputs = ModelOutputs.of(model, sets, recipe.device, recipe.precision)
    return evaluate_outputs(outputs, sets, OBJECTIVE_ATTACKS)["metrics"]


def distance_to_retrain(metrics: dict[str, float], retrained: dict[str, float]) -> float:
    """The objective: average gap plus the loss attack's AUC difference, both in points."""
    return average_gap(metrics, retrained) + 100 * abs(metrics["loss_auc"] - retrained["loss_auc"])


def evaluate_params(method: str, params: dict[str, Any], tasks: CalibrationTask | Sequence[CalibrationTask]) -> float:
    """Run ``method`` with ``params`` on each calibration request; return the mean distance to their retrains.

    A setting that breaks the model (non-finite outputs, on which the metrics' classifiers fail) scores
    infinity instead of stopping the study."""
    distances = [_distance(method, params, task) for task in as_tasks(tasks)]
    return float(sum(distances) / len(distances))


def as_tasks(tasks: CalibrationTask | Sequence[CalibrationTask]) -> list[CalibrationTask]:
    """One calibration request or several, as a non-empty list."""
    listed = [tasks] if isinstance(tasks, CalibrationTask) else list(tasks)
    if not listed:
        raise MiunlearnError("tuning needs at least one calibration request")
    return listed


def _distance(method: str, params: dict[str, Any], task: CalibrationTask) -> float:
    result = unlearn(task.model, task.sets.forget, task.sets.retain, method, params, reference=task.reference,
                     approximator=task.approximator, recipe=task.recipe, seed=task.seed, max_cost=task.max_cost)
    try:
        value = distance_to_retrain(calibration_metrics(result.model, task.sets, task.recipe), task.retrained)
    except ValueError:
        if all(torch.isfinite(p).all() for p in result.model.parameters()):
            raise
        return math.inf
    return value if math.isfinite(value) else math.inf


def method_fingerprint(method: str) -> str:
    """A hash of the method's own source: the modules of its class and of the classes it extends (e.g. l1-sparse
    and fine-tuning, and base.py's :class:`UnlearningMethod` for every method, so a change there re-keys them all),
    and its search space. Helpers a method imports (common.py, training) are not in it."""
    sources = class_sources(METHODS.get(method))
    return hashlib.sha256(json.dumps([sources, inspect.getsource(SEARCH_SPACES.get(method))]).encode()).hexdigest()[:16]


def class_sources(cls: type) -> list[str]:
    """The source of the modules that define ``cls`` and the miunlearn classes it extends, sorted."""
    return sorted({inspect.getsource(inspect.getmodule(c)) for c in cls.__mro__
                   if c.__module__.startswith("miunlearn.")})


def study_name(method: str, key: dict[str, Any]) -> str:
    """Names the study after everything its trials depend on, the method's own source included."""
    digest = hashlib.sha256(json.dumps({"key": key, "objective": OBJECTIVE_VERSION,
                                        "method": method_fingerprint(method)}, sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    return f"{method}-{digest}"


def tune(method: str, tasks: CalibrationTask | Sequence[CalibrationTask], trials: int, storage: str | Path,
         key: dict[str, Any], seed: int = 0, executor: str = "local") -> TuningResult:
    """Tune ``method`` with ``trials`` TPE trials (counting those already in ``storage``); return the best.

    ``key`` names the study, so it must cover every calibration request in ``tasks``."""
    SEARCH_SPACES.validate(method)
    tasks = as_tasks(tasks)
    if trials < 1:
        raise MiunlearnError(f"tuning needs at least 1 trial, got {trials}")
    if executor not in EXECUTORS:
        raise MiunlearnError(f"unknown tuning executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    study = _open_study(method, storage, budgeted(key, {task.max_cost for task in tasks}), seed)
    missing = trials - len(_finished(study))
    if missing > 0:
        if executor == "ray":
            _tune_with_ray(method, tasks, missing, study, seed)
        else:
            space = SEARCH_SPACES.get(method)
            study.optimize(lambda trial: evaluate_params(method, space(trial), tasks), n_trials=missing)
    # The best of the first ``trials`` only: a journal a larger budget extended must not change a smaller one's pick.
    best = min(_finished(study)[:trials], key=lambda t: t.value)
    return TuningResult(method, dict(best.params), float(best.value), trials, max(missing, 0))


def budgeted(key: dict[str, Any], max_costs: set[float | None]) -> dict[str, Any]:
    """The study key of trials run under a work limit: ``key`` and the limit (unlimited studies keep their key)."""
    if len(max_costs) > 1:
        raise MiunlearnError("the calibration requests of one study must share max_cost, got "
                             f"{sorted(map(str, max_costs))}")
    (max_cost,) = max_costs
    return key if max_cost is None else key | {"max_cost": max_cost}


def completed_trials(method: str, storage: str | Path, key: dict[str, Any],
                     max_cost: float | None = None) -> list[optuna.trial.FrozenTrial]:
    """The finished trials of the study :func:`tune` keeps in ``storage`` under ``key`` (and ``max_cost``), none if
    it never ran."""
    if not Path(storage).is_file():
        return []
    try:  # read only: a journal without this study is left as it is
        study = optuna.load_study(study_name=study_name(method, budgeted(key, {max_cost})), storage=_journal(storage))
    except KeyError:
        return []
    return _finished(study)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's completed trials, in the order they were started."""
    return sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.number)


def sampler(seed: int) -> optuna.samplers.TPESampler:
    """TPE that draws its first :data:`STARTUP_TRIALS` trials at random."""
    return optuna.samplers.TPESampler(n_startup_trials=STARTUP_TRIALS, seed=seed)


def _journal(storage: str | Path) -> optuna.storages.JournalStorage:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage)))


def _open_study(method: str, storage: str | Path, key: dict[str, Any], seed: int) -> optuna.Study:
    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name=study_name(method, key), storage=_journal(storage), direction="minimize",
                               sampler=sampler(seed), load_if_exists=True)


def _tune_with_ray(method: str, tasks: list[CalibrationTask], count: int, study: optuna.Study, seed: int) -> None:
    """Run ``count`` trials as Ray Tune trials searched by Ray's OptunaSearch (TPE), warm-started with the
    study's finished trials, and record them in ``study`` so the cache sees them."""
    try:
        from ray import tune as ray_tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise MiunlearnError("tuning with executor ray needs Ray Tune: pip install 'ray[tune]'") from None
    done = _finished(study)
    space = SEARCH_SPACES.get(method)
    search = OptunaSearch(space=space, metric="objective", mode="min",
                          sampler=sampler(seed),
                          points_to_evaluate=[t.params for t in done] or None,
                          evaluated_rewards=[t.value for t in done] or None)

    def trainable(params: dict[str, Any], tasks: list[CalibrationTask]) -> dict[str, float]:
        return {"objective": evaluate_params(method, params, tasks)}

    tuner = ray_tune.Tuner(ray_tune.with_parameters(trainable, tasks=tasks),
                           tune_config=ray_tune.TuneConfig(search_alg=search, num_samples=count))
    for result in tuner.fit():
        replay = optuna.trial.FixedTrial(dict(result.config))
        params = space(replay)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=replay.distributions,
                                                  value=float(result.metrics["objective"])))
