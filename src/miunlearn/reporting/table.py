"""The comparison table: one row per model, the columns a reader needs to judge forgetting."""

from __future__ import annotations

from collections.abc import Callable

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


def _rows(metrics_by_model: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    present = [c for c in COLUMNS if any(c[0] in m for m in metrics_by_model.values())]
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


def print_table(metrics_by_model: dict[str, dict[str, float]], title: str, console: Console | None = None) -> None:
    headers, rows = _rows(metrics_by_model)
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    (console or Console(width=200)).print(table)
