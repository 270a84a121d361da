"""Human-readable output: the comparison table, the run's plots, reports and certificates.

Names load on first use, so the table and the config printer do not pay for matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"plot_roc": "miunlearn.reporting.plots", "plot_s_histograms": "miunlearn.reporting.plots",
            "COLUMNS": "miunlearn.reporting.table", "format_table": "miunlearn.reporting.table",
            "print_table": "miunlearn.reporting.table"}
__all__ = ["COLUMNS", "format_table", "plot_roc", "plot_s_histograms", "print_table"]

if TYPE_CHECKING:
    from miunlearn.reporting.plots import plot_roc, plot_s_histograms
    from miunlearn.reporting.table import COLUMNS, format_table, print_table


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'miunlearn.reporting' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
