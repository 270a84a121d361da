"""Usefulness verdicts: a method that did nothing, over-forgetting, and requests too small to audit."""

from __future__ import annotations

import math

import torch

from miunlearn.audit.usefulness import (
    audit_power,
    class_matched_accuracy,
    did_nothing,
    over_forgetting,
    required_request_size,
)


def _logits_with_accuracy(labels: torch.Tensor, accuracy: float, classes: int = 3, seed: int = 0) -> torch.Tensor:
    """Logits whose argmax is right on the first ``accuracy`` share of the samples."""
    right = torch.arange(len(labels)) < round(accuracy * len(labels))
    predicted = torch.where(right, labels, (labels + 1) % classes)
    return torch.nn.functional.one_hot(predicted, classes).float() * 5 + torch.randn(
        len(labels), classes, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_did_nothing_flags_unchanged_outputs_only():
    before = torch.randn(20, 4)
    assert did_nothing(before, before.clone()).flagged
    assert did_nothing(before, before + 1e-7).flagged
    moved = before.clone()
    moved[3, 0] += 2.0
    finding = did_nothing(before, moved)
    assert not finding.flagged and finding.numbers["max_probability_change"] > 0.1


def test_over_forgetting_is_forget_accuracy_clearly_below_held_out():
    labels = torch.arange(300) % 3
    held_out = _logits_with_accuracy(labels, 0.85)
    flagged = over_forgetting(_logits_with_accuracy(labels[:200], 0.5), labels[:200], held_out, labels)
    assert flagged.flagged and "over-forgetting" in flagged.message
    assert not over_forgetting(_logits_with_accuracy(labels[:200], 0.83), labels[:200], held_out, labels).flagged
    # a small request at 50% is not *clearly* below 85%: too few samples to say so
    assert not over_forgetting(_logits_with_accuracy(labels[:4], 0.5), labels[:4], held_out, labels).flagged


def test_whole_class_forgetting_compares_with_held_out_rows_of_that_class():
    labels = torch.arange(300) % 3
    held_logits = _logits_with_accuracy(labels, 0.9)
    held_logits[labels == 0] = _logits_with_accuracy(labels[labels == 0], 0.0)  # the class is gone everywhere
    expected, n = class_matched_accuracy(held_logits, labels, torch.zeros(50, dtype=torch.long))
    assert expected == 0.0 and n == 100
    forget_labels = torch.zeros(50, dtype=torch.long)
    assert not over_forgetting(_logits_with_accuracy(forget_labels, 0.0), forget_labels, held_logits, labels).flagged


def test_required_request_size_follows_the_auc_null_variance():
    n = required_request_size(0.6, 10_000)
    # at that size the AUC's null standard error is the leakage over z_alpha + z_power
    se = math.sqrt((1 / n + 1 / 10_000) / 12)
    assert abs(se - 0.1 / (1.645 + 0.842)) / se < 0.01
    assert required_request_size(0.7, 10_000) < n < required_request_size(0.55, 10_000)
    assert required_request_size(0.5, 10_000) is None  # no leakage: no size is enough
    assert required_request_size(0.51, 100) is None  # too few audit rows for so little leakage


def test_audit_power_says_what_size_is_needed():
    generator = torch.Generator().manual_seed(0)
    labels = torch.zeros(2000, dtype=torch.long)
    members = torch.stack([torch.randn(2000, generator=generator) + 1.0, torch.zeros(2000)], 1)  # lower loss
    non_members = torch.stack([torch.randn(2000, generator=generator), torch.zeros(2000)], 1)
    small = audit_power(members, labels, non_members, labels, n_forget=4)
    assert small.flagged and "too small" in small.message
    needed = small.numbers["required_request_size"]
    assert str(needed) in small.message and 4 < needed < 2000
    assert not audit_power(members, labels, non_members, labels, n_forget=needed).flagged
    none = audit_power(non_members, labels, non_members.flip(0), labels, n_forget=500)
    assert none.flagged and "no power" in none.message


def test_run_reports_usefulness_per_method(blobs_run):
    usefulness = blobs_run.usefulness
    assert usefulness["power"]["check"] == "audit-power"
    assert {f["check"] for f in usefulness["methods"]["remi"]} == {"did-nothing", "over-forgetting"}
    assert not any(f["flagged"] for f in usefulness["methods"]["retrain"] if f["check"] == "did-nothing")
    assert usefulness["power"]["numbers"]["n_forget"] == 60  # the blobs run's D_f (10% of its 600 training rows)

