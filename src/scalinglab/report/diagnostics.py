"""Figures of how the law fits: its slices, IsoFLOP profiles, residuals, bootstrap, curves."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.colors import LogNorm

from scalinglab.report.style import (
    FIT,
    HELDOUT,
    PALETTE,
    STYLE,
    ReportFigure,
    band,
    loss_axes,
    loss_axis,
    new_figure,
    scatter_runs,
    sci,
)
from scalinglab.report.values import ReportContent

__all__ = [
    "bootstrap_figure",
    "isoflop_figure",
    "residuals_figure",
    "separate_effects_figure",
    "training_curves_figure",
]


def separate_effects_figure(content: ReportContent) -> ReportFigure | None:
    """Loss against N at fixed D and against D at fixed N: the two terms act separately.

    Returns ``None`` when the law does not take both N and D.
    """
    if not content.slices_fixed_tokens or not content.slices_fixed_params:
        return None
    runs = content.runs
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax_n, ax_d) = new_figure(9.2, 3.9, ncols=2)
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
                color = PALETTE[k % len(PALETTE)]
                ax.plot(sl.curve.x, sl.curve.y, color=color, label=f"{fixed} = {sci(sl.value)}")
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
            loss_axes(ax)
            ax.set_xlabel(x_label)
            loss_axis(ax)
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
        fig, (ax_p, ax_o) = new_figure(9.2, 3.9, ncols=2)
        norm = LogNorm(
            vmin=min(p.flops for p in profiles), vmax=max(max(p.flops for p in profiles), 1.0001)
        )
        cmap = mpl.colormaps["viridis"]
        for k, prof in enumerate(profiles):
            color = cmap(norm(prof.flops)) if len(profiles) > 1 else PALETTE[0]
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
        loss_axes(ax_p)
        ax_p.set_xlabel("parameters N")
        loss_axis(ax_p)
        ax_p.set_title("IsoFLOP profiles (▼ = parabola minimum)")
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax_p, label="compute C (FLOP)", pad=0.01)

        with_opt = [p for p in profiles if p.params_opt is not None]
        if with_opt:
            ax_o.scatter(
                [p.flops for p in with_opt],
                [p.params_opt for p in with_opt],
                marker="v",
                color=PALETTE[0],
                edgecolors="black",
                linewidths=0.5,
                s=30,
                zorder=4,
                label="IsoFLOP minima",
            )
        if content.isoflop_fit is not None:
            fit_curve = content.isoflop_fit
            band(ax_o, fit_curve, PALETTE[0])
            ax_o.plot(fit_curve.x, fit_curve.y, color=PALETTE[0], label=fit_curve.label)
        if content.params_frontier is not None:
            ax_o.plot(
                content.params_frontier.x,
                content.params_frontier.y,
                color=FIT,
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
        fig, axes = new_figure(9.6, 3.4, ncols=3)
        ax_c, ax_r, ax_h = axes
        ratio = runs.tokens / runs.params
        for ax, x, xlabel, gid in (
            (ax_c, runs.flops, "training compute C (FLOP)", "resid-c"),
            (ax_r, ratio, "tokens per parameter D/N", "resid-r"),
        ):
            scatter_runs(ax, x, resid_pct, runs, gid, labels, color=PALETTE[0], label="fitted runs")
            ax.axhline(0.0, color=FIT, linewidth=0.8)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("residual, observed/predicted − 1 (%)")
        ax_c.legend(loc="best")
        fitted = resid_pct[~runs.heldout]
        bins = max(8, min(40, int(np.sqrt(max(len(fitted), 1))) * 2))
        ax_h.hist(fitted, bins=bins, color=PALETTE[0], alpha=0.8, orientation="horizontal")
        if runs.heldout.any():
            for value in resid_pct[runs.heldout]:
                ax_h.axhline(value, color=HELDOUT, linewidth=1.2)
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
        fig, axes = new_figure(min(3.1 * len(names), 12.0), 3.0, ncols=len(names))
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
                color=PALETTE[k % len(PALETTE)],
                alpha=0.75,
            )
            title = []
            est = samples[name].estimate
            if est is not None and np.isfinite(est):
                ax.axvline(est, color=FIT, linewidth=1.3)
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


def training_curves_figure(content: ReportContent) -> ReportFigure | None:
    """Validation loss against tokens for every stored run, coloured by model size."""
    curves = content.curves
    if not curves:
        return None
    runs = content.runs
    labels: dict[str, tuple[str, ...]] = {}
    with mpl.rc_context(STYLE):
        fig, (ax,) = new_figure(6.4, 4.0)
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
        loss_axes(ax)
        ax.set_xlabel("training tokens D")
        loss_axis(ax)
        fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="parameters N")
        ax.legend(loc="upper right")
    caption = (
        "Validation loss of every run as it trained, coloured by model size; the dots are the "
        "final points the law is fitted on. A WSD run's curve is measured at its stable "
        "learning rate and drops in its final cooldown; each cooldown branched off earlier "
        "gives one more point, below the curve where it branched."
    )
    return ReportFigure("training_curves", "Training curves", caption, fig, labels)
