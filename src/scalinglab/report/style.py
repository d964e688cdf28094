"""The house style of the report's figures, and the pieces every figure is drawn with.

Nothing here touches global matplotlib state: figures are made with the object-oriented API
(``matplotlib.figure.Figure``, never ``pyplot``), and :data:`STYLE` is applied with
``matplotlib.rc_context`` around drawing and saving only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FormatStrFormatter,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from scalinglab.report.values import Curve, RunPoints
from scalinglab.units import flops_to_pf_days, pf_days_to_flops

__all__ = [
    "BAND_COLOR",
    "FIT",
    "FORMATS",
    "HELDOUT",
    "PALETTE",
    "STYLE",
    "ReportFigure",
    "band",
    "loss_axes",
    "loss_axis",
    "mark_plan",
    "new_figure",
    "pf_days_axis",
    "scatter_runs",
    "sci",
    "shade_extrapolation",
]

# The house style, applied locally. Sizes suit a one-column figure at 100 % in a paper or a page.
STYLE: Mapping[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.alpha": 0.25,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "lines.linewidth": 1.6,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    # Glyphs as paths: the SVG renders the same everywhere, with no font on the reader's machine.
    "svg.fonttype": "path",
    "image.cmap": "viridis",
}
FORMATS = ("png", "svg")

# Colours for categorical series (the Okabe–Ito palette reads well for colour-blind readers).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
HELDOUT = "#D55E00"
FIT = "#222222"
BAND_COLOR = "#0072B2"


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report.

    Attributes
    ----------
    name
        File stem and HTML anchor, e.g. ``"loss_vs_compute"``.
    title, caption
        Plain text for the page (the HTML escapes it).
    figure
        The matplotlib figure.
    point_labels
        For the scatter artists whose ``gid`` is the key, one label per point in drawing order;
        the HTML report shows them as tooltips.
    """

    name: str
    title: str
    caption: str
    figure: Figure = field(repr=False)
    point_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def loss_axes(ax: Axes) -> None:
    """Log x, log loss y with plain, evenly spaced loss ticks (call after plotting).

    Losses rarely span a decade, where a log axis would show one tick or none; ticks from
    ``MaxNLocator`` on the drawn range read like a linear axis while the scale stays logarithmic.
    """
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ticks = [
        t
        for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        if lo <= t <= hi and t > 0
    ]
    if len(ticks) >= 2:
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(NullLocator())


def loss_axis(ax: Axes) -> None:
    ax.set_ylabel("loss (nats/token)")


def band(ax: Axes, curve: Curve, color: str, label: str | None = None) -> None:
    if curve.lo is None or curve.hi is None:
        return
    level = f"{curve.level:.0%} " if curve.level is not None else ""
    ax.fill_between(
        curve.x,
        curve.lo,
        curve.hi,
        color=color,
        alpha=0.18,
        linewidth=0,
        label=label if label is not None else f"{level}bootstrap interval",
    )


def scatter_runs(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    runs: RunPoints,
    gid: str,
    labels: dict[str, tuple[str, ...]],
    *,
    color_by: np.ndarray | None = None,
    norm: LogNorm | None = None,
    color: str = "#555555",
    label: str = "runs",
) -> Any:
    """Scatter the fitted runs and, hollow and orange, the held-out ones."""
    held = runs.heldout
    keep = ~held
    kwargs: dict[str, Any] = {"s": 16, "linewidths": 0.4, "zorder": 3}
    if color_by is not None:
        artist = ax.scatter(
            x[keep], y[keep], c=color_by[keep], norm=norm, edgecolors="white", label=label, **kwargs
        )
    else:
        artist = ax.scatter(
            x[keep], y[keep], color=color, edgecolors="white", label=label, **kwargs
        )
    artist.set_gid(gid)
    labels[gid] = tuple(np.asarray(runs.labels, dtype=object)[keep])
    if held.any():
        gid_held = f"{gid}-heldout"
        held_artist = ax.scatter(
            x[held],
            y[held],
            s=40,
            facecolors="none",
            edgecolors=HELDOUT,
            linewidths=1.4,
            zorder=4,
            label="held out",
        )
        held_artist.set_gid(gid_held)
        labels[gid_held] = tuple(np.asarray(runs.labels, dtype=object)[held])
    return artist


def mark_plan(
    ax: Axes, x: float, y: float, interval: tuple[float, float] | None, text: str
) -> None:
    yerr = None
    if interval is not None:
        yerr = np.array([[max(y - interval[0], 0.0)], [max(interval[1] - y, 0.0)]])
    ax.errorbar(
        [x],
        [y],
        yerr=yerr,
        fmt="*",
        color="#CC0000",
        markersize=11,
        markeredgecolor="white",
        markeredgewidth=0.6,
        capsize=3,
        zorder=6,
        label="plan",
    )
    ax.annotate(
        text,
        (x, y),
        xytext=(-8, 10),
        textcoords="offset points",
        ha="right",
        fontsize=7.5,
        color="#990000",
    )


def shade_extrapolation(ax: Axes, upper: float | None, x_max: float) -> None:
    if upper is None or not np.isfinite(upper) or x_max <= upper:
        return
    ax.axvspan(upper, x_max, color="#999999", alpha=0.08, linewidth=0, zorder=0)
    ax.axvline(upper, color="#999999", linewidth=0.8, linestyle=":", zorder=1)
    ax.annotate(
        "extrapolation →",
        (upper, 0.02),
        xycoords=("data", "axes fraction"),
        xytext=(4, 0),
        textcoords="offset points",
        fontsize=7,
        color="#666666",
    )


def pf_days_axis(ax: Axes) -> None:
    top = ax.secondary_xaxis("top", functions=(flops_to_pf_days, pf_days_to_flops))
    top.set_xlabel("compute (PF-days)")
    top.xaxis.set_minor_formatter(NullFormatter())


def sci(value: float) -> str:
    """A number for a figure label: 5.8e+23 → "5.8·10²³"."""
    if not np.isfinite(value):
        return "n/a"
    mantissa, exponent = f"{value:.2e}".split("e")
    exp = int(exponent)
    sup = str(exp).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    m = mantissa.rstrip("0").rstrip(".")
    return f"10{sup}" if m == "1" else f"{m}·10{sup}"
