"""Evaluate models on a deletion request: accuracy, independent audit attacks, bounds, distances."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from miunlearn.audit.metrics import Metric, accuracy, average_gap, js_divergence, membership_gaussian_bound
from miunlearn.audit.population import AUDIT_ATTACKS, AuditInputs
from miunlearn.data import TensorData
from miunlearn.statistics import logit_confidence
from miunlearn.training import predict_logits, resolve_device


@dataclass
class EvaluationSets:
    retain: TensorData
    forget: TensorData
    test: TensorData
    audit: TensorData
    """Never seen by the unlearner; the audit attacks' non-members."""


@dataclass
class ModelOutputs:
    """Logits of one model on every evaluation set, computed once and shared by all metrics."""

    retain: torch.Tensor
    forget: torch.Tensor
    test: torch.Tensor
    audit: torch.Tensor

    @classmethod
    def of(cls, model: nn.Module, sets: EvaluationSets, device: str = "auto", precision: str = "fp32") -> ModelOutputs:
        dev = resolve_device(device)
        model.to(dev)
        return cls(*(predict_logits(model, getattr(sets, name), dev, precision=precision)
                     for name in ("retain", "forget", "test", "audit")))


def evaluate_outputs(outputs: ModelOutputs, sets: EvaluationSets, attacks: list[str],
                     low_fpr: float = 0.01) -> dict:
    """Scalar metrics of one model (``metrics``) and the curves/values plots need (``curves``)."""
    metrics: dict[str, float] = {
        Metric.RETAIN_ACC: accuracy(outputs.retain, sets.retain.y),
        Metric.FORGET_ACC: accuracy(outputs.forget, sets.forget.y),
        Metric.TEST_ACC: accuracy(outputs.test, sets.test.y),
    }
    inputs = AuditInputs(outputs.forget, sets.forget.y, outputs.audit, sets.audit.y, outputs.retain, sets.retain.y)
    curves: dict = {}
    for name in attacks:
        result = AUDIT_ATTACKS.get(name)()(inputs, low_fpr)
        if "fpr" in result:
            curves[name] = {"fpr": result.pop("fpr"), "tpr": result.pop("tpr")}
        for key, value in result.items():
            metrics[Metric.of_attack(name, key) if key != "efficacy" else Metric.MIA_EFFICACY] = value
    metrics.update(membership_gaussian_bound(outputs.forget, sets.forget.y, outputs.audit, sets.audit.y))
    curves["s_forget"] = logit_confidence(outputs.forget, sets.forget.y).numpy()
    curves["s_audit"] = logit_confidence(outputs.audit, sets.audit.y).numpy()
    return {"metrics": metrics, "curves": curves}


def compare_to_retrain(results: dict[str, dict], outputs: dict[str, ModelOutputs], times: dict[str, float],
                       reference: str = "retrain") -> None:
    """Add JS divergence on D_f, average gap and speedup relative to the retrained model, in place."""
    if reference not in results:
        return
    base = results[reference]["metrics"]
    for name, result in results.items():
        m = result["metrics"]
        m[Metric.JS_TO_RETRAIN] = js_divergence(outputs[name].forget, outputs[reference].forget)
        if Metric.MIA_EFFICACY in m and Metric.MIA_EFFICACY in base:
            m[Metric.AVG_GAP] = average_gap(m, base)
        if name in times and reference in times and times[name] > 0:
            m[Metric.SPEEDUP] = times[reference] / times[name]

