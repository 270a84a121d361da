"""Audit attacks: membership inference used only to *evaluate* an unlearned model.

They are fitted on the auditor's own data (D_audit non-members, and retain members where a classifier
is trained), never on the shadow models or D_ref that guide the unlearner, and they score D_f
(members of the original model) against D_audit (never seen by anyone). AUC and TPR at low FPR
come from scikit-learn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from miunlearn.registry import Registry
from miunlearn.statistics import cross_entropy, entropy, modified_entropy, true_class_probability


@dataclass
class AuditInputs:
    """A model's logits on D_f (members), D_audit (non-members) and D_r (members, for fitted attacks)."""

    forget_logits: torch.Tensor
    forget_labels: torch.Tensor
    audit_logits: torch.Tensor
    audit_labels: torch.Tensor
    retain_logits: torch.Tensor
    retain_labels: torch.Tensor


class AuditAttack(ABC):
    name: ClassVar[str]  # set by the registry from the name it is registered under
    statistic: ClassVar[str]

    @abstractmethod
    def __call__(self, inputs: AuditInputs, low_fpr: float) -> dict:
        """Return a dict of metrics (at least ``auc`` or ``efficacy``)."""


AUDIT_ATTACKS: Registry[type[AuditAttack]] = Registry("audit attack")


def roc_metrics(scores_members: np.ndarray, scores_non_members: np.ndarray, low_fpr: float) -> dict:
    """AUC, TPR at ``low_fpr`` and the ROC curve for a score that is higher for members."""
    y = np.r_[np.ones(len(scores_members)), np.zeros(len(scores_non_members))]
    s = np.r_[scores_members, scores_non_members]
    fpr, tpr, _ = roc_curve(y, s)
    return {"auc": float(roc_auc_score(y, s)), "tpr_at_low_fpr": float(tpr[fpr <= low_fpr].max()),
            "fpr": fpr, "tpr": tpr}


class ThresholdAttack(AuditAttack):
    """Population threshold attack on one statistic (Yeom et al. 2018; Song & Mittal 2021)."""

    @staticmethod
    @abstractmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Higher means more member-like."""

    def __call__(self, inputs: AuditInputs, low_fpr: float) -> dict:
        members = self.score(inputs.forget_logits, inputs.forget_labels).numpy()
        non_members = self.score(inputs.audit_logits, inputs.audit_labels).numpy()
        return roc_metrics(members, non_members, low_fpr)


@AUDIT_ATTACKS.register("loss")
class LossAttack(ThresholdAttack):
    statistic = "loss"

    @staticmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -cross_entropy(logits, labels)


@AUDIT_ATTACKS.register("confidence")
class ConfidenceAttack(ThresholdAttack):
    """Same ranking as ``loss`` (``p_y`` is monotone in the loss); kept for comparability with papers."""

    statistic = "p_y"

    @staticmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return true_class_probability(logits, labels)


@AUDIT_ATTACKS.register("entropy")
class EntropyAttack(ThresholdAttack):
    statistic = "entropy"

    @staticmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -entropy(logits)


@AUDIT_ATTACKS.register("m-entropy")
class ModifiedEntropyAttack(ThresholdAttack):
    statistic = "m-entropy"

    @staticmethod
    def score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -modified_entropy(logits, labels)


@AUDIT_ATTACKS.register("mia-efficacy")
class MIAEfficacy(AuditAttack):
    """SalUn's MIA-efficacy: an SVC fitted on D_r (members) vs D_audit (non-members); the share (%) of
    D_f it calls non-member. Higher means more forgotten; compare with the retrained model's value."""

    statistic = "p_y+entropy+m-entropy"

    def __call__(self, inputs: AuditInputs, low_fpr: float) -> dict:
        def features(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
            return torch.stack([true_class_probability(logits, labels), entropy(logits),
                                modified_entropy(logits, labels)], 1).numpy()

        n = min(len(inputs.retain_labels), len(inputs.audit_labels))
        pick = np.random.default_rng(0).choice(len(inputs.retain_labels), size=n, replace=False)
        x = np.r_[features(inputs.retain_logits[pick], inputs.retain_labels[pick]),
                  features(inputs.audit_logits, inputs.audit_labels)[:n]]
        y = np.r_[np.ones(n), np.zeros(n)]
        classifier = make_pipeline(StandardScaler(), SVC(C=3, gamma="auto", kernel="rbf")).fit(x, y)
        called_member = classifier.predict(features(inputs.forget_logits, inputs.forget_labels))
        return {"efficacy": float(100 * (1 - called_member.mean()))}
