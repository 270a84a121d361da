"""PNG plots of a run: audit ROC curves and the membership statistic before and after unlearning."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from miunlearn.io import atomic_path  # noqa: E402
from miunlearn.reporting.colours import model_colours  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_roc(curves_by_model: dict[str, dict], path: str | Path) -> None:
    """One panel per audit attack, one log-log ROC line per model, chance on the diagonal."""
    attacks = sorted({k for c in curves_by_model.values() for k, v in c.items() if isinstance(v, dict)})
    if not attacks:
        return
    colours = model_colours(list(curves_by_model))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.4 * len(attacks), 4), squeeze=False, layout="constrained")
    for ax, attack in zip(axes[0], attacks):
        for model, curves in curves_by_model.items():
            if attack in curves:
                fpr, tpr = np.asarray(curves[attack]["fpr"]), np.asarray(curves[attack]["tpr"])
                ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=model, color=colours[model])
        ax.plot([1e-4, 1], [1e-4, 1], "k:", lw=1, label="chance")
        ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="FPR (D_audit)",
               ylabel="TPR (D_f)", title=f"audit: {attack}")
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_s_histograms(curves_by_model: dict[str, dict], path: str | Path) -> None:
    """Histogram of the logit-scaled confidence ``s`` on D_f vs D_audit, one panel per model."""
    models = list(curves_by_model)
    colours = model_colours(models)
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.4), squeeze=False, sharey=True,
                             layout="constrained")
    values = np.concatenate([np.r_[c["s_forget"], c["s_audit"]] for c in curves_by_model.values()])
    lo, hi = np.percentile(values, [0.5, 99.5])
    bins = np.linspace(lo, hi, 40)
    for ax, model in zip(axes[0], models):
        c = curves_by_model[model]
        ax.hist(np.clip(c["s_audit"], lo, hi), bins=bins, alpha=0.55, density=True, label="D_audit (never seen)")
        ax.hist(np.clip(c["s_forget"], lo, hi), bins=bins, alpha=0.55, density=True, label="D_f (forget)")
        ax.set(xlabel="s = logit-scaled confidence")
        ax.set_title(model, color=colours[model], fontweight="bold")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
