"""The comparison table: one row per model, the columns a reader needs to judge forgetting."""

from __future__ import annotations

from collections.abc import Callable

from rich import box
from rich.console import Console
from rich.table import Table

from miunlearn.audit.metrics import Metric


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _num(v: float) -> str:
    return f"{v:.3f}"


def _secs(v: float) -> str:
    return f"{v:.2f}"


def _ratio(v: float) -> str:
    return f"{v:.1f}x"


#: (metric key, header, formatter)
COLUMNS: list[tuple[str, str, Callable[[float], str]]] = [
    (Metric.RETAIN_ACC, "retain %", _pct),
    (Metric.FORGET_ACC, "forget %", _pct),
    (Metric.TEST_ACC, "test %", _pct),
    (Metric.of_attack("loss", "auc"), "AUC loss", _num),
    (Metric.of_attack("entropy", "auc"), "AUC ent", _num),
    (Metric.of_attack("m-entropy", "auc"), "AUC m-ent", _num),
    (Metric.MIA_EFFICACY, "MIA-eff %", lambda v: f"{v:.1f}"),
    (Metric.PINSKER_BOUND, "KL bound", _num),
    (Metric.JS_TO_RETRAIN, "JS→retrain", lambda v: f"{v:.4f}"),
    (Metric.AVG_GAP, "avg gap", lambda v: f"{v:.2f}"),
    (Metric.SECONDS, "seconds", _secs),
    (Metric.SPEEDUP, "speedup", _ratio),
]


#: the columns a terminal shows without ``--wide``: accuracy, the loss attack, the gap and the speed-up fit 80 columns
MAIN_COLUMNS = (Metric.RETAIN_ACC, Metric.FORGET_ACC, Metric.TEST_ACC, Metric.of_attack("loss", "auc"),
                Metric.MIA_EFFICACY, Metric.AVG_GAP, Metric.SPEEDUP)


def _rows(metrics_by_model: dict[str, dict[str, float]],
          columns: list[tuple[str, str, Callable[[float], str]]] = COLUMNS) -> tuple[list[str], list[list[str]]]:
    present = [c for c in columns if any(c[0] in m for m in metrics_by_model.values())]
    headers = ["model"] + [h for _, h, _ in present]
    rows = [[name] + [fmt(m[key]) if key in m else "—" for key, _, fmt in present]
            for name, m in metrics_by_model.items()]
    return headers, rows


def format_table(metrics_by_model: dict[str, dict[str, float]]) -> str:
    """Plain-text (Markdown) version, for files and benchmarks."""
    headers, rows = _rows(metrics_by_model)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def print_table(metrics_by_model: dict[str, dict[str, float]], title: str, console: Console | None = None,
                wide: bool = False) -> None:
    """The table at the terminal's width: the main columns, or all of them with ``wide``."""
    columns = COLUMNS if wide else [c for c in COLUMNS if c[0] in MAIN_COLUMNS]
    headers, rows = _rows(metrics_by_model, columns)
    hidden = len(_rows(metrics_by_model)[0]) - len(headers)
    table = Table(title=title, caption=f"{hidden} more column(s) with --wide; all in metrics.json" if hidden else None,
                  box=box.SIMPLE_HEAD)
    for i, h in enumerate(headers):
        if i == 0:
            table.add_column(h, no_wrap=True, min_width=max(len(r[0]) for r in rows))
        else:
            table.add_column(h, justify="right", min_width=max(len(word) for word in h.split()))
    for r in rows:
        table.add_row(*r)
    (console or Console()).print(table)


def print_certificate(cert: dict, paths: dict[str, str], console: Console) -> None:
    """A request's verdict, its audit numbers against their thresholds, and where its files are."""
    verdict = cert["verdict"]
    style = "green" if verdict["status"] == "forgotten" else "yellow" if verdict["status"] == "inconclusive" else "red"
    console.print(f"[bold {style}]request {cert['request']}: {verdict['status']}[/bold {style}] — {verdict['summary']}",
                  highlight=False)
    table = Table(title=f"audit: {cert['count']} forgotten row(s) vs {cert['audit']['n_audit']} held-out audit rows")
    attacks = cert["audit"]["attacks"]
    retrained = all("auc_retrain" in r for r in attacks.values())
    for i, h in enumerate(("attack", "AUC before", "AUC after", "threshold", "result")
                          + (("AUC retrain",) if retrained else ())):
        table.add_column(h, justify="left" if i == 0 else "right")
    for name, r in attacks.items():
        table.add_row(name, _num(r["auc_before"]), _num(r["auc"]), _num(r["threshold"]),
                      "pass" if r["passed"] else "[red]FAIL[/red]", *((_num(r["auc_retrain"]),) if retrained else ()))
    console.print(table)
    comparator = cert.get("retrain_comparator")
    if comparator and comparator.get("avg_gap") is not None:
        console.print(f"retrained comparator: average gap {comparator['avg_gap']:.2f} points, JS divergence on the "
                      f"forgotten rows {comparator['js_to_retrain']:.4f}", highlight=False)
    for finding in verdict["findings"]:
        if finding["flagged"] and finding["message"] != verdict["summary"]:
            console.print(f"[dim]• {finding['message']}[/dim]", highlight=False)
    for label, path in paths.items():
        console.print(f"{label}: {path}", highlight=False, soft_wrap=True)
