"""Settings of ``miunlearn forget``: fixed ones (chosen when the state folder is created) and per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from miunlearn.config import ApproximatorConfig, TrainConfig


@dataclass
class HeldOutConfig:
    """How the user's held-out rows (never trained on) are divided, when one file gives them all.

    Counts are row counts; ``None`` takes the default share (reference 30%, shadow 40%, audit 30%). The
    training data is never split: every held-out role comes from held-out rows only."""

    reference: int | None = None
    """Rows ReMI may use as "never seen" reference data (D_ref)."""
    shadow: int | None = None
    """Rows the approximator is fitted on (D_shadow): ``per-example``'s OUT models and calibration rows, or
    ``shadow-nn``'s shadow models."""
    audit: int | None = None
    """Rows only the audit sees, as its non-members (D_audit); never given to the unlearner."""
    seed: int = 0


@dataclass
class DeploymentConfig:
    """``miunlearn forget`` settings (``section.key=value`` on the command line)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    """The recipe for the approximator's models and ``--retrain``: set it to how the deployed model was trained
    (epochs, optimizer, lr...), as near as you know it. Fixed when the state folder is created."""
    approximator: ApproximatorConfig = field(default_factory=lambda: ApproximatorConfig(name="per-example",
                                                                                       num_shadows=2))
    """The privacy approximator, fitted once when the state folder is created (default: ``per-example`` with 2 OUT
    models on held-out rows; ``folds`` needs the training set as one, which ``forget`` does not keep)."""
    held_out: HeldOutConfig = field(default_factory=HeldOutConfig)
    """Fixed when the state folder is created."""
    unlearn: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-method hyper-parameters for this request, e.g. ``unlearn.remi.epochs=60``."""
    max_cost: float | None = None
    """Stop this request's method at this fraction of a retrain's work on the remaining rows (``train``'s epochs
    over them) and keep its model as it stands, e.g. ``max_cost=0.05`` for at most a twentieth of a retrain."""
    seed: int = 0
    """Seed of the approximator's models; each request's seed is this plus its number."""

    #: sections that the state folder fixes at creation; a later request may not change them
    FIXED = ("train", "approximator", "held_out", "seed")
