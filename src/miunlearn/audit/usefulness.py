"""Was an unlearning result useful? Three checks that membership-attack AUCs alone do not make.

- **did nothing**: the model's outputs on D_f are those of the original (every predicted probability
  within ``tolerance``). Any speed-up of such a "method" is meaningless.
- **over-forgetting**: forget accuracy clearly below the accuracy the same model has on held-out samples
  of the same classes (the audit's non-members, drawn and labelled as D_f was). A retrained model forgets
  down to held-out accuracy, not below; lower is itself a membership signal and a loss of utility.
  Class-matching keeps whole-class forgetting (where held-out accuracy on the class also drops) from being
  flagged.
- **audit power**: a request can be too small for any population audit to show that it was forgotten.
  With the original model's leakage measured as the loss attack's AUC on retained members vs held-out
  non-members, a one-sided test at 5% with 80% power needs ``(1/n_f + 1/n_audit)/12 <= (δ/2.49)²``
  (the null variance of an AUC, Hanley & McNeil 1982; δ = AUC − 0.5), which gives the request size needed.

This module judges; it never imports what guided the unlearner.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from miunlearn.data import TensorData
from miunlearn.statistics import cross_entropy
from miunlearn.training import predict_logits, resolve_device

Z_ALPHA = 1.645
"""One-sided 5%: the audit's level."""
Z_POWER = 0.842
"""80% power."""


@dataclass
class Finding:
    """One check's outcome: ``flagged`` means a problem, ``message`` says what and what to do."""

    check: str
    flagged: bool
    message: str
    numbers: dict[str, float | int | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def did_nothing(before: torch.Tensor, after: torch.Tensor, tolerance: float = 1e-4) -> Finding:
    """Flag a model whose predicted probabilities on D_f all moved by at most ``tolerance``."""
    change = float((torch.softmax(after.double(), 1) - torch.softmax(before.double(), 1)).abs().max())
    flagged = change <= tolerance
    message = (f"did nothing: no predicted probability on the forgotten samples moved by more than {tolerance:g} "
               f"(largest change {change:.2g}); the model still behaves as the original on them" if flagged
               else f"outputs on the forgotten samples changed (largest probability change {change:.3f})")
    return Finding("did-nothing", flagged, message, {"max_probability_change": change, "tolerance": tolerance})


def class_matched_accuracy(logits: torch.Tensor, labels: torch.Tensor,
                           classes: torch.Tensor) -> tuple[float | None, int]:
    """Accuracy on held-out samples, weighted to the class mix of ``classes`` (D_f's labels); and how many
    held-out samples of those classes there are. ``None`` when the held-out data has none of them."""
    correct = (logits.argmax(1) == labels).double()
    present, counts = torch.unique(classes, return_counts=True)
    total, weight, n = 0.0, 0, 0
    for c, k in zip(present.tolist(), counts.tolist()):
        mask = labels == c
        if mask.any():
            total += k * float(correct[mask].mean())
            weight += k
            n += int(mask.sum())
    return (total / weight if weight else None), n


def over_forgetting(forget_logits: torch.Tensor, forget_labels: torch.Tensor, heldout_logits: torch.Tensor,
                    heldout_labels: torch.Tensor, z: float = 2.326, margin: float = 0.05) -> Finding:
    """Flag forget accuracy below class-matched held-out accuracy by at least ``margin`` and significantly
    (two-proportion z-test, one-sided at 1%: ``z``)."""
    acc_f = float((forget_logits.argmax(1) == forget_labels).double().mean())
    expected, n_h = class_matched_accuracy(heldout_logits, heldout_labels, forget_labels)
    numbers: dict[str, float | int | None] = {"forget_acc": acc_f, "heldout_acc_same_classes": expected,
                                              "n_forget": len(forget_labels), "n_heldout_same_classes": n_h}
    if expected is None:
        return Finding("over-forgetting", False, "no held-out samples of the forgotten classes: over-forgetting "
                       "not checked", numbers)
    n_f = len(forget_labels)
    pooled = (acc_f * n_f + expected * n_h) / (n_f + n_h)
    se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n_f + 1 / n_h))
    score = (acc_f - expected) / se
    numbers["z"] = score
    flagged = score < -z and expected - acc_f >= margin
    message = (f"over-forgetting: forget accuracy {acc_f:.1%} is clearly below the {expected:.1%} this model has on "
               f"held-out samples of the same classes (z = {score:.1f}); a retrained model would sit near the "
               "held-out accuracy, and the gap itself marks the forgotten samples" if flagged
               else f"forget accuracy {acc_f:.1%} vs {expected:.1%} on held-out samples of the same classes: "
                    "not over-forgotten")
    return Finding("over-forgetting", flagged, message, numbers)


def required_request_size(leakage_auc: float, n_audit: int, z_sum: float = Z_ALPHA + Z_POWER) -> int | None:
    """The smallest |D_f| at which a population audit with ``n_audit`` non-members detects an AUC of
    ``leakage_auc`` (one-sided 5%, 80% power); ``None`` when no request size is enough."""
    delta = leakage_auc - 0.5
    if delta <= 0:
        return None
    room = 12 * (delta / z_sum) ** 2 - 1 / n_audit
    return math.ceil(1 / room) if room > 0 else None


def audit_power(member_logits: torch.Tensor, member_labels: torch.Tensor, nonmember_logits: torch.Tensor,
                nonmember_labels: torch.Tensor, n_forget: int) -> Finding:
    """Can an audit of a request of ``n_forget`` samples (against these non-members) show forgetting?

    ``member_*``: the **original** model on training rows it keeps; ``nonmember_*``: on held-out rows."""
    n_audit = len(nonmember_labels)
    scores = -torch.cat([cross_entropy(member_logits, member_labels), cross_entropy(nonmember_logits,
                                                                                    nonmember_labels)])
    truth = np.r_[np.ones(len(member_labels)), np.zeros(n_audit)]
    leakage = float(roc_auc_score(truth, scores.numpy()))
    needed = required_request_size(leakage, n_audit)
    numbers: dict[str, float | int | None] = {"original_leakage_auc": leakage, "n_forget": n_forget,
                                              "n_audit": n_audit, "required_request_size": needed}
    if needed is None:
        if leakage <= 0.5:
            why = f"the original model shows no membership leakage to a loss attack (AUC {leakage:.3f})"
        else:
            audit_needed = math.ceil(1 / (12 * ((leakage - 0.5) / (Z_ALPHA + Z_POWER)) ** 2))
            numbers["required_audit_size"] = audit_needed
            why = (f"the original model leaks so little (loss-attack AUC {leakage:.3f} on kept training rows vs "
                   f"held-out rows) that even a request of every training row could not show it against {n_audit} "
                   f"held-out audit rows; about {audit_needed} would be needed")
        return Finding("audit-power", True,
                       f"the audit has no power here: {why}. Passing it means little; judge by accuracy and, where "
                       "affordable, a retrained comparator", numbers)
    flagged = n_forget < needed
    message = (f"request too small for the audit to have power: {n_forget} sample(s); with this model's leakage "
               f"(loss-attack AUC {leakage:.3f}) and {n_audit} held-out audit samples, about {needed} would be "
               "needed to detect it (one-sided 5%, 80% power). An audit that passes says little" if flagged
               else f"the audit has power: {n_forget} sample(s) >= about {needed} needed to detect this model's "
                    f"leakage (loss-attack AUC {leakage:.3f})")
    return Finding("audit-power", flagged, message, numbers)


def assess(original: nn.Module, unlearned: dict[str, nn.Module], retain: TensorData, forget: TensorData,
           audit: TensorData, device: str = "auto", precision: str = "fp32", max_members: int = 5000,
           seed: int = 0) -> dict:
    """All three checks for every unlearned model: ``{"power": Finding, "methods": {name: [Finding, ...]}}``.

    ``audit`` holds the audit's non-members: rows drawn as the training rows were, labels included, so they
    measure both the original's leakage and the accuracy D_f should keep. (A test split can differ: with
    ``data.label_noise`` its labels are clean where D_f's are not, and a retrained model would be flagged as
    over-forgetting.) At most ``max_members`` retained rows estimate leakage.
    """
    dev = resolve_device(device)
    if len(retain) > max_members:
        retain = retain.subset(np.sort(np.random.default_rng(seed).choice(len(retain), max_members, replace=False)))

    def logits(model: nn.Module, data: TensorData) -> torch.Tensor:
        model.to(dev)
        return predict_logits(model, data, dev, precision=precision)

    before = logits(original, forget)
    power = audit_power(logits(original, retain), retain.y.cpu(), logits(original, audit), audit.y.cpu(),
                        len(forget))
    methods = {}
    for name, model in unlearned.items():
        after = logits(model, forget)
        methods[name] = [did_nothing(before, after),
                         over_forgetting(after, forget.y.cpu(), logits(model, audit), audit.y.cpu())]
    return {"power": power, "methods": methods}


def flagged_sentences(assessment: dict) -> list[str]:
    """The flagged findings of an assessment (JSON form, :func:`to_json`) as plain sentences, prefixed with the
    model they concern."""
    if not assessment:
        return []
    lines = [assessment["power"]["message"]] if assessment["power"]["flagged"] else []
    lines += [f"{name}: {f['message']}" for name, findings in assessment["methods"].items() for f in findings
              if f["flagged"]]
    return lines


def to_json(assessment: dict) -> dict:
    return {"power": assessment["power"].to_dict(),
            "methods": {name: [f.to_dict() for f in findings] for name, findings in assessment["methods"].items()}}
