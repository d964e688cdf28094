"""Figures of compute and allocation: the loss frontier, the plan trained, N_opt and D_opt."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.colors import LogNorm

from scalinglab.report.style import (
    BAND_COLOR,
    FIT,
    PALETTE,
    STYLE,
    ReportFigure,
    band,
    loss_axes,
    loss_axis,
    mark_plan,
    new_figure,
    pf_days_axis,
    scatter_runs,
    sci,
    shade_extrapolation,
)
from scalinglab.report.values import ReportContent

__all__ = ["allocation_figure", "loss_vs_compute_figure", "plan_check_figure"]


def loss_vs_compute_figure(content: ReportContent) -> ReportFigure:
    """Loss against training compute: the runs, the fitted compute-optimal frontier with its
    bootstrap band, the region beyond the data (extrapolation) and the planned run."""
    runs, frontier, plan = content.runs, content.frontier, content.plan
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax,) = new_figure(6.4, 4.4)
        norm = LogNorm(
            vmin=runs.params.min(), vmax=max(runs.params.max(), runs.params.min() * 1.01)
        )
        sc = scatter_runs(
            ax, runs.flops, runs.loss, runs, "runs-compute", labels, color_by=runs.params, norm=norm
        )
        x_max = runs.flops.max()
        if frontier is not None:
            band(ax, frontier, BAND_COLOR)
            ax.plot(frontier.x, frontier.y, color=FIT, label=frontier.label, zorder=5)
            x_max = max(x_max, frontier.x.max())
        if plan is not None:
            x_max = max(x_max, plan.flops)
            mark_plan(
                ax,
                plan.flops,
                plan.loss,
                plan.loss_interval,
                f"{sci(plan.flops)} FLOP\nL = {plan.loss:.3f}",
            )
        shade_extrapolation(ax, content.domain_flops_max, x_max * 1.5)
        loss_axes(ax)
        ax.set_xlabel("training compute C (FLOP)")
        loss_axis(ax)
        pf_days_axis(ax)
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
        fig, (ax, ax_zoom) = new_figure(9.6, 4.2, ncols=2)
        fig.get_layout_engine().set(wspace=0.08)
        scatter_runs(
            ax, runs.flops, runs.loss, runs, "check-runs", labels, color="#9A9A9A", label="sweep"
        )
        x_max = max(runs.flops.max(), *(t.flops for t in trained))
        if frontier is not None:
            band(ax, frontier, BAND_COLOR)
            ax.plot(frontier.x, frontier.y, color=FIT, label=frontier.label, zorder=5)
        for k, (run, marker) in enumerate(zip(trained, markers * len(trained), strict=False)):
            color = PALETTE[(k + 1) % len(PALETTE)]
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
        shade_extrapolation(ax, content.domain_flops_max, x_max * 1.5)
        loss_axes(ax)
        ax.set_xlabel("training compute C (FLOP)")
        loss_axis(ax)
        ax.legend(loc="upper right", fontsize=7)
        ax.set_title("the sweep, the fitted frontier and the runs planned from it")
        ax_zoom.set_xticks(range(len(trained)), [t.label for t in trained], rotation=0)
        ax_zoom.set_xlim(-0.6, len(trained) - 0.4)
        ax_zoom.margins(y=0.25)
        ax_zoom.grid(axis="x", visible=False)
        loss_axis(ax_zoom)
        ax_zoom.set_title(f"at {sci(trained[0].flops)} FLOP: predicted (hollow) and measured")
    level = next((t.level for t in trained if t.level), None)
    shown = f"{level:.0%} " if level else ""
    caption = (
        "Planned from the fit, then trained: hollow markers are the law's predictions (with "
        f"their {shown}prediction interval for one run: parameters, run-to-run scatter and "
        "extrapolation error), made before training; filled markers are the "
        "validation losses the runs reached. Grey dots are the sweep the law was fitted on; the "
        "line is its compute-optimal frontier, in the shaded region an extrapolation."
    )
    return ReportFigure(
        "plan_check", "The plan, trained: prediction against measurement", caption, fig, labels
    )


def allocation_figure(content: ReportContent) -> ReportFigure | None:
    """The compute-optimal N(C) and D(C) with their bands, the runs, and the planned run."""
    if content.params_frontier is None or content.tokens_frontier is None:
        return None
    runs, plan = content.runs, content.plan
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax_n, ax_d) = new_figure(9.2, 3.9, ncols=2)
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
            scatter_runs(ax, runs.flops, data, runs, gid, labels, color="#AAAAAA")
            band(ax, curve, BAND_COLOR)
            ax.plot(curve.x, curve.y, color=FIT, label=curve.label, zorder=5)
            if point is not None and plan is not None:
                value, interval = point
                mark_plan(ax, plan.flops, value, interval, f"{ylabel.split()[-1]} = {sci(value)}")
            shade_extrapolation(
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
            f" The star is the planned run at {sci(plan.flops)} FLOP: N = {sci(plan.params)}, "
            f"D = {sci(plan.tokens)}."
            if plan is not None
            else ""
        )
    )
    return ReportFigure(
        "allocation", "The planned allocation on the frontier", caption, fig, labels
    )
