"""Per-sample statistics of a model's outputs that membership attacks are built on.

All are differentiable functions of the logits, so a guiding attack can pass gradients to the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's ``s = z_y - logsumexp_{y' != y} z_y'`` (= log p_y - log(1 - p_y), without cancellation)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - torch.logsumexp(others, dim=1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction="none")


def true_class_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(1)


def modified_entropy(logits: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Song & Mittal (2021): entropy that also rises when the true class is predicted wrongly."""
    p = F.softmax(logits.float(), dim=1)
    p_y = p.gather(1, labels[:, None]).squeeze(1)
    true_term = -(1 - p_y) * torch.log(p_y.clamp_min(eps))
    other = -p * torch.log((1 - p).clamp_min(eps))
    other = other.scatter(1, labels[:, None], 0.0).sum(1)
    return true_term + other


def output_features(logits: torch.Tensor, labels: torch.Tensor, top_k: int) -> torch.Tensor:
    """Shokri-style attack features: sorted top-k softmax, ``p_y``, cross-entropy and ``s``."""
    p = F.softmax(logits.float(), dim=1)
    k = min(top_k, p.shape[1])
    top = p.sort(dim=1, descending=True).values[:, :k]
    return torch.cat([top, true_class_probability(logits, labels)[:, None], cross_entropy(logits, labels)[:, None],
                      logit_confidence(logits.float(), labels)[:, None]], dim=1)
