"""miunlearn: machine unlearning guided by membership inference, audited against retraining.

    import miunlearn
    result = miunlearn.unlearn(model, forget=forget, retain=retain, method="remi",
                               reference=reference, approximator=approximator)
    result.model, result.record

    # a deletion request against a model trained and deployed outside miunlearn
    miunlearn.forget("state/", request=[3, 17], model=my_module, train=("x.npy", "y.npy"), held_out=...)

Names are imported on first use (PEP 562), so ``import miunlearn`` and ``miunlearn --help`` do not pay
for PyTorch until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "AUDIT_ATTACKS": "miunlearn.audit",
    "RunConfig": "miunlearn.config", "load_config": "miunlearn.config",
    "DATASETS": "miunlearn.data", "TensorData": "miunlearn.data", "load_dataset": "miunlearn.data",
    "prepare_splits": "miunlearn.data",
    "MiunlearnError": "miunlearn.errors",
    "APPROXIMATORS": "miunlearn.guidance", "fit_approximator": "miunlearn.guidance",
    "load_approximator": "miunlearn.guidance", "train_shadows": "miunlearn.guidance",
    "MODELS": "miunlearn.models", "build_model": "miunlearn.models", "load_weights": "miunlearn.models",
    "save_weights": "miunlearn.models",
    "RunResult": "miunlearn.pipeline", "run_experiment": "miunlearn.pipeline",
    "train_model": "miunlearn.training",
    "METHODS": "miunlearn.unlearning", "UnlearningRecord": "miunlearn.unlearning",
    "UnlearningResult": "miunlearn.unlearning", "unlearn": "miunlearn.unlearning",
    "forget": "miunlearn.deployed", "ForgetResult": "miunlearn.deployed",
}

__all__ = ["APPROXIMATORS", "AUDIT_ATTACKS", "DATASETS", "ForgetResult", "METHODS", "MODELS", "MiunlearnError",
           "RunConfig", "RunResult", "TensorData", "UnlearningRecord", "UnlearningResult", "build_model",
           "fit_approximator", "forget", "load_approximator", "load_config", "load_dataset", "load_weights",
           "prepare_splits", "run_experiment", "save_weights", "train_model", "train_shadows", "unlearn"]

if TYPE_CHECKING:  # what static checkers and IDEs see; nothing is imported at run time
    from miunlearn.audit import AUDIT_ATTACKS
    from miunlearn.config import RunConfig, load_config
    from miunlearn.data import DATASETS, TensorData, load_dataset, prepare_splits
    from miunlearn.deployed import ForgetResult, forget
    from miunlearn.errors import MiunlearnError
    from miunlearn.guidance import APPROXIMATORS, fit_approximator, load_approximator, train_shadows
    from miunlearn.models import MODELS, build_model, load_weights, save_weights
    from miunlearn.pipeline import RunResult, run_experiment
    from miunlearn.training import train_model
    from miunlearn.unlearning import METHODS, UnlearningRecord, UnlearningResult, unlearn


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'miunlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
