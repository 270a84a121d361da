"""miunlearn: machine unlearning guided by membership inference, audited against retraining.

    import miunlearn
    result = miunlearn.unlearn(model, forget=forget, retain=retain, method="remi",
                               reference=reference, approximator=approximator)
    result.model, result.record
"""

from miunlearn.audit import AUDIT_ATTACKS
from miunlearn.config import RunConfig, load_config
from miunlearn.data import DATASETS, TensorData, load_dataset, prepare_splits
from miunlearn.errors import MiunlearnError
from miunlearn.guidance import APPROXIMATORS, fit_approximator, load_approximator, train_shadows
from miunlearn.models import MODELS, build_model, load_weights, save_weights
from miunlearn.pipeline import RunResult, run_experiment
from miunlearn.training import train_model
from miunlearn.unlearning import METHODS, UnlearningRecord, UnlearningResult, unlearn

__version__ = "0.1.0"

__all__ = ["APPROXIMATORS", "AUDIT_ATTACKS", "DATASETS", "METHODS", "MODELS", "MiunlearnError", "RunConfig",
           "RunResult", "TensorData", "UnlearningRecord", "UnlearningResult", "build_model", "fit_approximator",
           "load_approximator", "load_config", "load_dataset", "load_weights", "prepare_splits", "run_experiment",
           "save_weights", "train_model", "train_shadows", "unlearn"]
