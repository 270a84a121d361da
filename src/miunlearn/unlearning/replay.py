"""Re-running a run folder's unlearning methods for the audit (U-LiRA, the challenge score).

The audit cannot import this package (it must not grade with what it judges), so the caller hands it a
:class:`RunReplay`; it re-runs a method with the run's own settings, reference data and approximator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.guidance import load_approximator
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
        return unlearn(model, forget, retain, name, seed=seed, config=run.config.unlearn.params.get(name),
                       reference=run.part("ref"), approximator=approximator, recipe=run.config.train).model
