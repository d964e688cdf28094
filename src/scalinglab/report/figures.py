"""Publication-quality figures of a scaling study, drawn from plain values.

Every function here takes the plain, typed values of :mod:`scalinglab.report.content` (arrays in
frozen dataclasses) and returns a :class:`ReportFigure`: a :class:`matplotlib.figure.Figure` with
its name, title, caption and the labels of its points (the HTML report turns those into tooltips).

Nothing here touches global matplotlib state. Figures are made with the object-oriented API
(``matplotlib.figure.Figure``, never ``pyplot``), so the user's backend is left alone and nothing
accumulates in pyplot's figure manager; the house style is applied with ``matplotlib.rc_context``
around drawing and saving only.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
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

from scalinglab.outputs import check_output, write_atomic
from scalinglab.report.content import Curve, ReportContent, RunPoints
from scalinglab.units import flops_to_pf_days, pf_days_to_flops

__all__ = [
    "STYLE",
    "ReportFigure",
    "allocation_figure",
    "bootstrap_figure",
    "figure_bytes",
    "isoflop_figure",
    "loss_vs_compute_figure",
    "make_figures",
    "plan_check_figure",
    "residuals_figure",
    "save_figures",
    "separate_effects_figure",
    "training_curves_figure",
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
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_HELDOUT = "#D55E00"
_FIT = "#222222"
_BAND = "#0072B2"


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


# ------------------------------------------------------------------------------------------------
# helpers


def _new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _loss_axes(ax: Axes) -> None:
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


def _loss_axis(ax: Axes) -> None:
    ax.set_ylabel("loss (nats/token)")


def _band(ax: Axes, curve: Curve, color: str, label: str | None = None) -> None:
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


def _scatter_runs(
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
            edgecolors=_HELDOUT,
            linewidths=1.4,
            zorder=4,
            label="held out",
        )
        held_artist.set_gid(gid_held)
        labels[gid_held] = tuple(np.asarray(runs.labels, dtype=object)[held])
    return artist


def _mark_plan(
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


def _shade_extrapolation(ax: Axes, upper: float | None, x_max: float) -> None:
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


def _pf_days_axis(ax: Axes) -> None:
    top = ax.secondary_xaxis("top", functions=(flops_to_pf_days, pf_days_to_flops))
    top.set_xlabel("compute (PF-days)")
    top.xaxis.set_minor_formatter(NullFormatter())


def _sci(value: float) -> str:
    """A number for a figure label: 5.8e+23 → "5.8·10²³"."""
    if not np.isfinite(value):
        return "n/a"
    mantissa, exponent = f"{value:.2e}".split("e")
    exp = int(exponent)
    sup = str(exp).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    m = mantissa.rstrip("0").rstrip(".")
    return f"10{sup}" if m == "1" else f"{m}·10{sup}"


# ------------------------------------------------------------------------------------------------
# the figures


def loss_vs_compute_figure(content: ReportContent) -> ReportFigure:
    """Loss against training compute: the runs, the fitted compute-optimal frontier with its
    bootstrap band, the region beyond the data (extrapolation) and the planned run."""
    runs, frontier, plan = content.runs, content.frontier, content.plan
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax,) = _new_figure(6.4, 4.4)
        norm = LogNorm(
            vmin=runs.params.min(), vmax=max(runs.params.max(), runs.params.min() * 1.01)
        )
        sc = _scatter_runs(
            ax, runs.flops, runs.loss, runs, "runs-compute", labels, color_by=runs.params, norm=norm
        )
        x_max = runs.flops.max()
        if frontier is not None:
            _band(ax, frontier, _BAND)
            ax.plot(frontier.x, frontier.y, color=_FIT, label=frontier.label, zorder=5)
            x_max = max(x_max, frontier.x.max())
        if plan is not None:
            x_max = max(x_max, plan.flops)
            _mark_plan(
                ax,
                plan.flops,
                plan.loss,
                plan.loss_interval,
                f"{_sci(plan.flops)} FLOP\nL = {plan.loss:.3f}",
            )
        _shade_extrapolation(ax, content.domain_flops_max, x_max * 1.5)
        _loss_axes(ax)
        ax.set_xlabel("training compute C (FLOP)")
        _loss_axis(ax)
        _pf_days_axis(ax)
        fig.colorbar(sc, ax=ax, label="parameters N", pad=0.01)
        ax.legend(loc="upper right")
    caption = (
        "Each dot is a run, coloured by its parameter count. The line is the lowest loss the "
        "fitted law reaches at each compute (the compute-optimal frontier)"
        + (
            ", shaded by its bootstrap interval"
            if frontier is not None and frontier.lo is not None
            else ""
        )
        + "; the grey region lies beyond the largest run's compute, where the law extrapolates."
        + (" The star is the planned run." if plan is not None else "")
    )
    return ReportFigure(
        "loss_vs_compute",
        "Loss against compute, with the compute-optimal frontier",
        caption,
        fig,
        labels,
    )


def plan_check_figure(content: ReportContent) -> ReportFigure | None:
    """The plan, trained: sweep, fitted frontier, each planned run's prediction and measurement.

    Left, the runs the law was fitted on, the compute-optimal frontier with its band, and each
    run trained after the fit: hollow, the prediction with its interval; filled, the measured
    loss. Right, the same predictions and measurements side by side at the budget, where a
    difference of a per cent is visible. ``None`` when nothing was trained after the fit.
    """
    trained = content.trained
    if not trained:
        return None
    runs, frontier = content.runs, content.frontier
    labels: dict[str, tuple[str, ...]] = {}
    markers = ("*", "D", "s", "^", "v")
    with mpl.rc_context(STYLE):
        fig, (ax, ax_zoom) = _new_figure(9.6, 4.2, ncols=2)
        fig.get_layout_engine().set(wspace=0.08)
        _scatter_runs(
            ax, runs.flops, runs.loss, runs, "check-runs", labels, color="#9A9A9A", label="sweep"
        )
        x_max = max(runs.flops.max(), *(t.flops for t in trained))
        if frontier is not None:
            _band(ax, frontier, _BAND)
            ax.plot(frontier.x, frontier.y, color=_FIT, label=frontier.label, zorder=5)
        for k, (run, marker) in enumerate(zip(trained, markers * len(trained), strict=False)):
            color = _PALETTE[(k + 1) % len(_PALETTE)]
            for axis, x in ((ax, run.flops), (ax_zoom, float(k))):
                yerr = None
                if run.interval is not None:
                    lo, hi = run.interval
                    yerr = np.array(
                        [[max(run.predicted - lo, 0.0)], [max(hi - run.predicted, 0.0)]]
                    )
                axis.errorbar(
                    [x],
                    [run.predicted],
                    yerr=yerr,
                    fmt=marker,
                    markersize=10 if marker == "*" else 6,
                    markerfacecolor="white",
                    markeredgecolor=color,
                    color=color,
                    capsize=3,
                    zorder=6,
                    label=f"{run.label}: predicted" if axis is ax else None,
                )
                if run.measured is not None:
                    axis.plot(
                        [x],
                        [run.measured],
                        marker=marker,
                        markersize=10 if marker == "*" else 6,
                        color=color,
                        markeredgecolor="black",
                        markeredgewidth=0.5,
                        linestyle="none",
                        zorder=7,
                        label=f"{run.label}: measured" if axis is ax else None,
                    )
        _shade_extrapolation(ax, content.domain_flops_max, x_max * 1.5)
        _loss_axes(ax)
        ax.set_xlabel("training compute C (FLOP)")
        _loss_axis(ax)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title("the sweep, the fitted frontier and the runs planned from it")
        ax_zoom.set_xticks(range(len(trained)), [t.label for t in trained], rotation=0)
        ax_zoom.set_xlim(-0.6, len(trained) - 0.4)
        ax_zoom.margins(y=0.25)
        ax_zoom.grid(axis="x", visible=False)
        _loss_axis(ax_zoom)
        ax_zoom.set_title(f"at {_sci(trained[0].flops)} FLOP: predicted (hollow) and measured")
    level = next((t.level for t in trained if t.level), None)
    shown = f"{level:.0%} " if level else ""
    caption = (
        "Planned from the fit, then trained: hollow markers are the law's predictions (with "
        f"their {shown}bootstrap interval), made before training; filled markers are the "
        "validation losses the runs reached. Grey dots are the sweep the law was fitted on; the "
        "line is its compute-optimal frontier, in the shaded region an extrapolation."
    )
    return ReportFigure(
        "plan_check", "The plan, trained: prediction against measurement", caption, fig, labels
    )


def separate_effects_figure(content: ReportContent) -> ReportFigure | None:
    """Loss against N at fixed D and against D at fixed N: the two terms act separately.

    Returns ``None`` when the law does not take both N and D.
    """
    if not content.slices_fixed_tokens or not content.slices_fixed_params:
        return None
    runs = content.runs
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax_n, ax_d) = _new_figure(9.2, 3.9, ncols=2)
        for ax, slices, x_data, x_label, gid, fixed, free in (
            (ax_n, content.slices_fixed_tokens, runs.params, "parameters N", "runs-n", "D", "N"),
            (
                ax_d,
                content.slices_fixed_params,
                runs.tokens,
                "training tokens D",
                "runs-d",
                "N",
                "D",
            ),
        ):
            for k, sl in enumerate(slices):
                color = _PALETTE[k % len(_PALETTE)]
                ax.plot(sl.curve.x, sl.curve.y, color=color, label=f"{fixed} = {_sci(sl.value)}")
                if sl.asymptote is not None:
                    ax.axhline(sl.asymptote, color=color, linestyle=":", linewidth=0.9)
                members = sl.members & ~runs.heldout
                if members.any():
                    g = f"{gid}-{k}"
                    pts = ax.scatter(
                        x_data[members],
                        runs.loss[members],
                        s=14,
                        color=color,
                        edgecolors="white",
                        linewidths=0.4,
                        zorder=3,
                    )
                    pts.set_gid(g)
                    labels[g] = tuple(np.asarray(runs.labels, dtype=object)[members])
            ax.plot(
                [], [], color="#777777", linestyle=":", linewidth=0.9, label=f"limit, {free} → ∞"
            )
            _loss_axes(ax)
            ax.set_xlabel(x_label)
            _loss_axis(ax)
            ax.legend(loc="upper right", title=f"fixed {fixed}")
        ax_n.set_title("loss against N at fixed D")
        ax_d.set_title("loss against D at fixed N")
    caption = (
        "Slices of the fitted law. Left: loss against parameters at a fixed number of tokens; "
        "right: loss against tokens at a fixed parameter count. Each curve flattens to the "
        "dotted floor the other term sets, so a larger model cannot buy back missing data nor "
        "more data a missing model size. Dots are runs within a factor of "
        f"{content.slice_tolerance:.2g} of the slice's fixed value."
    )
    return ReportFigure(
        "separate_effects",
        "Loss against N at fixed D and against D at fixed N",
        caption,
        fig,
        labels,
    )


def isoflop_figure(content: ReportContent) -> ReportFigure | None:
    """IsoFLOP profiles with their parabola minima, and the fitted N_opt(C) power law."""
    profiles = content.isoflop
    if not profiles:
        return None
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax_p, ax_o) = _new_figure(9.2, 3.9, ncols=2)
        norm = LogNorm(
            vmin=min(p.flops for p in profiles), vmax=max(max(p.flops for p in profiles), 1.0001)
        )
        cmap = mpl.colormaps["viridis"]
        for k, prof in enumerate(profiles):
            color = cmap(norm(prof.flops)) if len(profiles) > 1 else _PALETTE[0]
            pts = ax_p.scatter(
                prof.params,
                prof.loss,
                s=14,
                color=color,
                edgecolors="white",
                linewidths=0.4,
                zorder=3,
            )
            pts.set_gid(f"isoflop-{k}")
            labels[f"isoflop-{k}"] = tuple(prof.labels)
            if prof.curve is not None:
                ax_p.plot(prof.curve.x, prof.curve.y, color=color, linewidth=1.1)
            if prof.params_opt is not None and prof.loss_opt is not None:
                ax_p.plot(
                    [prof.params_opt],
                    [prof.loss_opt],
                    marker="v",
                    color=color,
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    markersize=6,
                    zorder=5,
                    linestyle="none",
                )
        _loss_axes(ax_p)
        ax_p.set_xlabel("parameters N")
        _loss_axis(ax_p)
        ax_p.set_title("IsoFLOP profiles (▼ = parabola minimum)")
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax_p, label="compute C (FLOP)", pad=0.01)

        with_opt = [p for p in profiles if p.params_opt is not None]
        if with_opt:
            ax_o.scatter(
                [p.flops for p in with_opt],
                [p.params_opt for p in with_opt],
                marker="v",
                color=_PALETTE[0],
                edgecolors="black",
                linewidths=0.5,
                s=30,
                zorder=4,
                label="IsoFLOP minima",
            )
        if content.isoflop_fit is not None:
            fit_curve = content.isoflop_fit
            _band(ax_o, fit_curve, _PALETTE[0])
            ax_o.plot(fit_curve.x, fit_curve.y, color=_PALETTE[0], label=fit_curve.label)
        if content.params_frontier is not None:
            ax_o.plot(
                content.params_frontier.x,
                content.params_frontier.y,
                color=_FIT,
                linestyle="--",
                linewidth=1.1,
                label=content.params_frontier.label,
            )
        ax_o.set_xscale("log")
        ax_o.set_yscale("log")
        ax_o.set_xlabel("training compute C (FLOP)")
        ax_o.set_ylabel("compute-optimal parameters N_opt")
        ax_o.set_title("N_opt(C)")
        ax_o.legend(loc="upper left")
    caption = (
        "Left: runs at equal compute (IsoFLOP profiles), each with the parabola in log N that "
        "Approach 2 of Hoffmann et al. (2022) fits near its lowest loss, minimum marked; levels "
        "whose minimum sits at an edge of the sizes tested are refused and not drawn. Right: "
        "those minima against compute, with the power law N_opt ∝ C^a fitted to them"
        + (
            " and, dashed, the optimum implied by the fitted L(N, D)."
            if content.params_frontier
            else "."
        )
    )
    return ReportFigure(
        "isoflop", "IsoFLOP profiles and the compute-optimal model size", caption, fig, labels
    )


def residuals_figure(content: ReportContent) -> ReportFigure | None:
    """Relative residuals of every run against compute and against tokens per parameter."""
    runs = content.runs
    if runs.predicted is None:
        return None
    labels: dict[str, tuple[str, ...]] = {}
    resid_pct = 100.0 * (runs.loss / runs.predicted - 1.0)
    with mpl.rc_context(STYLE):
        fig, axes = _new_figure(9.6, 3.4, ncols=3)
        ax_c, ax_r, ax_h = axes
        ratio = runs.tokens / runs.params
        for ax, x, xlabel, gid in (
            (ax_c, runs.flops, "training compute C (FLOP)", "resid-c"),
            (ax_r, ratio, "tokens per parameter D/N", "resid-r"),
        ):
            _scatter_runs(
                ax, x, resid_pct, runs, gid, labels, color=_PALETTE[0], label="fitted runs"
            )
            ax.axhline(0.0, color=_FIT, linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("residual, observed/predicted − 1 (%)")
        ax_c.legend(loc="best")
        fitted = resid_pct[~runs.heldout]
        bins = max(8, min(40, int(np.sqrt(max(len(fitted), 1))) * 2))
        ax_h.hist(fitted, bins=bins, color=_PALETTE[0], alpha=0.8, orientation="horizontal")
        if runs.heldout.any():
            for value in resid_pct[runs.heldout]:
                ax_h.axhline(value, color=_HELDOUT, linewidth=1.2)
        ax_h.set_xlabel("runs")
        ax_h.set_ylabel("residual (%)")
        rms = float(np.sqrt(np.mean(fitted**2))) if len(fitted) else float("nan")
        ax_h.set_title(f"RMS {rms:.2f} %")
    caption = (
        "Observed loss over the fitted law's prediction, minus one, for every run: against "
        "compute, against tokens per parameter, and as a histogram. A trend means the law form "
        "misses something; orange marks held-out runs the fit never saw."
    )
    return ReportFigure("residuals", "Residuals", caption, fig, labels)


def bootstrap_figure(content: ReportContent) -> ReportFigure | None:
    """Histograms of the bootstrap distributions of the law's exponents, with their intervals."""
    samples = content.bootstrap
    if not samples:
        return None
    names = list(samples)
    with mpl.rc_context(STYLE):
        fig, axes = _new_figure(min(3.1 * len(names), 12.0), 3.0, ncols=len(names))
        for k, (ax, name) in enumerate(zip(axes, names, strict=True)):
            values = np.asarray(samples[name].values, dtype=float)
            values = values[np.isfinite(values)]
            centre = float(np.median(values)) if len(values) else 0.0
            spread = float(np.ptp(values)) if len(values) else 0.0
            # Exact data give (nearly) identical refits: draw one bar, not 30 empty ones.
            wide = spread > 1e-6 * max(abs(centre), 1e-12)
            ax.hist(
                values,
                bins=30 if wide else 1,
                range=None
                if wide
                else (centre - 1e-3 * abs(centre or 1), centre + 1e-3 * abs(centre or 1)),
                color=_PALETTE[k % len(_PALETTE)],
                alpha=0.75,
            )
            title = []
            est = samples[name].estimate
            if est is not None and np.isfinite(est):
                ax.axvline(est, color=_FIT, linewidth=1.3)
                title.append(f"fit {est:.3f}")
            ci = samples[name].interval
            if ci is not None:
                ax.axvspan(ci[0], ci[1], color="#999999", alpha=0.15, linewidth=0)
                ax.axvline(ci[0], color="#666666", linestyle="--", linewidth=0.8)
                ax.axvline(ci[1], color="#666666", linestyle="--", linewidth=0.8)
                level = f"{content.ci_level:.0%} " if content.ci_level else ""
                title.append(f"{level}CI [{ci[0]:.3f}, {ci[1]:.3f}]")
            ax.set_title(", ".join(title), fontsize=8.5)
            ax.set_xlabel(samples[name].label)
            ax.set_ylabel("bootstrap fits" if k == 0 else "")
            ax.grid(axis="x", visible=False)
    caption = (
        f"Distributions of the fitted exponents over {content.n_bootstrap} bootstrap refits "
        "(runs resampled with replacement). Solid: the fit to all runs; dashed and shaded: the "
        "percentile interval."
    )
    return ReportFigure("bootstrap", "Bootstrap distributions of the exponents", caption, fig)


def allocation_figure(content: ReportContent) -> ReportFigure | None:
    """The compute-optimal N(C) and D(C) with their bands, the runs, and the planned run."""
    if content.params_frontier is None or content.tokens_frontier is None:
        return None
    runs, plan = content.runs, content.plan
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax_n, ax_d) = _new_figure(9.2, 3.9, ncols=2)
        for ax, curve, data, ylabel, gid, point in (
            (
                ax_n,
                content.params_frontier,
                runs.params,
                "parameters N",
                "alloc-n",
                None if plan is None else (plan.params, plan.params_interval),
            ),
            (
                ax_d,
                content.tokens_frontier,
                runs.tokens,
                "training tokens D",
                "alloc-d",
                None if plan is None else (plan.tokens, plan.tokens_interval),
            ),
        ):
            _scatter_runs(ax, runs.flops, data, runs, gid, labels, color="#AAAAAA")
            _band(ax, curve, _BAND)
            ax.plot(curve.x, curve.y, color=_FIT, label=curve.label, zorder=5)
            if point is not None and plan is not None:
                value, interval = point
                _mark_plan(ax, plan.flops, value, interval, f"{ylabel.split()[-1]} = {_sci(value)}")
            _shade_extrapolation(
                ax, content.domain_flops_max, max(curve.x.max(), runs.flops.max()) * 1.5
            )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("training compute C (FLOP)")
            ax.set_ylabel(ylabel)
            ax.legend(loc="upper left")
        ax_n.set_title("compute-optimal model size")
        ax_d.set_title("compute-optimal training tokens")
    caption = (
        "The allocation the fitted law recommends at each compute: parameters (left) and tokens "
        "(right), with the bootstrap band; grey dots are the runs the law was fitted on."
        + (
            f" The star is the planned run at {_sci(plan.flops)} FLOP: N = {_sci(plan.params)}, "
            f"D = {_sci(plan.tokens)}."
            if plan is not None
            else ""
        )
    )
    return ReportFigure(
        "allocation", "The planned allocation on the frontier", caption, fig, labels
    )


# ------------------------------------------------------------------------------------------------
# all of them, and files


def training_curves_figure(content: ReportContent) -> ReportFigure | None:
    """Validation loss against tokens for every stored run, coloured by model size."""
    curves = content.curves
    if not curves:
        return None
    runs = content.runs
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax,) = _new_figure(6.4, 4.0)
        sizes = np.array([c.params for c in curves])
        norm = LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01))
        cmap = mpl.colormaps["viridis"]
        for c in curves:
            ax.plot(c.tokens, c.loss, color=cmap(norm(c.params)), linewidth=1.0, alpha=0.9)
        gid = "curve-ends"
        ends = ax.scatter(
            runs.tokens,
            runs.loss,
            c=runs.params,
            norm=norm,
            s=14,
            edgecolors="black",
            linewidths=0.4,
            zorder=3,
            # Without a fit (too few runs) they are only the runs' final points.
            label="final points (fitted)" if content.fit_table is not None else "final points",
        )
        ends.set_gid(gid)
        labels[gid] = tuple(runs.labels)
        _loss_axes(ax)
        ax.set_xlabel("training tokens D")
        _loss_axis(ax)
        fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="parameters N")
        ax.legend(loc="upper right")
    caption = (
        "Validation loss of every run as it trained, coloured by model size; the dots are the "
        "final points the law is fitted on. A WSD run's curve is measured at its stable "
        "learning rate and drops in its final cooldown; each cooldown branched off earlier "
        "gives one more point, below the curve where it branched."
    )
    return ReportFigure("training_curves", "Training curves", caption, fig, labels)


def make_figures(content: ReportContent) -> list[ReportFigure]:
    """Every figure the content supports, in the report's order."""
    made = [
        plan_check_figure(content),
        loss_vs_compute_figure(content),
        separate_effects_figure(content),
        isoflop_figure(content),
        residuals_figure(content),
        bootstrap_figure(content),
        allocation_figure(content),
        training_curves_figure(content),
    ]
    return [f for f in made if f is not None]


def figure_bytes(figure: ReportFigure | Figure, fmt: str, *, salt: str | None = None) -> bytes:
    """Render a figure to ``fmt`` (``"png"`` or ``"svg"``) in memory, in the house style.

    The SVG carries no date and hashes its element ids with ``salt`` (the figure's name by
    default), so two figures rarely share an id (the HTML page prefixes them anyway).
    """
    fig = figure.figure if isinstance(figure, ReportFigure) else figure
    name = figure.name if isinstance(figure, ReportFigure) else "figure"
    if fmt not in FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    buffer = io.BytesIO()
    metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": "scalinglab"}
    with mpl.rc_context({**STYLE, "svg.hashsalt": salt or name}):
        fig.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def save_figures(
    figures: Iterable[ReportFigure],
    directory: str | Path,
    formats: Sequence[str] = FORMATS,
    *,
    rendered: Mapping[tuple[str, str], bytes] | None = None,
) -> list[Path]:
    """Write every figure as ``<directory>/<name>.<fmt>``; return the paths written.

    ``rendered`` holds bytes already made by :func:`figure_bytes`, keyed by (name, format).
    """
    out = check_output(directory, field="figures", folder=True)
    written = []
    for figure in figures:
        for fmt in formats:
            path = out / f"{figure.name}.{fmt}"
            data = (rendered or {}).get((figure.name, fmt))
            write_atomic(
                path, data if data is not None else figure_bytes(figure, fmt), field="figures"
            )
            written.append(path)
    return written
