"""Re-running a run folder's unlearning methods for the audit (U-LiRA, the challenge score).

The audit cannot import this package (it must not grade with what it judges), so the caller hands it a
:class:`RunReplay`; it re-runs a method with the run's own settings and reference data, and with the approximator
the owner of the model it unlearns would fit (:mod:`miunlearn.guidance.owners`): the run's
own unless it trained on the run's D_train (``folds``), which a reference model's owner never holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from miunlearn.artefacts import model_key, open_store, store_folder
from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.guidance import PrivacyApproximator, load_approximator
from miunlearn.guidance.owners import refit_folds, refit_for
from miunlearn.training.executors import ModelSpec
from miunlearn.unlearning.base import METHODS, unlearn

if TYPE_CHECKING:
    from miunlearn.audit.strong import RunFolder


class RunReplay:
    """A :class:`miunlearn.audit.strong.MethodReplay` that re-runs a method exactly as the run did."""

    def check(self, run: RunFolder, name: str) -> None:
        METHODS.validate(name)
        if "approximator" in METHODS.get(name).requires and not (run.path / "approximator.safetensors").is_file():
            raise MiunlearnError(f"re-running {name!r} needs {run.path}/approximator.safetensors; rerun the "
                                 "experiment with `miunlearn run` (it saves the approximator)")

    def __call__(self, run: RunFolder, name: str, model: nn.Module, forget: TensorData, retain: TensorData,
                 seed: int) -> nn.Module:
        approximator = None
        if "approximator" in METHODS.get(name).requires:
            approximator = load_approximator(run.path / "approximator.safetensors")
            train = TensorData(torch.cat([forget.x, retain.x]), torch.cat([forget.y, retain.y]))
            if refit_for(approximator, train):
                approximator = self._owners(run, approximator, train, seed)
        return unlearn(model, forget, retain, name, seed=seed, config=run.config.unlearn.params.get(name),
                       reference=run.part("ref"), approximator=approximator, recipe=run.config.train).model

    @staticmethod
    def _owners(run: RunFolder, approximator: PrivacyApproximator, train: TensorData,
                seed: int) -> PrivacyApproximator:
        """The approximator fitted on ``train``, the training set of the model being unlearned; its fold models in
        the artefact store under a key covering that set's content."""
        num_classes = run.dataset.info.num_classes
        key = model_key(run.config, num_classes, "owner-folds", seed, len(approximator.out_models), train)
        store = store_folder("fold-models", key, run.config.executor.cache_dir)
        open_store(store, key, {}, "fold models", "delete that folder to retrain them")
        spec = ModelSpec(run.config.model.name, run.dataset.info, run.config.model.width)
        return refit_folds(approximator, train, spec, run.config.train, seed, store)
