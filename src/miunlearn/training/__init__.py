"""One training loop for targets, shadow models and retraining."""

from miunlearn.training.concurrent import train_models_concurrently
from miunlearn.training.loop import (
                                     OPTIMIZERS,
                                     SCHEDULES,
                                     autocast,
                                     batches,
                                     evaluate_accuracy,
                                     predict_logits,
                                     progress,
                                     resolve_device,
                                     train_model,
)

__all__ = ["OPTIMIZERS", "SCHEDULES", "autocast", "batches", "evaluate_accuracy", "predict_logits", "progress",
           "resolve_device", "train_model", "train_models_concurrently"]
