"""A report a person can read: one self-contained HTML file (images embedded) and a Markdown summary.

``miunlearn report RUN_DIR`` reads ``metrics.json`` (the run) and, when present, ``audit.json`` and
``audit_scores.npz`` (the strong audit of ``miunlearn audit``), and writes ``report.html`` and
``report.md`` beside them. It trains nothing and runs no attack, so it is quick to regenerate.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from miunlearn import runfolder  # noqa: E402
from miunlearn.audit.attack_metrics import tpr_key  # noqa: E402
from miunlearn.audit.strong import strongest_attack  # noqa: E402
from miunlearn.io import atomic_write  # noqa: E402
from miunlearn.reporting.colours import model_colours, model_markers  # noqa: E402
from miunlearn.reporting.table import COLUMNS  # noqa: E402

#: Keys of a per-epoch log that are bookkeeping, not loss terms.
NOT_LOSS_TERMS = {"epoch", "seconds", "train_acc"}


def _fmt(value: float | None, ci: list[float] | None = None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def audit_rows(audit: dict) -> tuple[list[str], list[list[str]]]:
    """One row per attack and model: AUC, TPR at each FPR and balanced accuracy, with 95% intervals."""
    fprs = audit["config"]["fprs"]
    headers = ["attack", "model", "AUC [95% CI]"] + [f"TPR@{f * 100:g}%FPR" for f in fprs] + ["balanced acc"]
    rows = []
    for attack, by_model in audit["attacks"].items():
        for model, r in by_model.items():
            rows.append([attack, model, _fmt(r["auc"], r.get("auc_ci"))]
                        + [_fmt(r[tpr_key(f)], r.get(f"{tpr_key(f)}_ci")) for f in fprs]
                        + [_fmt(r["balanced_accuracy"], r.get("balanced_accuracy_ci"))])
    return headers, rows


def verdicts(audit: dict) -> list[str]:
    """Plain sentences: is each method distinguishable from retraining under the strongest attack?"""
    results = audit["attacks"]
    if not results or "original" not in next(iter(results.values())):
        return []
    headline = [f"Verdict — {model}: {v['sentence']}." for model, v in audit.get("verdicts", {}).items()]
    attack = strongest_attack(results)
    by_model = results[attack]
    lines = headline + [f"Strongest attack (highest AUC on the original model): {attack}, AUC "
             f"{_fmt(by_model['original']['auc'], by_model['original'].get('auc_ci'))} on the original."]
    base = by_model.get("retrain")
    for model, r in by_model.items():
        if model in ("original", "retrain") or base is None:
            continue
        diff = audit["comparison"].get(attack, {}).get(model, {})
        judged = "compare the values"
        if "distinguishable" in diff:
            lo, hi = diff["auc_difference_ci"]
            judged = (f"AUC difference {diff['auc_difference']:+.3f} (paired 95% CI [{lo:+.3f}, {hi:+.3f}]; "
                      "AUC alone, the verdict also reads TPR at low FPR)")
        lines.append(f"{model}: AUC {_fmt(r['auc'], r.get('auc_ci'))} vs retrain "
                     f"{_fmt(base['auc'], base.get('auc_ci'))}; {judged}.")
    for model, r in (audit.get("ulira") or {}).items():
        lines.append(f"U-LiRA ({model} vs retrain on D_f, per example): AUC {_fmt(r['auc'], r.get('auc_ci'))} "
                     "(0.5: the attack cannot tell the unlearned model from the retrained one).")
    for model, r in (audit.get("challenge") or {}).items():
        if isinstance(r, dict):
            lines.append(f"NeurIPS 2023 challenge score ({model}, {r['copies']} copies): {r['score']:.3f} "
                         f"(forgetting quality {r['forgetting_quality']:.3f}).")
    return lines


def print_audit(audit: dict, console: Console) -> None:
    headers, rows = audit_rows(audit)
    table = Table(title="strong audit: D_f (members) vs D_audit (non-members)")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 2 else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    for line in verdicts(audit) + audit["notes"]:
        console.print(f"[dim]• {line}[/dim]")


# ---------------------------------------------------------------- plots (PNG bytes, embedded as data URIs)

def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_reference_roc(audit: dict, colours: dict[str, str]) -> bytes:
    attacks = list(audit["attacks"])
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.4 * len(attacks), 4), squeeze=False, layout="constrained")
    for ax, attack in zip(axes[0], attacks):
        for model, r in audit["attacks"][attack].items():
            fpr, tpr = np.asarray(r["roc"]["fpr"]), np.asarray(r["roc"]["tpr"])
            ax.plot(np.maximum(fpr, 1e-4), np.maximum(tpr, 1e-4), label=f"{model} ({r['auc']:.3f})",
                    color=colours.get(model))
        ax.plot([1e-4, 1], [1e-4, 1], "k:", lw=1, label="chance")
        ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), xlabel="FPR (D_audit)", ylabel="TPR (D_f)",
               title=attack)
        ax.legend(fontsize=7)
    return _png(fig)


def plot_score_histograms(scores: dict[str, np.ndarray], attack: str, models: list[str],
                          colours: dict[str, str]) -> bytes:
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.3), squeeze=False, sharey=True,
                             layout="constrained")
    values = np.concatenate([scores[f"{attack}/{m}/{part}"] for m in models for part in ("forget", "audit")])
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, [1, 99]) if len(finite) else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
    for ax, model in zip(axes[0], models):
        for part, label in (("audit", "D_audit (never seen)"), ("forget", "D_f (forget)")):
            ax.hist(np.clip(scores[f"{attack}/{model}/{part}"], bins[0], bins[-1]), bins=bins, alpha=0.55,
                    density=True, label=label)
        ax.set(xlabel=f"{attack} score")
        ax.set_title(model, color=colours.get(model), fontweight="bold")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=8)
    return _png(fig)


#: per-epoch log keys -> the panel they are drawn in (first match); everything else is a loss term
PANELS = (("member_prob", "membership probability (stopping rule)"), ("tolerance", "membership probability "
          "(stopping rule)"), ("kl_full", "KL of s, D_f vs D_ref (stopping rule)"),
          ("kl_threshold", "KL of s, D_f vs D_ref (stopping rule)"))
LOSS_PANEL = "loss terms (mean over the epoch's steps)"


def _panel(key: str) -> str:
    return next((title for pattern, title in PANELS if pattern in key), LOSS_PANEL)


def plot_loss_terms(records: dict[str, dict], colours: dict[str, str]) -> bytes | None:
    """One row per method; its per-epoch series split into panels by what they measure, each labelled."""
    logged = {m: r["history"] for m, r in records.items()
              if m != "original" and isinstance(r, dict) and r.get("history")}
    if not logged:
        return None
    grouped: dict[str, dict[str, list[str]]] = {}
    for method, history in logged.items():
        logged_keys = {k: v for entry in history for k, v in entry.items()}  # a check may log fewer
        keys = [k for k, v in logged_keys.items() if k not in NOT_LOSS_TERMS and isinstance(v, (int, float))
                and not isinstance(v, bool)]
        panels: dict[str, list[str]] = {}
        for key in keys:
            panels.setdefault(_panel(key), []).append(key)
        grouped[method] = panels
    columns = max(len(p) for p in grouped.values())
    fig, axes = plt.subplots(len(grouped), columns, figsize=(4.8 * columns, 3.2 * len(grouped)), squeeze=False,
                             layout="constrained")
    for row, (method, panels) in zip(axes, grouped.items()):
        history = logged[method]
        x = [entry.get("epoch", i + 1) for i, entry in enumerate(history)]
        for ax, (title, keys) in zip(row, panels.items()):
            for key in keys:
                dashed = "threshold" in key or "tolerance" in key
                ax.plot(x, [entry.get(key, np.nan) for entry in history], ls="--" if dashed else "-",
                        marker=None if dashed else "o", ms=3, label=key)
            ax.set_xlabel("epoch")
            ax.set_title(f"{method}: {title}", fontsize=9, color=colours.get(method))
            ax.legend(fontsize=7)
        for ax in row[len(panels):]:
            ax.axis("off")
    return _png(fig)


def plot_tradeoff(points: dict[str, dict[str, float]], privacy_label: str, colours: dict[str, str]) -> bytes:
    """Test accuracy and seconds against the privacy metric, one point per model, named in a shared legend
    (labels beside the points overlapped when methods land close together)."""
    markers = model_markers(list(points))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for model, p in points.items():
        style = {"color": colours.get(model), "marker": markers[model], "s": 60, "edgecolors": "black",
                 "linewidths": 0.5}
        axes[0].scatter(p["privacy"], p["test_acc"] * 100, label=model, **style)
        if p.get("seconds"):
            axes[1].scatter(p["privacy"], p["seconds"], **style)
    axes[0].set(xlabel=privacy_label, ylabel="test accuracy %", title="accuracy vs privacy")
    axes[1].set(xlabel=privacy_label, ylabel="seconds (log)", yscale="log", title="time vs privacy")
    for ax in axes:
        ax.axvline(0.5, color="k", ls=":", lw=1)
    fig.legend(loc="outside right upper", fontsize=8, title="model")
    return _png(fig)


# ---------------------------------------------------------------- the documents

def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _run_table(models: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    present = [c for c in COLUMNS if any(c[0] in m for m in models.values())]
    return (["model"] + [h for _, h, _ in present],
            [[name] + [fmt(m[k]) if k in m else "—" for k, _, fmt in present] for name, m in models.items()])


def write_report(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md``; returns their paths."""
    run_dir = Path(run_dir)
    metrics = dataclasses.asdict(runfolder.read_metrics(run_dir))
    audit, scores = runfolder.read_audit(run_dir)

    info = metrics.get("dataset", {})
    title = f"miunlearn report: {run_dir.name}"
    colours = model_colours(list(metrics["models"]))
    sections: list[tuple[str, str, str]] = []  # (heading, html, markdown)
    figures: list[tuple[str, bytes, str]] = []  # (heading, png, caption)

    headers, rows = _run_table(metrics["models"])
    run_notes = metrics.get("notes", [])
    sections.append(("Run: accuracy and population attacks",
                     _html_table(headers, rows) + _list_html(run_notes),
                     _md_table(headers, rows) + "\n\n" + "\n".join(f"- {n}" for n in run_notes)))
    for name in ("audit_roc.png", "s_histograms.png"):
        path = run_dir / "plots" / name
        if path.is_file():
            figures.append((f"Run plot: {name}", path.read_bytes(), "population threshold attacks written by the run"))

    privacy_label = "AUC loss attack (population)"
    privacy = {m: v.get("loss_auc") for m, v in metrics["models"].items()}
    if audit:
        headers, rows = audit_rows(audit)
        lines = verdicts(audit)
        refs = audit["references"]
        setup = (f"{refs['count']} reference model(s), {refs['samples_per_model']} samples each, from a pool of "
                 f"{refs['pool_size']} (D_train ∪ D_audit); cached in {refs['folder']}")
        sections.append(("Strong audit: LiRA and RMIA with reference models",
                         f"<p>{html.escape(setup)}</p>" + _list_html(lines) + _html_table(headers, rows)
                         + _list_html(audit["notes"]),
                         setup + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" + _md_table(headers, rows)
                         + "\n\n" + "\n".join(f"- {n}" for n in audit["notes"])))
        for key, heading in (("ulira", "U-LiRA: unlearned vs retrained, per example"),
                             ("challenge", "NeurIPS 2023 unlearning-challenge score")):
            if audit.get(key):
                sections.append(_extra_section(heading, audit[key]))
        figures.append(("ROC of the reference-model attacks (log scale)", plot_reference_roc(audit, colours),
                        "one panel per attack, one line per model (AUC in the legend); dotted: chance"))
        attack = strongest_attack(audit["attacks"])
        models = list(audit["attacks"][attack])
        if all(f"{attack}/{m}/forget" in scores for m in models):
            figures.append((f"Per-sample {attack} score: D_f vs D_audit",
                            plot_score_histograms(scores, attack, models, colours),
                            "before (original), after (each method) and retrain; overlapping histograms mean "
                            "the attack cannot tell the forgotten samples from never-seen ones"))
        privacy_label = f"AUC {attack} (D_f vs D_audit)"
        privacy = {m: r["auc"] for m, r in audit["attacks"][attack].items()}
    loss_png = plot_loss_terms(metrics.get("records", {}), colours)
    if loss_png:
        figures.append(("Per-epoch loss terms of each method", loss_png, "from the unlearning records in metrics.json"))
    points = {m: {"privacy": privacy[m], "test_acc": v["test_acc"], "seconds": v.get("seconds")}
              for m, v in metrics["models"].items() if privacy.get(m) is not None}
    if points:
        figures.append(("Trade-off across methods", plot_tradeoff(points, privacy_label, colours),
                        "a good method sits near retrain: high accuracy, AUC near retrain's, few seconds"))

    html_path = Path(out) if out else run_dir / "report.html"
    md_path = html_path.with_suffix(".md")
    subtitle = f"dataset {info.get('name', '?')}"
    verdict_lines = summary(metrics, audit)
    size_headers, size_rows = sizes_rows(metrics.get("sizes", {}))
    sections.insert(0, ("Data roles", _html_table(size_headers, size_rows), _md_table(size_headers, size_rows)))
    verdict_html = (f"<section id=\"verdict\"><h2>Verdict</h2>{_list_html(verdict_lines)}</section>")
    body = verdict_html + "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content, _ in sections)
    body += "".join(f"<figure><h2>{html.escape(h)}</h2><img alt=\"{html.escape(h)}\" "
                    f"src=\"data:image/png;base64,{base64.b64encode(png).decode()}\"><figcaption>{html.escape(c)}"
                    "</figcaption></figure>" for h, png, c in figures)
    document = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"
                f"{body}</body></html>\n")
    markdown = (f"# {title}\n\n{subtitle}\n\n## Verdict\n\n" + "\n".join(f"- {line}" for line in verdict_lines)
                + "\n\n" + "\n\n".join(f"## {h}\n\n{md}" for h, _, md in sections))
    markdown += "\n\nFigures: see " + html_path.name + "\n"
    with atomic_write(html_path) as fh:
        fh.write(document)
    with atomic_write(md_path) as fh:
        fh.write(markdown)
    return html_path, md_path


ROLE_NAMES = {"train": "D_train: the target's training set (members)", "forget": "D_f: forgotten (part of D_train)",
              "retain": "D_r: retained (D_train minus D_f)", "ref": "D_ref: never-seen rows the unlearner may use",
              "shadow": "D_shadow: the approximator's models (OUT or shadow) only",
              "audit": "D_audit: never-seen rows only the audit sees", "test": "D_test: accuracy"}


def sizes_rows(sizes: dict[str, int]) -> tuple[list[str], list[list[str]]]:
    """The data roles and their sizes, as a table."""
    return ["role", "samples"], [[ROLE_NAMES.get(role, role), f"{n:,}"] for role, n in sizes.items()]


def summary(metrics: dict, audit: dict | None) -> list[str]:
    """The verdict a reader needs first: per method, did it forget like retraining, and any usefulness flag."""
    models = metrics["models"]
    usefulness = metrics.get("usefulness") or {}
    flags = {name: [f for f in findings if f["flagged"]] for name, findings in usefulness.get("methods", {}).items()}
    strong = {}
    if audit and audit.get("attacks"):
        attack = strongest_attack(audit["attacks"])
        strong = {m: (attack, d) for m, d in audit.get("comparison", {}).get(attack, {}).items()}
    base = models.get("retrain")
    lines = []
    for name, m in models.items():
        if name in ("original", "retrain"):
            continue
        parts = []
        if base:
            parts.append(f"forget accuracy {100 * m['forget_acc']:.1f}% (retrain {100 * base['forget_acc']:.1f}%), "
                         f"test {100 * m['test_acc']:.1f}% (retrain {100 * base['test_acc']:.1f}%)")
            if "avg_gap" in m:
                parts.append(f"average gap to retrain {m['avg_gap']:.2f} points")
        else:
            parts.append(f"forget accuracy {100 * m['forget_acc']:.1f}%, test {100 * m['test_acc']:.1f}%")
        problems = [f["check"].replace("-", " ") for f in flags.get(name, [])]
        if name in strong and "distinguishable" in strong[name][1]:
            attack, diff = strong[name]
            if diff["distinguishable"]:
                problems.append(f"distinguishable from retraining ({attack})")
            else:
                parts.append(f"{attack} cannot tell it from retraining")
        verdict = ", ".join(problems).upper() if problems else "no problem found"
        lines.append(f"{name} — {verdict}: " + "; ".join(parts))
    lines += [f"{name}: {f['message']}" for name, found in flags.items() for f in found]
    power = usefulness.get("power")
    if power and power["flagged"]:
        lines.append(power["message"])
    return lines or ["no unlearning method in this run"]


def _list_html(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else ""


def _extra_section(heading: str, by_model: dict) -> tuple[str, str, str]:
    rows = [[model] + [f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in r.items()
                       if not isinstance(v, (dict, list))]
            for model, r in by_model.items() if isinstance(r, dict)]
    first = next((r for r in by_model.values() if isinstance(r, dict)), {})
    headers = ["model"] + [k for k, v in first.items() if not isinstance(v, (dict, list))]
    return heading, _html_table(headers, rows), _md_table(headers, rows)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{margin:.3em 0;font-size:1.6em}#verdict{background:#f3f6fb;border:1px solid #c9d6ea;border-radius:6px;
padding:.2em 1em;font-size:14px}#verdict h2{margin:.4em 0}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child,td:nth-child(2){text-align:left}
figure{margin:2em 0}img{max-width:100%}figcaption{color:#555;font-size:13px}
"""
