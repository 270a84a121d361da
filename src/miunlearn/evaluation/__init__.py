"""Evaluation of unlearned models against the retrained gold standard."""

from miunlearn.evaluation.evaluate import EvaluationSets, ModelOutputs, compare_to_retrain, evaluate_outputs
from miunlearn.evaluation.metrics import (
                                          accuracy,
                                          average_gap,
                                          gaussian_kl,
                                          js_divergence,
                                          membership_gaussian_bound,
                                          pinsker_bound,
)

__all__ = ["EvaluationSets", "ModelOutputs", "accuracy", "average_gap", "compare_to_retrain", "evaluate_outputs",
           "gaussian_kl", "js_divergence", "membership_gaussian_bound", "pinsker_bound"]
