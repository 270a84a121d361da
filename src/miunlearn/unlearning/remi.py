"""ReMI: membership-inference-guided unlearning (Sula et al. 2024), as specified in docs/remi-method.md.

Every step minimises ``CE(b_r) + privacy terms on b_f + γ · anchor on b_ref``; the privacy terms and the
stopping rule come from an objective (:data:`OBJECTIVES`):

- ``per-example`` (spec "Beyond the paper"; ``auto`` takes it when the approximator has OUT models): each forgotten
  sample's ``s`` is pulled toward its own OUT prediction ``μ_out(x)`` (likelihood term ``(s − μ_out(x))² / (2σ²)``,
  from the approximator's OUT models: ``folds``, the default, or ``per-example``), optionally its prediction toward
  theirs (``distill``); stop when D_f has converged there and is no more member-like, nor more often classified
  right, than held-out calibration samples.
- ``population`` (the spec's objective): ``α · softplus(a) + β · KL(N(μ_f, σ_f²) ‖ N(μ_ref, σ_ref²))``; stop when
  D_f is as member-like as D_ref under ``a`` and the KL is at noise level.

A request that removes every training sample of a class (D_r has none left) is a class request whatever the
objective: the reference is then what a model that never saw the class outputs (:class:`ClassObjective`).
"""

from __future__ import annotations

import copy
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from miunlearn.data import TensorData
from miunlearn.errors import MiunlearnError
from miunlearn.registry import Registry
from miunlearn.statistics import logit_confidence
from miunlearn.training import OPTIMIZERS, autocast, batches, predict_logits, progress
from miunlearn.training.loop import place_data, place_model
from miunlearn.unlearning.base import METHODS, UnlearningMethod, UnlearningRequest


@dataclass
class RemiConfig:
    objective: str = "auto"
    """``per-example`` (needs the ``per-example`` approximator), ``population`` (the spec's objective) or ``auto``:
    ``per-example`` when the approximator has OUT models (the default ``per-example`` one), else ``population``."""
    alpha: float = 1.0
    """``population``: weight of the leakage term ``softplus(a)`` (BCE towards "non-member" under ``a``)."""
    beta: float = 1.0
    """``population``: weight of the Gaussian KL term that matches D_f's ``s`` distribution to D_ref's."""
    likelihood: float = 1.0
    """``per-example``: weight of the per-sample term ``(s − μ_out(x))² / (2σ_out²)``; class requests: weight of
    the KL to the outputs of the original with the forgotten classes removed."""
    distill: float = 0.0
    """``per-example``: weight of a KL from the OUT prediction on each forgotten sample (``folds``: its fold
    model's; the ``per-example`` approximator: its OUT models' mean) to the current one (where the probability
    mass that leaves the label goes, which ``s`` alone leaves open). Off by default: the OUT models' *average*
    classifies better than one retrained model, and with one fold model's prediction it brought ReMI closer on
    one leaderboard setting of four (BENCHMARKS.md, "ReMI's targets and stopping rule" and "Three more of ReMI's
    knobs against a third retrain")."""
    targets: str = "out-mean"
    """``per-example``: where each forgotten sample's z-score ``(s − μ_out(x)) / σ_out`` is pulled.
    ``out-mean``: to 0, i.e. ``s`` to the sample's own OUT mean (the spec's term). ``random``: to the held-out
    z-score at a rank drawn at random for each request (``spread`` scales it toward the held-out median), scattering
    D_f around its OUT predictions as retrained models scatter.
    Both are fixed per sample, nothing to overshoot: ReMI stops once D_f has converged on them (``tolerance``) and
    is no more member-like than held-out samples (one-sided tests). ``rank``: the held-out z-score of the sample's
    own rank under the current model, re-ranked at every check; it stops on a two-sided test and keeps the closest
    model seen, and keeps the most memorised samples above their OUT mean (BENCHMARKS.md, "Where ReMI's remaining
    gap comes from")."""
    spread: float = 1.0
    """``random`` targets: how far each target lies from the held-out z-scores' median, as a fraction of where its
    held-out quantile lies (1: the held-out spread; 0: all at the median). Targets drawn afresh for every request
    hide ReMI from a U-LiRA attacker who holds the approximator's own models (every run would otherwise put a sample
    where they say), at a cost in closeness to retraining (BENCHMARKS.md, "An approximator that saw the rest of
    D_train")."""
    tolerance: float = 0.05
    """``out-mean`` and ``random`` targets: stop only once the likelihood term on the whole of D_f,
    ``mean (z − t)² / 2``, is at most this (RMS distance ``sqrt(2·tolerance)`` in units of a retrain's spread),
    unless the original already scores D_f like held-out samples (:data:`ALREADY_MET_LEVEL`)."""
    accuracy_check: bool = True
    """``per-example``: D_f must also not be classified right more often than held-out samples would be (the OUT
    models' accuracy on D_f, shifted by how the current model and the OUT models differ on the calibration samples;
    one-sided binomial test at ``level``). The z-score tests have little power where a model keeps D_f right with a
    lowered confidence (Fashion-MNIST ``mlp``); with ``rank`` targets the excess accuracy also counts in the
    distance the closest model is kept by."""
    gamma: float = 1.0
    """Weight of an anchor term (our addition) that keeps the original model's outputs on the reference batch.
    D_ref is never-seen data, where the retrained model behaves like the original; pinning it keeps test
    behaviour while D_f is moved. ``gamma=0`` is the spec's objective."""
    anchor: str = "logits"
    """How the anchor measures a change on D_ref (:data:`ANCHORS`). ``logits``: half the mean squared change of
    the centred logits, i.e. of every class's log-odds, so it holds the confidence ``s`` the auditor reads even
    where the original is sure. ``kl``: KL from the original's predicted distribution, which barely registers a
    change of ``s`` where ``p_y`` is near 0 or 1, so the model could lower its confidence on unseen data along with
    D_f's (BENCHMARKS.md, "A logit anchor"). Class requests always use ``kl`` (their target gives the forgotten
    classes no log-odds)."""
    optimizer: str = "adam"
    """``adam`` (AdamW) or ``sgd`` (with ``momentum``). The target ends its cosine schedule at a learning rate
    near zero and the privacy terms' gradients are noisy (|b_f| samples): Adam's per-parameter step keeps
    accuracy where SGD at a rate that moves D_f loses it (README, "How ReMI is built here")."""
    lr: float = 3e-4
    momentum: float = 0.9
    """SGD only."""
    weight_decay: float = 0.0
    epochs: int = 30
    """Budget: passes over D_f (each at least ``min_steps`` steps)."""
    min_steps: int = 10
    """A pass over D_f takes at least this many steps (a small D_f is cycled), so a request of a few dozen samples
    still gets a few steps between two checks of the stopping rule."""
    forget_batch: int = 32
    retain_batch: int = 64
    ref_batch: int = 64
    level: float = 0.25
    """``per-example`` and class requests: stop once the two-sample tests (distribution, upper tail; and the
    accuracy check) give a p-value of at least this. Higher than a usual significance level on purpose: at a few
    hundred samples the tests have little power, and stopping as soon as they no longer reject at 0.05 left a
    visible member-like tail (README, "How ReMI is built here")."""
    patience: int = 2
    """Calibrated ``targets`` and class requests: stop after this many checks without getting closer to the
    held-out distribution, and keep the closest model seen (past it, D_f overshoots)."""
    member_tolerance: float | None = None
    """``population``: stop when mean σ(a) on D_f is at most this much above its mean on D_ref ... (``None``: two
    standard errors of that difference, i.e. indistinguishable at the sample sizes at hand)"""
    kl_threshold: float | None = None
    """... and the KL between the Gaussians fitted to ``s`` on D_f and D_ref is below this (``None``: the 95%
    quantile of that KL over random relabellings of D_f ∪ D_ref, see :func:`null_kl_quantile`)."""
    frozen: list[str] = field(default_factory=list)
    """Names (or name prefixes) of parameters left as they are, e.g. ``["0.", "1.", "4.", "5."]`` for the
    ``cnn``'s first two conv blocks or ``["conv1", "bn1", "layer1", "layer2"]`` for ``resnet18`` (BatchNorm
    statistics still follow the batches); they need no weight gradients, so a pass costs less. Empty (default):
    all parameters, as the spec has it."""
    min_epochs: float = 0.0
    """No stop before this many passes over D_f (0: a request already met is returned untouched)."""
    checks_per_epoch: int = 2
    """How often per pass over D_f the stopping rule is evaluated. Each check is a forward pass over D_f and
    the held-out samples, so it costs a few training steps."""


def gaussian_kl(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """KL(N(μ1, σ1²) ‖ N(μ2, σ2²))."""
    return torch.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5


def moments(values: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) standard deviation, floored so the KL stays finite."""
    return values.mean(), values.std(unbiased=False).clamp_min(eps)


def null_kl_quantile(s_f: torch.Tensor, s_ref: torch.Tensor, q: float = 0.95, permutations: int = 200) -> float:
    """The ``q`` quantile of the Gaussian KL between random splits of the pooled ``s`` values into groups of
    |D_f| and |D_ref|: what the KL shows when D_f and D_ref are exchangeable (a permutation test at level
    ``1 - q``). Its mean is about ``1/n_f + 1/n_ref`` for Gaussian ``s``, but heavier tails and the spread
    of the estimate put a retrained model's own KL above that mean, so a threshold at the mean is rarely met."""
    pooled = torch.cat([s_f, s_ref]).cpu()
    generator = torch.Generator().manual_seed(0)
    split = pooled[torch.rand(permutations, len(pooled), generator=generator).argsort(1)]
    a, b = split[:, :len(s_f)], split[:, len(s_f):]
    fitted = [(x.mean(1), x.std(1, unbiased=False).clamp_min(1e-4)) for x in (a, b)]
    return float(gaussian_kl(*fitted[0], *fitted[1]).quantile(q))


def distribution_match(forget: torch.Tensor, held_out: torch.Tensor, tail: float = 0.05) -> dict[str, float]:
    """How far D_f's scores are from held-out samples' (the auditor's view, a distribution, not two moments).

    ``ad_p``: Anderson–Darling k-sample p-value (scipy caps it to [0.001, 0.25]; it weighs the tails);
    ``tail_p``: one-sided binomial p-value that more of D_f than ``tail`` lies above the held-out
    ``1 - tail`` quantile (a member-like tail); ``shift``: median difference (negative: overshot); ``shift_p``:
    one-sided Mann–Whitney p-value that D_f lies above the held-out samples;
    ``distance``: the 1-Wasserstein distance between the two, which keeps falling where the tests saturate."""
    f, h = forget.detach().double().cpu().numpy(), held_out.detach().double().cpu().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad = stats.anderson_ksamp([f, h])
    above = int((f > np.quantile(h, 1 - tail)).sum())
    tail_p = float(stats.binomtest(above, len(f), tail, alternative="greater").pvalue)
    return {"ad_statistic": float(ad.statistic), "ad_p": float(ad.pvalue), "tail_fraction": above / len(f),
            "tail_p": tail_p, "shift": float(np.median(f) - np.median(h)),
            "shift_p": float(stats.mannwhitneyu(f, h, alternative="greater").pvalue),
            "distance": float(stats.wasserstein_distance(f, h))}


class Objective(ABC):
    """The privacy part of ReMI's loss and its stopping rule, set up once per request."""

    min_batch = 1
    """Fewest forgotten samples a step needs (batch statistics need two)."""
    keeps_closest = True
    """Whether moving on can overshoot the target, so that the run keeps the model closest to it (by the status'
    ``distance``) and gives up after ``patience`` checks without getting closer."""

    def __init__(self, config: RemiConfig, request: UnlearningRequest, model: nn.Module, forget: TensorData,
                 reference: TensorData, device: torch.device) -> None:
        self.config, self.request, self.forget, self.reference = config, request, forget, reference

    def anchor_targets(self, log_probs: torch.Tensor) -> torch.Tensor:
        """The log-probabilities the anchor keeps on D_ref, from the original's (default: unchanged)."""
        return log_probs

    def anchor(self, logits_ref: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The anchor term on a reference batch (``targets``: its rows of :meth:`anchor_targets`)."""
        return ANCHORS.get(self.config.anchor)(logits_ref, targets)

    @abstractmethod
    def terms(self, logits_f: torch.Tensor, f_idx: torch.Tensor, logits_ref: torch.Tensor,
              ref_idx: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        """Named ``(weight, value)`` loss terms on the forget batch (and, if needed, the reference batch)."""

    @abstractmethod
    def status(self, model: nn.Module) -> dict[str, float]:
        """Full-set values the stopping rule reads (logged every check)."""

    @abstractmethod
    def reached(self, status: dict[str, float], untouched: bool = False) -> str | None:
        """Why the request is met, or None; ``untouched``: the status is the original model's."""


OBJECTIVES: Registry[type[Objective]] = Registry("remi objective")
ANCHORS: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("remi anchor")
"""Anchor terms: the change from the original's log-probabilities on D_ref (``targets``) to the current ``logits``."""


@ANCHORS.register("logits")
def logit_anchor(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Half the mean squared change of the centred logits (softmax ignores a per-sample shift)."""
    change = (logits - logits.mean(1, keepdim=True)) - (targets - targets.mean(1, keepdim=True))
    return 0.5 * (change**2).mean(1).mean()


@ANCHORS.register("kl")
def kl_anchor(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL from the original's predicted distribution to the current one."""
    return F.kl_div(F.log_softmax(logits, 1), targets, log_target=True, reduction="batchmean")


TARGETS = ("out-mean", "rank", "random")
ALREADY_MET_LEVEL = 0.05
"""Fixed-target objectives return a request untouched when, besides the one-sided tests and the accuracy check at
``level``, the two-sided test finds no difference from held-out samples at this usual level (at ``level`` it
rejects a quarter of the requests that are met)."""
AUTO = "auto"


@OBJECTIVES.register("population")
class PopulationObjective(Objective):
    """The spec's objective: softplus(a) towards "non-member" and a Gaussian KL of ``s`` to D_ref's."""

    min_batch = 2

    def __init__(self, config: RemiConfig, request: UnlearningRequest, model: nn.Module, forget: TensorData,
                 reference: TensorData, device: torch.device) -> None:
        super().__init__(config, request, model, forget, reference, device)
        self.approximator = request.approximator.to(device)

    def terms(self, logits_f: torch.Tensor, f_idx: torch.Tensor, logits_ref: torch.Tensor,
              ref_idx: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        y_f = self.forget.y[f_idx]
        leakage = F.softplus(self.approximator(logits_f, y_f)).mean()
        mu_ref, sigma_ref = (m.detach() for m in moments(logit_confidence(logits_ref, self.reference.y[ref_idx])))
        kl = gaussian_kl(*moments(logit_confidence(logits_f, y_f)), mu_ref, sigma_ref)
        return {"leakage": (self.config.alpha, leakage), "kl": (self.config.beta, kl)}

    @torch.no_grad()
    def status(self, model: nn.Module) -> dict[str, float]:
        """Mean σ(a) on D_f and D_ref and the Gaussian KL of ``s``, with their noise-level thresholds."""
        out, scores, std_errors = {}, {}, []
        for key, data in (("forget", self.forget), ("ref", self.reference)):
            logits = predict_logits(model, data).to(data.y.device)
            prob = torch.sigmoid(self.approximator(logits, data.y))
            out[f"{key}_member_prob"] = float(prob.mean())
            std_errors.append(float(prob.var(correction=int(len(prob) > 1))) / len(prob))
            scores[key] = logit_confidence(logits, data.y)
        out["kl_full"] = float(gaussian_kl(*moments(scores["forget"]), *moments(scores["ref"])))
        c = self.config
        out["member_tolerance"] = c.member_tolerance if c.member_tolerance is not None else 2 * sum(std_errors) ** 0.5
        out["kl_threshold"] = (c.kl_threshold if c.kl_threshold is not None
                               else null_kl_quantile(scores["forget"], scores["ref"]))
        return out

    def reached(self, status: dict[str, float], untouched: bool = False) -> str | None:
        gap = status["forget_member_prob"] - status["ref_member_prob"]
        if gap <= status["member_tolerance"] and status["kl_full"] <= status["kl_threshold"]:
            return "D_f as member-like as D_ref (mean σ(a) within noise, Gaussian KL below its permutation quantile)"
        return None


def match_reason(status: dict[str, float], level: float, what: str, one_sided: bool = False) -> str | None:
    """The stopping rule of the matching objectives: neither test (distribution, upper tail) below ``level``.
    ``one_sided``: the distribution test only asks whether D_f lies *above* the held-out samples (Mann–Whitney),
    for targets that narrow D_f around the OUT means, where a narrower spread is not member-like."""
    test, p = ("Mann–Whitney, one-sided", status["shift_p"]) if one_sided else ("Anderson–Darling", status["ad_p"])
    if p >= level and status["tail_p"] >= level:
        return (f"{what} ({test} p={p:.3g}, {status['tail_fraction']:.1%} of D_f above the "
                f"held-out 95% quantile, tail p={status['tail_p']:.3g})")
    return None


@OBJECTIVES.register("per-example")
class PerExampleObjective(Objective):
    """Each forgotten sample's ``s`` toward its own OUT mean (or a held-out z-score around it, ``targets``), judged
    against calibration samples nobody trained on: their z-scores ``(s − μ_out(x)) / σ_out`` under the current
    model are what a non-member looks like."""

    def __init__(self, config: RemiConfig, request: UnlearningRequest, model: nn.Module, forget: TensorData,
                 reference: TensorData, device: torch.device) -> None:
        super().__init__(config, request, model, forget, reference, device)
        approximator = request.approximator.to(device)  # its OUT models' passes, on the CPU, would dominate a GPU run
        problem = ReMI(config).approximator_problem(type(approximator))
        if problem:
            raise MiunlearnError(problem)
        self.calibration = place_data(approximator.calibration, device, False)
        out_f, out_cal = approximator.predict_out(forget), approximator.calibration_out()
        self.mu_f, self.mu_cal, self.out_log_probs = out_f.mu, out_cal.mu.to(device), out_f.log_probs
        self.out_accuracy = (out_f.accuracy, out_cal.accuracy)
        self.calibrated = config.targets != "out-mean"
        # Targets re-ranked at every check follow the model and can be overshot; fixed ones are converged on.
        self.keeps_closest = config.targets == "rank"
        # The spread of the original's s around the OUT predictions on the held-out samples: their z-scores have unit
        # spread. The OUT models' own pooled spread misses the variation from training on other data than theirs.
        logits_cal = predict_logits(model, self.calibration).to(self.mu_cal.device)
        s_cal = logit_confidence(logits_cal, self.calibration.y)
        self.sigma = (s_cal - self.mu_cal).std().clamp_min(1e-3).to(device)
        # The given model's scores on the calibration samples, for a check before the first step (terms() drops them).
        self.untouched_cal: tuple[torch.Tensor, torch.Tensor] | None = (
            (s_cal - self.mu_cal) / self.sigma, logits_cal.argmax(1) == self.calibration.y)
        self.targets = torch.zeros_like(self.mu_f)
        n = len(forget)
        self.random_levels = (torch.randperm(n, generator=torch.Generator().manual_seed(request.seed)).double()
                              + 0.5) / n
        if self.calibrated:
            self.status(model)

    def terms(self, logits_f: torch.Tensor, f_idx: torch.Tensor, logits_ref: torch.Tensor,
              ref_idx: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        self.untouched_cal = None
        z = (logit_confidence(logits_f, self.forget.y[f_idx]) - self.mu_f[f_idx]) / self.sigma
        terms = {"likelihood": (self.config.likelihood, 0.5 * ((z - self.targets[f_idx]) ** 2).mean())}
        if self.config.distill:
            terms["distill"] = (self.config.distill, F.kl_div(F.log_softmax(logits_f, 1), self.out_log_probs[f_idx],
                                                              log_target=True, reduction="batchmean"))
        return terms

    def status(self, model: nn.Module) -> dict[str, float]:
        """The match of D_f's z-scores to the calibration samples'; ``fit``, the likelihood term on all of D_f; the
        accuracy check; and (calibrated targets) each sample's new target.

        Targets fixed per sample (``out-mean``) need no calibration samples to measure ``fit``, and until D_f has
        converged on them the rule cannot stop, so the calibration samples are scored only then, and at the first
        check (the untouched model's): a run that ends on its budget scored them at every check for nothing."""
        z_f, correct = self._scored(model, self.forget, self.mu_f)
        fit = float(0.5 * ((z_f - self.targets).double() ** 2).mean())
        if not self.calibrated and self.untouched_cal is None and fit > self.config.tolerance:
            return {"fit": fit, "forget_acc": float(correct.float().mean())}
        z_cal, correct_cal = self.untouched_cal or self._scored(model, self.calibration, self.mu_cal)
        if self.calibrated:
            levels = ((z_f.argsort().argsort().double() + 0.5) / len(z_f) if self.config.targets == "rank"
                      else self.random_levels.to(z_f.device))
            quantiles = torch.quantile(z_cal.double(), levels)
            if self.config.targets == "random":
                median = z_cal.double().median()
                quantiles = median + self.config.spread * (quantiles - median)
            self.targets = quantiles.to(z_f.dtype)
        status = distribution_match(z_f, z_cal)
        status["fit"] = float(0.5 * ((z_f - self.targets).double() ** 2).mean()) if self.calibrated else fit
        if self.config.accuracy_check:
            # What D_f's accuracy would be if the model treated it like the calibration samples, relative to the
            # OUT models on each: a model that loses accuracy everywhere does not get closer by it.
            out_f, out_cal = self.out_accuracy
            expected = float(np.clip(out_f + float(correct_cal.float().mean()) - out_cal, 1e-9, 1 - 1e-9))
            hits, n = int(correct.sum()), len(correct)
            status |= {"forget_acc": hits / n, "expected_acc": expected,
                       "acc_p": float(stats.binomtest(hits, n, expected, alternative="greater").pvalue)}
            if self.keeps_closest:  # the distance the closest model is kept by
                status["distance"] += max(0.0, hits / n - expected)
        return status

    def reached(self, status: dict[str, float], untouched: bool = False) -> str | None:
        if status.get("acc_p", 1.0) < self.config.level:
            return None
        if self.keeps_closest:
            reason = match_reason(status, self.config.level,
                                  "D_f's per-example z-scores distributed like held-out calibration samples'")
        else:
            # Pulled to their OUT means, D_f's z-scores narrow below the held-out spread: not member-like, so the
            # tests are one-sided. Where they have little power a model can pass them with D_f half moved, so D_f
            # must also have converged on its targets, unless the original already scores it like held-out
            # samples (a request already met, returned untouched).
            converged = status["fit"] <= self.config.tolerance
            if not converged and not (untouched and status["ad_p"] >= ALREADY_MET_LEVEL):
                return None
            reason = match_reason(status, self.config.level, "D_f's per-example z-scores no more member-like than "
                                  "held-out calibration samples'", one_sided=True)
            if reason:
                reason += (f"; D_f converged on its targets (mean (z − t)²/2 = {status['fit']:.3g})" if converged else
                           f"; D_f distributed like them (Anderson–Darling p={status['ad_p']:.3g})")
        if reason and "acc_p" in status:
            reason += (f"; D_f classified right {status['forget_acc']:.1%} of the time, as held-out samples would be "
                       f"{status['expected_acc']:.1%} (binomial p={status['acc_p']:.3g})")
        return reason

    def scores(self, model: nn.Module) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """z-scores on D_f and on the calibration samples, and which of each the model classifies right."""
        (z_f, correct_f), (z_cal, correct_cal) = (self._scored(model, self.forget, self.mu_f),
                                                  self._scored(model, self.calibration, self.mu_cal))
        return (z_f, z_cal), (correct_f, correct_cal)

    @torch.no_grad()
    def _scored(self, model: nn.Module, data: TensorData, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z-scores of ``data`` (OUT means ``mu``) under ``model``, and which samples it classifies right."""
        logits = predict_logits(model, data).to(mu.device)
        return (logit_confidence(logits, data.y) - mu) / self.sigma, logits.argmax(1) == data.y


class ClassObjective(Objective):
    """Forget whole classes: D_r has none of them left, so a retrained model never saw them.

    Such a model spreads a forgotten class's samples over the remaining classes and gives its label the
    confidence it gives that label on other classes' samples. So the target outputs on D_f (and, through
    the anchor, on D_ref) are the original's with the forgotten classes removed and renormalised; the
    stopping rule compares ``s`` of D_f under its own label with ``s`` of D_ref samples of the remaining
    classes under a forgotten label, and waits while those samples are classified right less often than the
    original did (the first steps cost the other classes accuracy, which later ones win back)."""

    def __init__(self, config: RemiConfig, request: UnlearningRequest, model: nn.Module, forget: TensorData,
                 reference: TensorData, device: torch.device, classes: torch.Tensor) -> None:
        super().__init__(config, request, model, forget, reference, device)
        logits = predict_logits(model, forget).to(device)
        self.mask = torch.zeros(logits.shape[1], dtype=torch.bool, device=device)
        self.mask[classes] = True
        self.teacher = self.anchor_targets(F.log_softmax(logits, 1))
        kept = ~self.mask[reference.y]
        generator = torch.Generator().manual_seed(request.seed)
        labels = classes[torch.randint(len(classes), (int(kept.sum()),), generator=generator)].to(device)
        self.held_out = TensorData(reference.x[kept], labels)
        # Their own labels: a model that never saw the forgotten classes classifies the others at least as well as
        # the original (it cannot mistake them for a forgotten class), so ReMI may not stop below that.
        self.held_out_true = reference.y[kept]
        self.original_kept_acc = float((predict_logits(model, self.held_out).to(device).argmax(1)
                                        == self.held_out_true).float().mean())

    def anchor_targets(self, log_probs: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(log_probs.masked_fill(self.mask, float("-inf")), 1).clamp_min(-1e4)

    def anchor(self, logits_ref: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return kl_anchor(logits_ref, targets)

    def terms(self, logits_f: torch.Tensor, f_idx: torch.Tensor, logits_ref: torch.Tensor,
              ref_idx: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        teacher = self.teacher[f_idx]
        kl = F.kl_div(F.log_softmax(logits_f, 1), teacher, log_target=True, reduction="batchmean")
        return {"class_kl": (self.config.likelihood, kl)}

    @torch.no_grad()
    def status(self, model: nn.Module) -> dict[str, float]:
        """The match of ``s``, and how often the model still names a forgotten class on D_f vs on the held-out
        samples of other classes (a retrained model never names it; the original here names it everywhere)."""
        logits = [predict_logits(model, d).to(d.y.device) for d in (self.forget, self.held_out)]
        named = [float(self.mask[lg.argmax(1)].float().mean()) for lg in logits]
        hits = round(named[0] * len(self.forget))
        rate = max(named[1], 1 / len(self.held_out))
        kept_hits = int((logits[1].argmax(1) == self.held_out_true).sum())
        expected = float(np.clip(self.original_kept_acc, 1e-9, 1 - 1e-9))
        return {**distribution_match(*(logit_confidence(lg, d.y) for lg, d in zip(logits, (self.forget,
                                                                                           self.held_out)))),
                "forget_named": named[0], "held_out_named": named[1],
                "named_p": float(stats.binomtest(hits, len(self.forget), rate, alternative="greater").pvalue),
                "kept_acc": kept_hits / len(self.held_out_true), "original_kept_acc": self.original_kept_acc,
                "kept_p": float(stats.binomtest(kept_hits, len(self.held_out_true), expected,
                                                alternative="less").pvalue)}

    def reached(self, status: dict[str, float], untouched: bool = False) -> str | None:
        if status["kept_p"] < self.config.level:
            return None
        if status["named_p"] >= self.config.level:
            reason = (f"the model names the forgotten classes on {status['forget_named']:.1%} of their samples, no "
                      f"more often than on other classes' ({status['held_out_named']:.1%}; binomial "
                      f"p={status['named_p']:.3g})")
        else:
            reason = match_reason(status, self.config.level, "the forgotten classes scored like samples of the "
                                  "remaining classes under their labels")
        if reason:
            reason += (f"; other classes' held-out samples classified right {status['kept_acc']:.1%} of the time, "
                       f"no less than by the original ({status['original_kept_acc']:.1%}; binomial "
                       f"p={status['kept_p']:.3g})")
        return reason


def forgotten_classes(forget: TensorData, retain: TensorData) -> torch.Tensor:
    """Classes of D_f of which D_r keeps no sample: the request removes them entirely."""
    return torch.as_tensor(np.setdiff1d(forget.y.cpu().numpy(), retain.y.cpu().numpy()), dtype=torch.long)


@METHODS.register("remi")
class ReMI(UnlearningMethod):
    name = "remi"
    Config = RemiConfig
    requires = ("retain", "reference", "approximator")

    def validate(self) -> None:
        c = self.config
        if c.objective != AUTO:
            OBJECTIVES.validate(c.objective)
        ANCHORS.validate(c.anchor)
        for key in ("alpha", "beta", "likelihood", "distill", "gamma", "lr", "momentum", "weight_decay",
                    "member_tolerance", "kl_threshold", "min_epochs", "min_steps"):
            if getattr(c, key) is not None and getattr(c, key) < 0:
                raise MiunlearnError(f"remi.{key} must not be negative, got {getattr(c, key)}")
        if c.lr == 0:
            raise MiunlearnError("remi.lr must be positive")
        if c.epochs < 1:
            raise MiunlearnError(f"remi.epochs must be at least 1, got {c.epochs}")
        if min(c.forget_batch, c.retain_batch, c.ref_batch) < 2:
            raise MiunlearnError("remi batch sizes must be at least 2 (the KL term needs a standard deviation)")
        OPTIMIZERS.validate(c.optimizer)
        if c.checks_per_epoch < 1 or c.patience < 1:
            raise MiunlearnError("remi.checks_per_epoch and remi.patience must be at least 1")
        if c.min_epochs > c.epochs:
            raise MiunlearnError(f"remi.min_epochs must be in 0..epochs ({c.epochs}), got {c.min_epochs}")
        if c.targets not in TARGETS:
            raise MiunlearnError(f"unknown remi.targets {c.targets!r}; valid: {', '.join(TARGETS)}")
        if c.spread < 0:
            raise MiunlearnError(f"remi.spread must not be negative, got {c.spread}")
        if c.tolerance <= 0:
            raise MiunlearnError(f"remi.tolerance must be positive, got {c.tolerance}")
        if not 0 < c.level < 1:
            raise MiunlearnError(f"remi.level must be in (0, 1), got {c.level}")

    def approximator_problem(self, approximator: type) -> str | None:
        if self.config.objective == "per-example" and not hasattr(approximator, "out_statistics"):
            return (f"remi objective 'per-example' needs the per-example approximator (approximator.name=per-example), "
                    f"not {approximator.name!r}; or set unlearn.params.remi.objective=population")
        return None

    def run(self, model: nn.Module, request: UnlearningRequest, history: list[dict[str, float]]) -> str:
        trainable = self._trainable(model)
        flags = {p: p.requires_grad for p in model.parameters()}
        for p in model.parameters():  # frozen layers need no weight gradients: a cheaper backward pass
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(flags[p])
        try:
            return self._run(model, request, trainable, history)
        finally:
            for p, flag in flags.items():
                p.requires_grad_(flag)

    def request_problem(self, forget_size: int, approximator: type) -> str | None:
        name = self._objective_name(approximator)
        needed = OBJECTIVES.get(name).min_batch
        if forget_size < needed:
            return (f"remi objective {name!r} matches batch statistics and needs at least {needed} forgotten "
                    f"samples, got {forget_size}; use the per-example objective (approximator.name=per-example) "
                    "for single-sample requests")
        return None

    def _objective_name(self, approximator: type) -> str:
        if self.config.objective != AUTO:
            return self.config.objective
        return "per-example" if hasattr(approximator, "out_statistics") else "population"

    def _objective(self, model: nn.Module, request: UnlearningRequest, forget: TensorData, reference: TensorData,
                   retain: TensorData, device: torch.device) -> Objective:
        classes = forgotten_classes(forget, retain)
        if len(classes):
            return ClassObjective(self.config, request, model, forget, reference, device, classes.to(device))
        problem = self.request_problem(len(forget), type(request.approximator))
        if problem:
            raise MiunlearnError(problem)
        name = self._objective_name(type(request.approximator))
        return OBJECTIVES.get(name)(self.config, request, model, forget, reference, device)

    def _run(self, model: nn.Module, request: UnlearningRequest, trainable: list[nn.Parameter],
             history: list[dict[str, float]]) -> str:
        c = self.config
        device, channels_last = place_model(model, request.recipe, request.forget)
        forget, retain, reference = (place_data(d, device, channels_last)
                                     for d in (request.forget, request.retain, request.reference))
        objective = self._objective(model, request, forget, reference, retain, device)
        anchor = objective.anchor_targets(F.log_softmax(predict_logits(model, reference).to(device), dim=1))
        # BatchNorm in training mode, as the target was trained: in eval mode the weights feeding a BN layer
        # lose their scale invariance and the same step size moves the model much further.
        model.train()
        optimizer = OPTIMIZERS.get(c.optimizer)(trainable, c)
        generator = torch.Generator().manual_seed(request.seed)
        best: tuple[float, float, dict] | None = None  # (distance, epoch, weights) of the closest model so far
        stale = 0
        if c.min_epochs == 0:
            status = objective.status(model)
            history.append({"epoch": 0.0, **status})
            reason = objective.reached(status, untouched=True)
            if reason:
                return f"{reason} before any step"
            if objective.keeps_closest and "distance" in status:
                best = (status["distance"], 0.0, copy.deepcopy(model.state_dict()))
        steps_per_epoch = max(-(-len(forget) // c.forget_batch), c.min_steps)
        check_at = {round(steps_per_epoch * (i + 1) / c.checks_per_epoch) for i in range(c.checks_per_epoch)}
        sums: dict[str, float] = {}
        steps, start = 0, time.perf_counter()
        for epoch in progress(range(c.epochs), c.epochs, "remi", request.recipe.progress):
            for i, f_idx in enumerate(self._epoch_batches(len(forget), steps_per_epoch, generator, device), 1):
                if len(f_idx) >= objective.min_batch:
                    for key, value in self._step(model, objective, optimizer, generator, forget, retain, reference,
                                                 anchor, f_idx, request).items():
                        sums[key] = sums.get(key, 0.0) + value
                    steps += 1
                if i not in check_at:
                    continue
                status = objective.status(model)
                done = epoch + i / steps_per_epoch
                history.append({"epoch": done, **{k: v / max(steps, 1) for k, v in sums.items()}, **status,
                                "seconds": time.perf_counter() - start})
                sums, steps, start = {}, 0, time.perf_counter()
                if done < c.min_epochs:
                    continue
                reason = objective.reached(status)
                if reason:
                    return f"{reason} after {done:.3g} epoch(s)"
                if not objective.keeps_closest or "distance" not in status:
                    continue
                if best is None or status["distance"] < best[0]:
                    best, stale = (status["distance"], done, copy.deepcopy(model.state_dict())), 0
                else:
                    stale += 1
                if stale >= c.patience:
                    model.load_state_dict(best[2])
                    return (f"no closer to the held-out distribution for {stale} checks: kept the closest "
                            f"model (after {best[1]:.3g} epoch(s)); its test still rejects at level {c.level}")
        if best is not None and history[-1].get("distance", np.inf) > best[0]:
            model.load_state_dict(best[2])
            return f"epoch budget ({c.epochs}) reached: kept the closest model (after {best[1]:.3g} epoch(s))"
        return f"epoch budget ({c.epochs}) reached"

    def _epoch_batches(self, n: int, steps: int, generator: torch.Generator, device: torch.device):
        """``steps`` forget batches: shuffled passes over D_f, as many as it takes (a small D_f is cycled)."""
        done = 0
        while done < steps:
            for f_idx in batches(n, self.config.forget_batch, generator, device):
                if done == steps:
                    return
                done += 1
                yield f_idx

    def model_problem(self, model: nn.Module) -> str | None:
        """Each of ``frozen``'s prefixes must name some parameter, and some parameter must be left to train."""
        names = [name for name, _ in model.named_parameters()]
        unmatched = [p for p in self.config.frozen if not any(name.startswith(p) for name in names)]
        if unmatched:
            top = sorted({name.split(".")[0] for name in names})
            return (f"remi.frozen: no parameter named {unmatched[0]!r}...; this model's top-level parameter names "
                    f"start with: {', '.join(top)}")
        if not self._trainable(model):
            return "remi.frozen leaves no parameter to train"
        return None

    def _trainable(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters ReMI may change: all but ``frozen``'s (checked by :meth:`model_problem`)."""
        frozen = tuple(self.config.frozen)
        return [p for name, p in model.named_parameters() if not name.startswith(frozen)]

    def _step(self, model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer,
              generator: torch.Generator, forget: TensorData, retain: TensorData, reference: TensorData,
              anchor: torch.Tensor, f_idx: torch.Tensor, request: UnlearningRequest) -> dict[str, float]:
        """One step on the objective for forget batch ``f_idx``; returns the terms' values."""
        c = self.config
        device = f_idx.device
        r_idx = torch.randint(len(retain), (c.retain_batch,), generator=generator).to(device)
        ref_idx = torch.randint(len(reference), (c.ref_batch,), generator=generator).to(device)
        x = torch.cat([retain.x[r_idx], forget.x[f_idx], reference.x[ref_idx]])
        with autocast(device, request.recipe.precision):
            logits = model(x).float()
        logits_r, logits_f, logits_ref = logits.split([len(r_idx), len(f_idx), len(ref_idx)])
        terms = {"ce": (1.0, F.cross_entropy(logits_r, retain.y[r_idx])),
                 **objective.terms(logits_f, f_idx, logits_ref, ref_idx),
                 "drift": (c.gamma, objective.anchor(logits_ref, anchor[ref_idx]))}
        loss = sum(weight * value for weight, value in terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {key: float(value.detach()) for key, (_, value) in terms.items()}


# ReMI's Optuna search space (kept at the end, apart from the method, which is rewritten independently).
from typing import Any  # noqa: E402

from miunlearn.unlearning.search_space import SEARCH_SPACES, suggest_lr_epochs  # noqa: E402


@SEARCH_SPACES.register("remi")
def _remi_space(trial: Any) -> dict[str, Any]:
    """ReMI's step size and pass budget, the weights of its per-example likelihood term and of the anchor, and
    how closely D_f must converge on its OUT means (``tolerance``). ``alpha``/``beta`` weigh only the population
    objective, which the default ``per-example`` approximator does not use, so they are not searched; neither
    are the tests' ``level``, which ``tolerance`` and the pass budget already trade against speed, nor
    ``distill``, off by default (its docstring says why)."""
    return suggest_lr_epochs(trial, (1e-4, 3e-3), (2, 30)) | {
        key: trial.suggest_float(key, 0.1, 10.0, log=True) for key in ("likelihood", "gamma")} | {
        "tolerance": trial.suggest_float("tolerance", 0.01, 0.3, log=True)}
