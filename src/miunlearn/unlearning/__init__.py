"""Unlearning methods (a registry) on one interface; ``retrain`` is the gold standard."""

from miunlearn.unlearning import (  # noqa: F401  (register methods)  # noqa: F401  (register the baselines)
    bad_teacher,
    boundary_shrink,
    finetune,
    fisher,
    gradient_ascent,
    l1_sparse,
    neggrad_plus,
    random_label,
    remi,
    retrain,
    salun,
    scrub,
    ssd,
)
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
