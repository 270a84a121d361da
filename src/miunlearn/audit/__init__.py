"""What judges an unlearned model: population and reference-model attacks, metrics against retraining.

The audit never imports :mod:`miunlearn.guidance` or :mod:`miunlearn.unlearning` (a test enforces it),
so the attacks that judge a model cannot be the ones that steered it.
"""

from miunlearn.audit import lira, rmia  # noqa: F401  (register the reference attacks)
from miunlearn.audit.evaluate import EvaluationSets, ModelOutputs, compare_to_retrain, evaluate_outputs
from miunlearn.audit.metrics import (
    accuracy,
    average_gap,
    gaussian_kl,
    js_divergence,
    membership_gaussian_bound,
    pinsker_bound,
)
from miunlearn.audit.population import AUDIT_ATTACKS, AuditAttack, AuditInputs
from miunlearn.audit.reference_attacks import REFERENCE_ATTACKS, ReferenceAttack, ReferenceInputs

__all__ = ["AUDIT_ATTACKS", "REFERENCE_ATTACKS", "AuditAttack", "AuditInputs", "EvaluationSets", "ModelOutputs",
           "ReferenceAttack", "ReferenceInputs", "accuracy", "average_gap", "compare_to_retrain", "evaluate_outputs",
           "gaussian_kl", "js_divergence", "membership_gaussian_bound", "pinsker_bound"]
