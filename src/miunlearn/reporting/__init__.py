"""Human-readable output: the comparison table and the run's plots."""

from miunlearn.reporting.plots import plot_roc, plot_s_histograms
from miunlearn.reporting.table import COLUMNS, format_table, print_table

__all__ = ["COLUMNS", "format_table", "plot_roc", "plot_s_histograms", "print_table"]
