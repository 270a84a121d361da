"""Per-example membership attacks that calibrate each sample against reference models (LiRA, RMIA).

They are the strong, independent audit: the reference models are trained by the auditor on random
halves of a pool holding D_train and D_audit (:mod:`miunlearn.audit.reference_models`), never the
unlearner's shadow models. An attack maps the outputs of one audited model and of the reference models
on the scored samples to one membership score per sample (higher: more member-like).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from miunlearn.config import from_dict
from miunlearn.errors import MiunlearnError
from miunlearn.registry import Registry
from miunlearn.statistics import logit_confidence


@dataclass
class ReferenceInputs:
    """Outputs of the audited model and of K reference models on the scored samples and a population.

    ``member[k, i]`` says whether reference model ``k`` was trained on scored sample ``i``. The
    population (RMIA's ``z``) is data no model was trained on.
    """

    logits: torch.Tensor
    """(n, C): the audited model on the scored samples."""
    labels: torch.Tensor
    ref_logits: torch.Tensor
    """(K, n, C): each reference model on the scored samples."""
    member: np.ndarray
    population_logits: torch.Tensor
    """(m, C): the audited model on the population."""
    population_labels: torch.Tensor
    population_ref_logits: torch.Tensor
    """(K, m, C)."""

    @property
    def num_references(self) -> int:
        return int(self.member.shape[0])


def lira_statistic(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """LiRA's logit-scaled confidence ``log p_y - log(1 - p_y)``, for logits of shape (..., n, C)."""
    flat = logits.reshape(-1, logits.shape[-1]).double()
    flat_labels = labels.expand(*logits.shape[:-1]).reshape(-1)
    return logit_confidence(flat, flat_labels).reshape(logits.shape[:-1]).numpy()


def true_class_probability(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """``p_y`` for logits of shape (..., n, C)."""
    p = F.softmax(logits.double(), dim=-1)
    return p.gather(-1, labels.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1).numpy()


class ReferenceAttack(ABC):
    name: ClassVar[str]  # set by the registry from the name it is registered under
    #: Least reference models per scored sample that the attack needs, trained with (IN) and without (OUT) it.
    needs_in: ClassVar[int] = 0
    needs_out: ClassVar[int] = 0
    needs_any: ClassVar[int] = 1

    #: The attack's own settings: a dataclass with defaults and a ``validate()`` that raises one-line errors.
    #: Its field names are the ``miunlearn audit`` keys that set them (``StrongAuditConfig``).
    Config: ClassVar[type]

    def __init__(self, config: Any = None, **params: Any) -> None:
        self.config = config if config is not None else from_dict(self.Config, params, self.name)
        self.config.validate()

    def requirements(self) -> tuple[int, int, int]:
        """(IN, OUT, any) reference models per sample; per-example variance needs two of a kind."""
        return self.needs_in, self.needs_out, self.needs_any

    def check(self, member: np.ndarray, what: str = "scored sample") -> None:
        """Refuse to score when some sample lacks the reference models this attack needs."""
        need_in, need_out, need_any = self.requirements()
        k = member.shape[0]
        n_in, n_out = member.sum(0), k - member.sum(0)
        short = int(((n_in < need_in) | (n_out < need_out)).sum())
        if k < need_any or short:
            raise MiunlearnError(
                f"too few reference models for {self.name}: it needs per sample at least {need_in} trained with "
                f"and {need_out} trained without it ({max(need_any, need_in + need_out)} in all), but {k} "
                f"reference model(s) leave {short or 'every'} {what}(s) short; raise num_references "
                f"(an even number gives every sample as many IN as OUT models)")

    @abstractmethod
    def scores(self, inputs: ReferenceInputs) -> np.ndarray:
        """Membership score per scored sample (higher: more member-like)."""


REFERENCE_ATTACKS: Registry[type[ReferenceAttack]] = Registry("reference attack")
