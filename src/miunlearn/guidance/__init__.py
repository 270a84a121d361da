"""What steers an unlearner: privacy approximators fitted on shadow models or on OUT models.

Nothing here judges a result; that is :mod:`miunlearn.audit`, which never imports this package.
"""

from miunlearn.guidance import folds, per_example  # noqa: F401  (register the per-example and folds approximators)
from miunlearn.guidance.approximators import (
    APPROXIMATORS,
    PrivacyApproximator,
    approximator_problems,
    fit_approximator,
    load_approximator,
)
from miunlearn.guidance.shadows import ShadowOutputs, train_shadows

__all__ = ["APPROXIMATORS", "PrivacyApproximator", "ShadowOutputs", "approximator_problems", "fit_approximator",
           "load_approximator", "train_shadows"]
