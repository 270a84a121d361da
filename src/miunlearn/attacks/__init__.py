"""Membership inference: the guiding privacy approximators and the independent audit attacks."""

from miunlearn.attacks import lira, rmia  # noqa: F401  (register the reference attacks)
from miunlearn.attacks.approximators import APPROXIMATORS, PrivacyApproximator, fit_approximator, load_approximator
from miunlearn.attacks.audit import AUDIT_ATTACKS, AuditAttack, AuditInputs
from miunlearn.attacks.reference import REFERENCE_ATTACKS, ReferenceAttack, ReferenceInputs
from miunlearn.attacks.shadows import ShadowOutputs, train_shadows

__all__ = ["APPROXIMATORS", "AUDIT_ATTACKS", "AuditAttack", "AuditInputs", "PrivacyApproximator", "REFERENCE_ATTACKS",
           "ReferenceAttack", "ReferenceInputs", "ShadowOutputs",
           "fit_approximator", "load_approximator", "train_shadows"]
