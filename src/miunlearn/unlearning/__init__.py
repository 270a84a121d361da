"""Unlearning methods (a registry) on one interface; ``retrain`` is the gold standard."""

from miunlearn.unlearning import remi, retrain  # noqa: F401  (register methods)
from miunlearn.unlearning.base import (
                                       METHODS,
                                       UnlearningMethod,
                                       UnlearningRecord,
                                       UnlearningRequest,
                                       UnlearningResult,
                                       build_method,
                                       unlearn,
)

__all__ = ["METHODS", "UnlearningMethod", "UnlearningRecord", "UnlearningRequest", "UnlearningResult",
           "build_method", "unlearn"]
