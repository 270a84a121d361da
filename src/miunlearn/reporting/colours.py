"""One colour (and marker) per model, the same in every figure of a run and its report."""

from __future__ import annotations

#: matplotlib's tab10, minus the two colours reserved below
PALETTE = ["#1f77b4", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
RESERVED = {"original": "#7f7f7f", "retrain": "#2ca02c"}
MARKERS = "osD^vP*Xh<>"


def model_colours(names: list[str]) -> dict[str, str]:
    """``original`` grey and ``retrain`` green always; the methods take the palette in the run's order."""
    others = iter(PALETTE * (len(names) // len(PALETTE) + 1))
    return {name: RESERVED.get(name) or next(others) for name in names}


def model_markers(names: list[str]) -> dict[str, str]:
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
