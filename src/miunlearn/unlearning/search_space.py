"""Each method's Optuna search space, registered by the method's name next to its config.

A search space is ``space(trial) -> dict``: it suggests values with ``trial.suggest_*`` under the names of
the method's config fields and returns exactly what it suggested, so a trial's ``params`` is a valid
``unlearn.params.<method>`` mapping (Ray Tune's Optuna searcher hands the trainable that same mapping).
Retraining has nothing to tune and no space. Ranges span the methods' papers' defaults and the values
our CPU recipes need; they are what the leaderboard tunes every method over with the same trial count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from miunlearn.registry import Registry

if TYPE_CHECKING:
    import optuna

SearchSpace = Callable[["optuna.Trial"], dict[str, Any]]

SEARCH_SPACES: Registry[SearchSpace] = Registry("search space")


def suggest_lr_epochs(trial: optuna.Trial, lr: tuple[float, float], epochs: tuple[int, int]) -> dict[str, Any]:
    """The two knobs every optimiser-based method has: a log-uniform learning rate and a pass count."""
    return {"lr": trial.suggest_float("lr", *lr, log=True), "epochs": trial.suggest_int("epochs", *epochs)}
